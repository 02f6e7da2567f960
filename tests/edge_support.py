"""Helpers for edge agent tests: one-venue fleets and site files for agent subprocesses."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import yaml

from edge import config as edge_config
from edge.agent import EdgeAgent
from edge.config import SiteConfig
from edge.drivers import Device
from gateway import codec, topics
from gateway import messages as m
from gateway.client import connect_async, new_client
from gateway.signing import Signer
from gridwatch.demo import NodeCredentials
from gridwatch.local.stack import LocalStack
from gridwatch.simulate import OPENCV_DRIVER, venues_from
from simulators.fleet import SIMULATED_DRIVER, Fleet, site_secret_for

QUIET_RATE = 0.001  # periodic reports about once an hour: the test drives the devices itself


@contextmanager
def platform_client(stack: LocalStack, name: str) -> Iterator[mqtt.Client]:
    """An MQTT client on the platform's account, to publish commands as the API does."""
    client, watch = new_client(f"platform-{name}", stack.service_mqtt())
    connect_async(client, stack.service_mqtt(), clean_start=True)
    assert watch.connected.wait(10), watch.last_reason
    try:
        yield client
    finally:
        client.disconnect()
        client.loop_stop()


def send_command(
    stack: LocalStack, client: mqtt.Client, creds: NodeCredentials, device: str,
    action: m.CommandAction,
) -> uuid.UUID:  # fmt: skip
    """Sign a command with the platform's key and publish it to the device, as the API does."""
    now = m.now()
    command = m.Command(v=1, id=uuid.uuid4(), ts=now, device=device,
                        deadline=now + timedelta(seconds=60), action=action)  # fmt: skip
    payload = json.dumps(Signer.from_file(stack.command_key_file).sign(codec.to_wire(command)))
    client.publish(topics.command(creds.site, creds.node, device), payload.encode(), qos=1)
    return command.id


@dataclass
class SiteAgent:
    """A real edge agent run from node's site file, its devices by id."""

    agent: EdgeAgent
    devices: dict[str, Device]
    config: SiteConfig


@contextmanager
def site_agent(
    stack: LocalStack, creds: NodeCredentials, folder: Path,
    hardware: dict[str, tuple[str, dict[str, Any]]],
) -> Iterator[SiteAgent]:  # fmt: skip
    """The node's edge agent from its site file, as `gridwatch edge` runs it, with the devices
    in `hardware` (id: (driver, settings)) on those drivers and the others simulated, running
    on a thread until the block ends."""
    from gridwatch.simulate import Drivers

    path = site_file(stack, creds, folder)
    site = yaml.safe_load(path.read_text())
    for dev in site["devices"]:
        if dev["id"] in hardware:
            dev["driver"], dev["settings"] = hardware[dev["id"]]
    path.write_text(yaml.safe_dump(site, allow_unicode=True))
    config = edge_config.load(path)
    drivers = Drivers(config, "")
    devices = [drivers.build(dev) for dev in config.devices]
    agent = EdgeAgent(config, devices, drivers=drivers.build)
    stop = threading.Event()
    drivers.start()
    agent.start()
    runner = threading.Thread(target=agent.run, args=(stop,), daemon=True)
    runner.start()
    try:
        yield SiteAgent(agent, {dev.id: dev for dev in devices}, config)
    finally:
        stop.set()
        runner.join(10)
        agent.stop()
        drivers.stop()


def command_result(stack: LocalStack, command_id: uuid.UUID) -> tuple[str, str | None]:
    """The stored answer to a command (status, detail), once it is there."""
    from tests.support import rows, wait_until

    query = "SELECT status::text, detail FROM command_results WHERE command_id = %s"
    wait_until(lambda: bool(rows(stack.dsn, query, (command_id,))), 30, "command result")
    status, detail = rows(stack.dsn, query, (command_id,))[0]
    return str(status), None if detail is None else str(detail)


def fleet_of(
    stack: LocalStack,
    creds: list[NodeCredentials],
    folder: Path,
    *,
    rate: float = QUIET_RATE,
    speed: float = 1.0,
) -> Fleet:
    """A started fleet for these nodes, every node connected."""
    fleet = Fleet(
        venues_from(creds), stack.edge_mqtt(), folder, rate=rate, speed=speed,
        command_key=stack.command_public_key,
    )  # fmt: skip
    fleet.start()
    assert fleet.wait_connected(20), "fleet did not connect"
    return fleet


def config_version_of(stack: LocalStack, node: str) -> int:
    """The configuration version the registry wants the node to run."""
    with psycopg.connect(stack.dsn) as conn:
        row = conn.execute(
            "SELECT config_version FROM edge_nodes WHERE id = %s", (node,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def site_file(
    stack: LocalStack,
    creds: NodeCredentials,
    folder: Path,
    *,
    report_every_s: dict[str, float] | None = None,
    password: str | None = None,
    cameras: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """A site file for `gridwatch edge` with simulated devices for this node; the devices in
    `cameras` are analysed cameras (driver `opencv`) with those settings instead. The file
    claims the node's current configuration version, so the platform's push (which has no
    test settings) does not replace its drivers."""
    every = report_every_s or {}
    cameras = cameras or {}
    config = {
        "site": creds.site,
        "node": creds.node,
        "broker": {"host": "127.0.0.1", "port": stack.ports.edge, "password": password or creds.secret},
        "site_secret": site_secret_for(creds.secret),
        "command_key": stack.command_public_key,
        "config_version": config_version_of(stack, creds.node),
        "outbox": {"path": str(folder / "outbox.db"), "durability": "normal"},
        "devices": [
            {"id": dev, "kind": kind, "driver": OPENCV_DRIVER, "settings": cameras[dev]}
            if dev in cameras
            else {"id": dev, "kind": kind, "driver": SIMULATED_DRIVER,
                  "settings": {"report_every_s": every.get(kind, 3600)}}
            for dev, kind in creds.devices
        ],
    }  # fmt: skip
    path = folder / "site.yaml"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    return path
