"""Helpers shared by the tests: real MQTT clients acting as edge nodes, waiting, querying."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.reasoncodes import ReasonCode

from gateway import codec
from gateway import messages as m
from gateway.client import (
    QOS_AT_LEAST_ONCE,
    MqttSettings,
    PublishOutcome,
    connect_async,
    new_client,
    publish_outcome,
)
from gridwatch.bench.ingest import scrape
from gridwatch.demo import NodeCredentials
from gridwatch.local.services import LocalPostgres, free_ports, terminate
from gridwatch.local.stack import ExternalPostgres, LocalStack


def wait_until(check: Callable[[], bool], timeout_s: float = 30.0, what: str = "condition") -> None:
    """Poll `check` until it is true; fail the test with `what` after the timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    """SIGTERM and wait, as an operator stopping a service would; SIGKILL if it hangs."""
    assert terminate(proc, timeout_s), "process did not stop on SIGTERM"


def metric(port: int, name: str) -> float:
    """A metric of an ingest worker, summed over labels; -1 while it does not answer."""
    try:
        return scrape(port).get(name, 0.0)
    except OSError:
        return -1.0


def start_ingest(
    stack: LocalStack, workers: int = 1, *, slot: int = 0, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    """Start `gridwatch ingest` and wait until every worker is subscribed; (process, metrics port)."""
    port = free_ports(workers) - slot  # worker `slot + i` serves on port + slot + i
    proc = stack.start_ingest(workers, metrics_port=port, slot=slot, env=env)
    port += slot
    ports = [port + i for i in range(workers)]
    wait_until(
        lambda: all(metric(p, "gridwatch_ingest_mqtt_connected") == 1 for p in ports),
        what="the ingest to subscribe",
    )
    return proc, port


def scalar(dsn: str, query: str, params: tuple[object, ...] = ()) -> object:
    """The first column of the first row of a query."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
    assert row is not None
    return row[0]


def rows(dsn: str, query: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query, params).fetchall()  # type: ignore[arg-type]


class Node:
    """A real MQTT v5 client logged in as an edge node; records the broker's answer to each publish."""

    def __init__(
        self,
        stack: LocalStack,
        creds: NodeCredentials,
        *,
        password: str | None = None,
        will: Callable[[Node], m.NodeDeath] | None = None,
        port: int | None = None,
    ):
        """`port`: the edge listener of another broker than the stack's (a district's)."""
        self.creds = creds
        settings = MqttSettings(
            port=port or stack.ports.edge, username=creds.node, password=password or creds.secret
        )
        self.client, self.watch = new_client(creds.node, settings)
        self.acks: dict[int, ReasonCode] = {}
        self.subacks: list[ReasonCode] = []
        self.received: list[mqtt.MQTTMessage] = []
        self._lock = threading.Lock()
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = lambda c, u, msg: self.received.append(msg)
        self.seq = 0
        self.sent: dict[int, tuple[str, bytes, bool]] = {}
        if will is not None:
            death = will(self)
            self.client.will_set(
                topic_for(creds, death), codec.encode(death), qos=QOS_AT_LEAST_ONCE
            )
        connect_async(self.client, settings, clean_start=True)

    def _on_publish(
        self, client: object, userdata: object, mid: int, reason: ReasonCode, props: object
    ) -> None:
        with self._lock:
            self.acks[mid] = reason

    def _on_subscribe(
        self, client: object, userdata: object, mid: int, reasons: list[ReasonCode], props: object
    ) -> None:
        self.subacks.extend(reasons)

    def wait_connected(self, timeout_s: float = 10) -> Node:
        if not self.watch.connected.wait(timeout_s):
            raise AssertionError(f"{self.creds.node} could not connect: {self.watch.last_reason}")
        return self

    def publish_raw(self, topic: str, payload: bytes, *, retain: bool = False) -> int:
        info = self.client.publish(topic, payload, qos=QOS_AT_LEAST_ONCE, retain=retain)
        self.sent[info.mid] = (topic, payload, retain)
        return info.mid

    def send(self, message: m.Message, *, retain: bool = False) -> int:
        """Publish a message on the topic the contract gives it."""
        return self.publish_raw(
            topic_for(self.creds, message), codec.encode(message), retain=retain
        )

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def wait_acked(self, mids: list[int], timeout_s: float = 30) -> dict[int, ReasonCode]:
        wait_until(lambda: all(mid in self.acks for mid in mids), timeout_s, "PUBACKs")
        return {mid: self.acks[mid] for mid in mids}

    def deliver(self, mids: list[int], timeout_s: float = 60) -> None:
        """Wait until each message is delivered, sending again what the broker gave to no one.

        This is what an edge outbox does: a message leaves it only on a PUBACK that means delivered.
        """
        deadline = time.monotonic() + timeout_s
        pending = list(mids)
        while pending:
            answers = self.wait_acked(pending, max(1.0, deadline - time.monotonic()))
            refused = [
                mid for mid, r in answers.items() if publish_outcome(r) is PublishOutcome.REFUSED
            ]
            assert not refused, f"broker refused {len(refused)} messages: {answers[refused[0]]}"
            retry = [
                mid for mid, r in answers.items() if publish_outcome(r) is PublishOutcome.RETRY
            ]
            if retry:
                time.sleep(0.2)
            pending = [self._resend(mid) for mid in retry]

    def _resend(self, mid: int) -> int:
        topic, payload, retain = self.sent[mid]
        return self.publish_raw(topic, payload, retain=retain)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def topic_for(creds: NodeCredentials, message: m.Message) -> str:
    """The topic a node publishes `message` on."""
    return codec.topic_for(creds.site, creds.node, message)


def device_of(creds: NodeCredentials, kind: str) -> str:
    """The first device of this kind at the node."""
    return next(d for d, k in creds.devices if k == kind)


def occupancy(node: Node, count: int = 5) -> m.Occupancy:
    """A valid occupancy reading from the node's counter."""
    return m.Occupancy(
        **envelope(node),
        device=device_of(node.creds, "counter"),
        zone="main",
        count=count,
        entered=1,
        exited=0,
    )


def birth(node: Node, bdseq: int) -> m.NodeBirth:
    devices = tuple(m.DeviceInfo(id=d, kind=m.DeviceKind(k)) for d, k in node.creds.devices)
    return m.NodeBirth(**envelope(node), bdseq=bdseq, devices=devices, software="test")


def envelope(node: Node) -> m.EnvelopeFields:
    """Fresh envelope fields for the node's next message."""
    return m.envelope(node.next_seq())


def needs_own_server(server: LocalPostgres) -> None:
    """Skip a test that stops, kills or reconfigures the server when the suite runs on an
    external one (GRIDWATCH_TEST_DATABASE_URL): that server is not the tests' to stop."""
    if isinstance(server, ExternalPostgres):
        pytest.skip("stops or reconfigures PostgreSQL itself: only on the tests' own server")


def needs_timescale(dsn: str) -> None:
    """Skip a test of TimescaleDB behaviour when the database was migrated for plain PostgreSQL
    (CI has no TimescaleDB; GRIDWATCH_PG_BIN or GRIDWATCH_TEST_DATABASE_URL can point at one)."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT backend FROM schema_migrations LIMIT 1").fetchone()
    if row is None or row[0] != "timescale":
        pytest.skip(
            "needs TimescaleDB: this server lacks the extension (set GRIDWATCH_PG_BIN to a build "
            "with timescaledb preloaded, or GRIDWATCH_TEST_DATABASE_URL to such a server)"
        )
