"""`gridwatch bench wall`: the wall's summary of a city with a year of incident and task
history, with migration 025's indexes and (in a rolled-back transaction) without them."""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from api import wall_summary
from casework import kpi
from gridwatch.local.stack import LocalStack

# `n` incidents spread evenly over `days`, round the venues; the newest `open` still open with
# a dispatched task, the others resolved 20 minutes after opening with their task closed.
_LOAD = """
WITH v AS (SELECT row_number() OVER (ORDER BY v.id) - 1 AS n, v.id, v.grid_id, t.path
           FROM venues v JOIN territory t ON t.id = v.grid_id),
made AS (
    INSERT INTO incidents (dedup_key, rule, severity, status, title, title_code, title_params,
                           venue_id, grid_id, path, first_seen, last_seen, opened_at, resolved_at)
    SELECT 'hist:' || i, 'door_forced', (ARRAY['red','yellow','green'])[1 + i %% 3]::severity,
           CASE WHEN i <= %(open)s THEN 'open' ELSE 'resolved' END::incident_status,
           'Door forced open', 'door_forced', jsonb_build_object('venue', v.id),
           v.id, v.grid_id, v.path, a.at, a.at, a.at,
           CASE WHEN i <= %(open)s THEN NULL ELSE a.at + interval '20 minutes' END
    FROM generate_series(1, %(n)s) AS i
    CROSS JOIN LATERAL (SELECT now() - make_interval(secs => i * %(days)s * 86400.0 / %(n)s) AS at) a
    JOIN v ON v.n = i %% (SELECT count(*) FROM v)
    RETURNING id, severity, grid_id, path, opened_at, resolved_at, status)
INSERT INTO tasks (incident_id, title, title_code, title_params, severity, grid_id, path, level_id,
                   state, stage_started, deadline_at, created_at, updated_at, closed_at)
SELECT id, 'Door forced open', 'task.door_forced', '{}', severity, grid_id, path, grid_id,
       CASE WHEN status = 'open' THEN 'dispatched' ELSE 'closed' END::task_state, opened_at,
       CASE WHEN status = 'open' THEN opened_at + interval '10 minutes' END,
       opened_at, opened_at, resolved_at
FROM made
"""
_EVENTS = """
INSERT INTO task_events (task_id, at, action, from_state, to_state, actor)
SELECT k.id, k.created_at + s.off, s.action, s.f::task_state, s.t::task_state, s.actor
FROM tasks k, (VALUES (interval '0', 'dispatch', 'reported', 'dispatched', 'system'),
                      (interval '2 minutes', 'accept', 'dispatched', 'accepted', 'worker'),
                      (interval '20 minutes', 'approve', 'checking', 'closed', 'dispatcher'))
              AS s(off, action, f, t, actor)
WHERE k.state = 'closed' OR s.action = 'dispatch'
"""
INDEXES = ("incidents_resolved", "tasks_created")


def _time_builds(
    conn: psycopg.Connection[tuple[Any, ...]], area: str, path: str, n: int
) -> dict[str, float]:
    for _ in range(5):  # warm the cache and let the statements be prepared
        wall_summary.build(conn, area, path)
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        wall_summary.build(conn, area, path)
        samples.append(time.perf_counter() - started)
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return {"p50_ms": round(cuts[49] * 1000, 1), "p99_ms": round(cuts[98] * 1000, 1)}


def _plans(conn: psycopg.Connection[tuple[Any, ...]], root: str, path: str) -> dict[str, str]:
    """The index (or scan) each history query's plan reads incidents and tasks with."""
    since = conn.execute("SELECT date_trunc('day', now())").fetchone()
    queries: dict[str, tuple[str, dict[str, object]]] = {
        "venues": (wall_summary._VENUES, {"path": path}),
        "by_severity": (wall_summary._BY_SEVERITY, {"path": path}),
        "ticker": (wall_summary._TICKER, {"path": path, "limit": wall_summary.TICKER}),
        "due": (wall_summary._DUE, {"path": path, "near": wall_summary.NEAR_SHARE,
                                    "limit": wall_summary.DUE_LISTED}),
        "today": (wall_summary._TODAY, {"path": path, "since": since[0] if since else None}),
        "kpi_today": (kpi._QUERY.format(where="id = %(root)s"),
                      {"root": root, "path": path, "since": since[0] if since else None,
                       "until": None}),
    }  # fmt: skip
    queries["kpi_today"][1]["until"] = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
    out = {}
    for name, (sql, params) in queries.items():
        lines = [str(r[0]) for r in conn.execute("EXPLAIN (ANALYZE, COSTS OFF) " + sql, params)]
        scans = [
            ln.strip().split(" (actual")[0]
            for ln in lines
            if " on incidents" in ln or " on tasks" in ln
        ]
        took = next((ln for ln in lines if ln.startswith("Execution Time")), "")
        out[name] = "; ".join(scans) + f" ({took.removeprefix('Execution Time: ')})"
    return out


def run_wall_bench(args: argparse.Namespace) -> int:
    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="gridwatch-bench-"))
    stack = LocalStack.for_bench(home, getattr(args, "database_url", None))
    try:
        stack.start_database()
        stack.apply_demo(venues=args.venues, devices_per_venue=6)
        loaded = time.perf_counter()
        with psycopg.connect(stack.dsn) as conn:
            conn.execute(_LOAD, {"n": args.incidents, "open": args.open, "days": args.days})
            conn.execute(_EVENTS)
        with psycopg.connect(stack.dsn, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
        load_s = time.perf_counter() - loaded
        with psycopg.connect(stack.dsn) as conn:
            row = conn.execute(
                "SELECT id, path::text FROM territory WHERE parent_id IS NULL"
            ).fetchone()
            assert row is not None
            area, path = str(row[0]), str(row[1])
            result: dict[str, object] = {
                "venues": args.venues, "incidents": args.incidents, "days": args.days,
                "task_events": conn.execute("SELECT count(*) FROM task_events").fetchone(),
                "load_s": round(load_s, 1), "area": area,
                "with_indexes": _time_builds(conn, area, path, args.builds),
                "plans_with": _plans(conn, area, path),
            }  # fmt: skip
            for index in INDEXES:  # rolled back below: the database keeps them
                conn.execute(f"DROP INDEX {index}")
            result["without_indexes"] = _time_builds(conn, area, path, args.builds)
            result["plans_without"] = _plans(conn, area, path)
            conn.rollback()
        print(json.dumps(result, default=str, ensure_ascii=False, indent=1))
        return 0
    finally:
        stack.stop()
        if not args.home:
            shutil.rmtree(home, ignore_errors=True)
