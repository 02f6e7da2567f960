"""KPIs from the recorded task transitions, per territory node and rolled up the tree."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
from pydantic import BaseModel, Field

Conn = psycopg.Connection[tuple[object, ...]]


class Kpi(BaseModel):
    """One territory node's figures over a period (rates are 0-1, None when undefined).

    A task closes one of four ways (docs/incidents.md, KPIs): a person took it and it was
    checked and approved (`closed_by_people`); its incident's condition cleared before anyone
    took it (`closed_automatically`: the system closed it, `tasks.on_incidents_resolved` with
    the system as actor); an operator resolved its incident by hand (`closed_by_operator`); or
    the condition cleared after someone had taken it and handed it back
    (`closed_after_hand_back`). Only the first says how the people did the work, so on-time
    closure, rework and the time to close count only those; acceptance counts over the
    dispatched tasks less those closed (by the system or an operator) before anyone took them.
    """

    territory_id: str
    level: str
    name: str
    tasks: int
    dispatched: int = Field(description="tasks sent to someone")
    accepted: int = Field(description="tasks a person took")
    closed: int = Field(description="all closed tasks, however they closed")
    closed_by_people: int = Field(description="taken, handled, checked and approved")
    closed_automatically: int = Field(
        description="the system closed it: the condition cleared before anyone took it"
    )
    closed_by_operator: int = Field(
        description="a person resolved its incident by hand, closing the task"
    )
    closed_after_hand_back: int = Field(
        description="someone took it and handed it back, then the condition cleared"
    )
    closed_on_time: int = Field(description="closed by people without passing a deadline")
    reworked: int = Field(description="closed by people after a failed check")
    acceptance_base: int = Field(
        description="dispatched tasks, less those closed (by the system or an operator) before"
        " anyone took them"
    )
    acceptance_rate: float | None = Field(description="accepted / acceptance_base")
    on_time_closure_rate: float | None = Field(description="closed_on_time / closed_by_people")
    rework_rate: float | None = Field(description="reworked / closed_by_people")
    mean_time_to_accept_s: float | None = Field(
        description="first dispatch to first acceptance, over the accepted tasks"
    )
    mean_time_to_close_s: float | None = Field(description="over the tasks people closed")


# Per task: when it was first dispatched and accepted; how its incident's resolution closed it,
# if it did (an `incident_resolved` event that moved it to closed: `sys_closed` when the system
# logged it, the condition having cleared, `hand_closed` when a person resolved the incident);
# whether it was reworked, or passed a deadline (escalated, or overdue at the top).
_TASK_FACTS = """
    SELECT k.id, k.path, k.created_at, k.closed_at,
           (SELECT min(at) FROM task_events e WHERE e.task_id = k.id AND e.action = 'dispatch') AS dispatched_at,
           (SELECT min(at) FROM task_events e WHERE e.task_id = k.id AND e.action = 'accept') AS accepted_at,
           EXISTS (SELECT 1 FROM task_events e WHERE e.task_id = k.id AND e.action = 'incident_resolved'
                   AND e.to_state = 'closed' AND e.actor = 'system') AS sys_closed,
           EXISTS (SELECT 1 FROM task_events e WHERE e.task_id = k.id AND e.action = 'incident_resolved'
                   AND e.to_state = 'closed' AND e.actor <> 'system') AS hand_closed,
           EXISTS (SELECT 1 FROM task_events e WHERE e.task_id = k.id AND e.action = 'reject') AS reworked,
           EXISTS (SELECT 1 FROM task_events e WHERE e.task_id = k.id
                   AND e.action IN ('escalate', 'overdue')) AS late
    FROM tasks k"""

_QUERY = (
    """
WITH area AS (SELECT id, level::text AS level, name, path FROM territory WHERE {where}),
-- The period's tasks by `tasks_created` (migration 025), then those of the area: left to
-- itself the planner ANDs them with every task of the area by the path index, which for a
-- city with a year of history costs more than the rest of the wall's summary together.
period AS MATERIALIZED (
    SELECT * FROM tasks WHERE created_at >= %(since)s AND created_at < %(until)s),
f AS ("""
    + _TASK_FACTS.replace("FROM tasks k", "FROM period k")
    + """
    WHERE k.path <@ %(path)s::ltree
),
t AS (SELECT f.*, sys_closed AND accepted_at IS NULL AS auto,
             sys_closed AND accepted_at IS NOT NULL AS after_hand_back,
             NOT sys_closed AND NOT hand_closed AS by_people
      FROM f)
SELECT a.id, a.level, a.name,
       count(t.id),
       count(t.dispatched_at),
       count(t.accepted_at),
       count(t.closed_at),
       count(t.closed_at) FILTER (WHERE t.by_people),
       count(t.closed_at) FILTER (WHERE t.auto),
       count(t.closed_at) FILTER (WHERE t.hand_closed),
       count(t.closed_at) FILTER (WHERE t.after_hand_back),
       count(t.closed_at) FILTER (WHERE t.by_people AND NOT t.late),
       count(t.closed_at) FILTER (WHERE t.by_people AND t.reworked),
       count(t.dispatched_at) FILTER (WHERE (t.sys_closed OR t.hand_closed) AND t.accepted_at IS NULL),
       avg(extract(epoch FROM t.accepted_at - t.dispatched_at)),
       avg(extract(epoch FROM t.closed_at - t.created_at)) FILTER (WHERE t.by_people)
FROM area a LEFT JOIN t ON t.path <@ a.path
GROUP BY a.id, a.level, a.name, a.path
ORDER BY a.path
"""
)


def _path(conn: Conn, territory_id: str) -> str | None:
    """The node's path, given to the queries as a value (the planner then sees it)."""
    row = conn.execute("SELECT path::text FROM territory WHERE id = %s", (territory_id,)).fetchone()
    return None if row is None else str(row[0])


def rate(part: int, whole: int) -> float | None:
    """part / whole to four places, None when there is nothing to count (never 100%)."""
    return round(part / whole, 4) if whole else None


def report(
    conn: Conn, territory_id: str, since: datetime, until: datetime, *, children: bool = True
) -> list[Kpi]:
    """KPIs for a territory node, then (with `children`) for each node directly under it."""
    where = "id = %(root)s" + (" OR parent_id = %(root)s" if children else "")
    path = _path(conn, territory_id)
    if path is None:
        return []
    rows = conn.execute(
        _QUERY.format(where=where),
        {"root": territory_id, "path": path, "since": since, "until": until},
    ).fetchall()
    out = []
    for tid, level, name, *counts, mta, mtc in rows:
        n, disp, acc, closed, by_people, auto, by_hand, after_back, on_time, rework, untaken = (
            int(str(c)) for c in counts
        )
        out.append(
            Kpi(
                territory_id=str(tid), level=str(level), name=str(name), tasks=n,
                dispatched=disp, accepted=acc, closed=closed, closed_by_people=by_people,
                closed_automatically=auto, closed_by_operator=by_hand,
                closed_after_hand_back=after_back, closed_on_time=on_time, reworked=rework,
                acceptance_base=disp - untaken,
                acceptance_rate=rate(acc, disp - untaken),
                on_time_closure_rate=rate(on_time, by_people),
                rework_rate=rate(rework, by_people),
                mean_time_to_accept_s=None if mta is None else round(float(str(mta)), 1),
                mean_time_to_close_s=None if mtc is None else round(float(str(mtc)), 1),
            )
        )  # fmt: skip
    # The root first, then its children.
    out.sort(key=lambda k: k.territory_id != territory_id)
    return out


class DailyKpi(BaseModel):
    """One day of an area's tasks: how many came in, how many people closed (how many of those
    late), and how many the system closed (the condition cleared before anyone took them).
    Closures by an operator resolving the incident, or after a hand-back, are in neither."""

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
               WHERE k.path <@ %(path)s::ltree
                 AND (k.created_at >= %(since)s OR k.closed_at >= %(since)s))
           , kk AS (SELECT k.*, sys_closed AND accepted_at IS NULL AS auto,
                           NOT sys_closed AND NOT hand_closed AS by_people FROM k)
           SELECT (date_trunc('day', at, %(tz)s) AT TIME ZONE %(tz)s)::date,
                  sum(created)::int, sum(closed)::int, sum(late)::int, sum(auto)::int
           FROM (SELECT created_at AS at, 1 AS created, 0 AS closed, 0 AS late, 0 AS auto FROM kk
                 UNION ALL
                 SELECT closed_at, 0, by_people::int, (late AND by_people)::int, auto::int
                 FROM kk WHERE closed_at IS NOT NULL) x
           WHERE at >= %(since)s AND at < %(until)s
           GROUP BY 1""",
        {"path": _path(conn, territory_id), "since": since, "until": until, "tz": tz},
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
