"""The platform's own outages are the platform's: a broker outage is one incident for the
operators, not a red task for every venue whose node it disconnected."""

from __future__ import annotations

import time
from pathlib import Path

from gridwatch.demo import NodeCredentials
from gridwatch.local.stack import LocalStack
from tests.edge_support import fleet_of
from tests.support import rows, scalar, start_ingest, stop_process, wait_until


def test_a_broker_outage_is_one_platform_incident_not_a_task_per_venue(
    stack: LocalStack, nodes: list[NodeCredentials], tmp_path: Path
) -> None:
    dsn = stack.dsn
    with_rule = """INSERT INTO rule_overrides (venue_id, rule, settings)
                   SELECT id, 'node_offline', '{"for_s": 15}' FROM venues"""
    rows_changed = 0
    import psycopg

    with psycopg.connect(dsn) as conn:
        rows_changed = conn.execute(with_rule).rowcount
    assert rows_changed == len(nodes)
    worker, _ = start_ingest(stack, env={"GRIDWATCH_BROKER_DOWN_AFTER_S": "3"})
    fleet = fleet_of(stack, nodes, tmp_path / "fleet")
    try:
        wait_until(lambda: scalar(dsn, "SELECT count(*) FROM node_presence WHERE online")
                   == len(nodes), 20, "every node online")  # fmt: skip
        assert stack.broker is not None
        stack.broker.stop()  # Mosquitto publishes every node's will as it stops
        time.sleep(20)  # longer than the node-offline rule's 15 s
        stack.broker.start()
        wait_until(lambda: scalar(dsn, "SELECT count(*) FROM node_presence WHERE online")
                   == len(nodes), 60, "every node back")  # fmt: skip
        wait_until(lambda: bool(rows(dsn, "SELECT 1 FROM incidents WHERE rule = 'platform_broker'"
                                          " AND status = 'resolved'")), 30,
                   "the platform incident resolved")  # fmt: skip
        time.sleep(17)  # past the node-offline rule's time once more: nothing may follow
    finally:
        fleet.stop()
        stop_process(worker)
    got = rows(dsn, "SELECT rule, venue_id FROM incidents ORDER BY id")
    assert got == [("platform_broker", None)], got
    assert scalar(dsn, "SELECT count(*) FROM tasks") == 0
