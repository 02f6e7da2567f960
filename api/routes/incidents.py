"""Incidents in the signed-in person's subtree: list, timeline, context (task, device, venue),
acknowledge, silence, resolve."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response, status
from psycopg.types.json import Jsonb
from pydantic import BaseModel, Field

from api.deps import Conn, CurrentUser, DbDep, User, audit
from api.messages import ApiError
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
from casework import incidents as incident_ops
from casework.tasks import SUPERVISORS

router = APIRouter(prefix="/api/incidents", tags=["incidents"])
_COLUMNS = """id, rule, severity::text, status::text, title, title_code, title_params, venue_id,
              device_id, grid_id, occurrences, first_seen, last_seen, opened_at, resolved_at, detail, silenced_until"""


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


# Whom an incident is shown to: the people of its area, and the assignee of its task called in
# from another grid or a department (for the incident page of the task they handle).
_VISIBLE = """(path <@ %(scope)s::ltree OR EXISTS (
    SELECT 1 FROM tasks t WHERE t.incident_id = incidents.id AND t.assignee = %(me)s))"""


def _incident(db: Conn, user: User, incident_id: int, *, in_scope: bool = False) -> Incident:
    """The incident if the person may see it (404 otherwise); `in_scope`: only within their
    area (for changing it: an assignee from elsewhere reads it, and no more)."""
    visible = "path <@ %(scope)s::ltree" if in_scope else _VISIBLE
    row = db.execute(
        f"SELECT {_COLUMNS} FROM incidents WHERE id = %(id)s AND {visible}",
        {"id": incident_id, "scope": user.scope_path, "me": user.id},
    ).fetchone()
    if row is None:  # outside the person's sight looks the same as missing
        raise ApiError(status.HTTP_404_NOT_FOUND, "incident.missing", id=incident_id)
    return as_model(Incident, row)


@router.get("/{incident_id}", response_model=Incident, summary="One incident")
def get_incident(incident_id: RowId, user: CurrentUser, db: DbDep) -> Incident:
    return _incident(db, user, incident_id)


# The stored camera picture an incident's detail names (`snapshot`: its id), if still kept.
_SNAPSHOT = """FROM incidents i JOIN camera_snapshots s
                   ON s.device_id = i.device_id AND s.id = CASE
                      WHEN i.detail->>'snapshot' ~* '^[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}$'
                      THEN (i.detail->>'snapshot')::uuid END
               WHERE i.id = %s"""


def snapshot_jpeg(db: Conn, incident_id: int) -> bytes | None:
    """The camera's picture of an incident (a JPEG), or None when it has none (any more)."""
    row = db.execute(f"SELECT s.jpeg {_SNAPSHOT} LIMIT 1", (incident_id,)).fetchone()
    return None if row is None else bytes(row[0])


def has_snapshot(db: Conn, incident_id: int) -> bool:
    """Whether snapshot_jpeg has a picture, without fetching it."""
    row = db.execute(f"SELECT EXISTS (SELECT 1 {_SNAPSHOT})", (incident_id,)).fetchone()
    return bool(row and row[0])


@router.get(
    "/{incident_id}/snapshot",
    summary="The camera's picture of it (JPEG)",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}, "description": "a JPEG image"}},
)
def snapshot(incident_id: RowId, user: CurrentUser, db: DbDep) -> Response:
    _incident(db, user, incident_id)
    jpeg = snapshot_jpeg(db, incident_id)
    if jpeg is None:
        raise ApiError(status.HTTP_404_NOT_FOUND, "incident.no_snapshot", id=incident_id)
    # Not cached (api.limits says no-store for every API answer): pictures of incidents.
    return Response(jpeg, media_type="image/jpeg")


# The video clip of the camera alert that raised an incident (`alert_id` in its detail), if kept.
_CLIP = """FROM incidents i JOIN camera_clips c
               ON c.device_id = i.device_id AND c.alert_id = CASE
                  WHEN i.detail->>'alert_id' ~* '^[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}$'
                  THEN (i.detail->>'alert_id')::uuid END
           WHERE i.id = %s"""


def clip_video(db: Conn, incident_id: int) -> tuple[bytes, str] | None:
    """The camera's clip of an incident (its data and type), or None when it has none (yet, or
    any more)."""
    row = db.execute(
        f"SELECT c.data, c.mime {_CLIP} ORDER BY c.ts DESC LIMIT 1", (incident_id,)
    ).fetchone()
    if row is None:
        return None
    data = row[0]
    assert isinstance(data, bytes)
    return data, str(row[1])


def has_clip(db: Conn, incident_id: int) -> bool:
    """Whether clip_video has a clip, without fetching it."""
    row = db.execute(f"SELECT EXISTS (SELECT 1 {_CLIP})", (incident_id,)).fetchone()
    return bool(row and row[0])


@router.get(
    "/{incident_id}/clip",
    summary="The camera's video clip of it (WebM)",
    response_class=Response,
    responses={200: {"content": {"video/webm": {}}, "description": "a WebM (VP8) video"}},
)
def clip(incident_id: RowId, user: CurrentUser, db: DbDep) -> Response:
    _incident(db, user, incident_id)
    found = clip_video(db, incident_id)
    if found is None:
        raise ApiError(status.HTTP_404_NOT_FOUND, "incident.no_clip", id=incident_id)
    data, mime = found
    # Not cached, as snapshots: videos of incidents.
    return Response(data, media_type=mime)


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
        raise ApiError(status.HTTP_403_FORBIDDEN, "role.incidents", role=user.role)
    incident = _incident(db, user, incident_id, in_scope=True)
    if incident.status not in states:
        raise ApiError(status.HTTP_409_CONFLICT, "incident.state", id=incident_id,
                       status=incident.status)  # fmt: skip
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
    condition: str | None = Field(
        description="its driver's last word on the device (device.health: ok, unreachable,"
        " auth_failed, slow, bad_input, clock_skew); none from drivers that do not report it"
    )
    condition_detail: str | None = Field(description="what the driver saw, in its words")


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
    with who did what. `snapshot` says GET …/snapshot has a picture, `clip` that GET …/clip has
    a video."""

    task: IncidentTask | None
    device: IncidentDevice | None
    venue: IncidentVenue | None
    timeline: list[TimelineEntry]
    snapshot: bool
    clip: bool = Field(description="GET …/clip has the camera's video clip of it")


@router.get(
    "/{incident_id}/context",
    response_model=IncidentContext,
    summary="Its task and assignee, device, venue, snapshot, clip and timeline with names",
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
            """SELECT d.id, d.name, d.kind::text, s.online, s.last_seen,
                      l.payload->>'condition', l.payload->>'detail'
               FROM devices d LEFT JOIN device_status s ON s.device_id = d.id
               LEFT JOIN device_latest l ON l.device_id = d.id AND l.type = 'device.health'
               WHERE d.id = %s""",
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
    return IncidentContext(
        task=as_model(IncidentTask, task) if task else None,
        device=as_model(IncidentDevice, device) if device else None,
        venue=as_model(IncidentVenue, venue) if venue else None,
        timeline=timeline,
        snapshot=has_snapshot(db, incident_id),
        clip=has_clip(db, incident_id),
    )
