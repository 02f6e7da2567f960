"""`gridwatch bench ingest`: how fast the ingest drains a broker backlog into PostgreSQL."""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import psycopg

from gridwatch import loadgen
from gridwatch.local import LocalStack
from gridwatch.services import free_port
from ingest.writer import COLUMNS

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


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_ingest_bench(args: argparse.Namespace) -> int:
    """Load a backlog, start the ingest, time the drain, verify exactly-once, print JSON."""
    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="gridwatch-bench-"))
    stack = LocalStack(home)
    try:
        stack.start_database()
        per_venue = 10
        creds = stack.seed_demo(
            venues=max(1, args.devices // per_venue), devices_per_venue=per_venue
        )
        stack.start_broker()
        metrics_base = free_port()
        ports = [metrics_base + i for i in range(args.workers)]

        # The workers' persistent sessions must exist before the backlog is published, so that
        # the broker queues it for them: start them once, then stop them.
        ingest = stack.start_ingest(args.workers, metrics_port=metrics_base)
        _wait_connected(ports, timeout_s=60)
        time.sleep(0.5)
        _stop(ingest)

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
        _stop(ingest)

        with psycopg.connect(stack.dsn) as conn:
            union = " UNION ALL ".join(f"SELECT id FROM {t}" for t in SERIES_TABLES)
            row = conn.execute(f"SELECT count(*), count(DISTINCT id) FROM ({union}) s").fetchone()
            rejected_row = conn.execute(
                "SELECT coalesce(sum(occurrences), 0) FROM rejected_messages"
            ).fetchone()
        assert row is not None and rejected_row is not None
        stored, distinct = int(str(row[0])), int(str(row[1]))
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
            "ok": stored == published and stored == distinct,
        }
        print(json.dumps(result))
        return 0 if result["ok"] else 1
    finally:
        stack.stop()
        if not args.home:
            shutil.rmtree(home, ignore_errors=True)
