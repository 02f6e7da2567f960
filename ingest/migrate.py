"""Versioned schema migrations: numbered SQL files, applied once each, safe to re-run.

`NNN_name.sql` holds what runs everywhere; `NNN_name.timescale.sql` or `NNN_name.plain.sql`
follows it depending on whether TimescaleDB is available. The choice is made on the first
migration and recorded, so every later migration takes the same path. After every run the
services' privileges are set again from `privileges.sql` (see ingest/privileges.py).
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import psycopg

from ingest import privileges

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_FILE_RE = re.compile(r"^(\d{3})_([a-z0-9_]+)(?:\.(plain|timescale))?\.sql$")
# pg_advisory_lock key shared by every migrator, so concurrent `db migrate` runs serialize.
_LOCK_KEY = 0x67726964  # "grid"


class MigrationRefused(RuntimeError):
    """The migrating role lacks a privilege a migration needs; the message names the grant."""


class Backend(StrEnum):
    PLAIN = "plain"
    TIMESCALE = "timescale"


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    common: str
    variants: dict[Backend, str] = field(default_factory=dict)

    def sql_for(self, backend: Backend) -> str:
        return self.common + "\n" + self.variants.get(backend, "")

    def checksum(self, backend: Backend) -> str:
        return hashlib.sha256(self.sql_for(backend).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class MigrateReport:
    backend: Backend
    applied: list[str]
    version: int


def discover(folder: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Every migration in `folder`, in version order."""
    common: dict[int, tuple[str, str]] = {}
    variants: dict[int, dict[Backend, str]] = {}
    for path in sorted(folder.glob("*.sql")):
        match = _FILE_RE.match(path.name)
        if not match:
            raise ValueError(f"migration file name not understood: {path.name}")
        version, name, variant = int(match[1]), match[2], match[3]
        if variant is None:
            common[version] = (name, path.read_text())
        else:
            variants.setdefault(version, {})[Backend(variant)] = path.read_text()
    orphans = set(variants) - set(common)
    if orphans:
        raise ValueError(f"variant files without a common migration: {sorted(orphans)}")
    return [
        Migration(v, name, sql, variants.get(v, {})) for v, (name, sql) in sorted(common.items())
    ]


def timescale_available(conn: psycopg.Connection[tuple[object, ...]]) -> bool:
    """True if TimescaleDB is installed and preloaded, so CREATE EXTENSION will succeed.

    Preloading is seen from a setting only the preloaded loader defines (its launcher's poll
    time, a server-start setting every session can see), not from `shared_preload_libraries`,
    which only superusers and members of pg_read_all_settings may read: any owner role can
    migrate."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'),"
        " EXISTS (SELECT 1 FROM pg_settings"
        "         WHERE name = 'timescaledb.bgw_launcher_poll_time' AND context = 'postmaster')"
    ).fetchone()
    assert row is not None
    available, preloaded = row
    return bool(available) and bool(preloaded)


def migrate(
    dsn: str, *, backend: Backend | None = None, folder: Path = MIGRATIONS_DIR
) -> MigrateReport:
    """Bring the database at `dsn` up to the newest migration in `folder`."""
    migrations = discover(folder)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            return _migrate_locked(conn, migrations, backend, folder)
        except psycopg.errors.InsufficientPrivilege as exc:  # the bookkeeping or the grants
            raise MigrationRefused(_refusal(conn, "bookkeeping", exc)) from None
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))


def _migrate_locked(
    conn: psycopg.Connection[tuple[object, ...]],
    migrations: list[Migration],
    requested: Backend | None,
    folder: Path,
) -> MigrateReport:
    conn.execute(
        """CREATE TABLE IF NOT EXISTS schema_migrations (
               version    integer PRIMARY KEY,
               name       text NOT NULL,
               backend    text NOT NULL,
               checksum   text NOT NULL,
               applied_at timestamptz NOT NULL DEFAULT now())"""
    )
    rows = conn.execute("SELECT version, name, backend, checksum FROM schema_migrations").fetchall()
    applied = {int(str(v)): (str(n), Backend(str(b)), str(c)) for v, n, b, c in rows}
    backend = _choose_backend(conn, applied, requested)
    if backend is Backend.TIMESCALE and len(applied) < len(migrations):
        _check_can_create_timescale(conn)
    for m in migrations:
        if m.version in applied:
            name, _, checksum = applied[m.version]
            if checksum != m.checksum(backend):
                raise RuntimeError(
                    f"migration {m.version:03d}_{name} was changed after it was applied; "
                    "add a new migration instead of editing an applied one"
                )
    done: list[str] = []
    for m in migrations:
        if m.version in applied:
            continue
        label = f"{m.version:03d}_{m.name}"
        log.info("applying migration %s backend=%s", label, backend)
        with conn.transaction():
            try:
                conn.execute(m.sql_for(backend).encode())
            except psycopg.errors.InsufficientPrivilege as exc:
                raise MigrationRefused(_refusal(conn, label, exc)) from None
            conn.execute(
                "INSERT INTO schema_migrations (version, name, backend, checksum)"
                " VALUES (%s, %s, %s, %s)",
                (m.version, m.name, backend.value, m.checksum(backend)),
            )
        done.append(label)
    if folder == MIGRATIONS_DIR:  # the grants are for these migrations' tables
        privileges.apply(conn)
    version = max([m.version for m in migrations] + list(applied), default=0)
    return MigrateReport(backend, done, version)


def _check_can_create_timescale(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """TimescaleDB is not a trusted extension: only a superuser creates it. Say so before the
    first migration rather than fail half-way."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'),"
        " (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)"
    ).fetchone()
    assert row is not None
    if row[0] or row[1]:
        return
    user, database = conn.info.user, conn.info.dbname
    raise MigrationRefused(
        f"TimescaleDB is installed and preloaded on this server, but role {user} may not create "
        f"the extension (only a superuser can): have a superuser run `CREATE EXTENSION "
        f"timescaledb;` in database {database}, then migrate again, or migrate with "
        "`--backend plain` to use plain PostgreSQL tables"
    )


def _refusal(conn: psycopg.Connection[tuple[object, ...]], label: str, exc: psycopg.Error) -> str:
    """One sentence for a migration the role may not apply: what was refused and the grant."""
    user, database = conn.info.user, conn.info.dbname
    what = exc.diag.message_primary or str(exc)
    return (
        f"{'the migrations table' if label == 'bookkeeping' else 'migration ' + label} was "
        f"refused to role {user} ({what}): the role that migrates must "
        f"own database {database} and its schema public (as a superuser: `ALTER DATABASE "
        f"{database} OWNER TO {user}; ALTER SCHEMA public OWNER TO {user};`), and a superuser "
        f"must first run `CREATE EXTENSION ltree;` (and `CREATE EXTENSION timescaledb;` where "
        "it is used) in it; see docs/operations.md, Database roles"
    )


def _choose_backend(
    conn: psycopg.Connection[tuple[object, ...]],
    applied: dict[int, tuple[str, Backend, str]],
    requested: Backend | None,
) -> Backend:
    if applied:
        recorded = next(iter(applied.values()))[1]
        if requested is not None and requested != recorded:
            raise RuntimeError(
                f"this database was migrated for {recorded}; it cannot switch to {requested} "
                "in place (see docs/operations.md on moving to TimescaleDB)"
            )
        return recorded
    if requested is Backend.TIMESCALE and not timescale_available(conn):
        raise RuntimeError("TimescaleDB was requested but is not installed and preloaded")
    if requested is not None:
        return requested
    return Backend.TIMESCALE if timescale_available(conn) else Backend.PLAIN
