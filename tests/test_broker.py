"""The generated Mosquitto configuration, enforced by a real broker."""

from __future__ import annotations

import json
import os
import pwd
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateway import codec, topics
from gateway import messages as m
from gateway.broker import new_secret, new_share_group
from gateway.client import MqttSettings, connect_async, new_client
from gridwatch.brokercfg import BrokerAccountsSettings, write_config
from gridwatch.demo import NodeCredentials, read_credentials
from gridwatch.local.services import LocalMosquitto, free_port
from gridwatch.local.stack import LocalStack
from gridwatch.simulate import venues_from
from ingest.settings import Environment
from simulators.fleet import Fleet
from tests.support import Node, device_of, envelope, occupancy, wait_until


@pytest.fixture
def platform_view(stack: LocalStack) -> Iterator[list[mqtt.MQTTMessage]]:
    """Everything the broker delivers to the ingest, seen through an ingest account (no ingest
    runs: a shared subscription with one member gets all of it)."""
    client, watch = new_client("test-observer", stack.service_mqtt())
    seen: list[mqtt.MQTTMessage] = []
    client.on_message = lambda c, u, msg: seen.append(msg)
    connect_async(client, stack.service_mqtt(), clean_start=True)
    assert watch.connected.wait(10), watch.last_reason
    granted: list[ReasonCode] = []
    client.on_subscribe = lambda c, u, mid, reasons, props: granted.extend(reasons)
    filters = [f for fs in topics.ingest_subscriptions(stack.share_group) for f in fs]
    client.subscribe([(f, SubscribeOptions(qos=1)) for f in filters])
    wait_until(lambda: len(granted) == len(filters), what="SUBACK")
    assert not any(r.is_failure for r in granted), granted
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


def test_a_node_may_subscribe_only_to_its_own_commands_and_receipts(
    stack: LocalStack, nodes: list[NodeCredentials], ingest: object
) -> None:
    """A node with valid credentials that tries to read what is not its own (the ingest's shared
    subscription, everything, the broker's own topics, another node's commands) is refused at
    SUBACK, and the shared stream loses nothing to it meanwhile."""
    from tests.support import scalar

    snoop = Node(stack, nodes[1]).wait_connected()
    wanted = [
        *topics.ingest_filters(stack.share_group),
        *topics.ingest_subscriptions("ingest")[0],
        "#",
        "$SYS/#",
        topics.node_commands_filter(nodes[0].site, nodes[0].node),
        f"{topics.ROOT}/+/+/{topics.Channel.RECEIPT}",
    ]
    snoop.client.subscribe([(f, SubscribeOptions(qos=1)) for f in wanted])
    own = topics.node_subscriptions(nodes[1].site, nodes[1].node)
    snoop.client.subscribe([(f, SubscribeOptions(qos=1)) for f in own])
    wait_until(lambda: len(snoop.subacks) == len(wanted) + len(own), what="SUBACKs")
    refused, granted = snoop.subacks[: len(wanted)], snoop.subacks[len(wanted) :]
    assert [r.getName() for r in refused] == ["Not authorized"] * len(wanted)
    assert not any(r.is_failure for r in granted)

    sender = Node(stack, nodes[0]).wait_connected()
    sent = [sender.send(occupancy(sender, count=i)) for i in range(40)]
    sender.deliver(sent)
    wait_until(
        lambda: scalar(stack.dsn, "SELECT count(*) FROM occupancy") == 40, 30, "all 40 stored"
    )
    # Its own configuration (retained, pushed by the ingest leader) is all it may read.
    own_config = topics.config(nodes[1].site, nodes[1].node)
    assert [msg.topic for msg in snoop.received if msg.topic != own_config] == []
    for n in (snoop, sender):
        n.close()


def test_commands_reach_only_their_node(stack: LocalStack, nodes: list[NodeCredentials]) -> None:
    receiver = Node(stack, nodes[0]).wait_connected()
    receiver.client.subscribe(topics.node_commands_filter(nodes[0].site, nodes[0].node), qos=1)
    wait_until(lambda: bool(receiver.subacks), what="SUBACK")

    platform, watch = new_client("platform-test", stack.service_mqtt())
    connect_async(platform, stack.service_mqtt(), clean_start=True)
    assert watch.connected.wait(10), watch.last_reason
    speaker = device_of(nodes[0], "speaker")
    cmd = m.Command(
        v=1, id=uuid.uuid4(), ts=m.now(), device=speaker, deadline=m.now(),
        action=m.SpeakerVolume(level=40),
    )  # fmt: skip
    platform.publish(
        topics.command(nodes[0].site, nodes[0].node, speaker), codec.encode(cmd), qos=1
    )
    wait_until(lambda: len(receiver.received) == 1, what="the command at its node")
    assert codec.decode(receiver.received[0].payload) == cmd
    platform.disconnect()
    platform.loop_stop()
    receiver.close()


@pytest.mark.parametrize("secret_of", [None, 1], ids=["wrong-secret", "another-nodes-secret"])
def test_bad_credentials_are_refused(
    stack: LocalStack, nodes: list[NodeCredentials], secret_of: int | None
) -> None:
    password = "wrong-secret" if secret_of is None else nodes[secret_of].secret
    node = Node(stack, nodes[0], password=password)
    assert not node.watch.connected.wait(2)
    assert node.watch.refusal == "Not authorized"
    node.close()


def test_ingest_account_cannot_publish_as_a_node(
    stack: LocalStack, nodes: list[NodeCredentials], platform_view: list[mqtt.MQTTMessage]
) -> None:
    client, watch = new_client("ingest-writer", stack.service_mqtt(0))
    acks: list[str] = []
    client.on_publish = lambda c, u, mid, reason, props: acks.append(reason.getName())
    connect_async(client, stack.service_mqtt(0), clean_start=True)
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
                 "use_username_as_clientid true", "per_listener_settings false",
                 "max_connections 5000"):  # fmt: skip
        assert line in conf
    dynsec_file = stack.home / "broker" / "dynamic-security.json"
    dynsec = json.loads(dynsec_file.read_text())
    assert dynsec["defaultACLAccess"] == {"publishClientSend": False,
        "publishClientReceive": False, "subscribe": False, "unsubscribe": True}  # fmt: skip
    users = {c["username"] for c in dynsec["clients"]}
    assert {n.node for n in read_credentials(stack.credentials_file)} < users
    assert "api" not in users  # the API never speaks MQTT
    assert all(len(c["password"]) == 88 and c["iterations"] > 0 for c in dynsec["clients"])
    assert dynsec_file.stat().st_mode & 0o077 == 0


def test_a_client_cannot_take_over_another_accounts_session(
    stack: LocalStack, nodes: list[NodeCredentials]
) -> None:
    """Client ids are account names: a service account connecting under a node's id is that
    account's session, and the node stays connected."""
    node = Node(stack, nodes[0]).wait_connected()
    intruder, watch = new_client(nodes[0].node, stack.service_mqtt())
    connect_async(intruder, stack.service_mqtt(), clean_start=True)
    assert watch.connected.wait(10)
    time.sleep(0.5)
    assert node.watch.connected.is_set()
    intruder.disconnect()
    intruder.loop_stop()
    node.close()


def test_birth_is_retained_for_late_subscribers(
    stack: LocalStack, nodes: list[NodeCredentials]
) -> None:
    from tests.support import birth

    node = Node(stack, nodes[0]).wait_connected()
    node.wait_acked([node.send(birth(node, bdseq=1), retain=True)])
    late, watch = new_client("late", stack.service_mqtt())
    got: list[mqtt.MQTTMessage] = []
    late.on_message = lambda c, u, msg: got.append(msg)
    connect_async(late, stack.service_mqtt(), clean_start=True)
    assert watch.connected.wait(10)
    late.subscribe(f"{topics.ROOT}/+/+/{topics.Channel.BIRTH}", qos=1)
    wait_until(lambda: bool(got), what="the retained birth")
    assert got[0].retain
    assert envelope  # the helper builds births from fresh envelopes
    late.disconnect()
    late.loop_stop()
    node.close()


def make_tls(folder: Path) -> tuple[Path, Path, Path]:
    """A test CA and a server certificate it signed for 127.0.0.1 and localhost: (ca, cert, key)."""
    folder.mkdir(parents=True)
    ca, ca_key = folder / "ca.pem", folder / "ca.key"
    cert, key, csr = folder / "server.pem", folder / "server.key", folder / "server.csr"
    ext = folder / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for args in (
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca,
         "-days", "2", "-subj", "/CN=gridwatch test CA"],
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
         "-subj", "/CN=localhost"],
        ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
         "-out", cert, "-days", "2", "-extfile", ext],
    ):  # fmt: skip
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)
    return ca, cert, key


def _mqtt_connect_packet() -> bytes:
    """A minimal plaintext MQTT 3.1.1 CONNECT, as a careless client would send it."""
    body = b"\x00\x04MQTT\x04\x02\x00\x1e" + b"\x00\x05plain"
    return bytes([0x10, len(body)]) + body


def test_agents_reach_a_tls_edge_listener_and_plaintext_is_refused(
    stack: LocalStack, nodes: list[NodeCredentials], tmp_path: Path
) -> None:
    ca, cert, key = make_tls(tmp_path / "tls")
    edge, service = free_port(), free_port()
    accounts = BrokerAccountsSettings(ingest_password=new_secret(), share_group=new_share_group())
    with psycopg.connect(stack.dsn) as conn:
        conf = write_config(
            conn, tmp_path / "broker", accounts, environment=Environment.PRODUCTION,
            edge_host="0.0.0.0", edge_port=edge, service_host="127.0.0.1", service_port=service,
            user=pwd.getpwuid(os.geteuid()).pw_name, tls_cert=cert, tls_key=key,
        )  # fmt: skip
    text = conf.read_text()
    assert f"certfile {cert}" in text and f"keyfile {key}" in text
    broker = LocalMosquitto(conf, ports=[edge, service])
    broker.start()
    creds = nodes[0]
    watcher = MqttSettings(port=service, username="ingest-15", password=accounts.ingest_password)
    observer, watch = new_client("test-observer", watcher)
    births: list[mqtt.MQTTMessage] = []
    observer.on_message = lambda c, u, msg: births.append(msg)
    fleet = Fleet(
        venues_from([creds]), MqttSettings(host="localhost", port=edge, tls_ca=ca),
        tmp_path / "fleet", rate=0.001,
    )  # fmt: skip
    try:
        fleet.start()
        assert fleet.wait_connected(20), fleet.agents[creds.node].watch.last_reason
        connect_async(observer, watcher, clean_start=True)
        assert watch.connected.wait(10), watch.last_reason
        observer.subscribe(f"{topics.ROOT}/+/+/{topics.Channel.BIRTH}", qos=1)
        wait_until(lambda: len(births) == 1, 10, "the node's retained birth")

        with socket.create_connection(("127.0.0.1", edge), timeout=10) as plain:
            plain.sendall(_mqtt_connect_packet())
            try:
                reply = plain.recv(64)  # a TLS alert, or nothing
            except ConnectionResetError:
                reply = b""
        assert not reply.startswith(b"\x20"), "a plaintext client must get no CONNACK"
    finally:
        fleet.stop()
        observer.disconnect()
        observer.loop_stop()
        broker.stop()


def _broker_config(
    stack: LocalStack, out: Path, environment: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GRIDWATCH_ENVIRONMENT": environment,
           "GRIDWATCH_BROKER_INGEST_PASSWORD": new_secret(),
           "GRIDWATCH_BROKER_SHARE_GROUP": new_share_group()}  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "gridwatch.cli", "broker", "config", "--out", str(out),
         "--database-url", stack.dsn, *extra],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_production_refuses_an_open_edge_listener_without_tls(
    stack: LocalStack, tmp_path: Path
) -> None:
    refused = _broker_config(stack, tmp_path / "prod", "production", "--edge-host", "0.0.0.0")
    assert refused.returncode == 1
    assert refused.stderr.startswith(
        "gridwatch: refused in production: the edge listener binds 0.0.0.0"
    )
    assert "--tls-cert and --tls-key" in refused.stderr and "Traceback" not in refused.stderr
    assert not (tmp_path / "prod" / "mosquitto.conf").exists()

    warned = _broker_config(stack, tmp_path / "dev", "development", "--edge-host", "0.0.0.0")
    assert warned.returncode == 0, warned.stderr
    assert "for development only: the edge listener binds 0.0.0.0" in warned.stderr

    ca, cert, key = make_tls(tmp_path / "tls")
    tls = _broker_config(stack, tmp_path / "tls-prod", "production", "--edge-host", "0.0.0.0",
                         "--tls-cert", str(cert), "--tls-key", str(key), "--tls-ca", str(ca))  # fmt: skip
    assert tls.returncode == 0, tls.stderr
    conf = (tmp_path / "tls-prod" / "mosquitto.conf").read_text()
    assert f"certfile {cert}" in conf and f"cafile {ca}" in conf

    half = _broker_config(stack, tmp_path / "half", "production", "--tls-cert", str(cert))
    assert half.returncode == 2 and "--tls-cert and --tls-key go together" in half.stderr
