"""The ingest against real Mosquitto and PostgreSQL: stored once, rejected with a reason, never lost."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from gateway import codec, topics
from gateway import messages as m
from gateway.codec import RejectReason
from gridwatch.bench.loadgen import make_message
from gridwatch.demo import NodeCredentials
from gridwatch.local.stack import LocalStack
from ingest.writer import COLUMNS
from tests.support import (
    Node,
    birth,
    device_of,
    envelope,
    metric,
    needs_own_server,
    occupancy,
    rows,
    scalar,
    start_ingest,
    stop_process,
    wait_until,
)

SERIES = [*COLUMNS, "presence_events"]


def total_stored(dsn: str) -> tuple[int, int]:
    """(rows, distinct ids) over every time-series table."""
    union = " UNION ALL ".join(f"SELECT id FROM {t}" for t in SERIES)
    got = rows(dsn, f"SELECT count(*), count(DISTINCT id) FROM ({union}) s")[0]
    return int(str(got[0])), int(str(got[1]))


def wait_stored(dsn: str, expected: int, timeout_s: float = 60) -> None:
    try:
        wait_until(lambda: total_stored(dsn)[0] >= expected, timeout_s, f"{expected} stored rows")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; stored (rows, ids): {total_stored(dsn)}") from None
    time.sleep(0.3)  # anything extra (a duplicate) would arrive now
    assert total_stored(dsn) == (expected, expected)


def rejections(dsn: str) -> dict[str, int]:
    got = rows(dsn, "SELECT reason, sum(occurrences) FROM rejected_messages GROUP BY reason")
    return {str(r): int(str(n)) for r, n in got}


@pytest.fixture
def node(stack: LocalStack, nodes: list[NodeCredentials]) -> Iterator[Node]:
    n = Node(stack, nodes[0]).wait_connected()
    yield n
    n.close()


def every_kind(node: Node) -> list[m.Message]:
    """One valid message of each device event type, plus a command result."""
    rng = random.Random(7)
    kinds = ["door.access", "door.forced", "door.held_open", "door.state", "occupancy",
             "camera.alert", "camera.snapshot", "camera.status", "speaker.status",
             "command.result"]  # fmt: skip
    device_kind = {"door": "door", "occupancy": "counter", "camera": "camera"}
    out: list[m.Message] = []
    for kind in kinds:
        dk = device_kind.get(kind.split(".")[0], "speaker")
        out.append(make_message(rng, kind, device_of(node.creds, dk), node.next_seq(), m.now()))
    return out


def test_every_message_type_is_stored_once(stack: LocalStack, node: Node, ingest: object) -> None:
    messages = [birth(node, bdseq=1), *every_kind(node)]
    payloads = [(node.send(msg), msg) for msg in messages]
    node.wait_acked([mid for mid, _ in payloads])
    wait_stored(stack.dsn, len(messages))
    for msg in messages:  # the edge sending its backlog again changes nothing
        node.send(msg)
    time.sleep(1.0)
    assert total_stored(stack.dsn) == (len(messages), len(messages))
    per_table = dict(rows(stack.dsn, "SELECT type, count(*) FROM door_events GROUP BY type"))
    assert per_table == {"door.access": 1, "door.forced": 1, "door.held_open": 1, "door.state": 1}
    for table in (
        "occupancy",
        "camera_alerts",
        "camera_snapshots",
        "camera_status",
        "speaker_status",
        "command_results",
        "presence_events",
    ):
        assert scalar(stack.dsn, f"SELECT count(*) FROM {table}") == 1, table
    assert rejections(stack.dsn) == {}


def test_presence_follows_birth_death_sequence(
    stack: LocalStack, node: Node, ingest: object
) -> None:
    dsn, name = stack.dsn, node.creds.node

    def state() -> tuple[object, ...]:
        return rows(dsn, "SELECT online, bdseq FROM node_presence WHERE node_id = %s", (name,))[0]

    def devices_online() -> set[object]:
        return {r[0] for r in rows(dsn, "SELECT online FROM device_status d JOIN devices USING (id)"
                                        " WHERE node_id = %s", (name,))} if False else {
            r[0] for r in rows(dsn, "SELECT s.online FROM device_status s JOIN devices d"
                                    " ON d.id = s.device_id WHERE d.node_id = %s", (name,))}  # fmt: skip

    node.send(birth(node, bdseq=5))
    wait_until(lambda: bool(rows(dsn, "SELECT 1 FROM node_presence")), what="birth applied")
    assert state() == (True, 5)
    assert devices_online() == {True}

    node.send(m.NodeDeath(**envelope(node), bdseq=4))  # a death from an older connection
    wait_until(lambda: scalar(dsn, "SELECT count(*) FROM presence_events") == 2, what="death")
    assert state() == (True, 5)
    assert scalar(dsn, "SELECT stale FROM presence_events WHERE bdseq = 4") is True

    node.send(m.NodeDeath(**envelope(node), bdseq=5))
    wait_until(lambda: state() == (False, 5), what="node offline")
    assert devices_online() == {False}

    node.send(birth(node, bdseq=6))
    wait_until(lambda: state() == (True, 6), what="node back")
    assert devices_online() == {True}


def test_last_will_marks_node_offline(
    stack: LocalStack, nodes: list[NodeCredentials], ingest: object
) -> None:
    node = Node.__new__(Node)
    creds = nodes[1]
    node = Node(stack, creds, will=lambda n: m.NodeDeath(**envelope(n), bdseq=3))
    node.wait_connected()
    node.send(birth(node, bdseq=3))
    dsn = stack.dsn
    wait_until(lambda: bool(rows(dsn, "SELECT 1 FROM node_presence WHERE online")), what="birth")
    # An MQTT v5 client may leave with its will published, as a dropped connection would.
    node.client.disconnect(
        reasoncode=ReasonCode(PacketTypes.DISCONNECT, "Disconnect with will message")
    )
    wait_until(
        lambda: not rows(dsn, "SELECT 1 FROM node_presence WHERE online"), what="will applied"
    )
    node.client.loop_stop()


def test_last_seen_and_latest_state(stack: LocalStack, node: Node, ingest: object) -> None:
    older, newer = occupancy(node, count=3), occupancy(node, count=9)
    node.wait_acked([node.send(newer), node.send(older)])  # out of order, as a backlog can be
    wait_stored(stack.dsn, 2)
    payload, seen = rows(
        stack.dsn,
        "SELECT l.payload, s.last_seen FROM device_latest l JOIN device_status s USING (device_id)"
        " WHERE device_id = %s AND type = 'occupancy'",
        (newer.device,),
    )[0]
    assert isinstance(payload, dict) and payload["count"] == 9
    assert seen == newer.ts


def test_spoofed_and_unknown_devices_are_rejected(
    stack: LocalStack, node: Node, nodes: list[NodeCredentials], ingest: object
) -> None:
    other_counter = device_of(nodes[1], "counter")
    spoof = m.Occupancy(
        **envelope(node), device=other_counter, zone="main", count=1, entered=1, exited=0
    )
    unknown = m.Occupancy(
        **envelope(node), device="nobody-counter9", zone="main", count=1, entered=1, exited=0
    )
    greedy = m.NodeBirth(
        **envelope(node), bdseq=1,
        devices=(m.DeviceInfo(id=other_counter, kind=m.DeviceKind.COUNTER),),
    )  # fmt: skip
    good = occupancy(node)
    node.wait_acked([node.send(msg) for msg in (spoof, unknown, greedy, good)])
    wait_stored(stack.dsn, 1)
    wait_until(lambda: sum(rejections(stack.dsn).values()) == 3, what="3 rejections")
    assert rejections(stack.dsn) == {"foreign_device": 2, "unknown_device": 1}
    assert (
        scalar(stack.dsn, "SELECT count(*) FROM occupancy WHERE device_id = %s", (other_counter,))
        == 0
    )
    stored_raw = rows(
        stack.dsn, "SELECT payload, node_id FROM rejected_messages WHERE reason = 'unknown_device'"
    )
    assert stored_raw == [(codec.encode(unknown), node.creds.node)]


def test_bad_messages_mixed_in_do_not_disturb_good_ones(
    stack: LocalStack, node: Node, ingest: object
) -> None:
    site, name = node.creds.site, node.creds.node
    counter = device_of(node.creds, "counter")
    evt = topics.event(site, name, counter, "occupancy")
    good_payload = codec.encode(occupancy(node))
    bad: list[tuple[str, bytes, RejectReason]] = [
        (evt, b"{not json", RejectReason.NOT_JSON),
        (evt, b'{"type": "occupancy", "v": 1}', RejectReason.SCHEMA),
        (evt, json.dumps({"type": "gossip", "v": 1}).encode(), RejectReason.UNKNOWN_TYPE),
        (evt, good_payload.replace(b'"v":1', b'"v":9'), RejectReason.UNSUPPORTED_VERSION),
        (evt, b"x" * 100_000, RejectReason.OVERSIZED),
        (
            topics.event(site, name, counter, "door.state"),
            codec.encode(occupancy(node)),
            RejectReason.TOPIC_MISMATCH,
        ),
        (evt, b"\x00\xff binary \x00", RejectReason.NOT_JSON),
    ]
    mids: list[int] = []
    good = 0
    for i in range(70):
        if i % 10 == 5:
            topic, payload, _ = bad[(i // 10) % len(bad)]
            mids.append(node.publish_raw(topic, payload))
        else:
            mids.append(node.send(occupancy(node, count=i)))
            good += 1
    mids.append(node.publish_raw(bad[0][0], bad[0][1]))  # the same bad bytes again
    assert not any(r.is_failure for r in node.wait_acked(mids).values())
    wait_stored(stack.dsn, good)
    wait_until(lambda: sum(rejections(stack.dsn).values()) == len(bad) + 1, what="rejections")
    by_reason = rejections(stack.dsn)
    assert by_reason == {r.value: 1 for _, _, r in bad} | {"not_json": 3}
    repeated = rows(stack.dsn, "SELECT occurrences, payload_size, length(payload), detail"
                               " FROM rejected_messages WHERE payload = %s", (b"{not json",))  # fmt: skip
    assert repeated[0][:3] == (2, 9, 9) and "JSON" in str(repeated[0][3])
    big = rows(
        stack.dsn,
        "SELECT payload_size, length(payload) FROM rejected_messages WHERE reason = 'oversized'",
    )
    assert big == [(100_000, 4096)]  # the raw bytes are kept, capped


def test_worker_killed_before_commit_stores_each_message_once(
    stack: LocalStack, node: Node
) -> None:
    worker, port = start_ingest(stack)
    n = 300
    with psycopg.connect(stack.dsn) as blocker:
        # Hold the table so the worker receives the messages but cannot commit them.
        blocker.execute("LOCK TABLE occupancy IN ACCESS EXCLUSIVE MODE")
        node.wait_acked([node.send(occupancy(node, count=i)) for i in range(n)])
        wait_until(lambda: metric(port, "gridwatch_ingest_received_total") >= n, what="received")
        assert metric(port, "gridwatch_ingest_acked_total") == 0
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    worker, _ = start_ingest(stack)
    try:
        wait_stored(stack.dsn, n)
        counts = rows(
            stack.dsn, "SELECT count(*), count(DISTINCT seq), min(count), max(count) FROM occupancy"
        )
        assert counts == [(n, n, 0, n - 1)]
    finally:
        stop_process(worker)


def _stream(node: Node, total: int, per_s: float) -> tuple[threading.Thread, list[int]]:
    """Publish `total` readings at a steady rate from a background thread."""
    mids: list[int] = []

    def run() -> None:
        for i in range(total):  # counts a counter could make (see ingest/plausible.py)
            mids.append(node.send(occupancy(node, count=i % 100)))
            time.sleep(1 / per_s)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, mids


def _restart_broker(stack: LocalStack) -> None:
    assert stack.broker is not None
    stack.broker.stop()
    time.sleep(1.0)  # traffic keeps coming meanwhile: the publisher queues it
    stack.broker.start()


def _stop_start_database(stack: LocalStack) -> None:
    stack.postgres.stop()
    time.sleep(1.5)
    stack.postgres.start()


def _kill_database(stack: LocalStack) -> None:
    stack.postgres.kill()
    time.sleep(1.5)
    stack.postgres.start()  # crash recovery: what was committed is there, nothing else


@pytest.mark.parametrize(
    "outage", [_restart_broker, _stop_start_database, _kill_database],
    ids=["broker-restart", "database-restart", "database-crash"],
)  # fmt: skip
def test_outage_mid_stream_loses_and_doubles_nothing(
    stack: LocalStack,
    node: Node,
    ingest: subprocess.Popen[bytes],
    outage: Callable[[LocalStack], Any],
) -> None:
    if outage is not _restart_broker:
        needs_own_server(stack.postgres)
    total = 1500
    thread, mids = _stream(node, total, per_s=500)
    wait_until(lambda: len(mids) > total // 3, what="stream under way")
    outage(stack)
    thread.join(30)
    node.wait_connected(30)
    node.deliver(mids)
    wait_stored(stack.dsn, total, timeout_s=30)
    assert scalar(stack.dsn, "SELECT count(DISTINCT seq) FROM occupancy") == total
    assert ingest.poll() is None, "the ingest must ride out the outage"


def test_two_workers_share_the_load(stack: LocalStack, node: Node) -> None:
    workers, port = start_ingest(stack, 2)
    try:
        n = 2000
        node.wait_acked([node.send(occupancy(node, count=i % 50)) for i in range(n)])
        wait_stored(stack.dsn, n)
        shares = [metric(p, "gridwatch_ingest_acked_total") for p in (port, port + 1)]
        assert sum(shares) == n and min(shares) > 0, shares
    finally:
        stop_process(workers)


def test_clean_shutdown_mid_stream_acknowledges_only_what_is_committed(
    stack: LocalStack, node: Node
) -> None:
    worker, _ = start_ingest(stack)
    total = 1500
    thread, mids = _stream(node, total, per_s=600)
    wait_until(lambda: len(mids) > total // 3, what="stream under way")
    stop_process(worker)  # SIGTERM: finish the batch, commit, acknowledge, disconnect
    assert worker.returncode == 0
    worker, _ = start_ingest(stack)  # the broker queued the rest for the worker's session
    try:
        thread.join(30)
        node.deliver(mids)
        wait_stored(stack.dsn, total)
    finally:
        stop_process(worker)


def test_a_device_that_says_it_is_down_stays_down_until_it_reports_itself(
    stack: LocalStack, node: Node, ingest: object
) -> None:
    """A camera's stream down (camera.status) makes it offline; a command result the node sends
    for it afterwards is no sign of life; its own next report is."""
    dsn = stack.dsn
    camera = device_of(node.creds, "camera")

    def online() -> object:
        return scalar(dsn, "SELECT online FROM device_status WHERE device_id = %s", (camera,))

    node.send(birth(node, bdseq=1))
    node.send(
        m.CameraStatus(**envelope(node), device=camera, online=False, fps=0.0, detail="no stream")
    )
    wait_until(lambda: scalar(dsn, "SELECT count(*) FROM camera_status") == 1, what="the status")
    wait_until(lambda: online() is False, what="the camera offline")
    node.send(m.CommandResult(**envelope(node), device=camera, command_id=uuid.uuid4(),
                              status=m.CommandStatus.FAILED, detail="camera not answering"))  # fmt: skip
    wait_until(lambda: scalar(dsn, "SELECT count(*) FROM command_results") == 1, what="the result")
    assert online() is False
    timer = "SELECT count(*) FROM timers WHERE key = %s"
    assert (
        scalar(dsn, timer, (f"device_offline:{camera}",)) == 1
    )  # still counting towards an incident
    node.send(m.CameraStatus(**envelope(node), device=camera, online=True, fps=5.0))
    wait_until(lambda: online() is True, what="the camera back")
    wait_until(
        lambda: scalar(dsn, timer, (f"device_offline:{camera}",)) == 0, what="the timer cancelled"
    )


def test_backlog_counts_what_waits_during_a_database_outage(stack: LocalStack, node: Node) -> None:
    needs_own_server(stack.postgres)
    worker, port = start_ingest(stack)
    try:
        node.deliver([node.send(occupancy(node, count=i)) for i in range(10)])
        wait_stored(stack.dsn, 10)
        committed = metric(port, "gridwatch_ingest_last_commit_timestamp_seconds")
        assert committed > 0
        stack.postgres.stop()
        try:
            n = 0
            for wave in (100, 300):  # the second arrives while the first is being retried
                node.deliver([node.send(occupancy(node, count=i)) for i in range(wave)])
                n += wave
                wait_until(lambda n=n: metric(port, "gridwatch_ingest_received_total") >= 10 + n,
                           what="received")  # fmt: skip
                time.sleep(0.5)
            # Every message received since the outage waits in the worker, and the gauge says so.
            assert metric(port, "gridwatch_ingest_backlog") == n
            assert metric(port, "gridwatch_ingest_acked_total") == 10
            assert metric(port, "gridwatch_ingest_last_commit_timestamp_seconds") == committed
        finally:
            stack.postgres.start()
        wait_stored(stack.dsn, 10 + n)
        wait_until(lambda: metric(port, "gridwatch_ingest_backlog") == 0, what="backlog drained")
        assert metric(port, "gridwatch_ingest_last_commit_timestamp_seconds") > committed
    finally:
        stop_process(worker)


FAST_HEARTBEAT = {"GRIDWATCH_HEARTBEAT_S": "0.5", "GRIDWATCH_SLOT_STALE_S": "2"}


def worker_pids(dsn: str) -> dict[int, int]:
    """slot -> pid of the worker that last recorded a heartbeat for it."""
    return {int(str(s)): int(str(p)) for s, p in rows(dsn, "SELECT slot, pid FROM ingest_workers")}


def test_a_killed_worker_is_restarted(stack: LocalStack, node: Node) -> None:
    workers, port = start_ingest(stack, 2, env=FAST_HEARTBEAT)
    try:
        wait_until(lambda: len(worker_pids(stack.dsn)) == 2, what="both heartbeats")
        killed = worker_pids(stack.dsn)[1]
        os.kill(killed, signal.SIGKILL)
        wait_until(lambda: worker_pids(stack.dsn)[1] != killed, 30, "slot 1 to come back")
        wait_until(lambda: metric(port + 1, "gridwatch_ingest_mqtt_connected") == 1, 30,
                   "slot 1 to subscribe again")  # fmt: skip
        n = 1000
        node.deliver([node.send(occupancy(node, count=i % 50)) for i in range(n)])
        wait_stored(stack.dsn, n)
        shares = [metric(p, "gridwatch_ingest_acked_total") for p in (port, port + 1)]
        assert min(shares) > 0, shares  # both slots consume again
        assert workers.poll() is None
    finally:
        stop_process(workers)


def test_a_slot_without_a_worker_is_an_alert_until_drained(stack: LocalStack, node: Node) -> None:
    two, _ = start_ingest(stack, 2, env=FAST_HEARTBEAT)
    wait_until(lambda: len(worker_pids(stack.dsn)) == 2, what="both heartbeats")
    stop_process(two)
    one, port = start_ingest(stack, 1, env=FAST_HEARTBEAT)  # slot 1 is left with its session
    try:
        wait_until(lambda: metric(port, "gridwatch_ingest_unconsumed_slots") == 1, 30, "the alert")
        log = (stack.logs / "ingest.log").read_text()
        assert "ingest slot 1 (client id ingest-1" in log and "--slot 1 --drain" in log
        drain = subprocess.run(
            [sys.executable, "-m", "gridwatch.cli", "ingest", "--slot", "1", "--drain"],
            env=stack.service_env("ingest", GRIDWATCH_METRICS_PORT="0", GRIDWATCH_LEADER="false"),
            capture_output=True, timeout=60, check=False,
        )  # fmt: skip
        assert drain.returncode == 0, drain.stderr.decode()[-2000:]
        wait_until(lambda: metric(port, "gridwatch_ingest_unconsumed_slots") == 0, 30, "all clear")
        # The drained slot's session is gone: nothing is queued for it any more.
        n = 300
        node.deliver([node.send(occupancy(node, count=i % 50)) for i in range(n)])
        wait_stored(stack.dsn, n)
    finally:
        stop_process(one)


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_workers_stop_when_their_supervisor_is_killed(stack: LocalStack) -> None:
    parent, _ = start_ingest(stack, 2, env=FAST_HEARTBEAT)
    wait_until(lambda: len(worker_pids(stack.dsn)) == 2, what="both heartbeats")
    children = list(worker_pids(stack.dsn).values())
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    # Left running, they would fight the next supervisor's workers for their slots' sessions.
    wait_until(lambda: not any(map(_running, children)), 30, "the orphaned workers to stop")


def _listening_addresses(port: int) -> set[str]:
    """The local addresses something listens on at `port` (IPv4), read from the kernel."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
            found.add(".".join(str(int(address[i : i + 2], 16)) for i in (6, 4, 2, 0)))
    return found


def test_metrics_listen_on_loopback_by_default(stack: LocalStack) -> None:
    proc, port = start_ingest(stack)
    try:
        assert _listening_addresses(port) == {"127.0.0.1"}
    finally:
        stop_process(proc)


def test_an_implausible_reading_is_rejected_with_its_reason(
    stack: LocalStack, node: Node, ingest: object
) -> None:
    """A counter saying a million people are inside a 100-person venue is not believed: no
    incident (nor an emergency a rule might propose), and the reason is kept."""
    capacity = scalar(stack.dsn, "SELECT capacity FROM venues WHERE id = %s", (node.creds.site,))
    mids = [node.send(birth(node, bdseq=1)), node.send(occupancy(node, count=1_000_000)),
            node.send(occupancy(node, count=int(str(capacity)) * 2))]  # fmt: skip
    node.deliver(mids)
    wait_until(lambda: rejections(stack.dsn) == {"implausible": 1}, 15, "the rejection")
    detail = str(scalar(stack.dsn, "SELECT detail FROM rejected_messages"))
    assert "1000000" in detail and f"5x its capacity of {capacity}" in detail
    wait_until(lambda: scalar(stack.dsn, "SELECT count(*) FROM occupancy") == 1, 15, "stored")
    assert scalar(stack.dsn, "SELECT count FROM occupancy") == int(str(capacity)) * 2
