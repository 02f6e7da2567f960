"""Broker configuration from the registry plus the platform's service accounts."""

from __future__ import annotations

from pathlib import Path

import psycopg
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from gateway.broker import BrokerOptions, ServiceAccount, ServiceRole, hash_password, render
from ingest.provision import node_accounts


class BrokerAccountsSettings(BaseSettings):
    """Passwords of the service accounts (the node accounts come from the registry)."""

    model_config = SettingsConfigDict(
        env_prefix="GRIDWATCH_BROKER_", extra="forbid", hide_input_in_errors=True
    )

    ingest_user: str = Field(default="ingest", description="broker account of the ingest workers")
    ingest_password: SecretStr = Field(description="password of the ingest account")
    api_user: str = Field(default="api", description="broker account of the API replicas")
    api_password: SecretStr = Field(description="password of the API account")


def write_config(
    conn: psycopg.Connection[tuple[object, ...]],
    folder: Path,
    accounts: BrokerAccountsSettings,
    **options: object,
) -> Path:
    """Render the Mosquitto files for every enabled node and the service accounts into `folder`."""
    services = [
        ServiceAccount(
            username=accounts.ingest_user,
            role=ServiceRole.INGEST,
            password_hash=hash_password(accounts.ingest_password.get_secret_value()),
        ),
        ServiceAccount(
            username=accounts.api_user,
            role=ServiceRole.API,
            password_hash=hash_password(accounts.api_password.get_secret_value()),
        ),
    ]
    opts = BrokerOptions(**options)
    return render(opts, folder, node_accounts(conn), services).write(folder)
