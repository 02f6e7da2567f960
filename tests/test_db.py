"""Migrations and the registry against a real PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from gateway.messages import DeviceKind
from gridwatch.local.services import LocalPostgres
from gridwatch.local.stack import LocalStack
from ingest import audit
from ingest import migrate as migrations
from registry import store
from registry.document import RegistryFileError
from registry.model import Area, Device, Level, Node, Record, Venue, VenueKind
from tests.support import rows, scalar


def test_migrate_is_safe_to_rerun(stack: LocalStack) -> None:
    again = migrations.migrate(stack.dsn)
    assert again.applied == []
    with psycopg.connect(stack.dsn) as conn:  # TimescaleDB where the server preloads it
        expected = migrations.timescale_available(conn)
    assert again.backend is (migrations.Backend.TIMESCALE if expected else migrations.Backend.PLAIN)
    assert again.version == max(m.version for m in migrations.discover())


def test_an_edited_applied_migration_is_refused(stack: LocalStack, tmp_path: Path) -> None:
    edited = tmp_path / "migrations"
    edited.mkdir()
    for f in migrations.MIGRATIONS_DIR.glob("*.sql"):
        (edited / f.name).write_text(
            f.read_text() + ("\n-- edited\n" if f.name.startswith("001_foundation.sql") else "")
        )
    with pytest.raises(RuntimeError, match="changed after it was applied"):
        migrations.migrate(stack.dsn, folder=edited)


def test_a_database_cannot_switch_backend_in_place(stack: LocalStack) -> None:
    recorded = migrations.migrate(stack.dsn).backend
    other = next(b for b in migrations.Backend if b is not recorded)
    with pytest.raises(RuntimeError, match="cannot switch"):
        migrations.migrate(stack.dsn, backend=other)


def test_subtree_is_one_indexed_query(stack: LocalStack) -> None:
    community = scalar(
        stack.dsn, "SELECT path::text FROM territory WHERE level = 'community' LIMIT 1"
    )
    venues = rows(
        stack.dsn,
        "SELECT v.id FROM venues v JOIN territory t ON t.id = v.grid_id WHERE t.path <@ %s::ltree",
        (community,),
    )
    assert venues
    with psycopg.connect(stack.dsn) as conn:
        conn.execute("SET enable_seqscan = off")
        plan = "\n".join(
            str(r[0])
            for r in conn.execute(
                "EXPLAIN SELECT id FROM territory WHERE path <@ %s::ltree", (community,)
            )
        )
    assert "territory_path_gist" in plan


def test_registry_refuses_what_does_not_fit_the_tree(stack: LocalStack) -> None:
    def refused(record: Record) -> str:
        with psycopg.connect(stack.dsn) as conn, pytest.raises(RegistryFileError) as caught:
            store.put(conn, [record], "test")
        return str(caught.value)

    assert "a subdistrict sits under a district, and haicheng is a city" in refused(
        Area(id="x1", level=Level.SUBDISTRICT, name="X", parent="haicheng")
    )
    assert "haicheng is a city, not a grid" in refused(
        Venue(id="vx", grid="haicheng", name="X", kind=VenueKind.SHELTER)
    )
    taken = rows(stack.dsn, "SELECT id, node_id FROM devices LIMIT 1")[0]
    grid = str(scalar(stack.dsn, "SELECT grid_id FROM venues LIMIT 1"))
    with psycopg.connect(stack.dsn) as conn:
        store.put(conn, [Venue(id="vnew", grid=grid, name="New", kind=VenueKind.SHELTER),
                         Node(id="vnew-edge", venue="vnew")], "test")  # fmt: skip
    # A device moves to another node only as a change the plan shows (old node → new node).
    moved = Device(id=str(taken[0]), node="vnew-edge", kind=DeviceKind.DOOR)
    with psycopg.connect(stack.dsn) as conn:
        applied = store.put(conn, [moved], "test")
    [change] = [c for c in applied.changes if c.kind == "devices"]
    assert change.fields["node"].old == taken[1] and change.fields["node"].new == "vnew-edge"
    assert (
        scalar(stack.dsn, "SELECT node_id FROM devices WHERE id = %s", (taken[0],)) == "vnew-edge"
    )


def test_audit_rows_written_before_the_chain_are_chained(
    stack: LocalStack, postgres: LocalPostgres, tmp_path: Path
) -> None:
    older = tmp_path / "migrations"
    older.mkdir()
    for f in migrations.MIGRATIONS_DIR.glob("*.sql"):
        if int(f.name[:3]) < 10:
            (older / f.name).write_text(f.read_text())
    postgres.create_database(f"{stack.database}_old")
    dsn = postgres.dsn(f"{stack.database}_old")
    migrations.migrate(dsn, folder=older)
    with psycopg.connect(dsn) as conn:
        for action in ("sign_in", "task.accept"):
            conn.execute(
                "INSERT INTO audit_log (person_id, action) VALUES ('operator', %s)", (action,)
            )
    migrations.migrate(dsn)
    with psycopg.connect(dsn) as conn:
        conn.execute("INSERT INTO audit_log (person_id, action) VALUES ('operator', 'later')")
        verdict = audit.verify(conn)
    assert verdict.intact and verdict.rows == 3, verdict.problems


def test_the_seal_key_registered_first_is_kept_and_another_is_told_apart(stack: LocalStack) -> None:
    from registry.secrets import load_seal_key, new_seal_key, register_public_key, seal_public_key

    mine = load_seal_key(stack.seal_key_file)
    with psycopg.connect(stack.dsn) as conn:
        registered = seal_public_key(conn)
        assert register_public_key(conn, mine) is True
        assert register_public_key(conn, new_seal_key()) is False
        assert seal_public_key(conn) == registered
