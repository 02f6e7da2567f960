"""Each service's database role and what it may do: `privileges.sql`, applied after migrating."""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path

import psycopg

PRIVILEGES_FILE = Path(__file__).parent / "privileges.sql"
_NOT_GRANTED_RE = re.compile(r"^-- not granted: ([a-z0-9_]+): (.+)$", re.MULTILINE)


class ServiceRole(StrEnum):
    """The group roles (NOLOGIN) of migration 010; login roles are made members of one."""

    INGEST = "gridwatch_ingest"
    API = "gridwatch_api"
    CLI = "gridwatch_cli"


def apply(conn: psycopg.Connection[tuple[object, ...]], path: Path = PRIVILEGES_FILE) -> None:
    """Revoke every service role's privileges and grant again what the file says, in one
    transaction (a failed grant leaves the previous ones in place)."""
    with conn.transaction():
        conn.execute(path.read_text().encode())


def not_granted(path: Path = PRIVILEGES_FILE) -> dict[str, str]:
    """Tables and sequences deliberately granted to no service, each with why."""
    return dict(_NOT_GRANTED_RE.findall(path.read_text()))
