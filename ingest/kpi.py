"""KPIs from the recorded task transitions, per territory node and rolled up the tree."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
from pydantic import BaseModel, Field

Conn = psycopg.Connection[tuple[object, ...]]


class Kpi(BaseModel):
    """One territory node's figures over a period (rates are 0-1, None when undefined).

    A task closes one of two ways: a person took it (accepted it) and it was checked and
    approved, or its incident's condition cleared before anyone took it and it closed by itself
    (`tasks.on_incidents_resolved`). Only the first says anything about the people, so the rates
    count only those: acceptance over the dispatched tasks that did not close by themselves
    before anyone accepted them, on-time closure, rework and the time to close over the tasks
    people closed. The automatic closures have their own figure.
    """

    territory_id: str
    level: str
    name: str
    tasks: int
    dispatched: int = Field(description="tasks sent to someone")
    accepted: int = Field(description="tasks a person took")
    closed: int = Field(description="all closed tasks: by people and by themselves")
    closed_by_people: int = Field(description="taken, handled, checked and approved")
    closed_automatically: int = Field(description="the condition cleared before anyone took it")
    closed_on_time: int = Field(description="closed by people without passing a deadline")
    reworked: int = Field(description="closed by people after a failed check")
    acceptance_base: int = Field(
        description="dispatched tasks, less those that closed by themselves before anyone took them"
    )
    acceptance_rate: float | None = Field(description="accepted / acceptance_base")
    on_time_closure_rate: float | None = Field(description="closed_on_time / closed_by_people")
    rework_rate: float | None = Field(description="reworked / closed_by_people")
    mean_time_to_accept_s: float | None = Field(description="over the accepted tasks")
    mean_time_to_close_s: float | None = Field(description="over the tasks people closed")


# Per task: when it was first dispatched and accepted, whether it closed by itself (its
# incident cleared: an `incident_resolved` event that moved it to closed), was reworked, or
# passed a deadline (escalated, or overdue at the top).
_TASK_FACTS = """
    SELECT k.id, k.path, k.created_at, k.closed_at,
           (SELECT min(at) FROM task_events e WHERE e.task_id = k.id AND e.action = 'dispatch') AS dispatched_at,
           (SELECT min(at) FROM task_events e WHERE e.task_id = k.id AND e.action = 'accept') AS accepted_at,
           EXISTS (SELECT 1 FROM task_events e WHERE e.task_id = k.id AND e.action = 'incident_resolved'
                   AND e.to_state = 'closed') AS auto,
           EXISTS (SELECT 1 FROM task_events e WHERE e.task_id = k.id AND e.action = 'reject') AS reworked,
           EXISTS (SELECT 1 FROM task_events e WHERE e.task_id = k.id
                   AND e.action IN ('escalate', 'overdue')) AS late
    FROM tasks k"""

_QUERY = (
    """
WITH area AS (SELECT id, level::text AS level, name, path FROM territory WHERE {where}),
t AS ("""
    + _TASK_FACTS
    + """
    WHERE k.created_at >= %(since)s AND k.created_at < %(until)s
      AND k.path <@ (SELECT path FROM territory WHERE id = %(root)s)
)
SELECT a.id, a.level, a.name,
       count(t.id),
       count(t.dispatched_at),
       count(t.accepted_at),
       count(t.closed_at),
       count(t.closed_at) FILTER (WHERE NOT t.auto),
       count(t.closed_at) FILTER (WHERE t.auto),
       count(t.closed_at) FILTER (WHERE NOT t.auto AND NOT t.late),
       count(t.closed_at) FILTER (WHERE NOT t.auto AND t.reworked),
       count(t.dispatched_at) FILTER (WHERE t.auto AND t.accepted_at IS NULL),
       avg(extract(epoch FROM t.accepted_at - t.created_at)),
       avg(extract(epoch FROM t.closed_at - t.created_at)) FILTER (WHERE NOT t.auto)
FROM area a LEFT JOIN t ON t.path <@ a.path
GROUP BY a.id, a.level, a.name, a.path
ORDER BY a.path
"""
)


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def report(
    conn: Conn, territory_id: str, since: datetime, until: datetime, *, children: bool = True
) -> list[Kpi]:
    """KPIs for a territory node, then (with `children`) for each node directly under it."""
    where = "id = %(root)s" + (" OR parent_id = %(root)s" if children else "")
    rows = conn.execute(
        _QUERY.format(where=where),
        {"root": territory_id, "since": since, "until": until},
    ).fetchall()
    out = []
    for tid, level, name, *counts, mta, mtc in rows:
        n, disp, acc, closed, by_people, auto, on_time, rework, untaken_auto = (
            int(str(c)) for c in counts
        )
        out.append(
            Kpi(
                territory_id=str(tid), level=str(level), name=str(name), tasks=n,
                dispatched=disp, accepted=acc, closed=closed, closed_by_people=by_people,
                closed_automatically=auto, closed_on_time=on_time, reworked=rework,
                acceptance_base=disp - untaken_auto,
                acceptance_rate=_rate(acc, disp - untaken_auto),
                on_time_closure_rate=_rate(on_time, by_people),
                rework_rate=_rate(rework, by_people),
                mean_time_to_accept_s=None if mta is None else round(float(str(mta)), 1),
                mean_time_to_close_s=None if mtc is None else round(float(str(mtc)), 1),
            )
        )  # fmt: skip
    # The root first, then its children.
    out.sort(key=lambda k: k.territory_id != territory_id)
    return out


class DailyKpi(BaseModel):
    """One day of an area's tasks: how many came in, how many people closed (how many of those
    late), and how many closed by themselves (the condition cleared before anyone took them)."""

    day: date
    created: int
    closed: int = Field(description="closed by people")
    closed_late: int = Field(description="closed by people after a deadline passed")
    closed_automatically: int


def daily(
    conn: Conn, territory_id: str, since: datetime, until: datetime, *, tz: str = "UTC"
) -> list[DailyKpi]:
    """Per day (in the time zone `tz`) from `since` to `until`, days without tasks included
    (as zeros)."""
    rows = conn.execute(
        """WITH k AS ("""
        + _TASK_FACTS
        + """
               WHERE k.path <@ (SELECT path FROM territory WHERE id = %(root)s)
                 AND (k.created_at >= %(since)s OR k.closed_at >= %(since)s))
           SELECT (date_trunc('day', at, %(tz)s) AT TIME ZONE %(tz)s)::date,
                  sum(created)::int, sum(closed)::int, sum(late)::int, sum(auto)::int
           FROM (SELECT created_at AS at, 1 AS created, 0 AS closed, 0 AS late, 0 AS auto FROM k
                 UNION ALL
                 SELECT closed_at, 0, (NOT auto)::int, (late AND NOT auto)::int, auto::int
                 FROM k WHERE closed_at IS NOT NULL) x
           WHERE at >= %(since)s AND at < %(until)s
           GROUP BY 1""",
        {"root": territory_id, "since": since, "until": until, "tz": tz},
    ).fetchall()
    found = {r[0]: r for r in rows}
    out = []
    zone = ZoneInfo(tz)
    day = since.astimezone(zone).date()
    while day <= until.astimezone(zone).date():
        _, created, closed, late, auto = found.get(day, (day, 0, 0, 0, 0))
        out.append(DailyKpi(day=day, created=int(str(created)), closed=int(str(closed)),
                            closed_late=int(str(late)),
                            closed_automatically=int(str(auto))))  # fmt: skip
        day += timedelta(days=1)
    return out
