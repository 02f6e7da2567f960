"""The generated Mosquitto configuration, enforced by a real broker."""

from __future__ import annotations

import os
import pwd
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateway import codec, topics
from gateway import messages as m
from gateway.broker import new_secret
from gateway.client import MqttSettings, connect_async, new_client
from gridwatch.brokercfg import BrokerAccountsSettings, write_config
from gridwatch.demo import NodeCredentials
from gridwatch.local import LocalStack
from gridwatch.services import LocalMosquitto, free_port
from gridwatch.simulate import venues_from
from ingest.settings import Environment
from simulators.fleet import Fleet
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
    accounts = BrokerAccountsSettings(ingest_password=new_secret(), api_password=new_secret())
    with psycopg.connect(stack.dsn) as conn:
        conf = write_config(
            conn, tmp_path / "broker", accounts, Environment.PRODUCTION,
            edge_host="0.0.0.0", edge_port=edge, service_host="127.0.0.1", service_port=service,
            user=pwd.getpwuid(os.geteuid()).pw_name, tls_cert=cert, tls_key=key,
        )  # fmt: skip
    text = conf.read_text()
    assert f"certfile {cert}" in text and f"keyfile {key}" in text
    broker = LocalMosquitto(conf, ports=[edge, service])
    broker.start()
    creds = nodes[0]
    watcher = MqttSettings(port=service, username="ingest", password=accounts.ingest_password)
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
        observer.subscribe(topics.birth(creds.site, creds.node), qos=1)
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
           "GRIDWATCH_BROKER_INGEST_PASSWORD": new_secret(), "GRIDWATCH_BROKER_API_PASSWORD": new_secret()}  # fmt: skip
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
