"""Configuration pushed by the platform: trusted or not, what it changes, and kept for restarts.

A node's configuration (gateway.messages.NodeConfig) arrives retained on its `cfg` topic. It is
applied only when it is signed by the platform, meant for this node and newer than the version
the node runs; its devices must each have a known driver whose settings construct. The applied
configuration is written (as received, signature and all) beside the outbox, 0600, so that the
next start runs it instead of the site file's devices.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from edge import drivers as d
from edge.config import ConfigError, DeviceConfig, SiteConfig
from gateway import codec, topics
from gateway import messages as m
from gateway.codec import DecodeError
from gateway.signing import SigningError, Verifier

log = logging.getLogger(__name__)

DriverFactory = Callable[[DeviceConfig], d.Device]
"""Builds (does not start) a device's driver; raises ConfigError naming what is wrong."""


def devices_of(config: m.NodeConfig) -> list[DeviceConfig]:
    """A pushed configuration's devices as the site file would list them."""
    return [
        DeviceConfig(
            id=dev.id, kind=dev.kind, driver=dev.driver, model=dev.model, zone=dev.zone,
            settings=dict(dev.settings),
        )
        for dev in config.devices
    ]  # fmt: skip


def refusal(
    config: m.NodeConfig, payload: bytes, verifier: Verifier | None, site: str, node: str
) -> str | None:
    """Why a configuration must not be applied (whatever its version); None if it may be."""
    if verifier is None:
        return "this node has no command_key in its site file, so it trusts no configuration"
    try:
        verifier.verify(payload)
    except SigningError as exc:
        return f"not signed by the platform: {exc}"
    if (config.site, config.node) != (site, node):
        return f"meant for node {config.node} at {config.site}, not {node} at {site}"
    return None


def changed(old: DeviceConfig, new: DeviceConfig) -> bool:
    """Whether a device's driver must restart: anything its driver is built from differs."""
    return (old.kind, old.driver, old.model, old.settings) != (
        new.kind, new.driver, new.model, new.settings,
    )  # fmt: skip


@dataclass(slots=True)
class Plan:
    """What applying a configuration does to the running drivers."""

    devices: list[DeviceConfig]
    start: dict[str, d.Device] = field(default_factory=dict)  # built, not started: new, changed
    stop: list[str] = field(default_factory=list)  # running drivers to stop: removed, changed
    kept: list[str] = field(default_factory=list)

    @property
    def restarted(self) -> list[str]:
        return [i for i in self.stop if i in self.start]

    def summary(self) -> str:
        added = [i for i in self.start if i not in self.stop]
        removed = [i for i in self.stop if i not in self.start]
        return f"started={added} stopped={removed} restarted={self.restarted} kept={len(self.kept)}"


def plan(
    running: dict[str, DeviceConfig], wanted: list[DeviceConfig], factory: DriverFactory | None
) -> Plan:
    """The drivers to start and stop to go from `running` to `wanted`; ConfigError naming every
    device that cannot be driven (nothing is started then)."""
    out = Plan(wanted)
    problems: list[str] = []
    for dev in wanted:
        old = running.get(dev.id)
        if old is not None and not changed(old, dev):
            out.kept.append(dev.id)
            continue
        if factory is None:
            problems.append(
                f"devices.{dev.id}: this agent runs fixed drivers (a simulated fleet) and cannot"
                " start or change one; restart it with the new devices"
            )
            continue
        try:
            out.start[dev.id] = factory(dev)
        except ConfigError as exc:
            problems.append(str(exc))
        if old is not None:
            out.stop.append(dev.id)
    wanted_ids = {dev.id for dev in wanted}
    out.stop += [i for i in running if i not in wanted_ids]
    if problems:
        raise ConfigError("; ".join(problems))
    return out


class Kept:
    """The applied configuration, beside the outbox: `{node}.config.json`, 0600."""

    def __init__(self, outbox_path: Path, node: str) -> None:
        self.path = outbox_path.parent / f"{node}.config.json"

    def save(self, payload: bytes) -> None:
        """Write the configuration as received (a crash mid-write leaves the previous one)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def load(self, site: SiteConfig) -> m.NodeConfig | None:
        """The kept configuration if it is still trusted for this site file; None otherwise."""
        if not self.path.exists():
            return None
        try:
            payload = self.path.read_bytes()
            inbound = codec.decode_for_topic(
                topics.config(site.site, site.node), payload, codec.CONFIG_MAX_PAYLOAD
            )
        except (OSError, DecodeError, json.JSONDecodeError) as exc:
            log.error("kept configuration %s unreadable, using the site file's: %s", self.path, exc)
            return None
        config = inbound.message
        assert isinstance(config, m.NodeConfig)
        verifier = Verifier(site.command_key) if site.command_key else None
        why = refusal(config, payload, verifier, site.site, site.node)
        if why is not None:
            log.error("kept configuration %s not used (%s), using the site file's", self.path, why)
            return None
        return config


def effective(site: SiteConfig) -> SiteConfig:
    """The site file, with the devices of the configuration kept beside its outbox when that is
    newer than the file's."""
    kept = Kept(site.outbox.path, site.node).load(site)
    if kept is None or kept.version <= site.config_version:
        return site
    try:
        devices = devices_of(kept)
    except ValidationError as exc:
        log.error("kept configuration version %d not used: %s", kept.version, exc)
        return site
    log.info(
        "running the kept configuration node=%s version=%d devices=%d (the site file has %d)",
        site.node, kept.version, len(devices), site.config_version,
    )  # fmt: skip
    return site.model_copy(update={"devices": devices, "config_version": kept.version})
