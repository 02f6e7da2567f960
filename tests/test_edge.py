"""The edge agent against a real broker, the real ingest and PostgreSQL, with simulated devices."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway import codec, topics
from gateway import messages as m
from gateway.client import connect_async, new_client
from gateway.signing import Signer
from gridwatch.demo import NodeCredentials
from gridwatch.local import LocalStack
from simulators.devices import SimDoor, SimSpeaker
from tests.edge_support import fleet_of, site_file
from tests.support import device_of, rows, scalar, stop_process, wait_until

EVENT_TABLES = ["door_events", "occupancy", "camera_alerts", "speaker_status", "command_results"]


def event_seqs(dsn: str, node: str) -> list[int]:
    """Every stored data message's seq for this node (duplicates would show twice)."""
    union = " UNION ALL ".join(f"SELECT seq FROM {t} WHERE node_id = %s" for t in EVENT_TABLES)
    return sorted(int(str(r[0])) for r in rows(dsn, union, (node,) * len(EVENT_TABLES)))


def test_broker_outage_under_steady_traffic_loses_nothing(
    stack: LocalStack, nodes: list[NodeCredentials], tmp_path: Path, ingest: object
) -> None:
    fleet = fleet_of(stack, nodes[:1], tmp_path / "fleet")
    agent = fleet.agents[nodes[0].node]
    door = fleet.devices[device_of(nodes[0], "door")]
    assert isinstance(door, SimDoor)
    done = threading.Event()

    def traffic() -> None:  # about 100 readings a second: swipes and the door's state changes
        for _ in range(200):
            door.swipe()
            time.sleep(0.02)
        done.set()

    threading.Thread(target=traffic, daemon=True).start()
    time.sleep(1.0)
    assert stack.broker is not None
    stack.broker.stop()
    time.sleep(2.0)
    assert len(agent.outbox) > 0, "readings must wait in the outbox while the broker is down"
    stack.broker.start()
    assert done.wait(30)
    wait_until(lambda: len(agent.outbox) == 0, 60, "the outbox to drain")
    wait_until(lambda: len(event_seqs(stack.dsn, agent.node)) >= agent.readings, 30, "all stored")
    fleet.stop()

    seqs = event_seqs(stack.dsn, agent.node)
    assert seqs == list(range(1, agent.readings + 1))  # each once, none missing
    arrival = rows(
        stack.dsn,
        "SELECT received_at FROM door_events WHERE node_id = %s ORDER BY seq",
        (agent.node,),
    )
    assert arrival == sorted(arrival), "stored in the order the node sent them"


def test_agent_killed_mid_stream_loses_and_doubles_nothing(
    stack: LocalStack, nodes: list[NodeCredentials], tmp_path: Path, ingest: object
) -> None:
    creds = nodes[0]
    config = site_file(stack, creds, tmp_path / "site", report_every_s={"counter": 0.01})
    cmd = [sys.executable, "-m", "gridwatch.cli", "edge", "--config", str(config)]
    log = (tmp_path / "agent.log").open("ab")
    agent = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    wait_until(lambda: len(event_seqs(stack.dsn, creds.node)) > 150, 30, "a stream under way")
    agent.send_signal(signal.SIGKILL)
    agent.wait()
    time.sleep(1.0)  # readings the devices would have sent meanwhile are simply not made
    agent = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    before = len(event_seqs(stack.dsn, creds.node))
    wait_until(
        lambda: len(event_seqs(stack.dsn, creds.node)) > before + 150, 30, "the stream resumed"
    )
    stop_process(agent)

    with sqlite3.connect(tmp_path / "site" / "outbox.db") as outbox:
        last = outbox.execute("SELECT value FROM counters WHERE name = 'seq'").fetchone()[0]
        waiting = [r[0] for r in outbox.execute("SELECT seq FROM outbox")]
    stored = event_seqs(stack.dsn, creds.node)
    assert len(stored) == len(set(stored)), "nothing doubled"
    assert sorted(stored + waiting) == list(range(1, last + 1)), "nothing lost"
    deaths = scalar(stack.dsn, "SELECT count(*) FROM presence_events WHERE type = 'node.death'")
    assert deaths == 2  # the broker's will for the killed process, the goodbye of the stopped one


@pytest.fixture
def api(stack: LocalStack) -> object:
    client, watch = new_client("api-test", stack.service_mqtt("api"))
    connect_async(client, stack.service_mqtt("api"), clean_start=True)
    assert watch.connected.wait(10), watch.last_reason
    yield client
    client.disconnect()
    client.loop_stop()


def _command(
    device: str, action: object, *, deadline_s: float = 30, command_id: uuid.UUID | None = None
) -> m.Command:
    now = m.now()
    return m.Command(
        v=1, id=command_id or uuid.uuid4(), ts=now, device=device,
        deadline=now + timedelta(seconds=deadline_s), action=action,  # type: ignore[arg-type]
    )  # fmt: skip


def signed(stack: LocalStack, command: m.Command) -> bytes:
    """The payload the platform would publish for `command`: signed with the stack's key."""
    obj = Signer.from_file(stack.command_key_file).sign(codec.to_wire(command))
    return json.dumps(obj, separators=(",", ":")).encode()


def test_commands_round_trip_expire_and_run_once(
    stack: LocalStack, nodes: list[NodeCredentials], tmp_path: Path, ingest: object, api: object
) -> None:
    creds = nodes[0]
    fleet = fleet_of(stack, [creds], tmp_path / "fleet")
    speaker = fleet.devices[device_of(creds, "speaker")]
    door = fleet.devices[device_of(creds, "door")]
    assert isinstance(speaker, SimSpeaker) and isinstance(door, SimDoor)
    door.jam()
    play = _command(
        speaker.id, m.SpeakerPlay(text="Flood warning", priority=m.SpeakerPriority.EMERGENCY)
    )
    late = _command(speaker.id, m.SpeakerVolume(level=5), deadline_s=-1)
    jammed = _command(door.id, m.DoorUnlock(duration_s=5))
    wrong = _command(door.id, m.SpeakerStop())
    volume = _command(speaker.id, m.SpeakerVolume(level=80))
    sent = [play, play, late, jammed, wrong, volume, volume]  # two delivered twice
    for cmd in sent:
        api.publish(topics.command(creds.site, creds.node, cmd.device), signed(stack, cmd), qos=1)  # type: ignore[attr-defined]

    expected = {
        play.id: "done",
        late.id: "expired",
        jammed.id: "failed",
        wrong.id: "rejected",
        volume.id: "done",
    }
    wait_until(
        lambda: scalar(stack.dsn, "SELECT count(*) FROM command_results") >= len(expected),
        20,
        "results",
    )
    time.sleep(0.5)
    results = {
        r[0]: r[1] for r in rows(stack.dsn, "SELECT command_id, status FROM command_results")
    }
    assert results == expected
    assert speaker.played == ["Flood warning"]
    assert speaker.volume == 80  # the expired volume change was not applied
    detail = scalar(
        stack.dsn, "SELECT detail FROM command_results WHERE command_id = %s", (jammed.id,)
    )
    assert detail == "lock motor jammed"
    agent = fleet.agents[creds.node]
    assert agent.executed_commands == 2
    fleet.stop()


def test_agent_cannot_publish_as_another_node(
    stack: LocalStack, nodes: list[NodeCredentials], tmp_path: Path, ingest: object
) -> None:
    impostor = NodeCredentials(nodes[1].site, nodes[1].node, nodes[0].secret, nodes[1].devices)
    from gridwatch.simulate import venues_from
    from simulators.fleet import Fleet

    fleet = Fleet(venues_from([impostor]), stack.edge_mqtt(), tmp_path / "fleet", rate=0.001)
    fleet.start()
    agent = fleet.agents[impostor.node]
    door = fleet.devices[device_of(impostor, "door")]
    assert isinstance(door, SimDoor)
    door.force()
    wait_until(lambda: agent.watch.refusal is not None, 10, "the broker's answer")
    assert agent.watch.refusal == "Not authorized"
    assert len(agent.outbox) >= 1, "what it could not send stays in its outbox"
    fleet.stop()
    assert event_seqs(stack.dsn, impostor.node) == []


def test_commands_not_signed_by_the_platform_or_out_of_their_window_are_refused(
    stack: LocalStack, nodes: list[NodeCredentials], tmp_path: Path, ingest: object, api: object
) -> None:
    """A service account alone cannot move a door: unsigned, forged, tampered, too long-lived,
    future and retained commands are not executed; each but the retained one is answered."""
    creds = nodes[0]
    unlock = m.DoorUnlock(duration_s=None)
    topic = topics.command(creds.site, creds.node, device_of(creds, "door"))
    # Retained before the node subscribes: the broker hands it over as retained on subscribe.
    retained = _command(device_of(creds, "door"), unlock)
    api.publish(topic, signed(stack, retained), qos=1, retain=True).wait_for_publish(5)  # type: ignore[attr-defined]
    fleet = fleet_of(stack, [creds], tmp_path / "fleet")
    door = fleet.devices[device_of(creds, "door")]
    assert isinstance(door, SimDoor)
    unsigned = _command(door.id, unlock)
    forged = _command(door.id, unlock)
    other_key = Signer(Ed25519PrivateKey.generate())
    forged_payload = json.dumps(other_key.sign(codec.to_wire(forged))).encode()
    tampered = _command(door.id, m.DoorUnlock(duration_s=5))
    tampered_obj = json.loads(signed(stack, tampered))
    tampered_obj["action"]["duration_s"] = None  # "until locked" instead of the signed 5 s
    ten_years = _command(door.id, unlock, deadline_s=10 * 365 * 86_400)
    future = m.Command(
        v=1, id=uuid.uuid4(), ts=m.now() + timedelta(hours=1), device=door.id,
        deadline=m.now() + timedelta(hours=1, seconds=30), action=unlock,
    )  # fmt: skip
    for payload in (codec.encode(unsigned), forged_payload, json.dumps(tampered_obj).encode(),
                    signed(stack, ten_years), signed(stack, future)):  # fmt: skip
        api.publish(topic, payload, qos=1)  # type: ignore[attr-defined]
    refused = [unsigned, forged, tampered, ten_years, future]
    wait_until(
        lambda: scalar(stack.dsn, "SELECT count(*) FROM command_results") >= len(refused),
        20,
        "answers",
    )
    time.sleep(0.5)
    answers = {
        r[0]: (r[1], r[2])
        for r in rows(stack.dsn, "SELECT command_id, status, detail FROM command_results")
    }
    assert set(answers) == {c.id for c in refused}, "the retained command is not answered"
    assert all(status == "rejected" for status, _ in answers.values())
    assert "not signed" in str(answers[unsigned.id][1])
    assert "bad signature" in str(answers[forged.id][1])
    assert "bad signature" in str(answers[tampered.id][1])
    assert "more than 300 s" in str(answers[ten_years.id][1])
    assert "future" in str(answers[future.id][1])
    assert door.locked, "no refused command moved the door"
    assert fleet.agents[creds.node].executed_commands == 0
    api.publish(topic, b"", qos=1, retain=True)  # type: ignore[attr-defined]
    fleet.stop()


def test_an_agent_without_the_platform_key_executes_no_command(
    stack: LocalStack, nodes: list[NodeCredentials], tmp_path: Path, ingest: object, api: object
) -> None:
    from gridwatch.simulate import venues_from
    from simulators.fleet import Fleet

    creds = nodes[0]
    fleet = Fleet(venues_from([creds]), stack.edge_mqtt(), tmp_path / "fleet", rate=0.001)
    fleet.start()
    assert fleet.wait_connected(20)
    door = fleet.devices[device_of(creds, "door")]
    assert isinstance(door, SimDoor)
    cmd = _command(door.id, m.DoorUnlock(duration_s=None))
    api.publish(topics.command(creds.site, creds.node, door.id), signed(stack, cmd), qos=1)  # type: ignore[attr-defined]
    wait_until(lambda: bool(rows(stack.dsn, "SELECT 1 FROM command_results")), 20, "an answer")
    status, detail = rows(stack.dsn, "SELECT status, detail FROM command_results")[0]
    assert status == "rejected" and "no command_key" in str(detail)
    assert door.locked
    fleet.stop()
