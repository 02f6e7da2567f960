"""The territory tree, venues with their live status, devices, occupancy and door events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, Field

from api.deps import Conn, CurrentUser, DbDep, User
from api.messages import ApiError
from api.models import AreaQuery, Cursor, Page, TerritoryNode, VenuePath, as_model, as_models
from casework.tasks import Role

router = APIRouter(prefix="/api", tags=["venues"])


class VenueStatus(BaseModel):
    id: str
    name: str
    kind: str
    grid_id: str
    capacity: int | None
    is_shelter: bool
    node_online: bool | None
    devices: int
    devices_online: int
    open_incidents: int
    occupancy: int | None
    timezone: str = Field(description="where the venue's times are shown (e.g. Asia/Shanghai)")


class Device(BaseModel):
    id: str
    kind: str
    name: str
    online: bool | None
    last_seen: datetime | None
    latest: dict[str, Any]


class VenueDetail(VenueStatus):
    devices_list: list[Device]


class OccupancyPoint(BaseModel):
    bucket: datetime
    avg_count: float
    max_count: int
    entered: int
    exited: int


DoorEventType = Literal["door.access", "door.forced", "door.held_open", "door.state"]


class DoorEvent(BaseModel):
    ts: datetime
    device_id: str
    type: str
    result: str | None
    direction: str | None
    reason: str | None
    is_open: bool | None


def area_path(db: Conn, user: User, area: str | None) -> str:
    """The ltree path of `area` (or of the person's own area), which must be inside theirs."""
    if area is None:
        return user.scope_path
    row = db.execute(
        "SELECT path::text FROM territory WHERE id = %s AND path <@ %s::ltree",
        (area, user.scope_path),
    ).fetchone()
    if row is None:
        raise ApiError(status.HTTP_404_NOT_FOUND, "area.missing", area=area)
    return str(row[0])


@router.get("/territory", response_model=list[TerritoryNode], summary="The tree under your area")
def territory(user: CurrentUser, db: DbDep) -> list[TerritoryNode]:
    rows = db.execute(
        """SELECT t.id, t.parent_id, t.level::text, t.name,
                  (SELECT count(*) FROM venues v JOIN territory g ON g.id = v.grid_id
                   WHERE g.path <@ t.path),
                  (SELECT count(*) FROM incidents i WHERE i.path <@ t.path AND i.status <> 'resolved')
           FROM territory t WHERE t.path <@ %s::ltree ORDER BY t.path""",
        (user.scope_path,),
    ).fetchall()
    return as_models(TerritoryNode, rows)


_VENUE_STATUS = """
SELECT v.id, v.name, v.kind::text, v.grid_id, v.capacity, v.is_shelter,
       (SELECT bool_or(p.online) FROM edge_nodes n JOIN node_presence p ON p.node_id = n.id
        WHERE n.venue_id = v.id),
       (SELECT count(*) FROM devices d JOIN edge_nodes n ON n.id = d.node_id WHERE n.venue_id = v.id),
       (SELECT count(*) FROM devices d JOIN edge_nodes n ON n.id = d.node_id
        JOIN device_status s ON s.device_id = d.id WHERE n.venue_id = v.id AND s.online),
       (SELECT count(*) FROM incidents i WHERE i.venue_id = v.id AND i.status <> 'resolved'),
       (SELECT sum((l.payload->>'count')::int) FROM devices d JOIN edge_nodes n ON n.id = d.node_id
        JOIN device_latest l ON l.device_id = d.id AND l.type = 'occupancy' WHERE n.venue_id = v.id),
       v.timezone
FROM venues v JOIN territory g ON g.id = v.grid_id
"""


@router.get("/venues", response_model=list[VenueStatus], summary="Venues with their live status")
def venues(user: CurrentUser, db: DbDep, area: AreaQuery = None) -> list[VenueStatus]:
    path = area_path(db, user, area)
    rows = db.execute(
        _VENUE_STATUS + " WHERE g.path <@ %s::ltree ORDER BY v.id", (path,)
    ).fetchall()
    return as_models(VenueStatus, rows)


def _venue(db: Conn, user: User, venue_id: str) -> VenueStatus:
    row = db.execute(
        _VENUE_STATUS + " WHERE v.id = %s AND g.path <@ %s::ltree", (venue_id, user.scope_path)
    ).fetchone()
    if row is None:
        raise ApiError(status.HTTP_404_NOT_FOUND, "venue.missing", venue=venue_id)
    return as_model(VenueStatus, row)


@router.get("/venues/{venue_id}", response_model=VenueDetail, summary="A venue and its devices")
def venue(venue_id: VenuePath, user: CurrentUser, db: DbDep) -> VenueDetail:
    base = _venue(db, user, venue_id)
    # A badge's credential hash identifies a person across visits: admins only.
    rows = db.execute(
        """SELECT d.id, d.kind::text, d.name, s.online, s.last_seen,
                  coalesce((SELECT jsonb_object_agg(l.type, CASE WHEN %s THEN l.payload
                                                            ELSE l.payload - 'credential' END)
                            FROM device_latest l WHERE l.device_id = d.id), '{}'::jsonb)
           FROM devices d JOIN edge_nodes n ON n.id = d.node_id
           LEFT JOIN device_status s ON s.device_id = d.id
           WHERE n.venue_id = %s ORDER BY d.id""",
        (user.role is Role.ADMIN, venue_id),
    ).fetchall()
    devices = as_models(Device, rows)
    return VenueDetail(**base.model_dump(), devices_list=devices)


_OCCUPANCY_SERIES = """
SELECT date_trunc(%s, h.bucket, 'UTC'),
       sum(h.avg_count * h.samples) / nullif(sum(h.samples), 0),
       max(h.max_count), sum(h.entered)::bigint, sum(h.exited)::bigint
FROM occupancy_hourly h
WHERE h.device_id = ANY(%s) AND h.bucket >= %s AND h.bucket < %s
GROUP BY 1 ORDER BY 1
"""


def occupancy_series(
    db: Conn, counters: list[str], bucket: str, since: datetime, until: datetime
) -> list[tuple[Any, ...]]:
    """(bucket, average, max, entered, exited) of these people counters, by hour or day.

    The device ids go in as a constant list, not a join: the filter then reaches inside the
    hourly roll-up (a view on plain PostgreSQL, a continuous aggregate on TimescaleDB) and its
    index. Never prepared: a generic plan cannot exclude chunks by the period, and on TimescaleDB
    it scans every chunk of the aggregate (3x slower over HTTP); an unnamed statement is planned
    for its own period every time."""
    return db.execute(_OCCUPANCY_SERIES, (bucket, counters, since, until), prepare=False).fetchall()


@router.get(
    "/venues/{venue_id}/occupancy",
    response_model=list[OccupancyPoint],
    summary="Occupancy of a venue, bucketed by hour or day",
)
def occupancy(
    venue_id: VenuePath,
    user: CurrentUser,
    db: DbDep,
    bucket: Literal["hour", "day"] = "hour",
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[OccupancyPoint]:
    _venue(db, user, venue_id)
    until = until or datetime.now(UTC)
    since = since or until - timedelta(days=1 if bucket == "hour" else 30)
    counters = [str(r[0]) for r in db.execute(
        """SELECT d.id FROM devices d JOIN edge_nodes n ON n.id = d.node_id
           WHERE n.venue_id = %s AND d.kind = 'counter'""",
        (venue_id,),
    ).fetchall()]  # fmt: skip
    rows = occupancy_series(db, counters, bucket, since, until)
    return [
        OccupancyPoint(bucket=b, avg_count=round(float(a or 0), 2), max_count=int(mx or 0),
                       entered=int(e or 0), exited=int(x or 0))
        for b, a, mx, e, x in rows
    ]  # fmt: skip


@router.get(
    "/venues/{venue_id}/door-events",
    response_model=Page[DoorEvent],
    summary="Door events of a venue in a period, newest first",
)
def door_events(
    venue_id: VenuePath,
    user: CurrentUser,
    db: DbDep,
    since: datetime | None = None,
    until: datetime | None = None,
    type_: Annotated[
        list[DoorEventType] | None, Query(alias="type", description="only these kinds; may repeat")
    ] = None,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Page[DoorEvent]:
    _venue(db, user, venue_id)
    until = until or datetime.now(UTC) + timedelta(minutes=1)
    if cursor is not None:  # the cursor is the last event's time in microseconds
        until = min(until, datetime.fromtimestamp(cursor / 1_000_000, UTC))
    since = since or until - timedelta(days=1)
    rows = db.execute(
        """SELECT e.ts, e.device_id, e.type, e.result, e.direction, e.reason, e.is_open
           FROM door_events e JOIN edge_nodes n ON n.id = e.node_id
           WHERE n.venue_id = %s AND e.ts >= %s AND e.ts < %s
             AND (%s::text[] IS NULL OR e.type = ANY(%s))
           ORDER BY e.ts DESC LIMIT %s""",
        (venue_id, since, until, type_, type_, limit),
    ).fetchall()
    items = as_models(DoorEvent, rows)
    last = int(items[-1].ts.timestamp() * 1_000_000) if len(items) == limit else None
    return Page(items=items, next_cursor=last)
