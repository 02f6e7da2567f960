"""Wall tokens for admins: make one for an area in your area (shown once), list, revoke.
Every issue and revocation is audited."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request, status
from pydantic import BaseModel, ConfigDict, Field

from api import wall_tokens
from api.deps import AdminUser, DbDep, client_of
from api.errors import ErrorBody
from registry.model import TERRITORY_ID

router = APIRouter(prefix="/api/v1/admin/wall-tokens", tags=["wall"])
TokenId = Annotated[int, Path(ge=1, le=2**63 - 1, description="a wall token's id")]


class WallTokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    area: str = Field(pattern=TERRITORY_ID, description="the area the wall shows (in your area)")
    name: str = Field(default="", max_length=wall_tokens.MAX_NAME,
                      description="which screen it is for, e.g. 指挥中心大屏")  # fmt: skip
    valid_days: float | None = Field(
        default=None, gt=0, le=wall_tokens.MAX_VALID_DAYS,
        description="expires after this many days; null: until revoked",
    )  # fmt: skip


class WallTokenOut(BaseModel):
    id: int
    area_id: str
    area_name: str
    name: str
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class WallTokenMade(WallTokenOut):
    token: str = Field(description="shown once: open /console/wall.html#token=TOKEN on the screen")


def _out(record: wall_tokens.WallToken) -> WallTokenOut:
    return WallTokenOut.model_validate(record, from_attributes=True)


@router.get("", response_model=list[WallTokenOut], summary="Wall tokens of your area (admins)")
def listing(user: AdminUser, db: DbDep) -> list[WallTokenOut]:
    return [_out(t) for t in wall_tokens.listing(db, user.scope_path)]


@router.post(
    "",
    response_model=WallTokenMade,
    status_code=status.HTTP_201_CREATED,
    summary="A view-only wall token for an area in your area (admins; shown once; audited)",
    responses={404: {"model": ErrorBody}},
)
def issue(body: WallTokenRequest, user: AdminUser, db: DbDep, request: Request) -> WallTokenMade:
    inside = db.execute(
        "SELECT 1 FROM territory WHERE id = %s AND path <@ %s::ltree AND NOT disabled",
        (body.area, user.scope_path),
    ).fetchone()
    if inside is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no area {body.area!r} in your area")
    with db.transaction():
        token, record = wall_tokens.issue(db, body.area, body.name, user.id,
                                          valid_days=body.valid_days, client=client_of(request))  # fmt: skip
    return WallTokenMade(**_out(record).model_dump(), token=token)


@router.post(
    "/{token_id}/revoke",
    response_model=WallTokenOut,
    summary="Revoke a wall token of your area (admins; at once; audited)",
    responses={404: {"model": ErrorBody}, 409: {"model": ErrorBody}},
)
def revoke(token_id: TokenId, user: AdminUser, db: DbDep, request: Request) -> WallTokenOut:
    record = wall_tokens.get(db, token_id)
    inside = record is not None and db.execute(
        "SELECT 1 FROM territory WHERE id = %s AND path <@ %s::ltree", (record.area_id, user.scope_path)
    ).fetchone()  # fmt: skip
    if record is None or not inside:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no wall token {token_id} in your area")
    with db.transaction():
        if not wall_tokens.revoke(db, token_id, user.id, client=client_of(request)):
            raise HTTPException(
                status.HTTP_409_CONFLICT, f"wall token {token_id} is revoked already"
            )
    made = wall_tokens.get(db, token_id)
    assert made is not None
    return _out(made)
