"""The registry as a file: load, check, plan, apply, export, prune (real PostgreSQL)."""

from __future__ import annotations

import itertools
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from gridwatch import demo
from gridwatch.local import LocalStack, Ports
from gridwatch.services import LocalPostgres, free_port
from registry import document, store
from registry.document import RegistryFileError
from tests.support import rows, scalar

ROOT = Path(__file__).resolve().parents[1]
_numbers = itertools.count(1)


@pytest.fixture
def registry_db(tmp_path: Path, postgres: LocalPostgres) -> Iterator[LocalStack]:
    """A migrated, empty database of its own (no broker, no demo)."""
    s = LocalStack(
        tmp_path / "home",
        preferred=Ports(postgres.port, free_port(), free_port()),
        postgres=postgres,
        database=f"registry_{next(_numbers)}",
    )
    s.start_database()
    yield s
    s.stop()


def cli_conn(stack: LocalStack) -> psycopg.Connection[Any]:
    """A connection as the command line's own role: what `gridwatch registry` runs as."""
    return psycopg.connect(stack.role_dsn("cli"), passfile=str(stack.postgres.passfile))


def apply_file(stack: LocalStack, path: Path, *, prune: bool = False) -> store.Plan:
    with cli_conn(stack) as conn:
        plan = store.plan(conn, document.load(path), prune=prune)
        store.apply(conn, plan, "tester")
    return plan


def test_smoke(registry_db: LocalStack) -> None:
    plan = apply_file(registry_db, demo.DEMO_FILE)
    print(store.format_plan(plan, limit=20))
    again = apply_file(registry_db, demo.DEMO_FILE)
    assert again.empty, store.format_plan(again)
