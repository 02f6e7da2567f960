"""The edge agent's site configuration (a YAML file), checked strictly at start, and the
configuration the platform pushed since (kept beside the outbox, used on the next start)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from edge.outbox import DEFAULT_MAX_BULK_BYTES, Durability
from gateway.client import MqttSettings, is_loopback
from gateway.messages import DeviceKind
from gateway.signing import Verifier
from gateway.topics import ID_PATTERN


class _Config(BaseModel):
    # Errors never repeat input values: a site file holds the site secret and broker password.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class DeviceConfig(_Config):
    """One device at the site and the driver that talks to it."""

    id: str = Field(pattern=ID_PATTERN, description="device id as registered on the platform")
    kind: DeviceKind = Field(description="door, counter, camera or speaker")
    driver: str = Field(min_length=1, description="driver name, e.g. 'simulated'")
    model: str | None = Field(default=None, max_length=64, description="hardware model")
    zone: str | None = Field(default=None, max_length=64, description="where it is at the venue")
    settings: dict[str, Any] = Field(
        default_factory=dict, description="driver-specific settings, checked by the driver"
    )


class OutboxConfig(_Config):
    """Store and forward."""

    path: Path = Field(description="SQLite file of the outbox; on persistent storage")
    max_messages: int = Field(
        default=1_000_000, ge=100, description="size bound; when full, oldest telemetry goes first"
    )
    max_bulk_bytes: int = Field(
        default=DEFAULT_MAX_BULK_BYTES,
        ge=4 * 1024 * 1024,
        description="disk for alerts' video clips waiting to be sent; past it the oldest whole"
        " clips are dropped (alarms and readings are never dropped for clips)",
    )
    durability: Durability = Field(
        default=Durability.FULL, description="full: fsync each message; normal: crash-safe only"
    )
    replay_rate: float = Field(
        default=200.0, gt=0, description="messages per second at most, so a backlog cannot swamp"
    )
    window: int = Field(
        default=100, ge=1, le=1000, description="messages in flight awaiting PUBACK at most"
    )
    receipt_timeout_s: float = Field(
        default=120.0,
        ge=1,
        description="messages the platform has not confirmed stored after this long are sent"
        " again (the wait doubles each time, up to an hour); a reconnect sends them at once",
    )


class SiteConfig(_Config):
    """Everything one edge agent needs."""

    site: str = Field(pattern=ID_PATTERN, description="venue id")
    node: str = Field(pattern=ID_PATTERN, description="this edge node's id and broker account")
    broker: MqttSettings = Field(description="the broker's edge listener and this node's secret")
    broker_ca: str | None = Field(
        default=None,
        max_length=100_000,
        description="the CA certificate (PEM) that signed the broker's, inline (as an enrolment"
        " writes it): TLS, as broker.tls_ca with a file",
    )
    site_secret: SecretStr = Field(
        description="key for hashing credentials (HMAC-SHA256) before they leave the site"
    )
    command_key: str | None = Field(
        default=None,
        description="the platform's public key for commands (base64 Ed25519, printed by"
        " `gridwatch keys init`); without it the agent executes no command",
    )
    outbox: OutboxConfig
    metrics_port: int = Field(default=0, ge=0, le=65535, description="Prometheus port; 0: off")
    devices: list[DeviceConfig] = Field(
        description="the site's devices; the platform may push newer ones (see config_version)"
    )
    config_version: int = Field(
        default=0,
        ge=0,
        description="the platform's configuration version these devices are (0: written by"
        " hand); a pushed configuration is applied only when newer",
    )
    development_site: bool = Field(
        default=False,
        description="a test site: may talk plaintext MQTT to a broker on another machine",
    )

    @model_validator(mode="after")
    def _checks(self) -> SiteConfig:
        if not self.devices and self.config_version == 0:
            # From the platform a node may have none yet (they come by configuration push).
            raise ValueError("devices: a site file written by hand lists at least one device")
        ids = [d.id for d in self.devices]
        doubled = sorted({i for i in ids if ids.count(i) > 1})
        if doubled:
            raise ValueError(f"device ids appear twice: {doubled}")
        if len(self.site_secret.get_secret_value()) < 16:
            raise ValueError("site_secret must be at least 16 characters")
        broker = self.broker
        if self.broker_ca is not None:
            if broker.tls_ca is not None:
                raise ValueError("give the broker's CA once: broker.tls_ca (a file) or broker_ca")
            if "-----BEGIN CERTIFICATE-----" not in self.broker_ca:
                raise ValueError("broker_ca is not a PEM certificate (-----BEGIN CERTIFICATE-----)")
        tls = broker.tls_ca is not None or self.broker_ca is not None
        if not tls and not is_loopback(broker.host) and not self.development_site:
            raise ValueError(
                f"broker.tls_ca is not set but broker.host {broker.host} is another machine: the"
                " node's secret and every message would cross the network in plaintext; set"
                " broker.tls_ca to the CA that signed the broker's certificate (or, on a test"
                " site only, development_site: true)"
            )
        if self.command_key is not None:
            Verifier(self.command_key)  # a key that cannot verify anything is a config error
        return self


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the file and the field."""


def load(path: Path) -> SiteConfig:
    """Read and check a site configuration file."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    try:
        return SiteConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {problems(exc)}") from None


def problems(exc: ValidationError, prefix: str = "") -> str:
    """What a validation error found, one `field.path: message` per problem, for people."""
    return "; ".join(
        f"{prefix}{'.'.join(str(p) for p in e['loc']) or '(file)'}: {e['msg']}"
        for e in exc.errors()
    )
