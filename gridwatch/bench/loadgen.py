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
from datetime import time as dt_time
from zoneinfo import ZoneInfo

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
# A typhoon (../shared/DOMAIN.md: "normal to emergency"): every venue alarms at once. A tenth of
# the messages are alarms, and counters swing each venue over its capacity and back under, so
# capacity incidents open and clear all the time.
_STORM: list[tuple[str, int]] = [
    ("occupancy", 4000),
    ("door.access", 2400),
    ("door.state", 1500),
    ("speaker.status", 700),
    ("command.result", 400),
    ("camera.alert", 400),
    ("door.held_open", 250),
    ("door.forced", 350),
]
MIXES = {"city": _MIX, "storm": _STORM}
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


def make_message(
    rng: random.Random, kind: str, device: str, seq: int, ts: datetime, capacity: int = 0
) -> m.Message:
    """One valid message of `kind` for `device`. With a `capacity`, occupancy swings between
    empty and 1.6 times that (over, far over and back under); without, it stays within any
    demo venue's."""
    env = m.envelope(seq, id=uuid.UUID(int=rng.getrandbits(128), version=4), ts=ts)
    match kind:
        case "occupancy":
            n = rng.randint(0, capacity * 8 // 5) if capacity else rng.randint(0, 12)
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


DEMO_ZONE = ZoneInfo("Asia/Shanghai")  # the demo city's venues, open 08:30-20:30 there


def open_hours_start(now: datetime | None = None) -> datetime:
    """When a backlog's readings begin: an hour ago, moved back to midday of the demo city's
    last open day when an hour ago its venues were closed. Counters report people in the
    venues, and in a closed venue every such reading is an incident (inside_when_closed): a
    backlog dated by the clock alone made night runs far heavier than day runs."""
    start = (now or datetime.now(UTC)) - timedelta(hours=1)
    local = start.astimezone(DEMO_ZONE)
    if 9 <= local.hour < 20:
        return start
    day = local.date() - timedelta(days=1 if local.hour < 9 else 0)
    return datetime.combine(day, dt_time(12, 0), DEMO_ZONE).astimezone(UTC)


def plan(creds: list[NodeCredentials], total: int, seed: int = 1, mix: str = "city") -> list[Plan]:
    """Spread `total` messages of `mix` (city or storm) over every node's devices, with per-node
    sequence numbers."""
    rng = random.Random(seed)
    kinds = [k for k, _ in MIXES[mix]]
    weights = [w for _, w in MIXES[mix]]
    storm = mix == "storm"
    per_node: dict[str, list[tuple[str, bytes]]] = {c.node: [] for c in creds}
    seqs = dict.fromkeys(per_node, 0)

    start = open_hours_start()
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
        ts = start + timedelta(milliseconds=i)
        msg = make_message(rng, kind, device, seqs[node.node], ts, node.capacity if storm else 0)
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


LIVE_SEQ_BASE = 10_000_000  # live messages follow any backlog in each node's sequence


def publish_paced(
    creds: list[NodeCredentials], mix: str, rate: float, duration_s: float, broker: MqttSettings,
    seed: int = 2,
) -> int:  # fmt: skip
    """Publish `mix` at `rate` messages a second for `duration_s`, each stamped when it is
    sent, spread over the nodes of `creds`; how many were acknowledged."""
    rng = random.Random(seed)
    kinds = [k for k, _ in MIXES[mix]]
    weights = [w for _, w in MIXES[mix]]
    storm = mix == "storm"
    clients = []
    acked = 0
    lock = threading.Lock()

    def on_publish(*_args: object) -> None:
        nonlocal acked
        with lock:
            acked += 1

    for c in creds:
        settings = broker.as_account(c.node, c.secret)
        client, watch = new_client(c.node, settings, max_inflight=1000)
        client.on_publish = on_publish
        connect_async(client, settings, clean_start=True)
        if not watch.connected.wait(10):
            raise RuntimeError(f"node {c.node} could not connect: {watch.last_reason}")
        clients.append(client)
    by_kind = [
        {kind: [d for d, k in c.devices if k == kind] for kind in set(_KIND_FOR.values())}
        for c in creds
    ]
    seqs = [LIVE_SEQ_BASE] * len(creds)
    sent = 0
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < duration_s:
        while sent < rate * elapsed:
            i = rng.randrange(len(creds))
            node, kind = creds[i], rng.choices(kinds, weights)[0]
            device = rng.choice(by_kind[i][_KIND_FOR[kind]] or [d for d, _ in node.devices])
            seqs[i] += 1
            now = datetime.now(UTC)
            msg = make_message(rng, kind, device, seqs[i], now, node.capacity if storm else 0)
            clients[i].publish(
                codec.topic_for(node.site, node.node, msg), codec.encode(msg),
                qos=QOS_AT_LEAST_ONCE,
            )  # fmt: skip
            sent += 1
        time.sleep(0.005)
    deadline = time.monotonic() + 30
    while acked < sent and time.monotonic() < deadline:
        time.sleep(0.05)
    for client in clients:
        client.disconnect()
        client.loop_stop()
    return acked


def publish_paced_parallel(
    creds: list[NodeCredentials], mix: str, rate: float, duration_s: float, broker: MqttSettings,
    processes: int = 2,
) -> int:  # fmt: skip
    """`publish_paced` from several processes, each with its share of nodes and of the rate."""
    shares = [s for s in (creds[i::processes] for i in range(processes)) if s]
    ctx = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=len(shares), mp_context=ctx) as pool:
        counts = pool.map(
            publish_paced, shares, [mix] * len(shares), [rate / len(shares)] * len(shares),
            [duration_s] * len(shares), [broker] * len(shares), range(100, 100 + len(shares)),
        )  # fmt: skip
        return sum(counts)
