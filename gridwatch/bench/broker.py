"""`gridwatch bench broker`: reconcile the broker accounts of N nodes.

A real PostgreSQL and a real Mosquitto 2.0.11 with its dynamic-security plugin, nodes with sealed
secrets in the registry (one per venue). Two set-ups, figures printed as JSON:

- from an empty broker (`--from-empty`, default N): one full reconcile creates every account and
  role over the control topic, and a second one finds nothing to change. The plugin writes its
  whole state file after every command, so this grows with the square of the node count;
- at scale (N): the accounts are in the broker's initial state (what `broker config` and the
  local stack write at every start), so the broker starts with them; then a reconcile with
  nothing to change, and how long a connected node's session takes to be cut when it is
  disabled (one targeted reconcile against the whole state).
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
from gateway.client import MqttSettings, connect_async, new_client
from gateway.dynsec import DynSec
from gridwatch.local.stack import LocalStack
from registry.broker_sync import reconcile
from registry.secrets import issue_secret, load_seal_key, seal, seal_public_key


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


def _from_empty(nodes: int, home: Path) -> dict[str, object]:
    """N nodes in the registry, none on the broker: reconcile, then reconcile again."""
    stack = LocalStack(home)
    try:
        stack.start_database()
        stack.start_broker()  # the registry is empty: the broker starts with no node account
        with psycopg.connect(stack.dsn) as conn:
            register_nodes(conn, nodes)
        key = load_seal_key(stack.seal_key_file)
        result: dict[str, object] = {"nodes": nodes}
        with psycopg.connect(stack.dsn) as conn, DynSec(stack.control_mqtt(), timeout_s=120) as ds:
            for label in ("first", "again"):
                t0 = time.perf_counter()
                report = reconcile(conn, ds, key)
                result[f"{label}_s"] = round(time.perf_counter() - t0, 2)
                result[f"{label}_changes"] = len(report.changes)
        return result
    finally:
        stack.stop()


def _at_scale(nodes: int, home: Path) -> dict[str, object]:
    """N nodes written into the broker's initial state (as `broker config` does), then: the
    broker's start, a reconcile with nothing to change, and one node disabled while connected
    (how long until its session is cut, the targeted reconcile included)."""
    stack = LocalStack(home)
    try:
        stack.start_database()
        with psycopg.connect(stack.dsn) as conn:
            register_nodes(conn, nodes)
            secret = issue_secret(conn, "bn000000")
        t0 = time.perf_counter()
        stack.start_broker()
        result: dict[str, object] = {
            "nodes": nodes,
            "broker_start_s": round(time.perf_counter() - t0, 1),
        }
        state = home / "broker" / "dynamic-security.json"
        result["plugin_file_mb"] = round(state.stat().st_size / 1e6, 1)
        key = load_seal_key(stack.seal_key_file)
        with (
            psycopg.connect(stack.dsn, autocommit=True) as conn,
            DynSec(stack.control_mqtt(), timeout_s=120) as ds,
        ):
            t0 = time.perf_counter()
            report = reconcile(conn, ds, key)
            result["no_change_s"] = round(time.perf_counter() - t0, 2)
            result["no_change_changes"] = len(report.changes)
            settings = MqttSettings(port=stack.ports.edge, username="bn000000", password=secret)
            client, watch = new_client("bn000000", settings)
            connect_async(client, settings, clean_start=True)
            if not watch.connected.wait(30):
                raise RuntimeError(f"bn000000 could not connect: {watch.last_reason}")
            conn.execute("UPDATE edge_nodes SET disabled = true WHERE id = 'bn000000'")
            t0 = time.perf_counter()
            reconcile(conn, ds, key, ["bn000000"])
            while watch.connected.is_set() and time.perf_counter() - t0 < 30:
                time.sleep(0.001)
            result["disable_cut_s"] = round(time.perf_counter() - t0, 3)
            client.disconnect()
            client.loop_stop()
        return result
    finally:
        stack.stop()


def run_bench(nodes: int, from_empty: int, home: Path) -> dict[str, object]:
    return {
        "from_empty": _from_empty(from_empty, home / "empty"),
        "at_scale": _at_scale(nodes, home / "scale"),
    }


def run(args: argparse.Namespace) -> int:
    own = args.home is None
    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="gridwatch-bench-"))
    from_empty = args.from_empty if args.from_empty is not None else args.nodes
    try:
        print(json.dumps(run_bench(args.nodes, from_empty, home), indent=1))
    finally:
        if own:
            shutil.rmtree(home, ignore_errors=True)
    return 0
