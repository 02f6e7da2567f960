"""Load generation for benchmarks: mixed, valid messages published by many node accounts."""

from __future__ import annotations

import logging
import multiprocessing
import random
import threading
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

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
from gateway.contract_doc import TINY_JPEG
from gridwatch.demo import NodeCredentials

log = logging.getLogger(__name__)

# Mix of a venue's steady traffic, in messages per 10,000: counters and doors dominate; alarms
# (forced and held doors, camera alerts) are rare, as they are in a city (../shared/DOMAIN.md:
# thousands of grid events a year against hundreds of messages a second). Each alarm still opens
# an incident and a task, so the figure includes that work.
_MIX: list[tuple[str, int]] = [
    ("occupancy", 4000),
    ("door.access", 2800),
    ("door.state", 1500),
    ("speaker.status", 1000),
    ("command.result", 650),
    ("camera.alert", 40),
    ("door.held_open", 5),
    ("door.forced", 5),
]
_KIND_FOR = {
    "occupancy": "counter",
    "door.access": "door",
    "door.state": "door",
    "door.held_open": "door",
    "door.forced": "door",
    "speaker.status": "speaker",
    "camera.alert": "camera",
    "command.result": "speaker",
}


def make_message(rng: random.Random, kind: str, device: str, seq: int, ts: datetime) -> m.Message:
    """One valid message of `kind` for `device`."""
    env = m.envelope(seq, id=uuid.UUID(int=rng.getrandbits(128), version=4), ts=ts)
    match kind:
        case "occupancy":  # within every demo venue's capacity: no capacity alarms
            n = rng.randint(0, 12)
            return m.Occupancy(
                **env,
                device=device,
                zone="main",
                count=n,
                entered=rng.randint(0, 5),
                exited=rng.randint(0, 5),
            )
        case "door.access":
            granted = rng.random() < 0.9
            return m.DoorAccess(
                **env,
                device=device,
                result=m.AccessResult.GRANTED if granted else m.AccessResult.DENIED,
                credential=f"{rng.getrandbits(256):064x}",
                direction=rng.choice(list(m.Direction)),
                reason=None if granted else m.DenyReason.UNKNOWN_CREDENTIAL,
            )
        case "door.state":
            return m.DoorState(
                **env, device=device, open=rng.random() < 0.2, locked=rng.random() < 0.7
            )
        case "door.held_open":
            return m.DoorHeldOpen(**env, device=device, open_s=rng.uniform(60, 600))
        case "door.forced":
            return m.DoorForced(**env, device=device)
        case "speaker.status":
            return m.SpeakerStatus(
                **env,
                device=device,
                online=True,
                volume=rng.randint(0, 100),
                playing=rng.random() < 0.1,
            )
        case "camera.alert":
            return m.CameraAlert(
                **env,
                device=device,
                alert_id=uuid.UUID(int=rng.getrandbits(128), version=4),
                phase=rng.choice(list(m.AlertPhase)),
                kind=rng.choice(list(m.CameraAlertKind)),
                zone="entrance",
                score=round(rng.random(), 3),
            )
        case "camera.snapshot":
            return m.CameraSnapshot(
                **env,
                device=device,
                alert_id=uuid.UUID(int=rng.getrandbits(128), version=4),
                width=16,
                height=16,
                jpeg=TINY_JPEG,
            )
        case "camera.status":
            return m.CameraStatus(**env, device=device, online=True, fps=5.0)
        case "command.result":
            return m.CommandResult(
                **env,
                device=device,
                command_id=uuid.UUID(int=rng.getrandbits(128), version=4),
                status=m.CommandStatus.DONE,
            )
    raise ValueError(f"unknown message kind {kind!r}")


@dataclass(frozen=True, slots=True)
class Plan:
    """Pre-encoded messages per node: (topic, payload) in publishing order."""

    node: NodeCredentials
    messages: list[tuple[str, bytes]]


def plan(creds: list[NodeCredentials], total: int, seed: int = 1) -> list[Plan]:
    """Spread `total` mixed messages over every node's devices, with per-node sequence numbers."""
    rng = random.Random(seed)
    kinds = [k for k, _ in _MIX]
    weights = [w for _, w in _MIX]
    per_node: dict[str, list[tuple[str, bytes]]] = {c.node: [] for c in creds}
    seqs = dict.fromkeys(per_node, 0)
    start = datetime.now(UTC) - timedelta(hours=1)
    by_kind = {
        c.node: {kind: [d for d, k in c.devices if k == kind] for kind in set(_KIND_FOR.values())}
        for c in creds
    }
    for i in range(total):
        node = creds[i % len(creds)]
        kind = rng.choices(kinds, weights)[0]
        candidates = by_kind[node.node][_KIND_FOR[kind]] or [d for d, _ in node.devices]
        device = rng.choice(candidates)
        seqs[node.node] += 1
        msg = make_message(rng, kind, device, seqs[node.node], start + timedelta(milliseconds=i))
        topic = codec.topic_for(node.site, node.node, msg)
        per_node[node.node].append((topic, codec.encode(msg)))
    return [Plan(c, per_node[c.node]) for c in creds]


def publish(plans: list[Plan], broker: MqttSettings, timeout_s: float = 600) -> int:
    """Publish every planned message at QoS 1 and wait for the broker's acknowledgements."""
    acked = 0
    lock = threading.Lock()
    done = threading.Event()
    expected = sum(len(p.messages) for p in plans)

    undelivered: list[str] = []

    def on_publish(
        client: object, userdata: object, mid: int, reason: ReasonCode, props: object
    ) -> None:
        nonlocal acked
        with lock:
            acked += 1
            if publish_outcome(reason) is not PublishOutcome.DELIVERED:
                undelivered.append(str(reason))
            if acked >= expected:
                done.set()

    clients = []
    for p in plans:
        settings = broker.as_account(p.node.node, p.node.secret)
        client, watch = new_client(p.node.node, settings, max_inflight=1000)
        client.on_publish = on_publish
        connect_async(client, settings, clean_start=True)
        if not watch.connected.wait(10):
            raise RuntimeError(f"node {p.node.node} could not connect: {watch.last_reason}")
        clients.append(client)
    longest = max((len(p.messages) for p in plans), default=0)
    for i in range(longest):  # interleave nodes, as a fleet does
        for client, p in zip(clients, plans, strict=True):
            if i < len(p.messages):
                topic, payload = p.messages[i]
                client.publish(topic, payload, qos=QOS_AT_LEAST_ONCE)
    if expected and not done.wait(timeout_s):
        raise RuntimeError(f"only {acked} of {expected} messages acknowledged by the broker")
    if undelivered:
        # The ingest sessions exist before the backlog is loaded, so every message has a taker.
        raise RuntimeError(f"{len(undelivered)} messages not delivered, e.g. {undelivered[0]}")
    for client in clients:
        client.disconnect()
        client.loop_stop()
    return acked


def publish_parallel(
    plans: list[Plan], broker: MqttSettings, processes: int = 2
) -> tuple[int, float]:
    """Publish from several processes (paho is CPU-bound); returns (acknowledged, seconds)."""
    shares = [share for share in (plans[i::processes] for i in range(processes)) if share]
    started = time.perf_counter()
    ctx = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=len(shares), mp_context=ctx) as pool:
        total = sum(pool.map(publish, shares, [broker] * len(shares)))
    return total, time.perf_counter() - started
