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
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway import codec, topics
from gateway import messages as m
from gateway.client import connect_async, new_client
from gateway.signing import Signer
from gridwatch.demo import NodeCredentials
from gridwatch.local.stack import LocalStack
from gridwatch.simulate import venues_from
from simulators.devices import SimDoor, SimSpeaker
from simulators.fleet import Fleet
from tests.edge_support import fleet_of, site_file
from tests.support import device_of, rows, scalar, start_ingest, stop_process, wait_until

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
    client, watch = new_client("platform-test", stack.service_mqtt())
    connect_async(client, stack.service_mqtt(), clean_start=True)
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


@pytest.mark.parametrize("run", range(3))
def test_broker_killed_with_a_backlog_loses_nothing(
    stack: LocalStack, nodes: list[NodeCredentials], tmp_path: Path, run: int
) -> None:
    """The drill that lost 1-27% before receipts: the ingest is stopped, the broker takes (and
    PUBACKs) a backlog it keeps in memory, and is killed with -9 before saving it. The nodes keep
    every message until the platform's receipt says it is stored, and send the rest again."""
    assert stack.broker is not None
    stack.broker.stop()
    stack.start_broker(autosave_interval_s=3600)  # nothing saved before the crash
    worker, _ = start_ingest(stack)  # the ingest's session exists, then it stops
    stop_process(worker)
    fleet = fleet_of(stack, nodes, tmp_path / "fleet")
    doors = [fleet.devices[device_of(c, "door")] for c in nodes]
    for _ in range(60):
        for d in doors:
            assert isinstance(d, SimDoor)
            d.swipe()
    agents = list(fleet.agents.values())
    wait_until(lambda: all(a._metrics.delivered._value.get() >= a.readings for a in agents), 30,
               "the broker to acknowledge the whole backlog")  # fmt: skip
    stack.broker.kill()
    stack.broker.start()
    worker, _ = start_ingest(stack)
    try:
        wait_until(lambda: all(len(a.outbox) == 0 for a in agents), 90, "every receipt")
        for a in agents:
            assert event_seqs(stack.dsn, a.node) == list(range(1, a.readings + 1)), a.node
    finally:
        fleet.stop()
        stop_process(worker)


def _edge(config: Path, log: Path) -> subprocess.Popen[bytes]:
    """`gridwatch edge` for a site file, its stderr (the log, then any error) into `log`."""
    with log.open("ab") as out:
        cmd = [sys.executable, "-m", "gridwatch.cli", "edge", "--config", str(config)]
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)


def _last_line(log: Path) -> str:
    text = log.read_text()
    assert "Traceback" not in text
    return text.strip().splitlines()[-1]


def test_a_site_file_with_the_wrong_site_stops_with_what_to_fix(
    stack: LocalStack, nodes: list[NodeCredentials], tmp_path: Path
) -> None:
    creds, other = nodes[0], nodes[1]
    config = site_file(stack, creds, tmp_path / "site")
    data = yaml.safe_load(config.read_text())
    config.write_text(yaml.safe_dump({**data, "site": other.site}))
    agent = _edge(config, tmp_path / "agent.log")
    assert agent.wait(30) == 1
    assert _last_line(tmp_path / "agent.log") == (
        f"gridwatch: the broker refused node {creds.node}'s birth or command subscription under"
        f" site {other.site} (Not authorized): the node is registered at another venue; set site:"
        f" in the site file to the venue the platform registered node {creds.node} at"
    )

    # In a fleet, only that venue stops.
    wrong = NodeCredentials(other.site, creds.node, creds.secret, creds.devices)
    fleet = Fleet(venues_from([wrong, other]), stack.edge_mqtt(), tmp_path / "fleet", rate=0.001)
    fleet.start()
    try:
        wait_until(fleet.agents[creds.node].failed.is_set, 10, "the wrong venue to stop")
        assert "registered at another venue" in str(fleet.agents[creds.node].fatal)
        assert fleet.agents[other.node].watch.connected.wait(10)
        assert fleet.agents[other.node].fatal is None
    finally:
        fleet.stop()


def test_a_second_agent_as_the_same_node_stops_the_first_instead_of_fighting(
    stack: LocalStack, nodes: list[NodeCredentials], tmp_path: Path
) -> None:
    creds = nodes[0]
    first = _edge(site_file(stack, creds, tmp_path / "first"), tmp_path / "first.log")
    wait_until(lambda: "node online" in (tmp_path / "first.log").read_text(), 20, "online")
    fleet = fleet_of(stack, [creds, nodes[1]], tmp_path / "fleet")  # runs the same node again
    try:
        assert first.wait(30) == 1
        last = _last_line(tmp_path / "first.log")
        assert last.startswith(f"gridwatch: another agent is running as node {creds.node} (")
        assert last.endswith("); stop one of them, each node id belongs to one agent")
        # And the other way round: a newer agent displaces the fleet's, which stops alone.
        second = _edge(site_file(stack, creds, tmp_path / "second"), tmp_path / "second.log")
        displaced = fleet.agents[creds.node]
        wait_until(displaced.failed.is_set, 20, "the fleet's agent to give way")
        assert "another agent is running as node" in str(displaced.fatal)
        assert fleet.agents[nodes[1].node].watch.connected.is_set()
        assert second.poll() is None, "the newer agent keeps the node"
        stop_process(second)
        assert "another agent" not in (tmp_path / "second.log").read_text()
    finally:
        fleet.stop()


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
