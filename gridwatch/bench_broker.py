"""`gridwatch bench broker`: reconcile the broker accounts of N nodes from an empty broker.

A real PostgreSQL and a real Mosquitto 2.0.11 with its dynamic-security plugin; N nodes with
sealed secrets in the registry (one per venue), none on the broker; then one full reconcile
(every account and role created over the control topic) and a second one that finds nothing
to change. Prints the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from gateway.broker import hash_password, new_secret
from gateway.dynsec import DynSec
from gridwatch.local import LocalStack
from registry.broker_sync import reconcile
from registry.secrets import load_seal_key, seal, seal_public_key


def register_nodes(conn: psycopg.Connection[Any], n: int) -> None:
    """N venues in one grid, a node with a sealed secret in each."""
    conn.execute(
        """INSERT INTO territory (id, parent_id, level, name, path) VALUES
           ('bc', NULL, 'city', 'Bench City', 'bc'),
           ('bc_d', 'bc', 'district', 'D', 'bc.bc_d'),
           ('bc_s', 'bc_d', 'subdistrict', 'S', 'bc.bc_d.bc_s'),
           ('bc_c', 'bc_s', 'community', 'C', 'bc.bc_d.bc_s.bc_c'),
           ('bc_g', 'bc_c', 'grid', 'G', 'bc.bc_d.bc_s.bc_c.bc_g')"""
    )
    public = seal_public_key(conn)
    # The reconcile never reads the hash (it only needs to know there is one), so a cheap one
    # keeps the set-up short; real secrets are hashed with gateway.broker.HASH_ITERATIONS.
    cheap = hash_password(new_secret(), iterations=1)
    issued = datetime.now(UTC)
    with conn.cursor() as cur:
        with cur.copy("COPY venues (id, grid_id, name, kind) FROM STDIN") as copy:
            for i in range(n):
                copy.write_row((f"bv{i:06d}", "bc_g", f"Venue {i}", "grid_station"))
        with cur.copy(
            "COPY edge_nodes (id, venue_id, password_hash, secret_sealed, secret_issued_at)"
            " FROM STDIN"
        ) as copy:
            for i in range(n):
                copy.write_row(
                    (f"bn{i:06d}", f"bv{i:06d}", cheap, seal(new_secret(), public), issued)
                )


def run_bench(nodes: int, home: Path) -> dict[str, object]:
    stack = LocalStack(home)
    try:
        stack.start_database()
        stack.start_broker()  # the registry is empty: the broker starts with no node account
        with psycopg.connect(stack.dsn) as conn:
            started = time.perf_counter()
            register_nodes(conn, nodes)
            registered_s = time.perf_counter() - started
        key = load_seal_key(stack.seal_key_file)
        dynsec = DynSec(stack.control_mqtt(), timeout_s=120)
        result: dict[str, object] = {"nodes": nodes, "register_s": round(registered_s, 1)}
        with psycopg.connect(stack.dsn) as conn, dynsec:
            for label in ("first", "again"):
                t0 = time.perf_counter()
                report = reconcile(conn, dynsec, key)
                result[f"{label}_s"] = round(time.perf_counter() - t0, 2)
                result[f"{label}_changes"] = len(report.changes)
            result["broker_clients"] = len(dynsec.list_clients())
        state = home / "broker" / "dynamic-security.json"
        result["plugin_file_mb"] = round(state.stat().st_size / 1e6, 1)
        return result
    finally:
        stack.stop()


def run(args: argparse.Namespace) -> int:
    own = args.home is None
    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="gridwatch-bench-"))
    try:
        print(json.dumps(run_bench(args.nodes, home), indent=1))
    finally:
        if own:
            shutil.rmtree(home, ignore_errors=True)
    return 0
