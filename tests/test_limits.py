"""What one node can fill is bounded: rejected messages are capped per node and expire, and a
retained message left where none belongs is cleared."""

from __future__ import annotations

import json
from collections.abc import Iterator

import paho.mqtt.client as mqtt
import psycopg
import pytest

from gateway import codec, topics
from gateway.client import connect_async, new_client
from gridwatch.demo import NodeCredentials
from gridwatch.local.stack import LocalStack
from tests.support import Node, occupancy, scalar, start_ingest, stop_process, wait_until


@pytest.fixture
def node(stack: LocalStack, nodes: list[NodeCredentials]) -> Iterator[Node]:
    n = Node(stack, nodes[0]).wait_connected()
    yield n
    n.close()


def test_rejected_messages_are_capped_per_node_and_expire(stack: LocalStack, node: Node) -> None:
    dsn = stack.dsn
    with psycopg.connect(dsn) as conn:  # a refusal nobody has seen again for 40 days
        conn.execute(
            """INSERT INTO rejected_messages (topic, node_id, reason, detail, payload, payload_size,
                                              digest, first_seen, last_seen)
               VALUES ('gw/v1/x/old/evt/d/occupancy', 'old', 'schema', 'old', '', 0, 'x',
                       now() - interval '40 days', now() - interval '40 days')"""
        )
    proc, _ = start_ingest(stack, env={"GRIDWATCH_REJECTED_PER_NODE": "5"})
    try:
        wait_until(lambda: scalar(dsn, "SELECT count(*) FROM rejected_messages WHERE node_id"
                                       " = 'old'") == 0, 20, "the old refusal pruned")  # fmt: skip
        topic = topics.event(node.creds.site, node.creds.node, "v0001-counter2", "occupancy")
        junk = [node.publish_raw(topic, json.dumps({"junk": i}).encode()) for i in range(20)]
        node.deliver(junk)
        wait_until(lambda: scalar(dsn, "SELECT coalesce(sum(occurrences), 0) FROM"
                                       " rejected_messages") == 20, 20, "20 refusals counted")  # fmt: skip
        assert scalar(dsn, "SELECT count(*) FROM rejected_messages") == 6  # 5 kept, 1 counter
    finally:
        stop_process(proc)


def test_a_retained_message_where_none_belongs_is_stored_and_cleared(
    stack: LocalStack, node: Node, ingest: object
) -> None:
    reading = occupancy(node, count=4)
    death_topic = topics.death(node.creds.site, node.creds.node)
    node.deliver([node.send(reading, retain=True)])
    node.deliver([node.publish_raw(death_topic, b"junk that must not stay", retain=True)])
    wait_until(lambda: scalar(stack.dsn, "SELECT count(*) FROM occupancy") == 1, 20, "stored")
    wait_until(lambda: scalar(stack.dsn, "SELECT count(*) FROM rejected_messages") == 1, 20,
               "the junk death refused")  # fmt: skip

    def retained() -> list[mqtt.MQTTMessage]:
        """What a new subscriber to deaths is handed as retained."""
        got: list[mqtt.MQTTMessage] = []
        client, watch = new_client("retained-probe", stack.service_mqtt())
        client.on_message = lambda c, u, msg: got.append(msg)
        connect_async(client, stack.service_mqtt(), clean_start=True)
        assert watch.connected.wait(10)
        client.subscribe(f"{topics.ROOT}/+/+/{topics.Channel.DEATH}", qos=1)
        import time

        time.sleep(1.0)
        client.disconnect()
        client.loop_stop()
        return [m for m in got if m.payload]

    wait_until(lambda: retained() == [], 20, "the retained death cleared")
    assert codec.decode(codec.encode(reading)) == reading
