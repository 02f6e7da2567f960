"""What a node reports is judged by when it happened, stored once per id, and never dated ahead:
a late message cannot rewrite the present, a reused id cannot add a second version, and a clock in
the future cannot freeze a node's presence. Real Mosquitto, ingest and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest

from gateway import messages as m
from gridwatch.demo import NodeCredentials
from gridwatch.local.stack import LocalStack
from tests.support import Node, birth, device_of, envelope, occupancy, rows, scalar, wait_until


@pytest.fixture
def node(stack: LocalStack, nodes: list[NodeCredentials]) -> Iterator[Node]:
    n = Node(stack, nodes[0]).wait_connected()
    yield n
    n.close()


def capacity(dsn: str, node: Node) -> int:
    return int(str(scalar(dsn, "SELECT capacity FROM venues WHERE id = %s", (node.creds.site,))))


def incident(dsn: str, rule: str) -> tuple[object, ...]:
    """(status, task state) of the newest incident of a rule."""
    got = rows(
        dsn,
        """SELECT i.status::text, t.state::text FROM incidents i JOIN tasks t ON t.incident_id = i.id
           WHERE i.rule = %s ORDER BY i.id DESC LIMIT 1""",
        (rule,),
    )
    return got[0] if got else ()


def stored(dsn: str, table: str, n: int) -> None:
    wait_until(lambda: scalar(dsn, f"SELECT count(*) FROM {table}") == n, 20, f"{n} in {table}")


def test_a_late_reading_does_not_clear_a_live_over_capacity_alarm(
    stack: LocalStack, node: Node, ingest: object
) -> None:
    dsn = stack.dsn
    full = occupancy(node, count=2 * capacity(dsn, node))
    node.deliver([node.send(full)])
    wait_until(lambda: incident(dsn, "far_over_capacity") == ("open", "dispatched"), 20,
               "the far-over-capacity incident and its task")  # fmt: skip

    # An hour-old reading of one person, replayed from a backlog after the live one.
    old = m.Occupancy(**{**envelope(node), "ts": full.ts - timedelta(hours=1)}, device=full.device,
                      zone="main", count=1, entered=0, exited=0)  # fmt: skip
    node.deliver([node.send(old)])
    stored(dsn, "occupancy", 2)
    latest = scalar(dsn, "SELECT payload->>'count' FROM device_latest WHERE device_id = %s"
                         " AND type = 'occupancy'", (full.device,))  # fmt: skip
    assert latest == str(full.count)
    assert incident(dsn, "far_over_capacity") == ("open", "dispatched")

    # A current reading of one person does clear it, and closes its task.
    node.deliver([node.send(occupancy(node, count=1))])
    wait_until(lambda: incident(dsn, "far_over_capacity") == ("resolved", "closed"), 20,
               "the incident resolved by the current reading")  # fmt: skip


def test_a_late_door_closed_does_not_clear_a_live_held_open_alarm(
    stack: LocalStack, node: Node, ingest: object
) -> None:
    dsn = stack.dsn
    door = device_of(node.creds, "door")
    held = m.DoorHeldOpen(**envelope(node), device=door, open_s=180)
    node.deliver([node.send(held)])
    wait_until(lambda: incident(dsn, "door_held_open") == ("open", "dispatched"), 20,
               "the held-open incident")  # fmt: skip

    old = m.DoorState(**{**envelope(node), "ts": held.ts - timedelta(hours=1)}, device=door,
                      open=False, locked=True)  # fmt: skip
    node.deliver([node.send(old)])
    stored(dsn, "door_events", 2)
    assert incident(dsn, "door_held_open") == ("open", "dispatched")

    node.deliver([node.send(m.DoorState(**envelope(node), device=door, open=False, locked=True))])
    wait_until(lambda: incident(dsn, "door_held_open") == ("resolved", "closed"), 20,
               "the incident resolved when the door really closed")  # fmt: skip


def test_a_late_online_status_does_not_cancel_an_offline_speaker(
    stack: LocalStack, node: Node
) -> None:
    from tests.support import start_ingest, stop_process

    proc, _ = start_ingest(stack, env={"GRIDWATCH_REGISTRY_REFRESH_S": "1"})
    try:
        dsn = stack.dsn
        speaker = device_of(node.creds, "speaker")
        down = m.SpeakerStatus(**envelope(node), device=speaker, online=False, volume=50,
                               playing=False)  # fmt: skip
        node.deliver([node.send(down)])
        wait_until(lambda: scalar(dsn, "SELECT count(*) FROM timers WHERE key = %s",
                                  (f"device_offline:{speaker}",)) == 1, 20, "the offline timer")  # fmt: skip
        late_up = m.SpeakerStatus(**{**envelope(node), "ts": down.ts - timedelta(minutes=10)},
                                  device=speaker, online=True, volume=50, playing=False)  # fmt: skip
        node.deliver([node.send(late_up)])
        stored(dsn, "speaker_status", 2)
        assert scalar(dsn, "SELECT count(*) FROM timers WHERE key = %s",
                      (f"device_offline:{speaker}",)) == 1  # fmt: skip
        assert (
            scalar(dsn, "SELECT online FROM device_status WHERE device_id = %s", (speaker,))
            is False
        )
    finally:
        stop_process(proc)


def test_an_id_is_stored_once_and_other_content_under_it_is_a_conflict(
    stack: LocalStack, node: Node, ingest: object
) -> None:
    dsn = stack.dsn
    door = device_of(node.creds, "door")
    first = m.DoorForced(**envelope(node), device=door)
    same_id = uuid.UUID(str(first.id))
    other = m.DoorAccess(
        **{**envelope(node), "id": same_id}, device=door, result=m.AccessResult.GRANTED,
        credential="ab" * 32,
    )  # fmt: skip
    node.deliver([node.send(first), node.send(first), node.send(other)])
    wait_until(lambda: bool(rows(dsn, "SELECT 1 FROM rejected_messages")), 20, "the conflict")
    assert rows(dsn, "SELECT type FROM door_events WHERE id = %s", (same_id,)) == [("door.forced",)]
    assert rows(dsn, "SELECT reason FROM rejected_messages") == [("conflict",)]
    # Within one batch too: the first version stands.
    again = uuid.uuid4()
    a = m.DoorForced(**{**envelope(node), "id": again}, device=door)
    b = m.DoorForced(**{**envelope(node), "id": again, "ts": a.ts + timedelta(seconds=5)},
                     device=door)  # fmt: skip
    node.deliver([node.send(a), node.send(b)])
    wait_until(lambda: scalar(dsn, "SELECT count(*) FROM rejected_messages") == 2, 20,
               "the second conflict")  # fmt: skip
    assert rows(dsn, "SELECT ts FROM door_events WHERE id = %s", (again,)) == [(a.ts,)]


def test_a_birth_dated_in_the_future_does_not_freeze_presence(
    stack: LocalStack, node: Node, ingest: object
) -> None:
    dsn, name = stack.dsn, node.creds.node
    future = birth(node, bdseq=1).model_copy(update={"ts": m.now().replace(year=2099)})
    node.deliver([node.send(future)])
    wait_until(lambda: bool(rows(dsn, "SELECT 1 FROM node_presence")), 20, "the future birth")
    ahead = scalar(dsn, "SELECT clock_ahead_s FROM node_presence WHERE node_id = %s", (name,))
    assert float(str(ahead)) > 365 * 86_400  # the node's clock error is on record
    birth_ts = scalar(dsn, "SELECT birth_ts FROM node_presence WHERE node_id = %s", (name,))
    assert birth_ts < m.now() + timedelta(minutes=1)  # type: ignore[operator]

    node.deliver([node.send(birth(node, bdseq=2))])  # the node reconnects with a true clock
    wait_until(lambda: scalar(dsn, "SELECT bdseq FROM node_presence WHERE node_id = %s",
                              (name,)) == 2, 20, "the real birth taken")  # fmt: skip
    node.deliver([node.send(m.NodeDeath(**envelope(node), bdseq=2))])
    wait_until(lambda: scalar(dsn, "SELECT online FROM node_presence WHERE node_id = %s",
                              (name,)) is False, 20, "the node offline")  # fmt: skip
