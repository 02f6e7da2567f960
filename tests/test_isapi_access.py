"""The `isapi` door driver against a simulated Hikvision access controller
(simulators/isapi_access.py on the shared ISAPI server), over real HTTP with digest
authentication, end to end through the real broker and platform."""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from prometheus_client import REGISTRY

from edge import config as edge_config
from edge.agent import EdgeAgent, hash_credential
from edge.drivers import AccessSeen, CommandFailed, ForcedSeen
from edge.isapi.access import MAPPING, IsapiDoor, IsapiDoorSettings, read_event
from edge.isapi.stream import Part, decode
from gateway import messages as m
from gridwatch.demo import NodeCredentials
from gridwatch.local.stack import LocalStack
from gridwatch.simulate import ISAPI_DRIVER, hardware_driver
from simulators.devices import SimDoor, make_device
from simulators.engine import Engine, SimClock
from simulators.isapi_access import EVENT_LOG, WORK_STATUS, AccessController
from simulators.isapi_http import JSON, part
from simulators.protocol import ProtocolSimulators
from simulators.venues import Venue as SimVenue
from tests.edge_support import command_result, platform_client, send_command, site_agent
from tests.support import device_of, rows, scalar, wait_until

PASSWORD = "Acs-12345"


@dataclass
class Venue:
    acs: AccessController
    door: IsapiDoor
    agent: EdgeAgent
    creds: NodeCredentials
    key: bytes


@pytest.fixture
def venue(stack: LocalStack, nodes: list[NodeCredentials], tmp_path: Path) -> Iterator[Venue]:
    """Node 0 with its door on a simulated access controller (the other devices simulated)."""
    creds = nodes[0]
    door_id = device_of(creds, "door")
    # Simulated time runs 20 times real time: a door propped open is held open in 3 s.
    acs = AccessController(door_id=door_id, password=PASSWORD, speed=20, heartbeat_s=0.5)
    acs.start()
    settings = {
        "host": "127.0.0.1", "port": acs.port, "username": "admin", "password": PASSWORD,
        "door": 1, "timeout_s": 2.0, "heartbeat_timeout_s": 3.0, "backoff_max_s": 1.0,
    }  # fmt: skip
    with site_agent(stack, creds, tmp_path / "edge", {door_id: (ISAPI_DRIVER, settings)}) as site:
        door, agent = site.devices[door_id], site.agent
        assert isinstance(door, IsapiDoor)
        wait_until(
            lambda: agent.watch.connected.is_set() and door.online and door.is_open is not None
            and acs.server.streams == 1, 30, "agent, door and alert stream up",
        )  # fmt: skip
        yield Venue(acs, door, agent, creds, site.config.site_secret.get_secret_value().encode())
    acs.stop()


@pytest.fixture
def platform(stack: LocalStack) -> Iterator[mqtt.Client]:
    with platform_client(stack, "isapi-acs-test") as client:
        yield client


def _send(
    stack: LocalStack, client: mqtt.Client, venue: Venue, action: m.CommandAction
) -> uuid.UUID:
    return send_command(stack, client, venue.creds, venue.door.id, action)


def _health(stack: LocalStack, device: str) -> tuple[object, ...] | None:
    """What the platform stored last of the door's health, and whether it shows it online."""
    query = """SELECT h.online, h.condition, h.detail, h.faults, h.clock_offset_s, s.online
               FROM device_health h JOIN device_status s ON s.device_id = h.device_id
               WHERE h.device_id = %s ORDER BY h.seq DESC LIMIT 1"""
    found = rows(stack.dsn, query, (device,))
    return tuple(found[0]) if found else None


def _faults(device: str, fault: str) -> float:
    labels = {"device": device, "fault": fault}
    return REGISTRY.get_sample_value("gridwatch_edge_device_faults_total", labels) or 0.0


def _count(stack: LocalStack, query: str, *params: object) -> int:
    return int(str(scalar(stack.dsn, query, params)))


def test_swipes_and_a_forced_door_are_stored_with_hashed_cards_then_become_incidents(
    stack: LocalStack, venue: Venue, ingest: object
) -> None:
    door_id = venue.door.id
    granted = venue.acs.swipe(granted=True)["AccessControllerEvent"]
    assert granted["majorEventType"] == 5 and granted["subEventType"] == 0x01
    card = str(granted["cardNo"])
    access = """SELECT result, credential, reason FROM door_events
                WHERE device_id = %s AND type = 'door.access' ORDER BY ts, seq"""
    wait_until(lambda: len(rows(stack.dsn, access, (door_id,))) == 1, 30, "granted swipe stored")
    result, credential, reason = rows(stack.dsn, access, (door_id,))[0]
    # The card number is hashed at the edge with the site key: the platform never sees it.
    assert (result, reason) == ("granted", None)
    assert credential == hash_credential(venue.key, card) and card not in str(credential)
    for _ in range(5):  # someone tries card after card
        venue.acs.swipe(granted=False)
    wait_until(lambda: len(rows(stack.dsn, access, (door_id,))) == 6, 30, "denied swipes stored")
    reasons = {str(r[2]) for r in rows(stack.dsn, access, (door_id,))[1:]}
    assert reasons <= {"unknown_credential", "expired", "outside_schedule"}, reasons
    burst = "SELECT count(*) FROM incidents WHERE rule = 'denied_burst' AND device_id = %s"
    wait_until(lambda: _count(stack, burst, door_id) == 1, 30, "denied burst incident")

    wait_until(lambda: venue.door.is_open is False, 30, "the door closed after the swipe")
    venue.acs.door.force()  # pushed open while locked: DOOR_OPEN_ABNORMAL
    forced = "SELECT count(*) FROM door_events WHERE device_id = %s AND type = 'door.forced'"
    wait_until(lambda: _count(stack, forced, door_id) == 1, 30, "forced door stored")
    incident = "SELECT count(*) FROM incidents WHERE rule = 'door_forced' AND device_id = %s"
    wait_until(lambda: _count(stack, incident, door_id) == 1, 30, "forced door incident")
    wait_until(lambda: venue.door.is_open is False, 30, "the forced door closed again")

    venue.acs.door.hold_open(300)  # propped open: DOOR_OPEN_TIMEOUT after the door's limit
    held = "SELECT max(open_s) FROM door_events WHERE device_id = %s AND type = 'door.held_open'"
    wait_until(lambda: scalar(stack.dsn, held, (door_id,)) is not None, 60, "held open stored")
    assert float(str(scalar(stack.dsn, held, (door_id,)))) >= 60
    incident = "SELECT count(*) FROM incidents WHERE rule = 'door_held_open' AND device_id = %s"
    wait_until(lambda: _count(stack, incident, door_id) == 1, 30, "held open incident")
    sent = [(e["AccessControllerEvent"]["majorEventType"], e["AccessControllerEvent"]["subEventType"])
            for e in venue.acs.panel.sent]  # fmt: skip
    assert (5, 0x1B) in sent and (5, 0x1C) in sent and (5, 0x19) in sent and (5, 0x1A) in sent
    assert all(code in MAPPING for code in sent), "the simulator sends only documented codes"
    states = "SELECT count(*) FROM door_events WHERE device_id = %s AND type = 'door.state'"
    assert _count(stack, states, door_id) >= 4  # at connect, opened, closed, forced open…


def test_each_door_command_changes_the_simulated_door_and_is_answered_by_the_device(
    stack: LocalStack, venue: Venue, ingest: object, platform: mqtt.Client
) -> None:
    acs = venue.acs
    unlock = _send(stack, platform, venue, m.DoorUnlock(duration_s=None))
    assert command_result(stack, unlock) == ("done", None)
    assert acs.panel.commands[-1] == "alwaysOpen"
    assert not acs.door.locked and acs.door.mode is m.DoorMode.UNLOCKED and acs.panel.remain_open
    lockdown = _send(stack, platform, venue, m.DoorLockdown(active=True))
    assert command_result(stack, lockdown) == ("done", None)
    assert acs.panel.commands[-1] == "alwaysClose"
    assert acs.door.locked and acs.door.mode is m.DoorMode.LOCKDOWN
    wait_until(lambda: venue.door.mode is m.DoorMode.LOCKDOWN, 30, "the driver in lockdown")
    acs.swipe(granted=True)  # a card in lockdown: refused by the controller
    refused = """SELECT count(*) FROM door_events WHERE device_id = %s AND type = 'door.access'
                 AND result = 'denied' AND reason = 'lockdown'"""
    wait_until(lambda: _count(stack, refused, venue.door.id) == 1, 30, "lockdown denial stored")
    release = _send(stack, platform, venue, m.DoorLockdown(active=False))
    assert command_result(stack, release) == ("done", None)
    assert acs.panel.commands[-1] == "close" and acs.door.mode is m.DoorMode.NORMAL
    brief = _send(stack, platform, venue, m.DoorUnlock(duration_s=1))
    assert command_result(stack, brief) == ("done", None)
    assert not acs.door.locked
    wait_until(lambda: acs.panel.commands[-2:] == ["alwaysOpen", "close"], 30, "relock sent")
    wait_until(lambda: acs.door.locked and venue.door.locked, 30, "door locked again")
    lock = _send(stack, platform, venue, m.DoorLock())
    assert command_result(stack, lock) == ("done", None)
    # The driver's view of the door is the device's (AcsWorkStatus) after every command.
    mode = """SELECT mode FROM door_events WHERE device_id = %s AND type = 'door.state'
              ORDER BY ts DESC, seq DESC LIMIT 1"""
    wait_until(lambda: scalar(stack.dsn, mode, (venue.door.id,)) == "normal", 30, "state stored")


def test_a_refused_command_fails_with_the_devices_own_words(
    stack: LocalStack, venue: Venue, ingest: object, platform: mqtt.Client
) -> None:
    venue.acs.door.jam()  # the lock motor fails: the controller answers Device Error
    jammed = _send(stack, platform, venue, m.DoorUnlock(duration_s=5))
    status, detail = command_result(stack, jammed)
    assert status == "failed"
    assert detail is not None, detail
    assert "refused alwaysOpen" in detail and "Device Error" in detail, detail
    assert "lock motor jammed" in detail, detail  # the controller's errorMsg
    assert venue.acs.door.locked and venue.acs.panel.commands == []
    # A refusal is the device answering: the door stays online and healthy.
    assert venue.door.online and venue.door.health.condition is m.DeviceCondition.OK


def test_a_malformed_body_and_unknown_events_are_counted_logged_shown_and_skipped(
    stack: LocalStack, venue: Venue, ingest: object, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="edge.health")
    door_id = venue.door.id
    before = {f: _faults(door_id, f) for f in ("malformed_json", "unknown_event")}
    venue.acs.server.inject(part(b'{"eventType": "AccessControllerEvent", "Acc', JSON))
    wait_until(lambda: _faults(door_id, "malformed_json") > before["malformed_json"], 30, "count")
    wait_until(lambda: (_health(stack, door_id) or ())[1:2] == ("bad_input",), 30, "stored")
    health = _health(stack, door_id)
    assert health is not None and health[0] is True and health[5] is True  # online: it answers
    assert "JSON event body that does not parse" in str(health[2]), health
    assert "device problem device=" + door_id in caplog.text and "malformed_json" in caplog.text

    venue.acs.panel.event(5, 0x7E)  # a minor code the driver does not know
    venue.acs.panel.event(5, 0x01, raw={"eventType": "somethingNew", "eventState": "active"})
    wait_until(
        lambda: _faults(door_id, "unknown_event") >= before["unknown_event"] + 2, 30, "unknown"
    )
    wait_until(lambda: "unknown_event" in json.dumps((_health(stack, door_id) or ())[3]), 30,
               "the platform sees the count")  # fmt: skip
    assert "major 5 minor 126 (0x7e)" in caplog.text and "'somethingNew'" in caplog.text
    # The stream reads on: the next swipe arrives.
    venue.acs.swipe(granted=True)
    access = "SELECT count(*) FROM door_events WHERE device_id = %s AND type = 'door.access'"
    wait_until(lambda: _count(stack, access, door_id) == 1, 30, "the next swipe stored")
    assert venue.agent.fatal is None


def test_a_device_clock_hours_off_is_reported_and_the_agents_time_is_used(
    stack: LocalStack, venue: Venue, ingest: object
) -> None:
    venue.acs.server.clock_offset_s = 3 * 3600  # the controller's clock is three hours ahead
    venue.acs.swipe(granted=True)
    access = "SELECT ts FROM door_events WHERE device_id = %s AND type = 'door.access'"
    wait_until(lambda: bool(rows(stack.dsn, access, (venue.door.id,))), 30, "swipe stored")
    stored = rows(stack.dsn, access, (venue.door.id,))[0][0]
    assert isinstance(stored, datetime)
    assert abs(stored - datetime.now(UTC)) < timedelta(minutes=30), stored  # not 3 h ahead
    wait_until(lambda: (_health(stack, venue.door.id) or ())[1:2] == ("clock_skew",), 30, "skew")
    health = _health(stack, venue.door.id)
    assert health is not None and "3.0 h ahead" in str(health[2]), health
    assert abs(float(str(health[4])) - 3 * 3600) < 60


def test_a_half_closed_stream_is_taken_for_lost_reopened_and_what_it_missed_fetched(
    stack: LocalStack, venue: Venue, ingest: object
) -> None:
    door_id = venue.door.id
    acs = venue.acs
    acs.door.force()  # before: on the stream
    forced = "SELECT count(*) FROM door_events WHERE device_id = %s AND type = 'door.forced'"
    wait_until(lambda: _count(stack, forced, door_id) == 1, 30, "forced door stored")
    reads = sum(1 for r in acs.server.requests if r[1] == WORK_STATUS and r[2] == 200)
    before = _faults(door_id, "heartbeat_missed")
    acs.server.half_close()  # the stream goes silent mid-stream, its socket left open
    card = acs.swipe(granted=True)["AccessControllerEvent"]["cardNo"]  # not on any stream
    wait_until(lambda: _faults(door_id, "heartbeat_missed") > before, 30, "heartbeat missed")
    wait_until(lambda: (_health(stack, door_id) or ())[0:2] == (False, "unreachable"), 30, "stored")
    wait_until(lambda: acs.server.streams == 1 and venue.door.online, 30, "stream reopened")
    wait_until(lambda: (_health(stack, door_id) or ())[0:2] == (True, "ok"), 30, "stored ok")
    wait_until(lambda: sum(1 for r in acs.server.requests
                           if r[1] == WORK_STATUS and r[2] == 200) > reads, 30, "state re-read")  # fmt: skip
    # The swipe made while the stream was silent comes from the controller's event log, once.
    access = "SELECT credential FROM door_events WHERE device_id = %s AND type = 'door.access'"
    wait_until(lambda: bool(rows(stack.dsn, access, (door_id,))), 30, "missed swipe fetched")
    assert [r[0] for r in rows(stack.dsn, access, (door_id,))] == [
        hash_credential(venue.key, str(card))
    ]
    assert any(r[0] == "POST" and r[1] == EVENT_LOG and r[2] == 200 for r in acs.server.requests)
    wait_until(lambda: venue.door.is_open is False, 30, "the door closed")
    acs.door.force()
    wait_until(lambda: _count(stack, forced, door_id) == 2, 30, "events flow again")
    assert _count(stack, forced, door_id) == 2  # the first one not again from the log


def test_a_slow_device_is_reported_slow_and_a_command_fails_with_the_reason(
    stack: LocalStack, venue: Venue, ingest: object
) -> None:
    venue.acs.server.delay_s = 2.5  # over the 2 s timeout
    with pytest.raises(CommandFailed, match=r"close failed: .*no answer to PUT .* within 2 s"):
        venue.door.lock()
    wait_until(lambda: (_health(stack, venue.door.id) or ())[1:2] == ("slow",), 30, "stored slow")
    assert _faults(venue.door.id, "timeout") >= 1
    assert venue.agent.fatal is None and venue.agent.watch.connected.is_set()
    venue.acs.server.delay_s = 0
    venue.door.lock()  # answered again
    assert venue.acs.panel.commands[-1] == "close"


def test_a_password_changed_on_the_device_is_auth_failed_until_the_site_file_matches(
    stack: LocalStack, venue: Venue, ingest: object, platform: mqtt.Client
) -> None:
    door_id = venue.door.id
    venue.acs.server.password = "changed-by-the-installer"
    lock = _send(stack, platform, venue, m.DoorLock())
    status, detail = command_result(stack, lock)
    assert status == "failed" and detail is not None
    assert "refused user 'admin': check the password" in detail, detail
    assert "changed-by-the-installer" not in detail and PASSWORD not in detail
    wait_until(lambda: (_health(stack, door_id) or ())[0:2] == (False, "auth_failed"), 30, "401")
    health = _health(stack, door_id)
    assert health is not None and health[5] is False, health  # the platform shows it offline
    assert _faults(door_id, "auth_failed") >= 1
    venue.acs.server.half_close()  # the stream reconnects, and is refused too
    wait_until(lambda: any(r[1].endswith("alertStream") and r[2] == 401
                           for r in venue.acs.server.requests), 30, "stream refused")  # fmt: skip
    assert venue.agent.fatal is None
    venue.acs.server.password = PASSWORD  # put back (as a site-file update would match it)
    wait_until(lambda: venue.acs.server.streams == 1, 30, "stream back")
    wait_until(lambda: (_health(stack, door_id) or ())[0:2] == (True, "ok"), 30, "healthy again")


def test_site_file_settings_are_checked_with_a_sentence_naming_the_field() -> None:
    def problem(settings: dict[str, object]) -> str:
        dev = edge_config.DeviceConfig(id="d1", kind="door", driver=ISAPI_DRIVER, settings=settings)
        with pytest.raises(edge_config.ConfigError) as caught:
            hardware_driver(dev, "site.yaml: ")
        return str(caught.value)

    assert problem({"host": "h", "password": "s3cret", "door": 0}) == (
        "site.yaml: devices.d1.settings.door: Input should be greater than or equal to 1"
    )
    both = problem({"host": "h", "password": "s3cret", "entry_readers": [1], "exit_readers": [1]})
    assert "settings.exit_readers: Value error, reader 1 is an entry reader too" in both
    missing = problem({"host": "h"})
    assert "give the device's password once" in missing
    assert "s3cret" not in problem({"host": "h", "password": "s3cret", "scheme": "ftp"})


def test_in_protocol_mode_a_fleet_door_behind_the_controller_is_read_by_the_isapi_driver() -> None:
    """`--devices protocol`: a fleet's own SimDoor (which scenarios drive) behind the simulated
    controller, read by the driver built from the simulator's own site-file settings."""
    engine = Engine(SimClock(1.0))
    where = SimVenue(site="s", node="n", secret="", kind="community_centre", capacity=10,
                     open_24h=True)  # fmt: skip
    model = make_device(m.DeviceKind.DOOR, "door-p", where, engine, seed=3, report_every_s=3600)
    assert isinstance(model, SimDoor)
    sims = ProtocolSimulators()
    sims.serve(make_device(m.DeviceKind.DOOR, "door-q", where, engine, seed=3, report_every_s=3600))
    entry = sims.serve(model)  # the second door of the fleet: doors alternate modbus, isapi
    assert entry is not None and entry.driver == ISAPI_DRIVER
    door = hardware_driver(entry)
    assert isinstance(door, IsapiDoor)
    seen: list[object] = []
    door.start(seen.append)
    try:
        wait_until(lambda: door.is_open is False, 30, "the door's state read at connect")
        wait_until(lambda: sims.running[1].server.streams == 1, 30, "alert stream open")  # type: ignore[attr-defined]
        model.force()  # a scenario's `force` step
        wait_until(lambda: any(isinstance(r, ForcedSeen) for r in seen), 30, "forced seen")
        door.unlock(None)
        assert not model.locked and model.mode is m.DoorMode.UNLOCKED
        door.lock()
        assert model.locked and model.mode is m.DoorMode.NORMAL
        model.cut()  # a scenario's `cut`: the controller loses power
        wait_until(lambda: not door.online, 30, "the door offline")
        assert door.health.condition is m.DeviceCondition.UNREACHABLE
        model.restore()
        wait_until(lambda: door.online, 30, "the door back")
    finally:
        door.stop()
        sims.stop()


def test_an_event_in_xml_as_older_firmware_sends_it_reads_as_the_json_one() -> None:
    xml = (b'<?xml version="1.0" encoding="UTF-8"?>\n<EventNotificationAlert version="2.0"'
           b' xmlns="http://www.isapi.org/ver20/XMLSchema"><dateTime>2026-12-01T21:00:00+08:00'
           b"</dateTime><eventType>AccessControllerEvent</eventType><eventState>active"
           b"</eventState><AccessControllerEvent><majorEventType>5</majorEventType>"
           b"<subEventType>8</subEventType><cardNo>00012345</cardNo><cardReaderNo>2"
           b"</cardReaderNo><doorNo>1</doorNo></AccessControllerEvent></EventNotificationAlert>")  # fmt: skip
    event = read_event(decode(Part("application/xml", xml)))
    assert event is not None
    assert (event.code.name, event.code.reason) == ("CARD_OUT_OF_DATE", m.DenyReason.EXPIRED)
    assert (event.credential, event.reader, event.door) == ("00012345", 2, 1)
    assert event.time == datetime(2026, 12, 1, 13, 0, tzinfo=UTC)


def test_the_documented_table_is_the_drivers_mapping() -> None:
    page = (Path(__file__).resolve().parent.parent / "docs/drivers/isapi.md").read_text()
    documented = {
        (int(major), int(minor, 16), name)
        for major, minor, name in re.findall(r"^\| (\d) \| 0x([0-9a-f]+) \| (\w+) \|", page, re.M)
    }
    assert documented == {(ma, mi, code.name) for (ma, mi), code in MAPPING.items()}


def test_a_controller_without_the_event_log_search_loses_only_what_the_stream_missed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="edge.isapi.access")
    acs = AccessController(password=PASSWORD, heartbeat_s=0.5)
    acs.log_search = False  # older firmware: notSupport
    acs.start()
    settings = IsapiDoorSettings(host="127.0.0.1", port=acs.port, password=PASSWORD,
                                 heartbeat_timeout_s=2, backoff_max_s=0.5)  # fmt: skip
    door = IsapiDoor("door-z", settings)
    seen: list[object] = []
    door.start(seen.append)
    try:
        wait_until(lambda: door.is_open is False and acs.server.streams == 1, 30, "door up")
        acs.door.force()
        wait_until(lambda: any(isinstance(r, ForcedSeen) for r in seen), 30, "forced seen")
        acs.server.half_close()
        acs.swipe(granted=True)  # while the stream is silent: only in the controller's log
        wait_until(lambda: "event log not read" in caplog.text, 30, "the search refused")
        wait_until(lambda: acs.server.streams == 1 and door.online, 30, "stream back")
        assert not any(isinstance(r, AccessSeen) for r in seen)
        acs.swipe(granted=True)  # after: on the stream again
        wait_until(lambda: any(isinstance(r, AccessSeen) for r in seen), 30, "swipe seen")
        assert "Invalid Operation: notSupport" in caplog.text
    finally:
        door.stop()
        acs.stop()
