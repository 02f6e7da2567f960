"""Helpers for edge agent tests: one-venue fleets and site files for agent subprocesses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import yaml

from gridwatch.demo import NodeCredentials
from gridwatch.local import LocalStack
from gridwatch.simulate import OPENCV_DRIVER, venues_from
from simulators.fleet import SIMULATED_DRIVER, Fleet, site_secret_for

QUIET_RATE = 0.001  # periodic reports about once an hour: the test drives the devices itself


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
