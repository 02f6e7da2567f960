"""Incidents in the signed-in person's subtree: list, timeline, context (task, device, venue),
acknowledge, silence, resolve."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from psycopg.types.json import Jsonb
from pydantic import BaseModel, Field

from api.deps import Conn, CurrentUser, DbDep, User, audit
from api.models import (
    AreaQuery,
    Cursor,
    Incident,
    IncidentAction,
    IncidentEvent,
    Page,
    RowId,
    Silence,
    VenueQuery,
    as_model,
    as_models,
    page,
)
from ingest import incidents as incident_ops
from ingest.tasks import SUPERVISORS

router = APIRouter(prefix="/api/incidents", tags=["incidents"])
_COLUMNS = """id, rule, severity::text, status::text, title, venue_id, device_id, grid_id,
              occurrences, first_seen, last_seen, opened_at, resolved_at, detail, silenced_until"""


@router.get("", response_model=Page[Incident], summary="Incidents, newest first")
def list_incidents(
    user: CurrentUser,
    db: DbDep,
    area: AreaQuery = None,
    status_: Annotated[
        list[Literal["open", "acknowledged", "resolved"]] | None,
        Query(alias="status", description="any of these; may repeat"),
    ] = None,
    severity: Annotated[str | None, Query(pattern="^(red|yellow|green)$")] = None,
    venue: VenueQuery = None,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Page[Incident]:
    rows = db.execute(
        f"""SELECT {_COLUMNS} FROM incidents
            WHERE path <@ %(scope)s::ltree
              AND (%(area)s::text IS NULL OR path <@ (SELECT path FROM territory WHERE id = %(area)s))
              AND (%(status)s::text[] IS NULL OR status::text = ANY(%(status)s))
              AND (%(severity)s::text IS NULL OR severity::text = %(severity)s)
              AND (%(venue)s::text IS NULL OR venue_id = %(venue)s)
              AND (%(cursor)s::bigint IS NULL OR id < %(cursor)s)
            ORDER BY id DESC LIMIT %(limit)s""",
        {"scope": user.scope_path, "area": area, "status": status_, "severity": severity,
         "venue": venue, "cursor": cursor, "limit": limit},
    ).fetchall()  # fmt: skip
    items = as_models(Incident, rows)
    return page(items, limit)


def _incident(db: Conn, user: User, incident_id: int) -> Incident:
    row = db.execute(
        f"SELECT {_COLUMNS} FROM incidents WHERE id = %s AND path <@ %s::ltree",
        (incident_id, user.scope_path),
    ).fetchone()
    if row is None:  # outside the person's area looks the same as missing
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no incident {incident_id}")
    return as_model(Incident, row)


@router.get("/{incident_id}", response_model=Incident, summary="One incident")
def get_incident(incident_id: RowId, user: CurrentUser, db: DbDep) -> Incident:
    return _incident(db, user, incident_id)


def _snapshot_row(db: Conn, ref: str, device_id: str | None) -> tuple[Any, ...] | None:
    """The stored camera picture an incident's detail names, if it is still kept."""
    try:
        snapshot_id = uuid.UUID(ref)
    except ValueError:
        return None
    return db.execute(
        "SELECT jpeg FROM camera_snapshots WHERE id = %s AND device_id = %s LIMIT 1",
        (snapshot_id, device_id),
    ).fetchone()


@router.get(
    "/{incident_id}/snapshot",
    summary="The camera's picture of it (JPEG)",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}, "description": "a JPEG image"}},
)
def snapshot(incident_id: RowId, user: CurrentUser, db: DbDep) -> Response:
    incident = _incident(db, user, incident_id)
    ref = incident.detail.get("snapshot")
    row = _snapshot_row(db, ref, incident.device_id) if isinstance(ref, str) else None
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"incident {incident_id} has no snapshot")
    return Response(bytes(row[0]), media_type="image/jpeg",
                    headers={"Cache-Control": "private, max-age=86400"})  # fmt: skip


@router.get("/{incident_id}/events", response_model=list[IncidentEvent], summary="Its timeline")
def incident_events(incident_id: RowId, user: CurrentUser, db: DbDep) -> list[IncidentEvent]:
    _incident(db, user, incident_id)
    rows = db.execute(
        "SELECT at, kind, actor, note, data FROM incident_events WHERE incident_id = %s ORDER BY id",
        (incident_id,),
    ).fetchall()
    return as_models(IncidentEvent, rows)


def _to_change(db: Conn, user: User, incident_id: int, *, states: set[str]) -> Incident:
    """The incident, for a supervisor to change, if its status is one of `states` (else 409)."""
    if user.role not in SUPERVISORS:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"a {user.role} cannot change incidents")
    incident = _incident(db, user, incident_id)
    if incident.status not in states:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"incident {incident_id} is {incident.status}"
        )
    return incident


def _record(db: Conn, incident_id: int, kind: str, user: User, note: str, **data: object) -> None:
    db.execute(
        "INSERT INTO incident_events (incident_id, kind, actor, note, data) VALUES (%s, %s, %s, %s, %s)",
        (incident_id, kind, user.id, note, Jsonb(data)),
    )


@router.post("/{incident_id}/acknowledge", response_model=Incident, summary="Seen, being handled")
def acknowledge(
    incident_id: RowId, body: IncidentAction, user: CurrentUser, db: DbDep, request: Request
) -> Incident:
    with db.transaction():
        _to_change(db, user, incident_id, states={"open"})
        db.execute("UPDATE incidents SET status = 'acknowledged' WHERE id = %s", (incident_id,))
        _record(db, incident_id, "acknowledged", user, body.note)
        audit(db, user, request, "incident.acknowledge", str(incident_id), {"note": body.note})
    return _incident(db, user, incident_id)


@router.post("/{incident_id}/silence", response_model=Incident, summary="Stop sounding for a while")
def silence(
    incident_id: RowId, body: Silence, user: CurrentUser, db: DbDep, request: Request
) -> Incident:
    with db.transaction():
        _to_change(db, user, incident_id, states={"open", "acknowledged"})
        db.execute(
            """UPDATE incidents SET silenced_until = CASE WHEN %(m)s > 0
                   THEN now() + make_interval(mins => %(m)s) END WHERE id = %(id)s""",
            {"m": body.minutes, "id": incident_id},
        )
        _record(db, incident_id, "silenced" if body.minutes else "unsilenced", user, body.note,
                minutes=body.minutes)  # fmt: skip
        audit(db, user, request, "incident.silence", str(incident_id),
              {"minutes": body.minutes, "note": body.note})  # fmt: skip
    return _incident(db, user, incident_id)


@router.post("/{incident_id}/resolve", response_model=Incident, summary="The condition is over")
def resolve(
    incident_id: RowId, body: IncidentAction, user: CurrentUser, db: DbDep, request: Request
) -> Incident:
    with db.transaction():
        _to_change(db, user, incident_id, states={"open", "acknowledged"})
        key = db.execute("SELECT dedup_key FROM incidents WHERE id = %s", (incident_id,)).fetchone()
        assert key is not None
        incident_ops.resolve(db, str(key[0]), body.note or "resolved by hand", actor=user.id)
        audit(db, user, request, "incident.resolve", str(incident_id), {"note": body.note})
    return _incident(db, user, incident_id)


class IncidentTask(BaseModel):
    id: int
    state: str
    assignee: str | None
    assignee_name: str | None
    deadline_at: datetime | None
    closed_at: datetime | None


class IncidentDevice(BaseModel):
    id: str
    name: str
    kind: str
    online: bool | None = Field(description="none when it was never heard from")
    last_seen: datetime | None


class IncidentVenue(BaseModel):
    id: str
    name: str
    kind: str
    address: str
    timezone: str
    latitude: float | None
    longitude: float | None


class TimelineEntry(BaseModel):
    at: datetime
    kind: str = Field(description="opened, repeated, acknowledged, silenced, unsilenced, resolved…")
    actor: str
    actor_name: str | None = Field(description="the person's name; none for the system")
    note: str
    data: dict[str, Any]


class IncidentContext(BaseModel):
    """What an incident's page shows around it: its task, device and venue, and its timeline
    with who did what. `snapshot` says GET …/snapshot has a picture; a clip is not kept yet."""

    task: IncidentTask | None
    device: IncidentDevice | None
    venue: IncidentVenue | None
    timeline: list[TimelineEntry]
    snapshot: bool


@router.get(
    "/{incident_id}/context",
    response_model=IncidentContext,
    summary="Its task and assignee, device, venue, snapshot and timeline with names",
)
def incident_context(incident_id: RowId, user: CurrentUser, db: DbDep) -> IncidentContext:
    incident = _incident(db, user, incident_id)
    task = db.execute(
        """SELECT t.id, t.state::text, t.assignee, p.name, t.deadline_at, t.closed_at
           FROM tasks t LEFT JOIN people p ON p.id = t.assignee WHERE t.incident_id = %s""",
        (incident_id,),
    ).fetchone()
    device = None
    if incident.device_id:
        device = db.execute(
            """SELECT d.id, d.name, d.kind::text, s.online, s.last_seen
               FROM devices d LEFT JOIN device_status s ON s.device_id = d.id WHERE d.id = %s""",
            (incident.device_id,),
        ).fetchone()
    venue = None
    if incident.venue_id:
        venue = db.execute(
            """SELECT id, name, kind::text, address, timezone, latitude, longitude
               FROM venues WHERE id = %s""",
            (incident.venue_id,),
        ).fetchone()
    # The incident's own events, then its task's (as task_<action>: dispatched to whom, accepted,
    # feedback, checked, closed), in time order, with the names of the people.
    timeline = as_models(TimelineEntry, db.execute(
        """SELECT at, kind, actor, name, note, data FROM (
               SELECT e.at, e.id, 0 AS src, e.kind, e.actor, p.name, e.note, e.data
               FROM incident_events e LEFT JOIN people p ON p.id = e.actor
               WHERE e.incident_id = %(id)s
               UNION ALL
               SELECT e.at, e.id, 1, 'task_' || e.action, e.actor, p.name,
                      concat_ws(' ', nullif(e.reason, ''), nullif(e.note, '')),
                      e.data || jsonb_build_object('task_id', e.task_id, 'assignee_name', a.name)
               FROM task_events e JOIN tasks t ON t.id = e.task_id
               LEFT JOIN people p ON p.id = e.actor
               LEFT JOIN people a ON a.id = e.data->>'assignee'
               WHERE t.incident_id = %(id)s) x
           ORDER BY at, src, id""",
        {"id": incident_id},
    ).fetchall())  # fmt: skip
    if incident.occurrences > 1:  # repeats are counted on the incident, not logged one by one
        timeline.append(TimelineEntry(
            at=incident.last_seen, kind="repeated", actor="system", actor_name=None, note="",
            data={"occurrences": incident.occurrences},
        ))  # fmt: skip
        timeline.sort(key=lambda e: e.at)
    ref = incident.detail.get("snapshot")
    has_snapshot = isinstance(ref, str) and _snapshot_row(db, ref, incident.device_id) is not None
    return IncidentContext(
        task=as_model(IncidentTask, task) if task else None,
        device=as_model(IncidentDevice, device) if device else None,
        venue=as_model(IncidentVenue, venue) if venue else None,
        timeline=timeline,
        snapshot=has_snapshot,
    )
