"""The `modbus` door driver against a Modbus TCP IO module on pymodbus's own server
(simulators/modbus_io.py), over real TCP, end to end through the real broker and platform."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from prometheus_client import REGISTRY

from edge import config as edge_config
from edge.agent import EdgeAgent
from edge.drivers import CommandFailed, DeviceHealthSeen
from edge.modbus import ModbusDoor, ModbusDoorSettings
from gateway import messages as m
from gridwatch.demo import NodeCredentials
from gridwatch.local.stack import LocalStack
from gridwatch.simulate import MODBUS_DRIVER, hardware_driver
from simulators.modbus_io import CONTACT_INPUT, EXIT_INPUT, LOCK_COIL, IoModule
from tests.edge_support import command_result, platform_client, send_command, site_agent
from tests.support import device_of, rows, scalar, wait_until


@dataclass
class Venue:
    module: IoModule
    door: ModbusDoor
    agent: EdgeAgent
    creds: NodeCredentials


@pytest.fixture
def venue(stack: LocalStack, nodes: list[NodeCredentials], tmp_path: Path) -> Iterator[Venue]:
    """Node 0 with its door on a simulated IO module (the other devices simulated, quiet)."""
    creds = nodes[0]
    door_id = device_of(creds, "door")
    module = IoModule(unit_id=3, door_id=door_id)
    module.start()
    settings = {
        "host": "127.0.0.1", "port": module.port, "unit_id": 3,
        "poll_interval_s": 0.05, "debounce_s": 0.1, "timeout_s": 1.0,
        "contact": {"address": CONTACT_INPUT},
        "exit_button": {"table": "discrete_input", "address": EXIT_INPUT},
        "lock": {"coil": LOCK_COIL, "on_means": "unlocked"},
        "exit_window_s": 2, "held_open_s": 3, "backoff_max_s": 1.0,
    }  # fmt: skip
    hardware = {door_id: (MODBUS_DRIVER, settings)}
    with site_agent(stack, creds, tmp_path / "edge", hardware) as site:
        door, agent = site.devices[door_id], site.agent
        assert isinstance(door, ModbusDoor)
        wait_until(lambda: agent.watch.connected.is_set() and door.online, 30, "agent and door up")
        yield Venue(module, door, agent, creds)
    module.stop()


@pytest.fixture
def platform(stack: LocalStack) -> Iterator[mqtt.Client]:
    with platform_client(stack, "modbus-test") as client:
        yield client


def _send(
    stack: LocalStack, client: mqtt.Client, creds: NodeCredentials, action: m.CommandAction
) -> uuid.UUID:
    return send_command(stack, client, creds, device_of(creds, "door"), action)


def test_a_forced_door_on_the_io_module_becomes_an_incident_and_an_exit_does_not(
    stack: LocalStack, venue: Venue, ingest: object
) -> None:
    door_id = venue.door.id
    venue.module.press_exit(2.0)  # a legitimate exit: the door opens after the button
    wait_until(lambda: venue.door.is_open is True, 30, "the driver saw the door open")
    wait_until(lambda: venue.door.is_open is False, 30, "the driver saw the door close again")
    venue.module.door.force()  # pushed open while the relay holds it locked
    forced = "SELECT count(*) FROM door_events WHERE device_id = %s AND type = 'door.forced'"
    wait_until(lambda: scalar(stack.dsn, forced, (door_id,)) == 1, 30, "forced door stored")
    incident = "SELECT count(*) FROM incidents WHERE rule = 'door_forced' AND device_id = %s"
    wait_until(lambda: scalar(stack.dsn, incident, (door_id,)) == 1, 30, "incident opened")
    held = "SELECT count(*) FROM door_events WHERE device_id = %s AND type = 'door.held_open'"
    wait_until(lambda: int(str(scalar(stack.dsn, held, (door_id,)))) >= 1, 30, "held open")
    states = "SELECT count(*) FROM door_events WHERE device_id = %s AND type = 'door.state'"
    assert int(str(scalar(stack.dsn, states, (door_id,)))) >= 3  # closed, open (exit), open
    assert scalar(stack.dsn, forced, (door_id,)) == 1, "the exit through the button is no forced"


def test_door_commands_drive_the_relay_and_a_relay_exception_fails_the_command(
    stack: LocalStack, venue: Venue, ingest: object, platform: mqtt.Client
) -> None:
    unlock = _send(stack, platform, venue.creds, m.DoorUnlock(duration_s=None))
    assert command_result(stack, unlock) == ("done", None)
    assert venue.module.coils[LOCK_COIL] and not venue.module.door.locked
    lockdown = _send(stack, platform, venue.creds, m.DoorLockdown(active=True))
    assert command_result(stack, lockdown) == ("done", None)
    assert not venue.module.coils[LOCK_COIL] and venue.module.door.locked
    assert venue.door.mode is m.DoorMode.LOCKDOWN  # the module knows only the relay
    release = _send(stack, platform, venue.creds, m.DoorLockdown(active=False))
    assert command_result(stack, release) == ("done", None)
    brief = _send(stack, platform, venue.creds, m.DoorUnlock(duration_s=1))
    assert command_result(stack, brief) == ("done", None)
    wait_until(lambda: not venue.module.coils[LOCK_COIL], 30, "relocked after the duration")
    wait_until(lambda: venue.door.locked and venue.module.door.locked, 30, "door locked again")
    assert venue.module.writes[-2:] == [(LOCK_COIL, True), (LOCK_COIL, False)]
    venue.module.door.jam()  # the module answers the relay write with SERVER DEVICE FAILURE
    jammed = _send(stack, platform, venue.creds, m.DoorUnlock(duration_s=5))
    status, detail = command_result(stack, jammed)
    assert status == "failed"
    assert detail is not None and "Modbus exception 4" in detail, detail
    assert venue.module.door.locked


def test_an_io_module_that_stops_answering_is_offline_then_back_and_the_agent_runs_on(
    venue: Venue, stack: LocalStack, ingest: object
) -> None:
    health = """SELECT h.online, h.condition, s.online FROM device_health h
                JOIN device_status s ON s.device_id = h.device_id
                WHERE h.device_id = %s ORDER BY h.seq DESC LIMIT 1"""

    def platform_sees() -> tuple[object, ...] | None:
        found = rows(stack.dsn, health, (venue.door.id,))
        return tuple(found[0]) if found else None

    def failures() -> float:
        name = "gridwatch_edge_device_faults_total"
        labels = {"device": venue.door.id, "fault": "connect_failed"}
        return REGISTRY.get_sample_value(name, labels) or 0.0

    before = failures()
    venue.module.halt()
    wait_until(lambda: not venue.door.online, 30, "door offline")
    assert venue.door.detail is not None
    wait_until(lambda: failures() > before, 30, "the failure counted")
    # The platform stores the door's health and shows the door offline at once.
    wait_until(lambda: platform_sees() == (False, "unreachable", False), 30, "stored offline")
    with pytest.raises(CommandFailed, match=r"IO module 127\.0\.0\.1: cannot connect"):
        venue.door.lock()  # a command meanwhile fails with the reason
    assert venue.agent.fatal is None and venue.agent.watch.connected.is_set()
    venue.module.serve()
    wait_until(lambda: venue.door.online, 30, "door back online")
    wait_until(lambda: platform_sees() == (True, "ok", True), 30, "stored online again")
    venue.module.door.force()
    wait_until(lambda: venue.door.is_open is True, 30, "the door seen again")


def test_an_exception_answer_to_a_poll_marks_the_door_faulty_with_the_reason() -> None:
    module = IoModule(unit_id=1)
    module.start()
    settings = ModbusDoorSettings.model_validate(
        {"host": "127.0.0.1", "port": module.port, "contact": {"address": 100},  # not wired
         "lock": {"coil": LOCK_COIL}, "poll_interval_s": 0.05, "backoff_max_s": 0.5}
    )  # fmt: skip
    door = ModbusDoor("door-x", settings)
    seen: list[object] = []
    door.start(seen.append)
    try:
        wait_until(lambda: door.detail is not None and "exception 2" in door.detail, 30, "fault")
        assert not door.online
        # A faulty door reports no door state, only its health: offline, and why.
        assert seen and all(isinstance(r, DeviceHealthSeen) for r in seen), seen
        last = seen[-1]
        assert isinstance(last, DeviceHealthSeen)
        assert last.condition is m.DeviceCondition.BAD_INPUT and not last.online
        assert last.faults.get("modbus_exception", 0) >= 1
    finally:
        door.stop()
        module.stop()


def test_a_module_that_hangs_times_out_and_is_offline_until_it_answers_again() -> None:
    module = IoModule(unit_id=1)
    module.start()
    settings = ModbusDoorSettings.model_validate(
        {"host": "127.0.0.1", "port": module.port, "contact": {"address": CONTACT_INPUT},
         "lock": {"coil": LOCK_COIL}, "poll_interval_s": 0.05, "timeout_s": 0.5,
         "backoff_max_s": 0.5}
    )  # fmt: skip
    door = ModbusDoor("door-y", settings)
    door.start(lambda reading: None)
    try:
        wait_until(lambda: door.online, 30, "door online")
        module.stalled = True
        wait_until(lambda: door.detail is not None and "no answer" in door.detail, 30, "timeout")
        assert not door.online
        module.stalled = False
        wait_until(lambda: door.online, 30, "door back")
    finally:
        door.stop()
        module.stop()


def test_site_file_settings_are_checked_with_a_sentence_naming_the_field() -> None:
    def problem(kind: str, settings: dict[str, object]) -> str:
        dev = edge_config.DeviceConfig(id="d1", kind=kind, driver=MODBUS_DRIVER, settings=settings)
        with pytest.raises(edge_config.ConfigError) as caught:
            hardware_driver(dev, "site.yaml: ")
        return str(caught.value)

    lock = {"coil": 0}
    assert problem("door", {"host": "h", "contact": {"address": 70000}, "lock": lock}) == (
        "site.yaml: devices.d1.settings.contact.address: Input should be less than or equal to"
        " 65535"
    )
    same = {"host": "h", "contact": {"address": 1}, "exit_button": {"address": 1}, "lock": lock}
    assert "settings.exit_button: Value error, the same input as the contact" in problem(
        "door", same
    )
    assert problem("counter", {}) == "site.yaml: devices.d1.driver: modbus drives doors only"
