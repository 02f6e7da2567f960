"""`gridwatch bench ingest`: how fast the ingest drains a broker backlog into PostgreSQL."""

from __future__ import annotations

import argparse
import json
import logging
import random
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from gateway.broker import new_share_group
from gridwatch.bench import limit as bench_limit
from gridwatch.bench import loadgen
from gridwatch.demo import NodeCredentials
from gridwatch.local.services import free_ports, terminate
from gridwatch.local.stack import INGEST_SLOTS, ExternalPostgres, LocalStack
from ingest.writer import COLUMNS
from simulators.devices import SimDoor
from simulators.fleet import Fleet

log = logging.getLogger(__name__)

SERIES_TABLES = list(COLUMNS)


def scrape(port: int) -> dict[str, float]:
    """Sum every sample of a worker's /metrics by metric name (labels folded together)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, _, value = line.rpartition(" ")
        name = name_labels.split("{", 1)[0]
        totals[name] = totals.get(name, 0.0) + float(value)
    return totals


def _scrape_all(ports: list[int]) -> dict[str, float]:
    totals: dict[str, float] = {}
    for port in ports:
        try:
            for k, v in scrape(port).items():
                totals[k] = totals.get(k, 0.0) + v
        except OSError:
            continue  # a worker still starting; the next poll sees it
    return totals


def _wait_connected(ports: list[int], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _scrape_all(ports).get("gridwatch_ingest_mqtt_connected", 0) >= len(ports):
            return
        time.sleep(0.2)
    raise RuntimeError("ingest workers did not connect to the broker in time (see logs/ingest.log)")


def run_ingest_bench(args: argparse.Namespace) -> int:
    """Load a backlog, start the ingest, time the drain, verify exactly-once, print JSON."""
    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="gridwatch-bench-"))
    stack = LocalStack.for_bench(home, getattr(args, "database_url", None))
    try:
        stack.start_database()
        if args.sql_profile:
            _track_statements(stack)
        per_venue = 10
        creds = stack.apply_demo(
            venues=max(1, args.devices // per_venue), devices_per_venue=per_venue
        )
        bare_group = new_share_group()
        stack.start_broker(extra_share_groups=(bare_group,))
        metrics_base = free_ports(args.workers)
        ports = [metrics_base + i for i in range(args.workers)]

        # The workers' persistent sessions must exist before the backlog is published, so that
        # the broker queues it for them: start them once, then stop them. The bare subscribers
        # (as many as workers, on slots the workers do not use) get their own copy of it.
        ingest = stack.start_ingest(args.workers, metrics_port=metrics_base)
        _wait_connected(ports, timeout_s=60)
        time.sleep(0.5)
        terminate(ingest)
        bare = [stack.service_mqtt(INGEST_SLOTS - 2 - i) for i in range(args.workers)]
        bench_limit.open_sessions(bare_group, bare)

        plans = loadgen.plan(creds, args.messages, mix=args.mix)
        published, publish_s = loadgen.publish_parallel(plans, stack.edge_mqtt())
        log.info("backlog loaded published=%d in %.1fs", published, publish_s)
        limit_s = bench_limit.drain(bare_group, bare, published)
        log.info("bare subscribers drained the backlog in %.1fs", limit_s)

        if args.sql_profile:
            with psycopg.connect(stack.dsn) as conn:
                conn.execute("SELECT pg_stat_statements_reset()")
        # The database's CPU is read off its processes when it runs here (not an external one).
        pg_pid = (
            None
            if isinstance(stack.postgres, ExternalPostgres)
            else stack.postgres.postmaster_pid()
        )
        assert stack.broker is not None and stack.broker.proc is not None
        cpu_before = {"database": bench_limit.tree_cpu_s(pg_pid) if pg_pid else 0.0,
                      "broker": bench_limit.tree_cpu_s(stack.broker.proc.pid)}  # fmt: skip
        started = time.perf_counter()
        ingest = stack.start_ingest(args.workers, metrics_port=metrics_base)
        acked = 0.0
        last_progress = time.perf_counter()
        while acked < published:
            time.sleep(0.2)
            now_acked = _scrape_all(ports).get("gridwatch_ingest_acked_total", 0.0)
            if now_acked > acked:
                acked, last_progress = now_acked, time.perf_counter()
            elif time.perf_counter() - last_progress > 60:
                raise RuntimeError(f"ingest stalled at {acked:.0f} of {published} messages")
        drain_s = time.perf_counter() - started
        totals = _scrape_all(ports)
        cpu_s = {
            "ingest": bench_limit.tree_cpu_s(ingest.pid),
            "database": bench_limit.tree_cpu_s(pg_pid) - cpu_before["database"] if pg_pid else 0.0,
            "broker": bench_limit.tree_cpu_s(stack.broker.proc.pid) - cpu_before["broker"],
        }
        live = _live_phase(args, stack, creds, published) if args.live_s > 0 else None
        terminate(ingest)
        backlog = published
        if live is not None:
            published += int(str(live["published"]))

        stored, distinct = _count_events(stack.dsn)
        with psycopg.connect(stack.dsn) as conn:
            rejected_row = conn.execute(
                "SELECT coalesce(sum(occurrences), 0) FROM rejected_messages"
            ).fetchone()
            opened = conn.execute(
                "SELECT (SELECT count(*) FROM incidents), (SELECT count(*) FROM tasks)"
            ).fetchone()
            by_rule: dict[str, int] = {
                str(r): int(str(n))
                for r, n in conn.execute("SELECT rule, count(*) FROM incidents GROUP BY rule")
            }
        assert rejected_row is not None
        sql_top = _top_statements(stack.dsn) if args.sql_profile else None
        result = {
            "published": published,
            "stored": stored,
            "duplicates": stored - distinct,
            "rejected": int(str(rejected_row[0])),
            "redeliveries_absorbed": int(totals.get("gridwatch_ingest_duplicates_total", 0)),
            "mix": args.mix,
            "msgs_per_s": round(backlog / drain_s),
            "limit_msgs_per_s": round(backlog / limit_s),
            "ratio": round(limit_s / drain_s, 2),
            "drain_s": round(drain_s, 2),
            # CPU per 1,000 messages drained: holds when other work shares the machine.
            "cpu_ms_per_1k": {
                k: round(v * 1e6 / backlog, 1)
                for k, v in cpu_s.items()
                if k != "database" or pg_pid
            },
            "publish_s": round(publish_s, 2),
            "publish_msgs_per_s": round(backlog / publish_s),
            "workers": args.workers,
            "devices": sum(len(c.devices) for c in creds),
            "nodes": len(creds),
            "batches": int(totals.get("gridwatch_ingest_batch_size_count", 0)),
            "incidents_opened": int(str(opened[0])) if opened else 0,
            "tasks_opened": int(str(opened[1])) if opened else 0,
            "incidents_by_rule": by_rule,
            "live": live,
            "sql_top": sql_top,
            "ok": stored == published and stored == distinct,
        }
        print(json.dumps(result))
        return 0 if result["ok"] else 1
    finally:
        stack.stop()
        if not args.home:
            shutil.rmtree(home, ignore_errors=True)


def _track_statements(stack: LocalStack) -> None:
    """Load pg_stat_statements into the bench's server (a restart), for `--sql-profile`; an
    external server must preload it already."""
    if not isinstance(stack.postgres, ExternalPostgres):
        with (stack.postgres.data / "postgresql.auto.conf").open("a") as conf:
            conf.write("shared_preload_libraries = 'pg_stat_statements'\n")
        stack.postgres.restart()
    with psycopg.connect(stack.dsn) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")


def _top_statements(dsn: str, limit: int = 15) -> list[dict[str, object]]:
    """The ingest's statements that took the most time while it drained."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            """SELECT calls, total_exec_time, rows, left(regexp_replace(query, '\\s+', ' ', 'g'), 90)
               FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid
               WHERE r.rolname = 'ingest' ORDER BY total_exec_time DESC LIMIT %s""",
            (limit,),
        ).fetchall()
    return [
        {"calls": int(str(c)), "total_ms": round(float(str(t))), "rows": int(str(n)), "query": q}
        for c, t, n, q in rows
    ]


def _live_phase(
    args: argparse.Namespace, stack: LocalStack, creds: list[NodeCredentials], before: int
) -> dict[str, object]:
    """With the ingest running on an empty queue, publish the mix live at `--live-rate` for
    `--live-s` seconds, each message stamped when sent; then the delay from a forced door's
    publish to its incident's task, for every door incident opened meanwhile."""
    with psycopg.connect(stack.dsn) as conn:
        # Operators have dealt with the drained backlog's forced doors: a door forced again
        # now opens a new incident, and its task is what is timed.
        conn.execute(
            "UPDATE incidents SET status = 'resolved', resolved_at = now(), resolved_by = 'bench'"
            " WHERE rule = 'door_forced' AND status <> 'resolved'"
        )
    window_start = _db_now(stack.dsn)
    sent = loadgen.publish_paced_parallel(
        creds, args.mix, args.live_rate, args.live_s, stack.edge_mqtt()
    )
    deadline = time.monotonic() + 60
    while _count_events(stack.dsn)[0] < before + sent and time.monotonic() < deadline:
        time.sleep(0.5)
    with psycopg.connect(stack.dsn) as conn:
        row = conn.execute(
            """SELECT count(*),
                      percentile_cont(0.5) WITHIN GROUP (ORDER BY t.created_at - i.first_seen),
                      percentile_cont(0.99) WITHIN GROUP (ORDER BY t.created_at - i.first_seen),
                      max(t.created_at - i.first_seen)
               FROM incidents i JOIN tasks t ON t.incident_id = i.id
               WHERE i.rule = 'door_forced' AND i.first_seen >= %s""",
            (window_start,),
        ).fetchone()
        union = " UNION ALL ".join(
            f"SELECT ts, received_at FROM {t} WHERE received_at >= %(w)s" for t in SERIES_TABLES
        )
        stored = conn.execute(
            f"""SELECT count(*),
                       percentile_cont(0.5) WITHIN GROUP (ORDER BY received_at - ts),
                       percentile_cont(0.99) WITHIN GROUP (ORDER BY received_at - ts)
                FROM ({union}) s""",
            {"w": window_start},
        ).fetchone()
    assert row is not None and stored is not None
    return {
        "published": sent,
        "rate": args.live_rate,
        "seconds": args.live_s,
        "stored_msgs_per_s": round(int(str(stored[0])) / args.live_s),
        "storage_delay_p50_ms": _ms(stored[1]),
        "storage_delay_p99_ms": _ms(stored[2]),
        "door_incidents": int(str(row[0])),
        "door_forced_to_task_p50_ms": _ms(row[1]),
        "door_forced_to_task_p99_ms": _ms(row[2]),
        "door_forced_to_task_max_ms": _ms(row[3]),
    }


KNEE_DELAY_MS = 1000.0  # the live path's limit: stored within a second, nothing lost


def run_fleet_bench(args: argparse.Namespace) -> int:
    """The whole live path at the city size: fleet -> broker -> ingest -> database, and the
    delay from a forced door to its incident's task. With `--rates`, one run per rate, rising,
    until the p99 storage delay passes a second or anything is lost: the last rate that held
    is the knee."""
    if not args.rates:
        result = _fleet_once(args)
        print(json.dumps(result))
        return 0 if result["lost"] == 0 and result["duplicates"] == 0 else 1
    knee: float | None = None
    for rate in sorted(float(r) for r in args.rates.split(",")):
        result = _fleet_once(argparse.Namespace(**{**vars(args), "rate": rate}))
        print(json.dumps(result), flush=True)
        held = (
            result["lost"] == 0 and result["duplicates"] == 0 and not result["fell_short_of_rate"]
            and float(result["delay_p99_ms"]) <= KNEE_DELAY_MS
        )  # fmt: skip
        if not held:
            print(json.dumps({"knee_msgs_per_s": knee, "first_failing_rate": rate}))
            return 0
        knee = rate
    print(json.dumps({"knee_msgs_per_s": knee, "first_failing_rate": None}))
    return 0


def _fleet_once(args: argparse.Namespace) -> dict[str, Any]:
    """One run of the live path at `args.rate`; its figures."""
    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="gridwatch-bench-"))
    stack = LocalStack(home)
    ingest: subprocess.Popen[bytes] | None = None
    fleet: Fleet | None = None
    try:
        stack.start_database()
        creds = stack.apply_demo(venues=args.venues, devices_per_venue=args.devices_per_venue)
        stack.start_broker()
        metrics_base = free_ports(args.workers)
        ports = [metrics_base + i for i in range(args.workers)]
        ingest = stack.start_ingest(args.workers, metrics_port=metrics_base)
        _wait_connected(ports, timeout_s=60)

        fleet = start_fleet(stack, creds, home / "fleet", args.rate)
        time.sleep(args.warmup)
        window_start = _db_now(stack.dsn)
        readings0 = fleet.readings
        forcing = _force_doors(fleet, args.forced_doors_per_s, args.duration)
        time.sleep(args.duration)
        forcing.join()
        window_end = _db_now(stack.dsn)
        made = fleet.readings - readings0
        short = fleet.short_of_rate
        fleet.stop()
        readings = fleet.readings
        fleet_backlog = fleet.backlog
        fleet = None
        deadline = time.monotonic() + 60  # let the ingest finish what was sent
        while (
            _count_events(stack.dsn)[0] < readings - fleet_backlog and time.monotonic() < deadline
        ):
            time.sleep(0.5)
        stored, distinct = _count_events(stack.dsn)
        with psycopg.connect(stack.dsn) as conn:
            union = " UNION ALL ".join(f"SELECT ts, received_at FROM {t}" for t in SERIES_TABLES)
            row = conn.execute(
                f"""SELECT count(*),
                           percentile_cont(0.5) WITHIN GROUP (ORDER BY received_at - ts),
                           percentile_cont(0.99) WITHIN GROUP (ORDER BY received_at - ts),
                           max(received_at - ts)
                    FROM ({union}) s WHERE received_at >= %s AND received_at < %s""",
                (window_start, window_end),
            ).fetchone()
            incident_delay = conn.execute(
                """SELECT count(*),
                          percentile_cont(0.5) WITHIN GROUP (ORDER BY t.created_at - i.first_seen),
                          percentile_cont(0.99) WITHIN GROUP (ORDER BY t.created_at - i.first_seen)
                   FROM incidents i JOIN tasks t ON t.incident_id = i.id
                   WHERE i.rule = 'door_forced' AND i.opened_at >= %s""",
                (window_start,),
            ).fetchone()
        assert row is not None and incident_delay is not None
        window_s = (window_end - window_start).total_seconds()
        result = {
            "venues": len(creds),
            "devices": sum(len(c.devices) for c in creds),
            "target_msgs_per_s": args.rate,
            "made_msgs_per_s": round(made / window_s),
            "stored_msgs_per_s": round(int(str(row[0])) / window_s),
            "delay_p50_ms": round(row[1].total_seconds() * 1000, 1),
            "delay_p99_ms": round(row[2].total_seconds() * 1000, 1),
            "delay_max_ms": round(row[3].total_seconds() * 1000, 1),
            "forced_doors": int(str(incident_delay[0])),
            "event_to_task_p50_ms": _ms(incident_delay[1]),
            "event_to_task_p99_ms": _ms(incident_delay[2]),
            "readings": readings,
            "stored": stored,
            "duplicates": stored - distinct,
            "left_in_outboxes": fleet_backlog,
            "lost": readings - fleet_backlog - distinct,
            "fell_short_of_rate": short,
            "window_s": round(window_s, 1),
        }
        return result
    finally:
        if fleet is not None:
            fleet.stop()
        if ingest is not None:
            terminate(ingest)
        stack.stop()
        if not args.home:
            shutil.rmtree(home, ignore_errors=True)


def start_fleet(
    stack: LocalStack, creds: list[NodeCredentials], folder: Path, rate: float
) -> Fleet:
    """The simulated city of `creds` at `rate` messages a second, started and connected."""
    from gridwatch.simulate import venues_from

    fleet = Fleet(
        venues_from(creds), stack.edge_mqtt(), folder, rate=rate,
        command_key=stack.command_public_key,
    )  # fmt: skip
    fleet.start()
    if not fleet.wait_connected(120):
        fleet.stop()
        raise RuntimeError(f"only {fleet.connected()} of {len(creds)} nodes connected")
    return fleet


def _ms(delta: object) -> float | None:
    return round(delta.total_seconds() * 1000, 1) if isinstance(delta, timedelta) else None


def _force_doors(fleet: Fleet, per_s: float, duration_s: float) -> threading.Thread:
    """Force distinct random doors at a steady rate: each one a new incident and task."""
    doors = [d for d in fleet.devices.values() if isinstance(d, SimDoor)]
    random.Random(7).shuffle(doors)
    count = min(len(doors), int(per_s * duration_s))

    def run() -> None:
        for door in doors[:count]:
            door.force()
            time.sleep(1 / per_s)

    thread = threading.Thread(target=run, name="force-doors", daemon=True)
    thread.start()
    return thread


def _db_now(dsn: str) -> datetime:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT now()").fetchone()
    assert row is not None and isinstance(row[0], datetime)
    return row[0]


def _count_events(dsn: str) -> tuple[int, int]:
    """Rows and distinct ids over the device time series (births and deaths are not readings)."""
    union = " UNION ALL ".join(f"SELECT id FROM {t}" for t in SERIES_TABLES)
    with psycopg.connect(dsn) as conn:
        row = conn.execute(f"SELECT count(*), count(DISTINCT id) FROM ({union}) s").fetchone()
    assert row is not None
    return int(str(row[0])), int(str(row[1]))
