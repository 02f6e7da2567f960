"""Fixtures: one real PostgreSQL for the session, and per test a fresh database and Mosquitto."""

from __future__ import annotations

import itertools
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gridwatch import demo
from gridwatch.local import LocalStack, Ports
from gridwatch.services import LocalPostgres, free_port
from tests.support import start_ingest, stop_process

_db_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPostgres]:
    """A real PostgreSQL server (the embedded wheel's) shared by the whole session."""
    server = LocalPostgres(tmp_path_factory.mktemp("postgres"), port=free_port())
    server.start()
    yield server
    server.stop("immediate")


@pytest.fixture
def stack(tmp_path: Path, postgres: LocalPostgres) -> Iterator[LocalStack]:
    """A migrated database of its own, a small demo registry (3 venues), and a running Mosquitto."""
    s = LocalStack(
        tmp_path / "home",
        preferred=Ports(postgres.port, free_port(), free_port()),
        postgres=postgres,
        database=f"test_{next(_db_numbers)}",
    )
    s.start_database()
    s.apply_demo(venues=3, devices_per_venue=6)
    s.start_broker()
    yield s
    s.stop()


@pytest.fixture
def nodes(stack: LocalStack) -> list[demo.NodeCredentials]:
    """The demo nodes of `stack`, with their secrets."""
    return demo.read_credentials(stack.credentials_file)


@pytest.fixture
def ingest(stack: LocalStack) -> Iterator[subprocess.Popen[bytes]]:
    """A `gridwatch ingest` process for `stack`, stopped cleanly after the test."""
    proc, _ = start_ingest(stack)
    yield proc
    stop_process(proc)
