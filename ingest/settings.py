"""Ingest configuration: environment variables prefixed GRIDWATCH_ (nested with __)."""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from casework.tasks import DeadlinePolicy
from gateway.client import MqttSettings
from gateway.codec import DEFAULT_MAX_PAYLOAD
from gateway.messages import CLIP_MAX_BYTES
from gateway.signing import Signer
from gateway.topics import INGEST_SHARE_GROUP
from ingest.clips import DEFAULT_MAX_INCOMPLETE
from ingest.groups import AREA_PATTERN, DEFAULT_GROUP, GROUP_PATTERN

DEV_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/gridwatch"


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class IngestSettings(BaseSettings):
    """Everything an ingest worker needs; see the configuration table in the README."""

    model_config = SettingsConfigDict(
        env_prefix="GRIDWATCH_", env_nested_delimiter="__", extra="forbid", frozen=True,
        hide_input_in_errors=True,  # a password or a database URL is the secret itself
    )  # fmt: skip

    environment: Environment = Field(
        default=Environment.DEVELOPMENT,
        description="production refuses missing secrets and development defaults",
    )
    database_url: SecretStr = Field(
        default=SecretStr(DEV_DATABASE_URL), description="PostgreSQL connection URL"
    )
    mqtt: MqttSettings = Field(
        default_factory=lambda: MqttSettings(port=1884),
        description="broker service listener and the ingest accounts' password (each worker"
        " logs in as its client id, PREFIX-SLOT)",
    )
    client_id_prefix: str = Field(
        default="ingest",
        pattern=r"^[A-Za-z0-9_-]{1,48}$",
        description="worker client ids are PREFIX-SLOT; the broker keeps each slot's session",
    )
    worker_slot: int = Field(
        default=0, ge=0, le=999, description="this worker's slot; keep slots stable across restarts"
    )
    share_group: str = Field(
        default=INGEST_SHARE_GROUP,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$",
        description="MQTT v5 shared subscription group of all workers; the broker lets the"
        " ingest join this group only (GRIDWATCH_BROKER_SHARE_GROUP): use a random name",
    )
    ingest_group: str = Field(
        default=DEFAULT_GROUP,
        pattern=GROUP_PATTERN,
        description="the ingest group this worker belongs to: every worker on one broker (one"
        " district's, in a partitioned province) is of one group, which has one leader for"
        " that broker's work",
    )
    ingest_areas: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="territory ids (comma-separated, as the registry file's `areas`) whose nodes"
        " this group's broker carries; messages from other nodes are refused; unset: the whole"
        " territory (one group). Two running groups may not carry one area",
    )
    session_expiry_s: int = Field(
        default=7 * 86_400, ge=60, description="how long the broker queues for a stopped worker"
    )
    receive_maximum: int = Field(
        default=10_000, ge=10, le=65_535, description="unacknowledged messages the broker may send"
    )
    batch_max: int = Field(default=2_000, ge=1, le=50_000, description="messages per transaction")
    batch_wait_ms: int = Field(
        default=50, ge=1, le=10_000, description="longest wait to fill a batch before committing"
    )
    max_payload_bytes: int = Field(
        default=DEFAULT_MAX_PAYLOAD, ge=1024, description="larger payloads are rejected"
    )
    rejected_payload_cap: int = Field(
        default=4_096, ge=0, description="bytes of a rejected payload that are kept"
    )
    clip_max_bytes: int = Field(
        default=CLIP_MAX_BYTES,
        ge=1024,
        le=CLIP_MAX_BYTES,
        description="an alert's video clip larger than this is rejected",
    )
    clip_max_incomplete: int = Field(
        default=DEFAULT_MAX_INCOMPLETE,
        ge=1,
        le=10_000,
        description="clips one node may have waiting for their other parts; a part of one more"
        " is rejected, so a node cannot fill the database with parts that never join",
    )
    rejected_per_node: int = Field(
        default=1000,
        ge=1,
        description="rejected messages kept per node; past that they are only counted",
    )
    rejected_retention_days: int = Field(
        default=30, ge=1, description="rejected messages not seen again for this long are deleted"
    )
    registry_refresh_s: float = Field(
        default=30.0, gt=0, description="how often the device registry is re-read"
    )
    metrics_host: str = Field(
        default="127.0.0.1",
        description="address the Prometheus endpoint listens on; 0.0.0.0 exposes it to the network",
    )
    metrics_port: int = Field(
        default=9101, ge=0, le=65_535, description="Prometheus endpoint port; 0 disables it"
    )
    deadlines: DeadlinePolicy = Field(
        default_factory=DeadlinePolicy, description="grid task deadlines per severity and stage"
    )
    broker_down_after_s: float = Field(
        default=30.0,
        gt=0,
        description="the leader reports a platform incident when it cannot reach the broker"
        " this long (node-offline timers wait meanwhile)",
    )
    leader: bool = Field(
        default=True,
        description="take part in leader election: one worker per ingest group leads its"
        " broker's work (commands, node configurations, accounts), and one leader of all"
        " groups the database's (timers, retention, notifications)",
    )
    heartbeat_s: float = Field(
        default=5.0, gt=0, le=300, description="how often each worker records its heartbeat"
    )
    slot_stale_s: float = Field(
        default=30.0,
        gt=0,
        description="a slot with a broker session but no heartbeat for this long is an alert",
    )

    command_key_file: Path | None = Field(
        default=None,
        description="the platform's private Ed25519 key that signs commands (`gridwatch keys"
        " init` makes it); required in production: without it the edge refuses every command",
    )
    command_alarm_s: float = Field(
        default=300.0,
        gt=0,
        description="a lock, lockdown or shelter command unanswered this long raises a red"
        " incident for its venue (it is retried meanwhile)",
    )

    @field_validator("ingest_areas", mode="before")
    @classmethod
    def _areas_from_list(cls, value: object) -> object:
        if isinstance(value, str):  # the environment: "dongcheng, xicheng"
            return tuple(a.strip() for a in value.split(",") if a.strip())
        return value

    @field_validator("ingest_areas")
    @classmethod
    def _areas_are_ids(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [a for a in value if not re.fullmatch(AREA_PATTERN, a)]
        if bad:
            raise ValueError(
                f"{', '.join(repr(a) for a in bad)} is not a territory id (letters, digits and _,"
                " as the registry file's `areas` name them; separate ids with commas)"
            )
        twice = sorted({a for a in value if value.count(a) > 1})
        if twice:
            raise ValueError(f"lists {', '.join(twice)} more than once")
        return value

    @model_validator(mode="after")
    def _command_key_usable(self) -> IngestSettings:
        if self.command_key_file is not None:
            Signer.from_file(self.command_key_file)  # SigningError says what is wrong with it
        return self

    @property
    def client_id(self) -> str:
        return f"{self.client_id_prefix}-{self.worker_slot}"

    @model_validator(mode="after")
    def _stale_after_several_heartbeats(self) -> IngestSettings:
        if self.slot_stale_s < 2 * self.heartbeat_s:
            raise ValueError(
                "GRIDWATCH_SLOT_STALE_S must be at least twice GRIDWATCH_HEARTBEAT_S,"
                " or a slow heartbeat would raise a false alert"
            )
        return self

    @model_validator(mode="after")
    def _no_dev_secrets_in_production(self) -> IngestSettings:
        if self.environment is Environment.PRODUCTION:
            if self.database_url.get_secret_value() == DEV_DATABASE_URL:
                raise ValueError("GRIDWATCH_DATABASE_URL must be set in production")
            if self.mqtt.password is None:
                raise ValueError("GRIDWATCH_MQTT__PASSWORD must be set in production")
            if self.share_group == INGEST_SHARE_GROUP:
                raise ValueError(
                    "GRIDWATCH_SHARE_GROUP must be set in production to the random group name"
                    " the broker was configured with (GRIDWATCH_BROKER_SHARE_GROUP)"
                )
            if self.command_key_file is None:
                raise ValueError(
                    "GRIDWATCH_COMMAND_KEY_FILE must be set in production"
                    " (make the key with `gridwatch keys init`)"
                )
        return self


class DeadlineSettings(BaseSettings):
    """Only the task deadlines (GRIDWATCH_DEADLINES__*), for the API and the command line, which
    do not need (and in production could not build) the ingest's whole configuration."""

    model_config = SettingsConfigDict(
        env_prefix="GRIDWATCH_", env_nested_delimiter="__", hide_input_in_errors=True
    )

    deadlines: DeadlinePolicy = Field(default_factory=DeadlinePolicy)


def deadline_policy() -> DeadlinePolicy:
    """The deadlines configured in the environment."""
    return DeadlineSettings().deadlines
