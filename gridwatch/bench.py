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

import psycopg

from gridwatch import loadgen
from gridwatch.local import LocalStack
from gridwatch.services import free_ports, terminate
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
        per_venue = 10
        creds = stack.apply_demo(
            venues=max(1, args.devices // per_venue), devices_per_venue=per_venue
        )
        stack.start_broker()
        metrics_base = free_ports(args.workers)
        ports = [metrics_base + i for i in range(args.workers)]

        # The workers' persistent sessions must exist before the backlog is published, so that
        # the broker queues it for them: start them once, then stop them.
        ingest = stack.start_ingest(args.workers, metrics_port=metrics_base)
        _wait_connected(ports, timeout_s=60)
        time.sleep(0.5)
        terminate(ingest)

        plans = loadgen.plan(creds, args.messages)
        published, publish_s = loadgen.publish_parallel(plans, stack.edge_mqtt())
        log.info("backlog loaded published=%d in %.1fs", published, publish_s)

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
        terminate(ingest)

        stored, distinct = _count_events(stack.dsn)
        with psycopg.connect(stack.dsn) as conn:
            rejected_row = conn.execute(
                "SELECT coalesce(sum(occurrences), 0) FROM rejected_messages"
            ).fetchone()
            opened = conn.execute(
                "SELECT (SELECT count(*) FROM incidents), (SELECT count(*) FROM tasks)"
            ).fetchone()
        assert rejected_row is not None
        result = {
            "published": published,
            "stored": stored,
            "duplicates": stored - distinct,
            "rejected": int(str(rejected_row[0])),
            "redeliveries_absorbed": int(totals.get("gridwatch_ingest_duplicates_total", 0)),
            "msgs_per_s": round(published / drain_s),
            "drain_s": round(drain_s, 2),
            "publish_s": round(publish_s, 2),
            "publish_msgs_per_s": round(published / publish_s),
            "workers": args.workers,
            "devices": sum(len(c.devices) for c in creds),
            "nodes": len(creds),
            "batches": int(totals.get("gridwatch_ingest_batch_size_count", 0)),
            "incidents_opened": int(str(opened[0])) if opened else 0,
            "tasks_opened": int(str(opened[1])) if opened else 0,
            "ok": stored == published and stored == distinct,
        }
        print(json.dumps(result))
        return 0 if result["ok"] else 1
    finally:
        stack.stop()
        if not args.home:
            shutil.rmtree(home, ignore_errors=True)


def run_fleet_bench(args: argparse.Namespace) -> int:
    """The whole live path at the city size: fleet -> broker -> ingest -> database, and the
    delay from a forced door to its incident's task."""
    from gridwatch.simulate import venues_from

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

        fleet = Fleet(
            venues_from(creds),
            stack.edge_mqtt(),
            home / "fleet",
            rate=args.rate,
            command_key=stack.command_public_key,
        )
        fleet.start()
        if not fleet.wait_connected(120):
            raise RuntimeError(f"only {fleet.connected()} of {len(creds)} nodes connected")
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
        print(json.dumps(result))
        return 0 if result["lost"] == 0 and result["duplicates"] == 0 else 1
    finally:
        if fleet is not None:
            fleet.stop()
        if ingest is not None:
            terminate(ingest)
        stack.stop()
        if not args.home:
            shutil.rmtree(home, ignore_errors=True)


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
