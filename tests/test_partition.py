"""A province partitioned by district: two Mosquitto brokers, each carrying some districts' nodes,
two ingest groups and one database (ingest/groups.py, docs/operations.md "Partitioned by
district")."""

from __future__ import annotations

import itertools
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest

from casework import emergency
from gateway import codec, topics
from gateway import messages as m
from gateway.broker import CONTROL_USER
from gateway.client import QOS_AT_LEAST_ONCE, MqttSettings, connect_async, new_client
from gateway.codec import DecodeError, RejectReason
from gateway.dynsec import Acl, DynSec
from gridwatch.demo import NodeCredentials, read_credentials
from gridwatch.local.services import LocalPostgres, free_port
from gridwatch.local.stack import LocalStack, Ports
from ingest import groups
from ingest.groups import GroupError
from ingest.registry import Registry
from tests.support import (
    Node,
    birth,
    device_of,
    envelope,
    metric,
    occupancy,
    rows,
    scalar,
    start_ingest,
    stop_process,
    wait_until,
)

_numbers = itertools.count(1)
FAST = {"GRIDWATCH_DEADLINES__RED_ACCEPT_S": "1.5", "GRIDWATCH_DEADLINES__RED_HANDLE_S": "60"}
READINGS = 40  # per node, each published twice (an edge resending after a lost PUBACK)


@pytest.fixture
def province(tmp_path: Path, postgres: LocalPostgres) -> Iterator[LocalStack]:
    """A migrated database with a demo city of two districts (10 venues); no broker yet."""
    s = LocalStack(
        tmp_path / "home",
        preferred=Ports(postgres.port, free_port(), free_port()),
        postgres=postgres,
        database=f"test_partition_{next(_numbers)}",
    )
    s.start_database()
    s.apply_demo(venues=10, devices_per_venue=4)
    yield s
    s.stop()


def _districts(dsn: str) -> list[str]:
    return [str(r[0]) for r in rows(dsn, "SELECT id FROM territory WHERE level = 'district'"
                                         " ORDER BY id")]  # fmt: skip


def _district_of(dsn: str) -> dict[str, str]:
    """node id -> the district its venue lies in."""
    got = rows(
        dsn,
        """SELECT n.id, d.id FROM edge_nodes n JOIN venues v ON v.id = n.venue_id
           JOIN territory g ON g.id = v.grid_id
           JOIN territory d ON d.level = 'district' AND g.path <@ d.path""",
    )
    return {str(n): str(d) for n, d in got}


class Spy:
    """An operator's account on one broker that sees every command published there."""

    def __init__(self, control: MqttSettings, name: str) -> None:
        password = f"spy-{name}-secret"
        with DynSec(control) as ds:
            ds.execute([
                DynSec.create_role("spy", [Acl("subscribePattern", "gw/v1/#"),
                                           Acl("publishClientReceive", "gw/v1/#")]),
                DynSec.create_client("spy", password, roles=["spy"]),
            ])  # fmt: skip
        self.topics: list[str] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        settings = MqttSettings(host=control.host, port=control.port, username="spy",
                                password=password)  # fmt: skip
        self.client, self.watch = new_client(f"spy-{name}", settings)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_connect = self._on_connect
        connect_async(self.client, settings, clean_start=True)
        assert self._subscribed.wait(15), f"the spy on {name} could not subscribe"

    def _on_connect(self, client: mqtt.Client, *args: object) -> None:
        client.subscribe("gw/v1/+/+/cmd/#", qos=QOS_AT_LEAST_ONCE)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.topics.append(msg.topic)

    def saw(self, topic: str) -> bool:
        with self._lock:
            return topic in self.topics

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_two_brokers_two_ingest_groups_one_database(province: LocalStack) -> None:
    stack, dsn = province, province.dsn
    east, west = _districts(dsn)
    district = _district_of(dsn)
    creds = read_credentials(stack.credentials_file)
    assert {district[c.node] for c in creds} == {east, west}

    stack.start_broker(areas=[east])  # the stack's own broker carries the first district
    west_broker = stack.start_district_broker("west", [west])
    edge_port = {east: stack.ports.edge, west: west_broker.edge}
    control_west = stack.control_mqtt().model_copy(update={"port": west_broker.service})
    spies = {east: Spy(stack.control_mqtt(), "east"), west: Spy(control_west, "west")}

    east_ingest, east_port = start_ingest(
        stack, workers=2, env={**stack.group_env("east", [east]), **FAST}
    )
    west_ingest, west_port = start_ingest(
        stack, env={**stack.group_env("west", [west], west_broker), **FAST}
    )
    nodes: list[Node] = []
    try:
        # One leader per group, and one of them does the database's work.
        wait_until(
            lambda: (
                metric(east_port, "gridwatch_ingest_leader")
                + metric(east_port + 1, "gridwatch_ingest_leader")
                == 1
            ),
            30,
            "east's leader",
        )
        wait_until(lambda: metric(west_port, "gridwatch_ingest_leader") == 1, 30, "west's leader")
        wait_until(lambda: sum(metric(p, "gridwatch_ingest_database_leader")
                               for p in (east_port, east_port + 1, west_port)) == 1,
                   30, "one leader of the database's work")  # fmt: skip

        # A node of the other district has no account on a broker: its group's reconcile keeps
        # each broker to its own district's nodes.
        outsider = next(c for c in creds if district[c.node] == west)
        wrong = Node(stack, outsider, port=edge_port[east])
        wait_until(
            lambda: wrong.watch.refusal is not None, 30, "east's broker to refuse a west node"
        )
        wrong.close()

        # Every node publishes on its own broker: a birth and readings, each sent twice.
        for c in creds:
            node = Node(stack, c, port=edge_port[district[c.node]]).wait_connected()
            node.client.subscribe(f"gw/v1/{c.site}/{c.node}/cmd/#", qos=QOS_AT_LEAST_ONCE)
            nodes.append(node)
            mids = [node.send(birth(node, 0))]
            for i in range(READINGS):
                reading = occupancy(node, count=i % 7)
                mids += [node.send(reading), node.send(reading)]
            node.deliver(mids)
        expected = len(creds) * READINGS
        wait_until(lambda: scalar(dsn, "SELECT count(*) FROM occupancy") == expected, 60,
                   f"{expected} readings stored")  # fmt: skip
        wait_until(lambda: scalar(dsn, "SELECT count(*) FROM node_presence WHERE online")
                   == len(creds), 30, "every node online")  # fmt: skip

        # A door forced in each district: an incident and a task each, and the tasks, never
        # accepted, escalate up the tree to the city above both groups' territory.
        forced = {}
        for d in (east, west):
            node = next(n for n in nodes if district[n.creds.node] == d)
            door = device_of(node.creds, "door")
            forced[d] = node.creds.site
            node.deliver([node.send(m.DoorForced(**envelope(node), device=door))])
        wait_until(lambda: scalar(dsn, "SELECT count(*) FROM tasks") == 2, 30, "two tasks")
        city = str(scalar(dsn, "SELECT id FROM territory WHERE level = 'city'"))
        wait_until(lambda: scalar(dsn, "SELECT count(*) FROM tasks WHERE level_id = %s", (city,))
                   == 2, 60, "both tasks escalated to the city")  # fmt: skip
        wait_until(lambda: scalar(dsn, "SELECT count(*) FROM tasks WHERE deadline_at IS NULL")
                   == 2, 30, "both tasks overdue at the top")  # fmt: skip

        # A command to a node on the west broker goes out there only. The east command queued
        # after it is published (in queue order) by east's leader: once east's spy has that
        # one, east's leader has had its chance at the west command too.
        west_node = next(n for n in nodes if district[n.creds.node] == west)
        east_node = next(n for n in nodes if district[n.creds.node] == east)
        with psycopg.connect(dsn, autocommit=True) as conn:
            to_west = emergency.queue_command(
                conn, device_of(west_node.creds, "door"), m.DoorUnlock(duration_s=60),
                issued_by="operator", deadline=timedelta(minutes=2),
            )  # fmt: skip
            to_east = emergency.queue_command(
                conn, device_of(east_node.creds, "door"), m.DoorUnlock(duration_s=60),
                issued_by="operator", deadline=timedelta(minutes=2),
            )  # fmt: skip
        west_topic = topics.command(
            west_node.creds.site, west_node.creds.node, device_of(west_node.creds, "door")
        )
        east_topic = topics.command(
            east_node.creds.site, east_node.creds.node, device_of(east_node.creds, "door")
        )
        wait_until(lambda: spies[west].saw(west_topic), 30, "the west command on the west broker")
        wait_until(lambda: spies[east].saw(east_topic), 30, "the east command on the east broker")
        wait_until(lambda: any(r.topic == west_topic for r in west_node.received), 30,
                   "the west node to receive its command")  # fmt: skip
        sent = dict(rows(dsn, "SELECT id, state::text FROM commands"))
    finally:
        for n in nodes:
            n.close()
        for spy in spies.values():
            spy.close()
        stop_process(east_ingest)
        stop_process(west_ingest)

    assert not spies[east].saw(west_topic), "a west node's command was published on east's broker"
    assert not spies[west].saw(east_topic), "an east node's command was published on west's broker"
    assert sent == {to_west: "sent", to_east: "sent"}
    assert len([t for t in spies[west].topics if t == west_topic]) == 1  # published once

    # Nothing lost, nothing doubled: every reading once, from both brokers.
    per_node = dict(rows(dsn, "SELECT node_id, count(*) FROM occupancy GROUP BY node_id"))
    assert per_node == {c.node: READINGS for c in creds}
    assert scalar(dsn, "SELECT count(DISTINCT id) FROM occupancy") == len(creds) * READINGS
    assert scalar(dsn, "SELECT count(*) FROM rejected_messages") == 0
    # One incident and one task per forced door; each escalated once per level, not once per
    # leader: grid > community > subdistrict > district > city.
    assert scalar(dsn, "SELECT count(*) FROM incidents WHERE rule = 'door_forced'") == 2
    assert sorted(str(r[0]) for r in rows(dsn, "SELECT venue_id FROM incidents")) == sorted(
        forced.values()
    )
    levels = dict(rows(dsn, "SELECT id, level::text FROM territory"))
    for (task_id,) in rows(dsn, "SELECT id FROM tasks"):
        chain = [str(r[0]) for r in rows(dsn, "SELECT data->>'to' FROM task_events WHERE"
                                              " task_id = %s AND action = 'escalate' ORDER BY id",
                                         (task_id,))]  # fmt: skip
        assert [levels[t] for t in chain] == ["community", "subdistrict", "district", "city"]
    # Worker slots are per group: east's two and west's one, all named ingest-N on their broker.
    slots = sorted((str(g), str(c)) for g, c in rows(dsn, "SELECT ingest_group, client_id"
                                                          " FROM ingest_workers"))  # fmt: skip
    assert slots == [("east", "ingest-0"), ("east", "ingest-1"), ("west", "ingest-0")]


def test_a_group_refuses_nodes_outside_its_areas_and_misconfigured_areas(
    province: LocalStack,
) -> None:
    dsn = province.dsn
    east, west = _districts(dsn)
    district = _district_of(dsn)
    creds = read_credentials(province.credentials_file)
    outsider: NodeCredentials = next(c for c in creds if district[c.node] == west)
    with psycopg.connect(dsn, autocommit=True) as conn:
        scope = groups.claim(conn, "east", [east], live_s=30)
        registry = Registry(60, scope=scope)
        registry.refresh_if_due(conn)
        message = m.Occupancy(**m.envelope(1), device=device_of(outsider, "counter"), zone="main",
                              count=1, entered=1, exited=0)  # fmt: skip
        inbound = codec.decode_for_topic(
            codec.topic_for(outsider.site, outsider.node, message), codec.encode(message)
        )
        with pytest.raises(DecodeError) as refused:
            registry.check(inbound)
        assert refused.value.reason is RejectReason.OUTSIDE_GROUP
        assert "outside the areas of ingest group 'east'" in refused.value.detail

        # An area the territory lacks, areas inside one another, an area another running
        # group carries: each refused with what to change.
        with pytest.raises(GroupError, match="which the territory does not have"):
            groups.claim(conn, "west", ["atlantis"], live_s=30)
        subdistrict = str(scalar(dsn, "SELECT id FROM territory WHERE parent_id = %s LIMIT 1",
                                 (west,)))  # fmt: skip
        with pytest.raises(GroupError, match=f"which lies inside '{west}'"):
            groups.claim(conn, "west", [west, subdistrict], live_s=30)
        with pytest.raises(GroupError, match="ingest group 'east' carries already"):
            groups.claim(conn, "west", [west, east], live_s=30)
        with pytest.raises(GroupError, match="ingest group 'east' carries already"):
            groups.claim(conn, "whole", [], live_s=30)  # the whole territory includes east's
        # A group whose workers have all stopped no longer holds its areas.
        conn.execute("UPDATE ingest_groups SET heartbeat_at = now() - interval '1 hour'")
        assert groups.claim(conn, "west", [west, east], live_s=30).areas == (west, east)

    # The command line says it in one sentence, before any worker starts.
    env = province.service_env("ingest", GRIDWATCH_INGEST_GROUP="other",
                               GRIDWATCH_INGEST_AREAS=f"{east},nowhere")  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "gridwatch.cli", "ingest", "--workers", "2"],
        check=False, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1
    assert "names nowhere, which the territory does not have" in done.stderr
    assert "Traceback" not in done.stderr
    assert CONTROL_USER not in done.stderr
