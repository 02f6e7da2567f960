"""TimescaleDB as production runs it, and plain PostgreSQL answering the same (issue 17).

Every test here runs on plain PostgreSQL (CI) and on TimescaleDB when GRIDWATCH_PG_BIN points at
a build that preloads it (or GRIDWATCH_TEST_DATABASE_URL at such a server); the few that check
what only TimescaleDB has skip on a plain server and say why.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from api.routes.venues import occupancy_series
from gridwatch.local.services import LocalPostgres, scram_verifier
from gridwatch.local.stack import ExternalPostgres
from ingest import migrate as migrations
from tests.support import needs_timescale, rows, scalar

COUNTERS = ["cnt-a", "cnt-b"]
# An hour boundary well in the past, so every reading is "late" for the old 3-day refresh.
NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def _name(postgres: LocalPostgres, base: str) -> str:
    return postgres.database_name(base) if isinstance(postgres, ExternalPostgres) else base


@pytest.fixture
def db(postgres: LocalPostgres) -> Iterator[str]:
    """A freshly migrated database of its own (no registry: the series need none)."""
    name = _name(postgres, f"ts_{secrets.token_hex(3)}")
    postgres.create_database(name)
    dsn = postgres.dsn(name)
    migrations.migrate(dsn)
    yield dsn
    with psycopg.connect(postgres.dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def _backend(dsn: str) -> str:
    return str(scalar(dsn, "SELECT backend FROM schema_migrations LIMIT 1"))


def _add_readings(dsn: str, device: str, start: datetime, hours: int, every_min: int) -> int:
    """Readings of one counter from `start` for `hours`, one every `every_min` minutes."""
    with psycopg.connect(dsn) as conn:
        cur = conn.execute(
            """INSERT INTO occupancy (ts, id, node_id, device_id, seq, zone, count, entered, exited)
               SELECT t, gen_random_uuid(), 'node-1', %s, 0, 'main',
                      (extract(minute FROM t) + extract(hour FROM t))::int, 2, 1
               FROM generate_series(%s::timestamptz, %s::timestamptz - interval '1 second',
                                    make_interval(mins => %s)) AS t""",
            (device, start, start + timedelta(hours=hours), every_min),
        )
        return cur.rowcount


def _run_refresh_policy(dsn: str) -> None:
    """What production's scheduler does every 15 minutes (nothing to do on plain PostgreSQL,
    where the hourly series is computed on read)."""
    if _backend(dsn) != "timescale":
        return
    job = scalar(
        dsn,
        "SELECT job_id FROM timescaledb_information.jobs"
        " WHERE proc_name = 'policy_refresh_continuous_aggregate'"
        " AND hypertable_name = 'occupancy_hourly'",
    )
    deadline = time.monotonic() + 120
    with psycopg.connect(dsn, autocommit=True) as conn:
        while True:
            try:
                conn.execute("CALL run_job(%s)", (job,))
                return
            except psycopg.errors.LockNotAvailable:  # the scheduler's own run of it: wait
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)


def _from_raw(dsn: str, bucket: str, since: datetime, until: datetime) -> list[tuple[object, ...]]:
    """The series computed straight from the raw readings: what both backends must answer."""
    return rows(
        dsn,
        """SELECT date_trunc(%s, date_trunc('hour', ts, 'UTC'), 'UTC'), avg(count)::double precision,
                  max(count), sum(entered)::bigint, sum(exited)::bigint
           FROM occupancy WHERE device_id = ANY(%s) AND ts >= %s AND ts < %s
           GROUP BY 1 ORDER BY 1""",
        (bucket, COUNTERS, since, until),
    )


def _series(dsn: str, bucket: str, since: datetime, until: datetime) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn) as conn:
        return [
            (b, round(float(a), 6), mx, e, x)
            for b, a, mx, e, x in occupancy_series(conn, COUNTERS, bucket, since, until)
        ]


def _rounded(series: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
    return [(b, round(float(str(a)), 6), mx, e, x) for b, a, mx, e, x in series]


def test_late_readings_reach_the_hourly_series_on_both_backends(db: str) -> None:
    """An outbox replaying a fortnight after an outage: the hourly and daily series equal what
    the raw readings say, on TimescaleDB (continuous aggregate) as on plain PostgreSQL (view)."""
    since, until = NOW - timedelta(days=20), NOW - timedelta(hours=2)
    _add_readings(db, COUNTERS[0], NOW - timedelta(days=2), 24, 10)  # on time
    _run_refresh_policy(db)
    # Then the late ones arrive, long after their hours were refreshed or skipped.
    late = _add_readings(db, COUNTERS[0], NOW - timedelta(days=14), 13 * 24, 15)
    late += _add_readings(db, COUNTERS[1], NOW - timedelta(days=6), 48, 5)
    assert late > 1000
    _run_refresh_policy(db)
    for bucket in ("hour", "day"):
        expected = _rounded(_from_raw(db, bucket, since, until))
        assert len(expected) > (300 if bucket == "hour" else 13)
        assert _series(db, bucket, since, until) == expected, f"{bucket} series on {_backend(db)}"
    hours = scalar(
        db,
        "SELECT sum(samples) FROM occupancy_hourly WHERE bucket >= %s AND bucket < %s",
        (since, until),
    )
    assert hours == scalar(
        db, "SELECT count(*) FROM occupancy WHERE ts >= %s AND ts < %s", (since, until)
    )


def test_the_occupancy_query_is_never_prepared(db: str) -> None:
    """psycopg prepares a statement on its 5th run; a generic plan of this one cannot exclude
    chunks by the period, so it must stay an unnamed statement, planned for each period."""
    _add_readings(db, COUNTERS[0], NOW - timedelta(days=3), 48, 30)
    with psycopg.connect(db) as conn:
        for day in range(8):
            until = NOW - timedelta(days=day)
            occupancy_series(conn, COUNTERS, "hour", until - timedelta(days=1), until)
        prepared = conn.execute(
            "SELECT statement FROM pg_prepared_statements WHERE statement LIKE %s",
            ("%occupancy_hourly%",),
        ).fetchall()
    assert prepared == []


# --- db migrate as the owner role of the docs, not a superuser --------------------------------


@pytest.fixture
def owner(postgres: LocalPostgres) -> Iterator[tuple[str, str]]:
    """A login role that is not a superuser (as docs/operations.md creates `gridwatch`), and
    the conninfo of the admin, for the role's databases."""
    role = f"gwtest_owner_{secrets.token_hex(3)}"
    password = secrets.token_urlsafe(18)
    with psycopg.connect(postgres.dsn(), autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEROLE PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(scram_verifier(password))
            )
        )
    made: list[str] = []
    yield role, password
    with psycopg.connect(postgres.dsn(), autocommit=True) as conn:
        for name in conn.execute(
            "SELECT datname FROM pg_database WHERE datdba = (SELECT oid FROM pg_roles"
            " WHERE rolname = %s) OR datname LIKE %s",
            (role, f"%{role}%"),
        ).fetchall():
            made.append(str(name[0]))
        for name in made:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def _database_for(postgres: LocalPostgres, role: str, *, owned: bool, extensions: bool) -> str:
    name = _name(postgres, f"db_{role}")
    with psycopg.connect(postgres.dsn(), autocommit=True) as conn:
        owner_clause = sql.SQL(" OWNER {}").format(sql.Identifier(role)) if owned else sql.SQL("")
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)) + owner_clause)
        if not owned:
            conn.execute(
                sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                    sql.Identifier(name), sql.Identifier(role)
                )
            )
    if extensions:  # as the docs say: once, as a superuser, before the first migration
        with psycopg.connect(postgres.dsn(name), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS ltree")
            if migrations.timescale_available(conn):
                conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    return name


def _as(postgres: LocalPostgres, database: str, role: str, password: str) -> str:
    admin = conninfo_to_dict(postgres.dsn(database))
    return make_conninfo(
        host=str(admin["host"]), port=str(admin.get("port") or 5432), dbname=database,
        user=role, password=password,
    )  # fmt: skip


def test_db_migrate_works_for_an_owner_that_is_not_a_superuser(
    postgres: LocalPostgres, owner: tuple[str, str]
) -> None:
    role, password = owner
    database = _database_for(postgres, role, owned=True, extensions=True)
    dsn = _as(postgres, database, role, password)
    with psycopg.connect(postgres.dsn(database)) as conn:
        expected = migrations.timescale_available(conn)
    first = migrations.migrate(dsn)
    assert first.applied and first.version == max(m.version for m in migrations.discover())
    assert first.backend is (migrations.Backend.TIMESCALE if expected else migrations.Backend.PLAIN)
    again = migrations.migrate(dsn)
    assert again.applied == [] and again.backend is first.backend


def test_db_migrate_says_which_grant_a_role_lacks(
    postgres: LocalPostgres, owner: tuple[str, str]
) -> None:
    """A role that does not own the database: one sentence naming the grant, no traceback,
    and nothing half-applied."""
    role, password = owner
    database = _database_for(postgres, role, owned=False, extensions=False)
    dsn = _as(postgres, database, role, password)
    env = {**os.environ, "PGPASSWORD": password}
    host, port = conninfo_to_dict(dsn)["host"], conninfo_to_dict(dsn)["port"]
    url = f"postgresql://{role}@{host}:{port}/{database}"
    result = subprocess.run(
        [sys.executable, "-m", "gridwatch.cli", "db", "migrate", "--database-url", url],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gridwatch: "), result.stderr
    assert f"ALTER DATABASE {database} OWNER TO {role}" in lines[0]
    assert "CREATE EXTENSION ltree" in lines[0]
    assert password not in result.stderr
    applied = scalar(
        postgres.dsn(database),
        "SELECT count(*) FROM pg_tables WHERE tablename = 'schema_migrations'",
    )
    if applied:
        assert scalar(postgres.dsn(database), "SELECT count(*) FROM schema_migrations") == 0


def test_a_timescale_server_says_a_superuser_must_create_the_extension(
    postgres: LocalPostgres, owner: tuple[str, str]
) -> None:
    role, password = owner
    database = _database_for(postgres, role, owned=True, extensions=False)
    with psycopg.connect(postgres.dsn(database)) as conn:
        if not migrations.timescale_available(conn):
            pytest.skip("needs a server with TimescaleDB preloaded (see GRIDWATCH_PG_BIN)")
    dsn = _as(postgres, database, role, password)
    with pytest.raises(migrations.MigrationRefused) as refused:
        migrations.migrate(dsn)
    message = str(refused.value)
    assert f"have a superuser run `CREATE EXTENSION timescaledb;` in database {database}" in message
    assert "--backend plain" in message
    assert scalar(postgres.dsn(database), "SELECT count(*) FROM schema_migrations") == 0
    assert migrations.migrate(dsn, backend=migrations.Backend.PLAIN).backend.value == "plain"


def test_timescale_is_seen_without_reading_shared_preload_libraries(
    postgres: LocalPostgres, owner: tuple[str, str]
) -> None:
    role, password = owner
    database = _database_for(postgres, role, owned=True, extensions=False)
    with psycopg.connect(postgres.dsn(database)) as admin:
        as_admin = migrations.timescale_available(admin)
    with psycopg.connect(_as(postgres, database, role, password)) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT current_setting('shared_preload_libraries')")
        conn.rollback()
        assert migrations.timescale_available(conn) is as_admin


# --- what only TimescaleDB has -----------------------------------------------------------------


SERIES_KEYS = {
    "door_events": "device_id", "occupancy": "device_id", "speaker_status": "device_id",
    "camera_alerts": "device_id", "command_results": "device_id", "camera_status": "device_id",
    "presence_events": "node_id",
}  # fmt: skip


def test_timescale_keys_and_compression_name_the_device(db: str) -> None:
    needs_timescale(db)
    keys = dict(
        rows(
            db,
            "SELECT conrelid::regclass::text, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE contype = 'p' AND conrelid::regclass::text = ANY(%s)",
            (list(SERIES_KEYS),),
        )
    )
    assert keys == {t: f"PRIMARY KEY (id, {c}, ts)" for t, c in SERIES_KEYS.items()}
    settings = rows(
        db,
        "SELECT hypertable_name, attname, segmentby_column_index, orderby_column_index,"
        " orderby_asc FROM timescaledb_information.compression_settings"
        " WHERE hypertable_name = ANY(%s)",
        (list(SERIES_KEYS),),
    )
    for table, column in SERIES_KEYS.items():
        mine = {(a, s, o, asc) for t, a, s, o, asc in settings if t == table}
        assert mine == {(column, 1, None, None), ("ts", None, 1, False)}, table
    offset = scalar(
        db,
        "SELECT config->>'start_offset' FROM timescaledb_information.jobs"
        " WHERE proc_name = 'policy_refresh_continuous_aggregate'",
    )
    assert offset == "390 days"


def test_a_late_reading_into_a_compressed_chunk_is_stored_once(db: str) -> None:
    needs_timescale(db)
    start = NOW - timedelta(days=12)
    for device in ("cnt-a", "cnt-b", "cnt-c"):
        _add_readings(db, device, start, 24, 10)
    with psycopg.connect(db, autocommit=True) as conn:
        compressed = conn.execute(
            "SELECT count(compress_chunk(c)) FROM show_chunks('occupancy') c"
        ).fetchone()
        assert compressed is not None and compressed[0] >= 1
        late = (start + timedelta(minutes=7), "9b6c7a54-46b4-4c7b-9d3c-5b3f4f1e0a11", "cnt-b")
        insert = (
            "INSERT INTO occupancy (ts, id, node_id, device_id, seq, zone, count, entered, exited)"
            " VALUES (%s, %s, 'node-1', %s, 1, 'main', 3, 1, 0) ON CONFLICT DO NOTHING"
        )
        assert conn.execute(insert, late).rowcount == 1
        assert conn.execute(insert, late).rowcount == 0  # a redelivery stores nothing
    assert scalar(db, "SELECT count(*) FROM occupancy WHERE id = %s", (late[1],)) == 1
    _run_refresh_policy(db)
    since, until = start, start + timedelta(days=1)
    assert _series(db, "hour", since, until) == _rounded(_from_raw(db, "hour", since, until))
