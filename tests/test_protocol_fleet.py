"""The demo fleet in protocol mode (`gridwatch simulate --devices protocol`): each model behind a
simulator of its real protocol, read by the real driver, end to end through the platform."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from gateway import messages as m
from gridwatch.demo import NodeCredentials
from gridwatch.local.stack import LocalStack
from gridwatch.simulate import hardware_driver, venues_from
from simulators.devices import SimDoor, SimSpeaker
from simulators.fleet import SIMULATED_DRIVER, Fleet
from simulators.protocol import PROTOCOLS, ProtocolSimulators
from tests.edge_support import (
    QUIET_RATE,
    command_result,
    config_version_of,
    platform_client,
    send_command,
)
from tests.support import device_of, rows, scalar, wait_until


@pytest.fixture
def fleet(
    stack: LocalStack, nodes: list[NodeCredentials], tmp_path: Path
) -> Iterator[tuple[Fleet, ProtocolSimulators]]:
    protocol = ProtocolSimulators()
    fleet = Fleet(
        venues_from(nodes[:1]), stack.edge_mqtt(), tmp_path, rate=QUIET_RATE,
        command_key=stack.command_public_key, serve=protocol.serve, build=hardware_driver,
    )  # fmt: skip
    fleet.start()
    try:
        assert fleet.wait_connected(20), "fleet did not connect"
        yield fleet, protocol
    finally:
        fleet.stop()
        protocol.stop()


@pytest.fixture
def platform(stack: LocalStack) -> Iterator[mqtt.Client]:
    with platform_client(stack, "protocol-fleet") as client:
        yield client


def test_each_kind_with_a_protocol_runs_behind_its_simulator_and_the_config_push_applies(
    stack: LocalStack,
    ingest: object,  # first: running before the fleet answers the retained configuration
    fleet: tuple[Fleet, ProtocolSimulators],
    nodes: list[NodeCredentials],
) -> None:
    drivers = fleet[0].drivers
    for device_id, kind in nodes[0].devices:
        has_protocol = m.DeviceKind(kind) in PROTOCOLS
        assert (drivers[device_id] != SIMULATED_DRIVER) == has_protocol, (device_id, drivers)
    assert len(fleet[1].running) == sum(
        1 for _, kind in nodes[0].devices if m.DeviceKind(kind) in PROTOCOLS
    )
    # The registry's configuration (the demo's `simulated` devices) is applied, not refused for
    # the drivers that stand in for them.
    node = nodes[0].node
    wanted = config_version_of(stack, node)
    agent = fleet[0].agents[node]
    wait_until(lambda: agent.config_version == wanted, 60, "the pushed configuration applied")
    refused = (
        "SELECT config_error FROM node_presence WHERE node_id = %s AND config_error IS NOT NULL"
    )
    assert rows(stack.dsn, refused, (node,)) == []


def test_a_scenario_on_the_model_reaches_the_platform_through_the_protocol_and_commands_return(
    stack: LocalStack,
    nodes: list[NodeCredentials],
    fleet: tuple[Fleet, ProtocolSimulators],
    ingest: object,
    platform: mqtt.Client,
) -> None:
    creds = nodes[0]
    door_id = device_of(creds, "door")
    model = fleet[0].devices[door_id]
    assert isinstance(model, SimDoor)
    model.force()  # as a scenario's `force` step does
    incident = "SELECT count(*) FROM incidents WHERE rule = 'door_forced' AND device_id = %s"
    wait_until(lambda: scalar(stack.dsn, incident, (door_id,)) == 1, 60, "forced door incident")
    unlock = send_command(stack, platform, creds, door_id, m.DoorUnlock(duration_s=None))
    assert command_result(stack, unlock) == ("done", None)
    assert not model.locked and model.mode is m.DoorMode.UNLOCKED
    lock = send_command(stack, platform, creds, door_id, m.DoorLock())
    assert command_result(stack, lock) == ("done", None)
    assert model.locked


def test_a_broadcast_to_the_fleets_speaker_is_spoken_at_the_edge_and_played_by_its_model(
    stack: LocalStack,
    nodes: list[NodeCredentials],
    fleet: tuple[Fleet, ProtocolSimulators],
    ingest: object,
    platform: mqtt.Client,
) -> None:
    creds = nodes[0]
    speaker_id = device_of(creds, "speaker")
    model = fleet[0].devices[speaker_id]
    assert isinstance(model, SimSpeaker)
    play = m.SpeakerPlay(text="请注意安全", language=m.SpeechLanguage.ZH_CN)
    assert command_result(stack, send_command(stack, platform, creds, speaker_id, play)) == (
        "done", None)  # fmt: skip
    assert model.played and model.played[-1].startswith("upload:")  # a WAV made at the edge
    volume = send_command(stack, platform, creds, speaker_id, m.SpeakerVolume(level=30))
    assert command_result(stack, volume) == ("done", None)
    assert model.volume == 30
