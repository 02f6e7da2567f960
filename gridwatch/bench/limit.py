"""The broker's own limit beside `bench ingest`: bare MQTT v5 subscribers that only acknowledge.

They join a shared-subscription group of their own, so the broker queues every message of the
backlog once for them and once for the ingest. Draining their copy with as many subscribers
(one process each, as the ingest runs one process per worker) gives the rate the broker can hand
out on this machine, which the ingest's rate is measured against (`ratio`).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Sequence
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any

from paho.mqtt import client as mqtt
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateway import topics
from gateway.client import (
    QOS_AT_LEAST_ONCE,
    MqttSettings,
    connect_async,
    connect_properties,
    new_client,
)
from ingest.settings import IngestSettings

SESSION_EXPIRY_S = 3600


def _client_id(group: str, i: int) -> str:
    return f"bare-{group[-8:]}-{i}"


def _filters(group: str) -> list[str]:
    return topics.ingest_subscriptions(group)[0]


def _receive_maximum() -> int:
    """The ingest's own window, so that both sides are handed messages alike."""
    return int(IngestSettings.model_fields["receive_maximum"].default)


def _connect(group: str, i: int, broker: MqttSettings) -> mqtt.Client:
    client, watch = new_client(_client_id(group, i), broker, max_inflight=1000)
    props = connect_properties(
        session_expiry_s=SESSION_EXPIRY_S, receive_maximum=_receive_maximum()
    )
    connect_async(client, broker, clean_start=False, properties=props)
    if not watch.connected.wait(30):
        raise RuntimeError(f"bare subscriber {i} could not connect: {watch.last_reason}")
    return client


def open_sessions(group: str, brokers: Sequence[MqttSettings]) -> None:
    """Create one persistent session per subscriber in `group`, subscribed, then leave them:
    the broker queues what is published meanwhile."""
    for i, broker in enumerate(brokers):
        client = _connect(group, i, broker)
        subscribed = threading.Event()
        client.on_subscribe = lambda *_a, done=subscribed, **_k: done.set()
        opts = SubscribeOptions(qos=QOS_AT_LEAST_ONCE)
        client.subscribe([(f, opts) for f in _filters(group)])
        if not subscribed.wait(30):
            raise RuntimeError(f"bare subscriber {i} was not subscribed")
        client.disconnect()
        client.loop_stop()


def _drain_one(group: str, i: int, broker: MqttSettings, counter: Synchronized[int],
               stop: Any) -> None:  # fmt: skip
    """One subscriber process: acknowledge and count every message, nothing else. It takes
    messages as the ingest does (manual acknowledgement, the same receive window)."""

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        client.ack(msg.mid, msg.qos)
        with counter.get_lock():
            counter.value += 1

    client, _ = new_client(_client_id(group, i), broker, manual_ack=True, max_inflight=1000)
    client.on_message = on_message
    # Session expiry 0 from now on: the session ends with this connection.
    props = connect_properties(session_expiry_s=0, receive_maximum=_receive_maximum())
    connect_async(client, broker, clean_start=False, properties=props)
    stop.wait()
    client.disconnect()
    client.loop_stop()


def drain(group: str, brokers: Sequence[MqttSettings], expected: int,
          stall_s: float = 60.0) -> float:  # fmt: skip
    """Start the subscribers on their queued sessions; seconds until all `expected` messages
    were received."""
    ctx = multiprocessing.get_context("fork")
    counter: Synchronized[int] = ctx.Value("q", 0)
    stop = ctx.Event()
    procs = [
        ctx.Process(target=_drain_one, args=(group, i, b, counter, stop), daemon=True)
        for i, b in enumerate(brokers)
    ]
    started = time.perf_counter()
    for p in procs:
        p.start()
    last, last_progress = 0, time.perf_counter()
    try:
        while (now := counter.value) < expected:
            time.sleep(0.02)
            if now > last:
                last, last_progress = now, time.perf_counter()
            elif time.perf_counter() - last_progress > stall_s:
                raise RuntimeError(f"bare subscribers stalled at {now} of {expected} messages")
        return time.perf_counter() - started
    finally:
        stop.set()
        for p in procs:
            p.join(10)


def tree_cpu_s(root: int) -> float:
    """CPU seconds (user and system) used so far by the living processes of `root`'s tree, as
    /proc tells: a figure that holds when other work shares the machine, unlike a rate."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # ended meanwhile
        fields = text.rpartition(")")[2].split()
        pid = int(stat.parent.name)
        parents[pid] = int(fields[1])
        ticks[pid] = int(fields[11]) + int(fields[12])  # utime, stime
    tree, grown = {root}, True
    while grown:
        more = {pid for pid, ppid in parents.items() if ppid in tree} - tree
        tree |= more
        grown = bool(more)
    return sum(ticks.get(pid, 0) for pid in tree) / os.sysconf("SC_CLK_TCK")
