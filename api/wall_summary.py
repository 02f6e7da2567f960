"""The wall's summary of an area (docs/wall.md): what its screen shows, built from the database
in nine queries, none per venue. The routes (api/routes/wall.py) keep it a few seconds per area."""

from __future__ import annotations

import logging
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field

from api.database import Conn
from casework import kpi, titles

log = logging.getLogger(__name__)

ONLINE_TARGET = 0.98  # 完好率: the share of devices online that video networks are held to
TICKER = 12
DUE_LISTED = 10
NEAR_SHARE = 0.8  # a stage's deadline is near once 80% of its time has gone (tasks flag then)
DEFAULT_ZONE = "Asia/Shanghai"
REFRESH_S = 5.0  # how long the routes keep a summary, and so how often a wall polls


class WallArea(BaseModel):
    id: str
    parent_id: str | None
    level: str
    name: str
    depth: int = Field(description="levels below the wall's area (0 is the area itself)")


class MapArea(WallArea):
    boundary: dict[str, Any] | None = Field(description="GeoJSON Polygon or MultiPolygon")


class WallMap(BaseModel):
    version: str = Field(description="changes when an area of the map changes")
    areas: list[MapArea] = Field(description="the area's tree, parents before children")


class WallVenue(BaseModel):
    id: str
    name: str
    kind: str
    grid_id: str
    lat: float | None
    lon: float | None
    status: str = Field(
        description="red: an open incident; grey: its edge node offline or never seen; "
        "yellow: devices offline; green: all well (the territory page's colours)"
    )
    open_24h: bool
    devices: int
    devices_online: int
    open_incidents: int
    occupancy: int | None
    capacity: int | None


class TickerItem(BaseModel):
    id: int
    severity: str
    status: str
    rule: str
    title: str
    title_code: str | None
    title_params: dict[str, Any] | None
    venue_id: str
    venue_name: str
    opened_at: datetime


class DueTask(BaseModel):
    id: int
    severity: str
    state: str
    title: str
    title_code: str | None
    title_params: dict[str, Any] | None
    venue_name: str
    assignee_name: str | None
    deadline_at: datetime | None
    overdue: bool = Field(description="a deadline passed (escalated, or the timer is due)")


class TasksDue(BaseModel):
    near: int = Field(description="open tasks past 80% of their stage's time, not yet late")
    overdue: int = Field(description="open tasks that missed a deadline")
    items: list[DueTask] = Field(description=f"the {DUE_LISTED} most pressing, late ones first")


class OnlineRate(BaseModel):
    id: str
    name: str
    devices: int
    online: int
    rate: float | None = Field(description="online / devices (0-1); null without devices")
    below_target: bool


class OnlineRates(BaseModel):
    target: float = ONLINE_TARGET
    total: OnlineRate
    areas: list[OnlineRate] = Field(description="per area directly under the wall's area")


class TodayKpi(BaseModel):
    day: str = Field(description="the day in the area's time zone (YYYY-MM-DD)")
    since: datetime
    incidents: int = Field(description="incidents opened today")
    incidents_red: int
    resolved: int = Field(description="incidents resolved today")
    tasks: int = Field(description="tasks created today (casework/kpi.py)")
    closed: int
    acceptance_rate: float | None
    on_time_closure_rate: float | None
    mean_time_to_accept_s: float | None
    mean_time_to_close_s: float | None


class OccupancyHour(BaseModel):
    bucket: datetime
    avg_count: float
    max_count: int


class VenueOccupancy(BaseModel):
    venue_id: str
    name: str
    capacity: int | None
    now: int | None
    hours: list[OccupancyHour] = Field(description="hourly, the last 24 h")


class WallEmergency(BaseModel):
    id: int
    territory_id: str
    area_name: str
    reason: str
    message: str
    started_at: datetime


class WallSummary(BaseModel):
    model_config = ConfigDict(json_schema_extra={"description": "what the wall shows"})

    area: WallArea
    timezone: str = Field(description="the area's venues' time zone (the day's KPIs use it)")
    generated_at: datetime
    refresh_s: float = Field(description="how long this answer is kept; poll about this often")
    map_version: str = Field(description="the map's version: fetch /map again when it changes")
    tiles: str | None = Field(description="the tile URL template, when tiles are configured")
    areas: list[WallArea] = Field(description="the area's tree, parents before children")
    venues: list[WallVenue]
    open_incidents: dict[str, int] = Field(description="open incidents by severity")
    ticker: list[TickerItem] = Field(description="the latest incidents, newest first")
    tasks_due: TasksDue
    online: OnlineRates
    today: TodayKpi
    occupancy: list[VenueOccupancy] = Field(description="the 24-hour venues")
    emergencies: list[WallEmergency] = Field(
        description="emergencies in force on the area, an area inside it, or one above it"
    )


def map_version(rows: list[tuple[Any, ...]]) -> str:
    """The newest change of the map's areas and how many there are."""
    newest = max((r[6] for r in rows), default=None)
    return f"{len(rows)}-{newest.timestamp() if newest else 0:.6f}"


AREAS = """
SELECT t.id, t.parent_id, t.level::text, t.name, nlevel(t.path) - nlevel(%(path)s::ltree),
       {boundary}, t.updated_at
FROM territory t WHERE t.path <@ %(path)s::ltree AND NOT t.disabled ORDER BY t.path
"""

# Per venue in one pass each over nodes, devices, open incidents and counters' latest counts.
_VENUES = """
WITH v AS (
    SELECT v.id, v.name, v.kind::text AS kind, v.grid_id, v.latitude, v.longitude, v.capacity,
           v.open_24h, v.timezone
    FROM venues v JOIN territory g ON g.id = v.grid_id
    WHERE g.path <@ %(path)s::ltree AND NOT v.disabled AND NOT g.disabled),
n AS (
    SELECT n.venue_id, bool_or(p.online) AS online
    FROM edge_nodes n JOIN v ON v.id = n.venue_id LEFT JOIN node_presence p ON p.node_id = n.id
    WHERE NOT n.disabled GROUP BY n.venue_id),
d AS (
    SELECT n.venue_id, count(*) AS devices, count(*) FILTER (WHERE s.online) AS online,
           array_agg(d.id) FILTER (WHERE d.kind = 'counter') AS counters
    FROM devices d JOIN edge_nodes n ON n.id = d.node_id JOIN v ON v.id = n.venue_id
    LEFT JOIN device_status s ON s.device_id = d.id
    WHERE NOT d.disabled AND NOT n.disabled GROUP BY n.venue_id),
i AS (
    SELECT venue_id, count(*) AS open FROM incidents
    WHERE path <@ %(path)s::ltree AND status <> 'resolved' GROUP BY venue_id),
o AS (
    SELECT n.venue_id, sum((l.payload->>'count')::int) AS inside
    FROM device_latest l JOIN devices d ON d.id = l.device_id
    JOIN edge_nodes n ON n.id = d.node_id JOIN v ON v.id = n.venue_id
    WHERE l.type = 'occupancy' AND d.kind = 'counter' AND NOT d.disabled GROUP BY n.venue_id)
SELECT v.id, v.name, v.kind, v.grid_id, v.latitude, v.longitude, v.capacity, v.open_24h,
       v.timezone, n.online, coalesce(d.devices, 0), coalesce(d.online, 0),
       coalesce(d.counters, '{}'), coalesce(i.open, 0), o.inside
FROM v LEFT JOIN n ON n.venue_id = v.id LEFT JOIN d ON d.venue_id = v.id
LEFT JOIN i ON i.venue_id = v.id LEFT JOIN o ON o.venue_id = v.id
ORDER BY v.id
"""

_BY_SEVERITY = """
SELECT severity::text, count(*) FROM incidents
WHERE path <@ %(path)s::ltree AND status <> 'resolved' GROUP BY 1
"""

_TICKER = """
SELECT i.id, i.severity::text, i.status::text, i.rule, i.title, i.title_code, i.title_params,
       i.venue_id, v.name, i.opened_at
FROM incidents i JOIN venues v ON v.id = i.venue_id
WHERE i.path <@ %(path)s::ltree ORDER BY i.opened_at DESC LIMIT %(limit)s
"""

_DUE = """
WITH k AS (
    SELECT k.*, (k.escalations > 0 OR k.deadline_at <= now()
                 OR (k.flagged AND k.deadline_at IS NULL)) AS late
    FROM tasks k
    WHERE k.path <@ %(path)s::ltree AND k.state <> 'closed'
      AND (k.escalations > 0 OR k.flagged
           OR now() >= k.stage_started + (k.deadline_at - k.stage_started) * %(near)s))
SELECT k.id, k.severity::text, k.state::text, k.title, k.title_code, k.title_params, v.name, p.name, k.deadline_at, k.late,
       count(*) FILTER (WHERE NOT k.late) OVER (), count(*) FILTER (WHERE k.late) OVER ()
FROM k JOIN incidents i ON i.id = k.incident_id JOIN venues v ON v.id = i.venue_id
LEFT JOIN people p ON p.id = k.assignee
ORDER BY k.late DESC, k.severity, k.deadline_at NULLS FIRST, k.id LIMIT %(limit)s
"""

_TODAY = """
SELECT count(*) FILTER (WHERE opened_at >= %(since)s),
       count(*) FILTER (WHERE opened_at >= %(since)s AND severity = 'red'),
       count(*) FILTER (WHERE resolved_at >= %(since)s)
FROM incidents
WHERE path <@ %(path)s::ltree AND (opened_at >= %(since)s OR resolved_at >= %(since)s)
"""

_OCCUPANCY = """
SELECT h.device_id, h.bucket, sum(h.avg_count * h.samples), sum(h.samples), max(h.max_count)
FROM occupancy_hourly h
WHERE h.device_id = ANY(%(counters)s) AND h.bucket >= %(since)s
GROUP BY 1, 2 ORDER BY 2
"""

_EMERGENCIES = """
SELECT e.id, e.territory_id, t.name, e.reason, e.message, e.started_at
FROM emergencies e JOIN territory t ON t.id = e.territory_id
WHERE e.ended_at IS NULL AND (e.path <@ %(path)s::ltree OR e.path @> %(path)s::ltree)
ORDER BY e.started_at
"""


def venue_status(open_incidents: int, node_online: bool | None, devices: int, online: int) -> str:
    """The territory page's colour of a venue (views/territory.js venueColour)."""
    if open_incidents > 0:
        return "red"
    if node_online is not True:
        return "grey"
    return "yellow" if online < devices else "green"


def _zone(timezones: list[str]) -> str:
    """The area's time zone: its venues' most common one (the platform's when it has none)."""
    if not timezones:
        return DEFAULT_ZONE
    zone = Counter(timezones).most_common(1)[0][0]
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        log.warning("venue time zone %r is unknown; the wall uses %s", zone, DEFAULT_ZONE)
        return DEFAULT_ZONE
    return zone


def _online(area_id: str, areas: list[WallArea], venues: list[WallVenue]) -> OnlineRates:
    """完好率 of the area and of each area directly under it (its own when it has none)."""
    parent = {a.id: a.parent_id for a in areas}
    children = [a for a in areas if a.depth == 1] or [a for a in areas if a.depth == 0]
    wanted = {a.id for a in children}
    tally: dict[str, list[int]] = {a.id: [0, 0] for a in children}
    for v in venues:
        node: str | None = v.grid_id
        while node is not None and node not in wanted:
            node = parent.get(node)
        if node is not None:
            tally[node][0] += v.devices
            tally[node][1] += v.devices_online
    total = [sum(v.devices for v in venues), sum(v.devices_online for v in venues)]

    def rate(id_: str, name: str, counts: list[int]) -> OnlineRate:
        r = kpi.rate(counts[1], counts[0])
        return OnlineRate(id=id_, name=name, devices=counts[0], online=counts[1], rate=r,
                          below_target=r is not None and r < ONLINE_TARGET)  # fmt: skip

    root = next(a for a in areas if a.depth == 0)
    return OnlineRates(
        total=rate(area_id, root.name, total),
        areas=[rate(a.id, a.name, tally[a.id]) for a in children],
    )


def in_language(summary: WallSummary, lang: str) -> WallSummary:
    """The summary with its incidents' and tasks' titles in `lang`, from their codes (the cache
    keeps one summary per area, whoever reads it)."""

    def said(code: str | None, params: dict[str, Any] | None, stored: str) -> str:
        return titles.render(code, params, lang) if code else stored

    ticker = [t.model_copy(update={"title": said(t.title_code, t.title_params, t.title)})
              for t in summary.ticker]  # fmt: skip
    due = [t.model_copy(update={"title": said(t.title_code, t.title_params, t.title)})
           for t in summary.tasks_due.items]  # fmt: skip
    return summary.model_copy(
        update={"ticker": ticker, "tasks_due": summary.tasks_due.model_copy(update={"items": due})}
    )


def build(db: Conn, area_id: str, path: str, tiles: str | None = None) -> WallSummary:
    """The wall's summary of an area (`path` its ltree path): nine queries, none per venue."""
    started = time.perf_counter()
    p = {"path": path}
    area_rows = db.execute(AREAS.format(boundary="NULL"), p).fetchall()
    areas = [WallArea(id=r[0], parent_id=r[1], level=r[2], name=r[3], depth=int(r[4]))
             for r in area_rows]  # fmt: skip
    venue_rows = db.execute(_VENUES, p).fetchall()
    venues, counters, zones = [], {}, []
    for (vid, name, kind, grid, lat, lon, cap, h24, tz, node_online, devices, online, ctrs,
         open_, inside) in venue_rows:  # fmt: skip
        zones.append(str(tz))
        venues.append(WallVenue(
            id=vid, name=name, kind=kind, grid_id=grid, lat=lat, lon=lon,
            status=venue_status(int(open_), node_online, int(devices), int(online)),
            open_24h=h24, devices=int(devices), devices_online=int(online),
            open_incidents=int(open_), occupancy=None if inside is None else int(inside),
            capacity=cap,
        ))  # fmt: skip
        if h24:
            counters[vid] = list(ctrs)
    zone = _zone(zones)
    now = datetime.now(UTC)
    midnight = now.astimezone(ZoneInfo(zone)).replace(hour=0, minute=0, second=0, microsecond=0)
    severities = {"red": 0, "yellow": 0, "green": 0}
    severities.update({str(s): int(n) for s, n in db.execute(_BY_SEVERITY, p).fetchall()})
    ticker = [TickerItem(id=r[0], severity=r[1], status=r[2], rule=r[3], title=r[4],
                         title_code=r[5], title_params=r[6], venue_id=r[7], venue_name=r[8],
                         opened_at=r[9])
              for r in db.execute(_TICKER, {**p, "limit": TICKER}).fetchall()]  # fmt: skip
    due_rows = db.execute(_DUE, {**p, "near": NEAR_SHARE, "limit": DUE_LISTED}).fetchall()
    due = TasksDue(
        near=int(due_rows[0][10]) if due_rows else 0,
        overdue=int(due_rows[0][11]) if due_rows else 0,
        items=[DueTask(id=r[0], severity=r[1], state=r[2], title=r[3], title_code=r[4],
                       title_params=r[5], venue_name=r[6], assignee_name=r[7],
                       deadline_at=r[8], overdue=bool(r[9])) for r in due_rows],
    )  # fmt: skip
    today = _today(db, area_id, path, midnight, now)
    emergencies = [WallEmergency(id=r[0], territory_id=r[1], area_name=r[2], reason=r[3],
                                 message=r[4], started_at=r[5])
                   for r in db.execute(_EMERGENCIES, p).fetchall()]  # fmt: skip
    summary = WallSummary(
        area=next(a for a in areas if a.depth == 0),
        timezone=zone,
        generated_at=now,
        refresh_s=REFRESH_S,
        map_version=map_version(area_rows),
        tiles=tiles,
        areas=areas,
        venues=venues,
        open_incidents=severities,
        ticker=ticker,
        tasks_due=due,
        online=_online(area_id, areas, venues),
        today=today,
        occupancy=_occupancy(db, venues, counters, now),
        emergencies=emergencies,
    )
    log.debug("wall summary built area=%s venues=%d in %.0f ms", area_id, len(venues),
              (time.perf_counter() - started) * 1000)  # fmt: skip
    return summary


def _today(db: Conn, area_id: str, path: str, midnight: datetime, now: datetime) -> TodayKpi:
    """Today in the area's time zone (`midnight` is its start there)."""
    since = midnight.astimezone(UTC)
    row = db.execute(_TODAY, {"path": path, "since": since}).fetchone()
    opened, red, resolved = row if row is not None else (0, 0, 0)
    figures = kpi.report(db, area_id, since, now + timedelta(seconds=1), children=False)[0]
    return TodayKpi(
        day=midnight.date().isoformat(), since=since, incidents=int(opened), incidents_red=int(red), resolved=int(resolved),
        tasks=figures.tasks, closed=figures.closed, acceptance_rate=figures.acceptance_rate,
        on_time_closure_rate=figures.on_time_closure_rate,
        mean_time_to_accept_s=figures.mean_time_to_accept_s,
        mean_time_to_close_s=figures.mean_time_to_close_s,
    )  # fmt: skip


def _occupancy(
    db: Conn, venues: list[WallVenue], counters: dict[str, list[str]], now: datetime
) -> list[VenueOccupancy]:
    """The last 24 h, hourly, of each 24-hour venue's people counters (one query for all)."""
    owner = {c: vid for vid, cs in counters.items() for c in cs}
    series: dict[str, dict[datetime, list[float]]] = {vid: {} for vid in counters}
    if owner:
        rows = db.execute(
            _OCCUPANCY, {"counters": list(owner), "since": now - timedelta(hours=24)},
            prepare=False,  # planned for its own period each time (api/routes/venues.py)
        ).fetchall()  # fmt: skip
        for device, bucket, weighted, samples, top in rows:
            # A venue's counters count different doors' zones: their averages add up.
            kept = series[owner[device]].setdefault(bucket, [0.0, 0.0])
            kept[0] += float(weighted or 0) / max(1, int(samples or 0))
            kept[1] += float(top or 0)
    by_id = {v.id: v for v in venues}
    return [
        VenueOccupancy(
            venue_id=vid, name=by_id[vid].name, capacity=by_id[vid].capacity,
            now=by_id[vid].occupancy,
            hours=[OccupancyHour(bucket=b, avg_count=round(a, 1), max_count=int(m))
                   for b, (a, m) in sorted(series[vid].items())],
        )
        for vid in counters
    ]  # fmt: skip
