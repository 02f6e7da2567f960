"""People in the signed-in person's area: whom a dispatcher can send a task to; admins switch
them off and on."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, status
from pydantic import BaseModel, Field

from api.deps import CurrentUser, DbDep, audit
from api.messages import ApiError
from api.models import AreaQuery, as_model, as_models
from api.routes.venues import area_path
from casework import tasks
from casework.tasks import Role
from ingest import people as roster

router = APIRouter(prefix="/api", tags=["people"])
PersonPath = Annotated[
    str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="a person id")
]


class PersonOut(BaseModel):
    id: str
    name: str
    role: str
    scope_id: str
    on_duty: bool = Field(description="on the duty roster of a grid right now")
    open_tasks: int = Field(description="tasks assigned to them that are not closed")
    active: bool = Field(description="false once disabled: they cannot sign in")


_PEOPLE = (
    """SELECT p.id, p.name, p.role::text, p.scope_id,
                    EXISTS (SELECT 1 FROM duty_roster r WHERE r.person_id = p.id
                            AND r.starts <= now() AND now() < r.ends)
                    OR EXISTS (SELECT 1 FROM duty_shifts s WHERE s.person_id = p.id AND """
    + tasks.shift_covers("now()")
    + """),
                    (SELECT count(*) FROM tasks k WHERE k.assignee = p.id AND k.state <> 'closed'),
                    p.active
             FROM people p JOIN territory t ON t.id = p.scope_id"""
)


@router.get("/people", response_model=list[PersonOut], summary="Active people in your area")
def people(
    user: CurrentUser,
    db: DbDep,
    area: AreaQuery = None,
    role: Annotated[list[Role] | None, Query(description="any of these; may repeat")] = None,
    include_disabled: Annotated[bool, Query(description="disabled people too")] = False,
) -> list[PersonOut]:
    path = area_path(db, user, area)
    roles = [r.value for r in role] if role else None
    rows = db.execute(
        _PEOPLE
        + """ WHERE (p.active OR %s) AND t.path <@ %s::ltree
                        AND (%s::text[] IS NULL OR p.role::text = ANY(%s))
                      ORDER BY t.path, p.id""",
        (include_disabled, path, roles, roles),
    ).fetchall()
    return as_models(PersonOut, rows)


def _switch(user: CurrentUser, db: DbDep, request: Request, person_id: str, on: bool) -> PersonOut:
    with db.transaction():
        inside = db.execute(
            """SELECT 1 FROM people p JOIN territory t ON t.id = p.scope_id
               WHERE p.id = %s AND t.path <@ %s::ltree FOR UPDATE OF p""",
            (person_id, user.scope_path),
        ).fetchone()
        if inside is None:  # outside your area, as if it did not exist
            raise ApiError(status.HTTP_404_NOT_FOUND, "person.missing", person=person_id)
        if user.role is not Role.ADMIN:
            raise ApiError(status.HTTP_403_FORBIDDEN, "role.people", role=user.role)
        if person_id == user.id and not on:
            raise ApiError(status.HTTP_409_CONFLICT, "self.disable")
        roster.set_active(db, person_id, on)
        audit(db, user, request, "person.enable" if on else "person.disable", person_id)
    row = db.execute(_PEOPLE + " WHERE p.id = %s", (person_id,)).fetchone()
    assert row is not None
    return as_model(PersonOut, row)


@router.post(
    "/people/{person_id}/disable",
    response_model=PersonOut,
    summary="Disable a person (admins): no sign-in, every token of theirs refused, live streams end",
)
def disable(user: CurrentUser, db: DbDep, request: Request, person_id: PersonPath) -> PersonOut:
    return _switch(user, db, request, person_id, on=False)


@router.post(
    "/people/{person_id}/enable",
    response_model=PersonOut,
    summary="Enable a disabled person again (admins); they sign in afresh",
)
def enable(user: CurrentUser, db: DbDep, request: Request, person_id: PersonPath) -> PersonOut:
    return _switch(user, db, request, person_id, on=True)
