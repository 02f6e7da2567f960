"""The generated Mosquitto configuration, enforced by a real broker."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateway import codec, topics
from gateway import messages as m
from gateway.client import connect_async, new_client
from gridwatch.demo import NodeCredentials
from gridwatch.local import LocalStack
from tests.support import Node, device_of, envelope, occupancy, wait_until


@pytest.fixture
def platform_view(stack: LocalStack) -> Iterator[list[mqtt.MQTTMessage]]:
    """Everything the broker delivers under gw/v1/#, seen through the ingest's service account."""
    client, watch = new_client("test-observer", stack.service_mqtt("ingest"))
    seen: list[mqtt.MQTTMessage] = []
    client.on_message = lambda c, u, msg: seen.append(msg)
    connect_async(client, stack.service_mqtt("ingest"), clean_start=True)
    assert watch.connected.wait(10), watch.last_reason
    client.subscribe([(f"{topics.ROOT}/#", SubscribeOptions(qos=1))])
    yield seen
    client.disconnect()
    client.loop_stop()


def test_node_cannot_publish_into_another_nodes_subtree(
    stack: LocalStack, nodes: list[NodeCredentials], platform_view: list[mqtt.MQTTMessage]
) -> None:
    node = Node(stack, nodes[0]).wait_connected()
    other = nodes[1]
    own = occupancy(node)
    foreign_topic = topics.event(other.site, other.node, device_of(other, "counter"), "occupancy")
    spoof = node.publish_raw(foreign_topic, codec.encode(own))
    good = node.send(own)
    command = node.publish_raw(topics.command(nodes[0].site, nodes[0].node, own.device), b"{}")
    acks = node.wait_acked([spoof, good, command])

    assert acks[spoof].getName() == "Not authorized"
    assert acks[command].getName() == "Not authorized"  # a node never sends commands
    assert not acks[good].is_failure
    wait_until(
        lambda: any(
            msg.topic == topics.event(nodes[0].site, nodes[0].node, own.device, "occupancy")
            for msg in platform_view
        )
    )
    assert all(msg.topic != foreign_topic for msg in platform_view)
    node.close()


def test_commands_reach_only_their_node(stack: LocalStack, nodes: list[NodeCredentials]) -> None:
    """Mosquitto grants any subscription but delivers only what the reader's ACL allows."""
    receiver = Node(stack, nodes[0]).wait_connected()
    snoop = Node(stack, nodes[1]).wait_connected()
    receiver.client.subscribe(topics.node_commands_filter(nodes[0].site, nodes[0].node), qos=1)
    snoop.client.subscribe(
        [
            (topics.node_commands_filter(nodes[0].site, nodes[0].node), SubscribeOptions(qos=1)),
            (f"{topics.ROOT}/#", SubscribeOptions(qos=1)),
        ]
    )
    wait_until(lambda: bool(receiver.subacks) and len(snoop.subacks) == 2, what="SUBACKs")

    api, watch = new_client("api-test", stack.service_mqtt("api"))
    connect_async(api, stack.service_mqtt("api"), clean_start=True)
    assert watch.connected.wait(10), watch.last_reason
    speaker = device_of(nodes[0], "speaker")
    cmd = m.Command(
        v=1, id=uuid.uuid4(), ts=m.now(), device=speaker, deadline=m.now(),
        action=m.SpeakerVolume(level=40),
    )  # fmt: skip
    api.publish(topics.command(nodes[0].site, nodes[0].node, speaker), codec.encode(cmd), qos=1)
    third = Node(stack, nodes[2]).wait_connected()
    third.wait_acked([third.send(occupancy(third))])  # traffic the snoop must not see either
    wait_until(lambda: len(receiver.received) == 1, what="the command at its node")
    assert codec.decode(receiver.received[0].payload) == cmd
    assert snoop.received == []
    api.disconnect()
    api.loop_stop()
    for n in (receiver, snoop, third):
        n.close()


@pytest.mark.parametrize("secret_of", [None, 1], ids=["wrong-secret", "another-nodes-secret"])
def test_bad_credentials_are_refused(
    stack: LocalStack, nodes: list[NodeCredentials], secret_of: int | None
) -> None:
    password = "wrong-secret" if secret_of is None else nodes[secret_of].secret
    node = Node(stack, nodes[0], password=password)
    assert not node.watch.connected.wait(2)
    assert node.watch.refusal == "Not authorized"
    node.close()


def test_ingest_account_cannot_publish(
    stack: LocalStack, nodes: list[NodeCredentials], platform_view: list[mqtt.MQTTMessage]
) -> None:
    client, watch = new_client("ingest-writer", stack.service_mqtt("ingest"))
    acks: list[str] = []
    client.on_publish = lambda c, u, mid, reason, props: acks.append(reason.getName())
    connect_async(client, stack.service_mqtt("ingest"), clean_start=True)
    assert watch.connected.wait(10)
    node = Node(stack, nodes[0])
    client.publish(topics.birth(nodes[0].site, nodes[0].node), b"{}", qos=1)
    wait_until(lambda: bool(acks), what="PUBACK")
    assert acks == ["Not authorized"]
    client.disconnect()
    client.loop_stop()
    node.close()


def test_generated_config_sets_limits_on_purpose(stack: LocalStack) -> None:
    conf = (stack.home / "broker" / "mosquitto.conf").read_text()
    for line in ("persistence true", "max_queued_messages 2000000", "allow_anonymous false",
                 "use_username_as_clientid true", "per_listener_settings true"):  # fmt: skip
        assert line in conf
    acl = (stack.home / "broker" / "edge.acl").read_text()
    assert acl.count("\nuser ") == 3
    passwd = (stack.home / "broker" / "edge.passwd").read_text()
    assert all(line.split(":", 1)[1].startswith("$7$") for line in passwd.splitlines())
    assert (stack.home / "broker" / "edge.passwd").stat().st_mode & 0o077 == 0


def test_birth_is_retained_for_late_subscribers(
    stack: LocalStack, nodes: list[NodeCredentials]
) -> None:
    from tests.support import birth

    node = Node(stack, nodes[0]).wait_connected()
    node.wait_acked([node.send(birth(node, bdseq=1), retain=True)])
    late, watch = new_client("late", stack.service_mqtt("ingest"))
    got: list[mqtt.MQTTMessage] = []
    late.on_message = lambda c, u, msg: got.append(msg)
    connect_async(late, stack.service_mqtt("ingest"), clean_start=True)
    assert watch.connected.wait(10)
    late.subscribe(topics.birth(nodes[0].site, nodes[0].node), qos=1)
    wait_until(lambda: bool(got), what="the retained birth")
    assert got[0].retain
    assert envelope  # the helper builds births from fresh envelopes
    late.disconnect()
    late.loop_stop()
    node.close()
