"""People in the signed-in person's area: whom a dispatcher can send a task to."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api.deps import CurrentUser, DbDep
from api.models import AreaQuery, as_models
from api.routes.venues import area_path
from ingest.tasks import Role

router = APIRouter(prefix="/api", tags=["people"])


class PersonOut(BaseModel):
    id: str
    name: str
    role: str
    scope_id: str
    on_duty: bool = Field(description="on the duty roster of a grid right now")
    open_tasks: int = Field(description="tasks assigned to them that are not closed")


@router.get("/people", response_model=list[PersonOut], summary="Active people in your area")
def people(
    user: CurrentUser,
    db: DbDep,
    area: AreaQuery = None,
    role: Annotated[list[Role] | None, Query(description="any of these; may repeat")] = None,
) -> list[PersonOut]:
    path = area_path(db, user, area)
    roles = [r.value for r in role] if role else None
    rows = db.execute(
        """SELECT p.id, p.name, p.role::text, p.scope_id,
                  EXISTS (SELECT 1 FROM duty_roster r WHERE r.person_id = p.id
                          AND r.starts <= now() AND now() < r.ends),
                  (SELECT count(*) FROM tasks k WHERE k.assignee = p.id AND k.state <> 'closed')
           FROM people p JOIN territory t ON t.id = p.scope_id
           WHERE p.active AND t.path <@ %s::ltree AND (%s::text[] IS NULL OR p.role::text = ANY(%s))
           ORDER BY t.path, p.id""",
        (path, roles, roles),
    ).fetchall()
    return as_models(PersonOut, rows)
