"""KPIs from the recorded task transitions, per territory node and rolled up the tree."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import psycopg
from pydantic import BaseModel

Conn = psycopg.Connection[tuple[object, ...]]


class Kpi(BaseModel):
    """One territory node's figures over a period (rates are 0-1, None when undefined)."""

    territory_id: str
    level: str
    name: str
    tasks: int
    dispatched: int
    accepted: int
    closed: int
    closed_on_time: int
    reworked: int
    acceptance_rate: float | None
    on_time_closure_rate: float | None
    rework_rate: float | None
    mean_time_to_accept_s: float | None
    mean_time_to_close_s: float | None


_QUERY = """
WITH area AS (SELECT id, level::text AS level, name, path FROM territory WHERE {where}),
t AS (
    SELECT k.id, k.path, k.created_at, k.closed_at,
           (SELECT min(at) FROM task_events e WHERE e.task_id = k.id AND e.action = 'dispatch') AS dispatched_at,
           (SELECT min(at) FROM task_events e WHERE e.task_id = k.id AND e.action = 'accept') AS accepted_at,
           EXISTS (SELECT 1 FROM task_events e WHERE e.task_id = k.id AND e.action = 'reject') AS reworked,
           EXISTS (SELECT 1 FROM task_events e WHERE e.task_id = k.id
                   AND e.action IN ('escalate', 'overdue')) AS late
    FROM tasks k
    WHERE k.created_at >= %(since)s AND k.created_at < %(until)s
      AND k.path <@ (SELECT path FROM territory WHERE id = %(root)s)
)
SELECT a.id, a.level, a.name,
       count(t.id),
       count(t.dispatched_at),
       count(t.accepted_at),
       count(t.closed_at),
       count(t.closed_at) FILTER (WHERE NOT t.late),
       count(t.closed_at) FILTER (WHERE t.reworked),
       avg(extract(epoch FROM t.accepted_at - t.created_at)),
       avg(extract(epoch FROM t.closed_at - t.created_at))
FROM area a LEFT JOIN t ON t.path <@ a.path
GROUP BY a.id, a.level, a.name, a.path
ORDER BY a.path
"""


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
        n, disp, acc, closed, on_time, rework = (int(str(c)) for c in counts)
        out.append(
            Kpi(
                territory_id=str(tid), level=str(level), name=str(name), tasks=n,
                dispatched=disp, accepted=acc, closed=closed, closed_on_time=on_time,
                reworked=rework, acceptance_rate=_rate(acc, disp),
                on_time_closure_rate=_rate(on_time, closed), rework_rate=_rate(rework, closed),
                mean_time_to_accept_s=None if mta is None else round(float(str(mta)), 1),
                mean_time_to_close_s=None if mtc is None else round(float(str(mtc)), 1),
            )
        )  # fmt: skip
    # The root first, then its children.
    out.sort(key=lambda k: k.territory_id != territory_id)
    return out


class DailyKpi(BaseModel):
    """One day of an area's tasks: how many came in, how many were closed, how many late."""

    day: date
    created: int
    closed: int
    closed_late: int


def daily(conn: Conn, territory_id: str, since: datetime, until: datetime) -> list[DailyKpi]:
    """Per UTC day from `since` to `until`, days without tasks included (as zeros)."""
    rows = conn.execute(
        """WITH k AS (
               SELECT k.created_at, k.closed_at,
                      EXISTS (SELECT 1 FROM task_events e WHERE e.task_id = k.id
                              AND e.action IN ('escalate', 'overdue')) AS late
               FROM tasks k
               WHERE k.path <@ (SELECT path FROM territory WHERE id = %(root)s)
                 AND (k.created_at >= %(since)s OR k.closed_at >= %(since)s))
           SELECT (date_trunc('day', at, 'UTC') AT TIME ZONE 'UTC')::date,
                  sum(created)::int, sum(closed)::int, sum(late)::int
           FROM (SELECT created_at AS at, 1 AS created, 0 AS closed, 0 AS late FROM k
                 UNION ALL
                 SELECT closed_at, 0, 1, late::int FROM k WHERE closed_at IS NOT NULL) x
           WHERE at >= %(since)s AND at < %(until)s
           GROUP BY 1""",
        {"root": territory_id, "since": since, "until": until},
    ).fetchall()
    found = {r[0]: r for r in rows}
    out = []
    day = since.astimezone(UTC).date()
    while day <= until.astimezone(UTC).date():
        _, created, closed, late = found.get(day, (day, 0, 0, 0))
        out.append(DailyKpi(day=day, created=int(str(created)), closed=int(str(closed)),
                            closed_late=int(str(late))))  # fmt: skip
        day += timedelta(days=1)
    return out
