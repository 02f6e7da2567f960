"""Fixtures: one real PostgreSQL for the session, and per test a fresh database and Mosquitto.

The server is the tests' own (the embedded wheel's, or GRIDWATCH_PG_BIN's programs: a build with
TimescaleDB preloaded runs every test on TimescaleDB), or, with GRIDWATCH_TEST_DATABASE_URL (an
administrator's URL, its password in PGPASSFILE or the URL), an external server: each test
then makes its own database there, named with a random prefix, and drops it afterwards.
"""

from __future__ import annotations

import itertools
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gridwatch import demo
from gridwatch.local.services import LocalPostgres, free_port
from gridwatch.local.stack import ExternalPostgres, LocalStack, Ports
from tests.console_support import api_url, browser, shots  # noqa: F401  (the browser tests' fixtures)
from tests.support import start_ingest, stop_process

_db_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPostgres]:
    """A real PostgreSQL server shared by the whole session: the tests' own, or the one that
    GRIDWATCH_TEST_DATABASE_URL names (what was made on it is dropped at the end)."""
    folder = tmp_path_factory.mktemp("postgres")
    url = os.environ.get("GRIDWATCH_TEST_DATABASE_URL")
    server = ExternalPostgres(url, folder) if url else LocalPostgres(folder, port=free_port())
    server.start()
    yield server
    server.stop("immediate")


@pytest.fixture
def stack(tmp_path: Path, postgres: LocalPostgres) -> Iterator[LocalStack]:
    """A migrated database of its own, a small demo registry (3 venues), and a running Mosquitto."""
    name = f"test_{next(_db_numbers)}"
    external = isinstance(postgres, ExternalPostgres)
    s = LocalStack(
        tmp_path / "home",
        preferred=Ports(postgres.port, free_port(), free_port()),
        postgres=postgres,
        database=postgres.database_name(name) if external else name,
    )
    try:
        s.start_database()
        s.apply_demo(venues=3, devices_per_venue=6)
        s.start_broker()
        yield s
    finally:
        s.stop()
        if external:
            postgres.drop_database(s.database)


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
