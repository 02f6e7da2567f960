"""Least privilege in PostgreSQL: passwords for everyone, one role per service with only what its
code uses, and an audit log nobody can change."""

from __future__ import annotations

import os
import stat
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from casework import incidents, tasks
from casework.rules import Raise, Rule, Severity
from gridwatch.local.services import LocalPostgres, free_port
from gridwatch.local.stack import LOGIN_ROLES, LocalStack
from ingest import audit, privileges, registry
from ingest.privileges import ServiceRole
from tests.support import needs_own_server, rows, scalar, start_ingest, stop_process

SERVICES = list(LOGIN_ROLES)


def undecided(dsn: str) -> list[str]:
    """Tables, views and sequences of the schema that no service role may use and that
    privileges.sql does not name as deliberately not granted."""
    roles = [r.value for r in ServiceRole]
    found = rows(
        dsn,
        """SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
             AND NOT EXISTS (SELECT 1 FROM unnest(%s::text[]) AS r(name)
                             WHERE CASE WHEN c.relkind = 'S'
                                   THEN has_sequence_privilege(r.name, c.oid, 'USAGE, SELECT, UPDATE')
                                   ELSE has_any_column_privilege(r.name, c.oid, 'SELECT, INSERT, UPDATE')
                                        OR has_table_privilege(r.name, c.oid, 'DELETE')
                                   END)
           ORDER BY 1""",
        (roles,),
    )
    return [str(r[0]) for r in found if r[0] not in privileges.not_granted()]


def refused(dsn: str, statement: str) -> bool:
    """Whether PostgreSQL refuses the statement for lack of privilege (nothing is changed)."""
    with psycopg.connect(dsn) as conn:
        try:
            conn.execute(statement.encode())
        except psycopg.errors.InsufficientPrivilege:
            return True
        finally:
            conn.rollback()
    return False


def test_every_table_and_sequence_has_its_grants_decided(stack: LocalStack) -> None:
    assert undecided(stack.dsn) == []
    names = {str(r[0]) for r in rows(stack.dsn, "SELECT relname FROM pg_class")}
    assert set(privileges.not_granted()) <= names, "privileges.sql names what no longer exists"


def test_a_table_added_without_grants_fails_the_check(stack: LocalStack) -> None:
    with psycopg.connect(stack.dsn) as conn:
        conn.execute("CREATE TABLE forgotten (id bigserial PRIMARY KEY)")
    assert undecided(stack.dsn) == ["forgotten", "forgotten_id_seq"]


def test_every_role_needs_its_password(stack: LocalStack) -> None:
    needs_own_server(stack.postgres)  # an external server's pg_hba.conf is its operator's
    assert "@" in stack.dsn and ":" not in stack.dsn.split("//")[1].split("@")[0]  # no password
    for path in (stack.postgres.passfile, stack.postgres.folder / "passwords.json"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for login in ["postgres", *SERVICES]:
        dsn = stack.postgres.dsn(stack.database, user=login)
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(dsn, passfile="/dev/null", connect_timeout=5).close()
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(dsn, password="guessed", connect_timeout=5).close()
        assert scalar(dsn, "SELECT current_user") == login  # with the pgpass file
    hba = rows(stack.dsn, "SELECT DISTINCT auth_method FROM pg_hba_file_rules")
    assert hba == [("scram-sha-256",)]


@pytest.mark.parametrize("login", SERVICES)
def test_the_audit_log_is_append_only(stack: LocalStack, login: str) -> None:
    dsn = stack.role_dsn(login)
    with psycopg.connect(dsn) as conn:
        conn.execute("INSERT INTO audit_log (person_id, action) VALUES ('operator', 'probe')")
    assert refused(dsn, "UPDATE audit_log SET action = 'nothing happened'")
    assert refused(dsn, "DELETE FROM audit_log")
    assert refused(dsn, "TRUNCATE audit_log")
    # Nor read by a service (the owner reads it); the API sees only who tried to sign in from
    # where and when, which its sign-in throttle counts, never what was done or to what.
    assert refused(dsn, "SELECT target, detail FROM audit_log")
    if login != "api":
        assert refused(dsn, "SELECT 1 FROM audit_log")
    # Even the owner is stopped, unless it says on purpose that it is cleaning up.
    for statement in (
        "UPDATE audit_log SET action = 'x'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ):
        assert refused(stack.dsn, statement), statement
    assert scalar(stack.dsn, "SELECT count(*) FROM audit_log WHERE action = 'probe'") == 1


@pytest.mark.parametrize(
    ("login", "statement"),
    [
        (
            "api",
            "INSERT INTO occupancy (ts, id, node_id, device_id, seq, zone, count, entered,"
            " exited) VALUES (now(), gen_random_uuid(), 'n', 'd', 1, 'main', 1, 1, 0)",
        ),
        (
            "cli",
            "INSERT INTO door_events (ts, id, node_id, device_id, seq, type)"
            " VALUES (now(), gen_random_uuid(), 'n', 'd', 1, 'door.forced')",
        ),
        ("api", "DELETE FROM door_events"),
        ("api", "UPDATE node_presence SET online = true"),
        ("api", "SELECT password_hash FROM edge_nodes"),
        ("ingest", "SELECT password_hash FROM people"),
        ("cli", "SELECT password_hash FROM people"),
        ("api", "INSERT INTO changes (kind, path, payload) VALUES ('incident', 'x', '{}')"),
        ("ingest", "INSERT INTO changes (kind, path, payload) VALUES ('incident', 'x', '{}')"),
        ("api", "SELECT secret_sealed FROM edge_nodes"),
        ("ingest", "UPDATE edge_nodes SET disabled = false"),
        ("api", "DELETE FROM devices"),
        ("api", "DELETE FROM incidents"),
        ("ingest", "UPDATE people SET active = false"),
        ("ingest", "DELETE FROM task_events"),
        ("api", "CREATE TABLE mine (id int)"),
        ("ingest", "CREATE TABLE mine (id int)"),
        ("cli", "DROP TABLE tasks"),
        ("cli", "DELETE FROM schema_migrations"),
        ("api", "SELECT * FROM schema_migrations"),
    ],
)
def test_a_service_role_cannot_do_what_its_code_does_not(
    stack: LocalStack, login: str, statement: str
) -> None:
    assert refused(stack.role_dsn(login), statement)


def test_the_change_feed_is_written_by_its_trigger_only(stack: LocalStack) -> None:
    """The API may not write `changes`, yet what it changes is still recorded there."""
    with psycopg.connect(stack.dsn) as conn:
        venue = registry.load(conn).venues["v0001"]
        raised = Raise(Rule.DOOR_FORCED, "v0001-x", Severity.RED, venue, datetime.now(UTC))
        task = incidents.apply(conn, [raised], tasks.DeadlinePolicy()).tasks[0]
    incident = scalar(stack.dsn, "SELECT incident_id FROM tasks WHERE id = %s", (task,))
    with psycopg.connect(stack.role_dsn("api")) as conn:
        conn.execute("UPDATE incidents SET status = 'acknowledged' WHERE id = %s", (incident,))
    statuses = rows(stack.dsn, "SELECT payload->>'status' FROM changes WHERE kind = 'incident'")
    assert statuses == [("open",), ("acknowledged",)]


def test_the_ingest_runs_as_its_own_role(stack: LocalStack) -> None:
    proc, _ = start_ingest(stack)
    try:
        users = rows(
            stack.dsn,
            "SELECT DISTINCT usename::text FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND backend_type = 'client backend'",  # not TimescaleDB's jobs
        )
    finally:
        stop_process(proc)
    assert users == [(stack.login_role("ingest"),)]


def test_services_are_started_with_their_own_role_and_no_password_in_the_url(
    stack: LocalStack,
) -> None:
    for login in ("ingest", "api"):
        env = stack.service_env(login)
        assert env["GRIDWATCH_DATABASE_URL"] == stack.role_dsn(login)
        assert stack.postgres.password(login) not in env["GRIDWATCH_DATABASE_URL"]
        assert env["PGPASSFILE"] == str(stack.postgres.passfile)


def test_privileges_are_granted_again_by_every_migration_run(stack: LocalStack) -> None:
    """A grant made by hand is taken back: privileges.sql is the whole truth."""
    from ingest.migrate import migrate

    with psycopg.connect(stack.dsn) as conn:
        conn.execute(
            sql.SQL("GRANT DELETE ON audit_log TO {}").format(sql.Identifier("gridwatch_api"))
        )
    migrate(stack.dsn)
    assert refused(stack.role_dsn("api"), "DELETE FROM audit_log WHERE false")


def test_a_refused_role_is_a_clear_error_not_a_traceback(stack: LocalStack) -> None:
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "gridwatch.cli", "db", "migrate",
         "--database-url", stack.role_dsn("api")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.startswith("gridwatch: ") and "Traceback" not in result.stderr


def _verify(stack: LocalStack, *extra: str) -> subprocess.CompletedProcess[str]:
    import sys

    return subprocess.run(
        [sys.executable, "-m", "gridwatch.cli", "audit", "verify", "--database-url", stack.dsn,
         *extra],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


def _write_audit(stack: LocalStack, count: int) -> None:
    with psycopg.connect(stack.role_dsn("api")) as conn:
        for i in range(count):
            conn.execute(
                "INSERT INTO audit_log (person_id, action, target, detail) VALUES (%s, %s, %s, %s)",
                ("operator", "task.accept", str(i), psycopg.types.json.Jsonb({"n": i})),
            )


def _tamper(stack: LocalStack, *statements: str) -> None:
    with psycopg.connect(stack.dsn) as conn:
        conn.execute("SET gridwatch.audit_maintenance = on")
        for statement in statements:
            conn.execute(statement.encode())


@pytest.mark.parametrize(
    ("statements", "found"),
    [
        (
            ["UPDATE audit_log SET detail = '{\"n\": 7}' WHERE seq = 2"],
            "row 2 (id 2) was changed after it was written",
        ),
        (["DELETE FROM audit_log WHERE seq = 2"], "rows 2..2 are missing (before id 3)"),
        # Whoever edits a row and writes its hash again still breaks the link to the next one.
        (
            [
                "UPDATE audit_log SET target = 'nothing' WHERE seq = 2",
                "UPDATE audit_log a SET hash = audit_log_hash(prev_hash, audit_log_fields(a))"
                " WHERE seq = 2",
            ],
            "row 3 (id 3) does not follow the row before it",
        ),
    ],
    ids=["edited", "removed", "edited-and-rehashed"],
)
def test_audit_verify_finds_a_row_edited_or_removed(
    stack: LocalStack, statements: list[str], found: str
) -> None:
    _write_audit(stack, 3)
    intact = _verify(stack)
    assert intact.returncode == 0, intact.stderr
    assert "audit log intact: 3 rows; head 3:" in intact.stdout
    _tamper(stack, *statements)
    broken = _verify(stack)
    assert broken.returncode == 1
    assert f"audit log: {found}" in broken.stderr.splitlines()


def test_audit_verify_finds_the_last_rows_removed_against_a_head_written_down(
    stack: LocalStack,
) -> None:
    _write_audit(stack, 3)
    head = _verify(stack).stdout.split("head ")[1].split()[0]
    assert _verify(stack, "--expect", head).returncode == 0
    _tamper(stack, "DELETE FROM audit_log WHERE seq = 3")
    assert _verify(stack).returncode == 0  # the rest is a valid chain on its own…
    broken = _verify(stack, "--expect", head)  # …but not the one written down
    assert broken.returncode == 1 and "row 3, the head written down, is gone" in broken.stderr
    bad = _verify(stack, "--expect", "three")
    assert bad.returncode == 1 and bad.stderr.startswith("gridwatch: --expect 'three' is not")


def test_the_chain_holds_when_services_write_at_once(stack: LocalStack) -> None:
    import threading

    writers = [threading.Thread(target=_write_audit, args=(stack, 10)) for _ in range(4)]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    result = _verify(stack)
    assert result.returncode == 0, result.stderr
    assert "40 rows; head 40:" in result.stdout


def test_a_server_made_with_trust_requires_passwords_on_its_next_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A home from before passwords: its pg_hba.conf trusts everyone until `up` starts it again."""
    monkeypatch.setenv("PGPASSFILE", os.environ.get("PGPASSFILE", ""))  # restored afterwards
    server = LocalPostgres(tmp_path / "old", port=free_port())
    server.start()
    try:
        hba = server.data / "pg_hba.conf"
        hba.write_text(hba.read_text().replace("scram-sha-256", "trust"))
        server.restart()
        assert rows(server.dsn(), "SELECT DISTINCT auth_method FROM pg_hba_file_rules") == [
            ("scram-sha-256",)
        ]
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(server.dsn(), password="guessed", connect_timeout=5).close()
    finally:
        server.stop("immediate")


def test_the_chain_covers_a_column_added_later_in_any_time_zone(stack: LocalStack) -> None:
    _write_audit(stack, 2)
    with psycopg.connect(stack.dsn) as conn:
        conn.execute("ALTER TABLE audit_log ADD COLUMN outcome text")  # as a later migration might
        conn.execute("SET TimeZone = 'Asia/Shanghai'")
        conn.execute(
            "INSERT INTO audit_log (person_id, action, outcome) VALUES ('x', 'sign_in', 'failed')"
        )
        verdict = audit.verify(conn)
    assert verdict.intact and verdict.rows == 3, verdict.problems
    _tamper(stack, "UPDATE audit_log SET outcome = 'ok' WHERE seq = 3")
    broken = _verify(stack)
    assert "audit log: row 3 (id 3) was changed after it was written" in broken.stderr


def test_service_roles_hold_no_power_beyond_their_grants(stack: LocalStack) -> None:
    powerful = rows(
        stack.dsn,
        "SELECT rolname::text FROM pg_roles WHERE rolname = ANY(%s)"
        " AND (rolsuper OR rolcreatedb OR rolcreaterole OR rolbypassrls)",
        ([*map(stack.login_role, SERVICES), *(r.value for r in ServiceRole)],),
    )
    assert powerful == []
    groups = rows(stack.dsn, "SELECT rolname::text, rolcanlogin FROM pg_roles"
                             " WHERE rolname LIKE 'gridwatch\\_%%' ORDER BY 1")  # fmt: skip
    assert groups == [(r, False) for r in sorted(r.value for r in ServiceRole)]
    members = rows(
        stack.dsn,
        "SELECT m.rolname::text, g.rolname::text FROM pg_auth_members a"
        " JOIN pg_roles m ON m.oid = a.member JOIN pg_roles g ON g.oid = a.roleid"
        " WHERE m.rolname = ANY(%s) ORDER BY 1",
        ([stack.login_role(s) for s in SERVICES],),
    )
    assert members == sorted((stack.login_role(s), g.value) for s, g in LOGIN_ROLES.items())
