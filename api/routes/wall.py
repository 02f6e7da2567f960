"""The control room's wall (大屏): everything its screen shows for one area, in one answer.

Read with a view-only wall token (api/wall_tokens.py) for the area or one above it, or by a
signed-in person whose area holds it. The answer is kept for a few seconds per area in the API
process (responses themselves are no-store, as every API answer), so any number of walls
polling the same area cost the database one summary per period.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Annotated

from fastapi import APIRouter, Depends, Request, status
from fastapi.security import OAuth2PasswordBearer
from prometheus_client import Counter as Counted
from prometheus_client import Histogram
from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from api import messages, wall_tokens
from api.deps import DbDep, KeyDep, not_signed_in, session_for
from api.errors import ErrorBody
from api.messages import ApiError
from api.models import AreaPath
from api.wall_summary import (
    AREAS,
    REFRESH_S,
    MapArea,
    WallMap,
    WallSummary,
    build,
    in_language,
    map_version,
)

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/wall", tags=["wall"])
_bearer = OAuth2PasswordBearer(tokenUrl="/api/token", auto_error=False)

SUMMARIES = Counted(
    "gridwatch_api_wall_summaries_total",
    "Wall summaries answered, built afresh or from the few-second cache",
    ["source"],
)
BUILD = Histogram(
    "gridwatch_api_wall_build_seconds",
    "Time to build one wall summary from the database",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
CACHE_S = REFRESH_S


class WallSettings(BaseSettings):
    """The wall's settings (GRIDWATCH_WALL_*)."""

    model_config = SettingsConfigDict(env_prefix="GRIDWATCH_WALL_", frozen=True, extra="ignore")

    tile_url: str | None = Field(
        default=None,
        description="map tiles under the wall's boundaries: a path on the console's origin (its"
        " CSP allows no other host), e.g. /tiles/{z}/{x}/{y}.png (Web Mercator, 256 px);"
        " unset: the map is the boundaries alone, no tiles needed",
    )

    @field_validator("tile_url")
    @classmethod
    def _tile_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith("/") or value.startswith("//"):
            raise ValueError(f"{value!r} is not a path on the console's origin (/tiles/{{z}}/...)")
        if not all(part in value for part in ("{z}", "{x}", "{y}")):
            raise ValueError(f"{value!r} lacks {{z}}, {{x}} or {{y}}")
        return value


class WallViewer(BaseModel):
    area_id: str = Field(description="the area this bearer's wall shows by default")
    area_name: str
    wall_token: bool = Field(description="a wall token (else a person's access token)")


def wall_viewer(
    request: Request, db: DbDep, key: KeyDep, token: Annotated[str | None, Depends(_bearer)]
) -> tuple[WallViewer, str]:
    """Whose wall this is and the path of the area it may read: a wall token's area, or a
    signed-in person's. 401 without a token that counts."""
    if not token:
        raise not_signed_in()
    if wall_tokens.looks_like(token):
        scope = wall_tokens.scope_of(db, token)
        if scope is None:
            raise not_signed_in("wall.token_invalid")
        area_id, path, by_token = scope.area_id, scope.area_path, True
    else:
        user = session_for(db, token, key, request=request)[0]
        area_id, path, by_token = user.scope_id, user.scope_path, False
    row = db.execute("SELECT name FROM territory WHERE id = %s", (area_id,)).fetchone()
    name = str(row[0]) if row is not None else area_id
    return WallViewer(area_id=area_id, area_name=name, wall_token=by_token), path


WallViewerDep = Annotated[tuple[WallViewer, str], Depends(wall_viewer)]


def wall_area(area: AreaPath, db: DbDep, viewer: WallViewerDep) -> tuple[str, str]:
    """The area asked for (id, path) when the bearer may read its wall: a wall token of it or an
    area above it, or a person whose area holds it; 404 for any other (as if it did not exist)."""
    row = db.execute(
        "SELECT path::text FROM territory WHERE id = %s AND path <@ %s::ltree AND NOT disabled",
        (area, viewer[1]),
    ).fetchone()
    if row is None:
        raise ApiError(status.HTTP_404_NOT_FOUND, "wall.no_area", area=area)
    return area, str(row[0])


WallAreaDep = Annotated[tuple[str, str], Depends(wall_area)]


class _Cache:
    """The latest summary per area, for CACHE_S seconds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kept: dict[str, tuple[float, WallSummary]] = {}

    def get(self, area: str) -> WallSummary | None:
        with self._lock:
            kept = self._kept.get(area)
        return kept[1] if kept is not None and time.monotonic() - kept[0] < CACHE_S else None

    def put(self, area: str, summary: WallSummary) -> None:
        with self._lock:
            now = time.monotonic()
            self._kept = {a: k for a, k in self._kept.items() if now - k[0] < CACHE_S}
            self._kept[area] = (now, summary)


def _cache(request: Request) -> _Cache:
    cache: _Cache | None = getattr(request.app.state, "wall_cache", None)
    if cache is None:
        cache = request.app.state.wall_cache = _Cache()
    return cache


@router.get(
    "",
    response_model=WallViewer,
    summary="Which area this wall token (or person) shows",
    responses={401: {"model": ErrorBody}},
)
def viewer(who: WallViewerDep) -> WallViewer:
    return who[0]


@router.get(
    "/{area}",
    response_model=WallSummary,
    summary="Everything the wall shows for an area (a wall token, or a person of the area)",
    description=f"Kept {CACHE_S:g} s per area: poll about that often. The bearer is a wall token"
    " (`gridwatch wall token`) for this area or one above it, or a person's access token.",
    responses={401: {"model": ErrorBody}, 404: {"model": ErrorBody}},
)
def wall(where: WallAreaDep, db: DbDep, request: Request) -> WallSummary:
    area, path = where
    cache = _cache(request)
    summary = cache.get(area)
    if summary is None:
        settings: WallSettings = request.app.state.wall
        with BUILD.time():
            summary = build(db, area, path, settings.tile_url)
        cache.put(area, summary)
        SUMMARIES.labels("built").inc()
    else:
        SUMMARIES.labels("cache").inc()
    return in_language(summary, messages.current())


@router.get(
    "/{area}/map",
    response_model=WallMap,
    summary="The area's boundaries for the wall's map (GeoJSON; fetch when map_version moves)",
    responses={401: {"model": ErrorBody}, 404: {"model": ErrorBody}},
)
def wall_map(where: WallAreaDep, db: DbDep) -> WallMap:
    rows = db.execute(AREAS.format(boundary="t.boundary"), {"path": where[1]}).fetchall()
    return WallMap(
        version=map_version(rows),
        areas=[MapArea(id=r[0], parent_id=r[1], level=r[2], name=r[3], depth=int(r[4]),
                       boundary=r[5]) for r in rows],
    )  # fmt: skip
