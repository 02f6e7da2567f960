"""Broker configuration from the registry plus the ingest's accounts."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Annotated, Any

import psycopg
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from gateway.broker import BrokerOptions, IngestAccounts, NodeAccount, hash_password, render
from gateway.topics import ID_PATTERN
from ingest.groups import AREA_PATTERN
from ingest.settings import Environment

log = logging.getLogger(__name__)


class BrokerAccountsSettings(BaseSettings):
    """The ingest's broker accounts (the node accounts come from the registry)."""

    model_config = SettingsConfigDict(
        env_prefix="GRIDWATCH_BROKER_", extra="forbid", hide_input_in_errors=True
    )

    ingest_prefix: str = Field(
        default="ingest",
        pattern=r"^[A-Za-z0-9_-]{1,48}$",
        description="the ingest workers' accounts are PREFIX-SLOT (the workers' client ids)",
    )
    ingest_slots: int = Field(default=16, ge=1, le=1000, description="worker slots 0..N-1")
    ingest_password: SecretStr = Field(
        description="password of the ingest accounts (GRIDWATCH_BROKER_INGEST_PASSWORD; the"
        " ingest's GRIDWATCH_MQTT__PASSWORD)"
    )
    share_group: str = Field(
        pattern=ID_PATTERN,
        description="the ingest's shared-subscription group (GRIDWATCH_BROKER_SHARE_GROUP; the"
        " ingest's GRIDWATCH_SHARE_GROUP): a random name, so nobody can guess it",
    )

    control_password: SecretStr | None = Field(
        default=None,
        description="password of the broker's control account `gridwatch-control`, its"
        " administrator (GRIDWATCH_BROKER_CONTROL_PASSWORD, also given to the ingest, whose"
        " leader keeps the node accounts in line with the registry); none: no control account,"
        " and node accounts change only when the broker configuration is written again",
    )

    areas: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="territory ids (comma-separated) whose nodes get accounts in this broker's"
        " configuration: a district's broker, the same as its ingest group's"
        " GRIDWATCH_INGEST_AREAS; unset: every node",
    )

    @field_validator("areas", mode="before")
    @classmethod
    def _areas_from_list(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(a.strip() for a in value.split(",") if a.strip())
        return value

    @field_validator("areas")
    @classmethod
    def _areas_are_ids(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [a for a in value if not re.fullmatch(AREA_PATTERN, a)]
        if bad:
            raise ValueError(f"{', '.join(repr(a) for a in bad)} is not a territory id")
        return value

    def control_hash(self) -> str | None:
        pw = self.control_password
        return hash_password(pw.get_secret_value()) if pw is not None else None

    def accounts(self, extra_groups: tuple[str, ...] = ()) -> IngestAccounts:
        return IngestAccounts(
            prefix=self.ingest_prefix,
            slots=self.ingest_slots,
            password_hash=hash_password(self.ingest_password.get_secret_value()),
            share_groups=(self.share_group, *extra_groups),
        )


class BrokerEnvironment(BaseSettings):
    """Whether the generated broker configuration is for production (GRIDWATCH_ENVIRONMENT)."""

    model_config = SettingsConfigDict(env_prefix="GRIDWATCH_", extra="ignore")

    environment: Environment = Field(
        default=Environment.DEVELOPMENT,
        description="production refuses an edge listener other machines reach without TLS",
    )


def write_config(
    conn: psycopg.Connection[tuple[object, ...]],
    folder: Path,
    accounts: BrokerAccountsSettings,
    *,
    extra_share_groups: tuple[str, ...] = (),
    environment: Environment = Environment.DEVELOPMENT,
    **options: Any,
) -> Path:
    """Render the Mosquitto files for every enabled node and the ingest into `folder`.

    An edge listener that other machines can reach without TLS is refused in production and
    warned about in development."""
    opts = BrokerOptions.model_validate(options)
    exposure = opts.plaintext_exposure()
    if exposure is not None:
        if environment is Environment.PRODUCTION:
            raise ValueError(f"refused in production: {exposure}")
        log.warning("broker configuration for development only: %s", exposure)
    files = render(
        opts, folder, node_accounts(conn, accounts.areas), accounts.accounts(extra_share_groups),
        accounts.control_hash(),
    )  # fmt: skip
    return files.write(folder)


def node_accounts(
    conn: psycopg.Connection[tuple[object, ...]], areas: tuple[str, ...] = ()
) -> list[NodeAccount]:
    """The broker's initial node accounts: every node (under `areas`, territory ids, when given)
    with a password hash (disabled ones, and those of disabled venues, as disabled accounts),
    marked with the secret they hold. Nodes that only have a sealed secret or none get their
    account from the leader's reconcile once the broker runs."""
    unknown = sorted(
        set(areas) - {str(r[0]) for r in conn.execute(
            "SELECT id FROM territory WHERE id = ANY(%s)", (list(areas),)).fetchall()}
    )  # fmt: skip
    if unknown:
        raise ValueError(
            f"GRIDWATCH_BROKER_AREAS names {', '.join(unknown)}, which the territory does not"
            " have: give territory ids as the registry file lists them (its `areas`)"
        )
    rows = conn.execute(
        """SELECT n.venue_id, n.id, n.password_hash, n.disabled OR v.disabled, n.secret_issued_at
           FROM edge_nodes n JOIN venues v ON v.id = n.venue_id
           JOIN territory t ON t.id = v.grid_id
           WHERE n.password_hash IS NOT NULL
             AND (%s::text[] = '{}' OR EXISTS (SELECT 1 FROM territory a
                                               WHERE a.id = ANY(%s::text[]) AND t.path <@ a.path))
           ORDER BY n.id""",
        (list(areas),) * 2,
    ).fetchall()
    return [
        NodeAccount(site=str(v), node=str(n), password_hash=str(h), disabled=bool(d),
                    secret_issued_at=t)
        for v, n, h, d, t in rows
    ]  # fmt: skip
