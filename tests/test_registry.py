"""The registry as a file: load, check, plan, apply, export, prune (real PostgreSQL)."""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from gridwatch import demo
from gridwatch.local.services import LocalPostgres, free_port
from gridwatch.local.stack import LocalStack, Ports
from registry import document, store
from registry.document import RegistryFileError
from tests.support import rows, scalar

_numbers = itertools.count(1)

# A small city, one record a line, so that each test's line numbers are easy to read.
CITY = """\
version: 1
areas:
  - {id: hc, level: city, name: 海城市}
  - {id: dc, level: district, name: 东城区, parent: hc}
  - {id: jf, level: subdistrict, name: 解放街道, parent: dc}
  - {id: ty, level: community, name: 桃园社区, parent: jf}
  - {id: ty_g1, level: grid, name: 第一网格, parent: ty}
  - {id: xc, level: district, name: 西城区, parent: hc}
venues:
  - {id: v1, grid: ty_g1, name: 桃园社区服务中心, kind: community_centre, capacity: 200, opening_hours: {mon: [[08:30, 20:30]]}}
  - {id: v2, grid: ty_g1, name: 24小时自助服务站, kind: self_service_station, open_24h: true, unstaffed: true}
nodes:
  - {id: v1-edge, venue: v1}
  - {id: v2-edge, venue: v2}
devices:
  - {id: v1-door1, node: v1-edge, kind: door, driver: simulated, settings: {port: 80}}
  - {id: v2-door1, node: v2-edge, kind: door}
people:
  - {id: admin, name: 管理员, role: admin, scope: hc}
  - {id: w1, name: 网格员, role: grid_worker, scope: ty_g1}
duty:
  - {id: s1, grid: ty_g1, person: w1, days: [mon, tue], starts: "08:00", ends: "20:00"}
"""
LINE = {text.split(",")[0].split("id: ")[-1]: n for n, text in enumerate(CITY.splitlines(), 1)
        if "{id: " in text}  # fmt: skip


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


def apply_doc(stack: LocalStack, doc: document.Document, *, prune: bool = False) -> store.Plan:
    with cli_conn(stack) as conn:
        plan = store.plan(conn, doc, prune=prune)
        store.apply(conn, plan, "tester", client="test")
    return plan


def write(folder: Path, text: str, name: str = "city.yaml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def snapshot(stack: LocalStack) -> tuple[dict[str, Any], int]:
    with cli_conn(stack) as conn:
        data = document.dump(store.read(conn))
    return data, int(scalar(stack.dsn, "SELECT count(*) FROM audit_log"))


def _cli(stack: LocalStack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gridwatch.cli", *args, "--database-url", stack.role_dsn("cli")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


BAD_FILES = [
    ("unknown parent", ("parent: dc}", "parent: nowhere}"),
     f"city.yaml:{LINE['jf']}: areas[2] (jf) parent: unknown parent 'nowhere'"),
    ("parent of the wrong level", ("name: 桃园社区, parent: jf", "name: 桃园社区, parent: dc"),
     f"city.yaml:{LINE['ty']}: areas[3] (ty) parent: a community sits under a subdistrict, "
     "and dc is a district"),
    ("duplicate id", ("{id: v2, grid", "{id: v1, grid"),
     f"city.yaml:{LINE['v2']}: venues[1] (v1): duplicate id v1 in venues (first at city.yaml:"
     f"{LINE['v1']})"),
    ("a device under two nodes", ("{id: v2-door1, node", "{id: v1-door1, node"),
     f"city.yaml:{LINE['v2-door1']}: devices[1] (v1-door1): device v1-door1 is listed under two "
     f"nodes, v1-edge (city.yaml:{LINE['v1-door1']}) and v2-edge"),
    ("a node's unknown venue", ("{id: v2-edge, venue: v2}", "{id: v2-edge, venue: v9}"),
     f"city.yaml:{LINE['v2-edge']}: nodes[1] (v2-edge) venue: no venue 'v9'"),
    ("a venue whose grid is not a grid", ("{id: v2, grid: ty_g1", "{id: v2, grid: ty"),
     f"city.yaml:{LINE['v2']}: venues[1] (v2) grid: ty is a community, not a grid"),
    ("a person scoped to a missing area", ("scope: ty_g1}", "scope: ty_g9}"),
     f"city.yaml:{LINE['w1']}: people[1] (w1) scope: no area 'ty_g9'"),
    ("a shift's missing grid", ("grid: ty_g1, person", "grid: gone, person"),
     f"city.yaml:{LINE['s1']}: duty[0] (s1) grid: no area 'gone'"),
    ("a shift's missing person", ("person: w1,", "person: w9,"),
     f"city.yaml:{LINE['s1']}: duty[0] (s1) person: no person 'w9'"),
    ("invalid opening hours", ("[[08:30, 20:30]]", "[[20:30, 08:30]]"),
     f"city.yaml:{LINE['v1']}: venues[0] (v1) opening_hours: opening hours mon: 20:30-08:30 "
     "ends before it starts"),
    ("a capacity of 0", ("capacity: 200", "capacity: 0"),
     f"city.yaml:{LINE['v1']}: venues[0] (v1) capacity: must be greater than 0"),
    ("an id that breaks the topic pattern", ("{id: v2-door1,", "{id: v2/door+1,"),
     f"city.yaml:{LINE['v2-door1']}: devices[1] (v2/door+1) id: 'v2/door+1' is not valid: use 1 "
     "to 64 letters, digits, _ or -"),
    ("a device password in the registry", ("settings: {port: 80}", "settings: {port: 80, auth: {password: x}}"),
     f"city.yaml:{LINE['v1-door1']}: devices[0] (v1-door1) settings: auth.password: the registry "
     "keeps no device password; name an environment variable of the edge agent instead"),
    ("an unknown field", ("unstaffed: true}", "unstafed: true}"),
     f"city.yaml:{LINE['v2']}: venues[1] (v2) unstafed: unknown field (check its spelling)"),
    ("a YAML syntax error", ("- {id: v2-edge, venue: v2}", "- {id: v2-edge, venue: v2"),
     f"city.yaml:{LINE['v2-edge'] + 1}: not valid YAML: "),
    ("an unknown section", ("duty:\n", "rota:\n"),
     f"city.yaml:{LINE['s1'] - 1}: unknown section 'rota'"),
    ("a version this gridwatch does not read", ("version: 1", "version: 2"),
     "city.yaml:1: version 2 is not one this gridwatch reads"),
]  # fmt: skip


@pytest.mark.parametrize(("mutation", "expected"), [b[1:] for b in BAD_FILES],
                         ids=[b[0] for b in BAD_FILES])  # fmt: skip
def test_a_bad_file_names_file_line_and_field_and_applies_nothing(
    registry_db: LocalStack, tmp_path: Path, mutation: tuple[str, str], expected: str
) -> None:
    apply_doc(registry_db, document.load(write(tmp_path, CITY)))
    before = snapshot(registry_db)
    old, new = mutation
    assert old in CITY
    bad = write(tmp_path, CITY.replace(old, new, 1))
    with pytest.raises(RegistryFileError) as caught, cli_conn(registry_db) as conn:
        store.apply(conn, store.plan(conn, document.load(bad)), "tester")
    assert any(e.startswith(expected) for e in caught.value.errors), caught.value.errors
    assert snapshot(registry_db) == before
    # The command line says the same, with exit code 2 and no traceback.
    result = _cli(registry_db, "registry", "apply", str(bad))
    assert result.returncode == 2, result.stdout + result.stderr
    assert expected in result.stderr and "Traceback" not in result.stderr
    assert result.stderr.rstrip().endswith("nothing was applied")
    assert snapshot(registry_db) == before


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = CITY.replace("capacity: 200", "capacity: -1").replace("kind: door}", "kind: gate}")
    with pytest.raises(RegistryFileError) as caught:
        document.load(write(tmp_path, text.replace("timezone", "tz")))
    assert [e.split(": ", 1)[0] for e in caught.value.errors] == [
        f"city.yaml:{LINE['v1']}",
        f"city.yaml:{LINE['v2-door1']}",
    ]


def test_the_demo_file_applies_cleanly_and_is_the_generators(registry_db: LocalStack) -> None:
    doc = document.load(demo.DEMO_FILE)
    assert doc.records == demo.generate(demo.DEMO_VENUES, demo.DEMO_DEVICES_PER_VENUE).records
    assert demo.DEMO_FILE.read_text(encoding="utf-8") == demo.demo_file_text()
    plan = apply_doc(registry_db, doc)
    assert plan.counts()["venues"] == {"added": 12}
    assert {v.timezone for v in doc.venues.values()} == {"Asia/Shanghai"}
    assert {"海城市", "东城区", "解放街道", "第一网格"} <= {a.name for a in doc.areas.values()}
    assert scalar(registry_db.dsn, "SELECT count(*) FROM devices WHERE driver = 'simulated'") == 72
    # One audit row per record added; none of them holds a node secret (a file has none).
    assert scalar(registry_db.dsn, "SELECT count(*) FROM audit_log WHERE action = "
                                   "'registry.added' AND person_id = 'tester'") == doc.count()  # fmt: skip
    assert (
        scalar(registry_db.dsn, "SELECT count(*) FROM edge_nodes WHERE password_hash IS NOT NULL")
        == 0
    )
    with psycopg.connect(registry_db.dsn) as conn:
        from ingest import audit

        assert audit.verify(conn).intact


def test_applying_twice_changes_nothing_and_export_apply_is_a_no_op(
    registry_db: LocalStack, tmp_path: Path
) -> None:
    apply_doc(registry_db, document.load(demo.DEMO_FILE))
    versions = rows(registry_db.dsn, "SELECT id, version FROM venues ORDER BY id")
    audited = scalar(registry_db.dsn, "SELECT count(*) FROM audit_log")
    assert apply_doc(registry_db, document.load(demo.DEMO_FILE)).empty
    with cli_conn(registry_db) as conn:
        exported = document.dump_yaml(document.dump(store.read(conn)))
    again = document.load(write(tmp_path, exported, "exported.yaml"))
    assert apply_doc(registry_db, again).empty
    assert apply_doc(registry_db, again, prune=True).empty  # the export is the whole registry
    assert rows(registry_db.dsn, "SELECT id, version FROM venues ORDER BY id") == versions
    assert scalar(registry_db.dsn, "SELECT count(*) FROM audit_log") == audited


def test_a_changed_field_shows_old_and_new_and_is_audited(
    registry_db: LocalStack, tmp_path: Path
) -> None:
    apply_doc(registry_db, document.load(write(tmp_path, CITY)))
    changed = CITY.replace("capacity: 200", "capacity: 250").replace(
        "{id: v2-door1, node: v2-edge, kind: door}", "{id: v2-door1, node: v1-edge, kind: door}"
    )
    with cli_conn(registry_db) as conn:
        plan = store.plan(conn, document.load(write(tmp_path, changed)))
    assert [(c.kind, c.id, c.action.value, {k: (f.old, f.new) for k, f in c.fields.items()})
            for c in plan.changes] == [
        ("venues", "v1", "changed", {"capacity": (200, 250)}),
        ("devices", "v2-door1", "changed", {"node": ("v2-edge", "v1-edge")}),
    ]  # fmt: skip
    text = store.format_plan(plan)
    assert "plan: 0 added, 2 changed, 0 disabled, 0 enabled" in text
    assert "~ venue v1 changed\n    capacity: 200 → 250" in text
    apply_doc(registry_db, document.load(write(tmp_path, changed)))
    assert scalar(registry_db.dsn, "SELECT version FROM venues WHERE id = 'v1'") == 2
    (detail,) = rows(registry_db.dsn, "SELECT detail FROM audit_log WHERE action = "
                                      "'registry.changed' AND target = 'venue:v1'")[0]  # fmt: skip
    assert detail == {"fields": {"capacity": [200, 250]}}


def test_a_file_without_a_language_keeps_the_one_a_person_chose(
    registry_db: LocalStack, tmp_path: Path
) -> None:
    apply_doc(registry_db, document.load(write(tmp_path, CITY)))
    assert scalar(registry_db.dsn, "SELECT language FROM people WHERE id = 'w1'") == "zh-CN"
    with psycopg.connect(registry_db.dsn, autocommit=True) as conn:  # the console's switch
        conn.execute("UPDATE people SET language = 'en', language_chosen = true WHERE id = 'w1'")
    plan = apply_doc(registry_db, document.load(write(tmp_path, CITY)))  # names no language
    assert plan.changes == []
    assert scalar(registry_db.dsn, "SELECT language FROM people WHERE id = 'w1'") == "en"
    # A file that does name one sets it, as any field.
    named = CITY.replace(
        "role: grid_worker, scope: ty_g1}", "role: grid_worker, scope: ty_g1, language: zh-CN}"
    )
    plan = apply_doc(registry_db, document.load(write(tmp_path, named)))
    assert [(c.id, {k: (f.old, f.new) for k, f in c.fields.items()}) for c in plan.changes] == [
        ("w1", {"language": ("en", "zh-CN")})
    ]
    assert scalar(registry_db.dsn, "SELECT language FROM people WHERE id = 'w1'") == "zh-CN"


def test_prune_disables_what_the_file_leaves_out_and_nothing_without_it(
    registry_db: LocalStack, tmp_path: Path
) -> None:
    apply_doc(registry_db, document.load(write(tmp_path, CITY)))
    kept_lines = [line for line in CITY.splitlines()
                  if not any(f"id: {x}," in line or f"id: {x}}}" in line
                             for x in ("v2", "v2-edge", "v2-door1", "xc"))]  # fmt: skip
    kept_lines = [line for line in kept_lines if "{id: w1," not in line and "{id: s1," not in line]
    smaller = write(tmp_path, "\n".join(kept_lines) + "\n", "smaller.yaml")
    assert apply_doc(registry_db, document.load(smaller)).empty  # a partial file adds, no more
    with cli_conn(registry_db) as conn:
        plan = store.plan(conn, document.load(smaller), prune=True)
    assert sorted((c.kind, c.id, c.action.value) for c in plan.changes) == [
        ("areas", "xc", "disabled"), ("devices", "v2-door1", "disabled"),
        ("duty", "s1", "disabled"), ("nodes", "v2-edge", "disabled"),
        ("people", "w1", "disabled"), ("venues", "v2", "disabled"),
    ]  # fmt: skip
    valid_after = scalar(registry_db.dsn, "SELECT valid_after::text FROM people WHERE id = 'w1'")
    apply_doc(registry_db, document.load(smaller), prune=True)
    # Disabled, never deleted: the rows (and what refers to them) stay.
    assert rows(registry_db.dsn, "SELECT id, disabled FROM venues ORDER BY id") == [
        ("v1", False), ("v2", True)
    ]  # fmt: skip
    assert rows(registry_db.dsn, "SELECT disabled FROM devices WHERE id = 'v2-door1'") == [(True,)]
    assert rows(registry_db.dsn, "SELECT active FROM people WHERE id = 'w1'") == [(False,)]
    assert (
        scalar(registry_db.dsn, "SELECT valid_after::text FROM people WHERE id = 'w1'")
        != valid_after
    )
    assert scalar(registry_db.dsn, "SELECT count(*) FROM audit_log WHERE action = "
                                   "'registry.disabled'") == 6  # fmt: skip
    assert apply_doc(registry_db, document.load(smaller), prune=True).empty
    # With --prune the file is the whole registry: a reference to a record it leaves out fails.
    lone = write(tmp_path, "version: 1\nnodes:\n  - {id: n9, venue: v1}\n", "lone.yaml")
    assert not apply_doc(registry_db, document.load(lone)).empty  # v1 is registered: fine
    with pytest.raises(RegistryFileError, match=r"lone.yaml:3: nodes\[0\] \(n9\) venue: no venue 'v1' in the file$"), cli_conn(registry_db) as conn:  # fmt: skip
        store.plan(conn, document.load(lone), prune=True)
    # And the file brings the records back.
    assert {c.action.value for c in apply_doc(registry_db, document.load(write(tmp_path, CITY))).changes} == {"enabled"}  # fmt: skip
    assert rows(registry_db.dsn, "SELECT active FROM people WHERE id = 'w1'") == [(True,)]


def test_csv_sections(registry_db: LocalStack, tmp_path: Path) -> None:
    head = CITY.split("devices:", maxsplit=1)[0]
    (tmp_path / "devices.csv").write_text(
        "id,node,kind,name,settings,disabled\n"
        'v1-door1,v1-edge,door,正门,"{""port"": 80}",\n'
        "v2-door1,v2-edge,door,,,false\n", encoding="utf-8")  # fmt: skip
    (tmp_path / "people.csv").write_text(
        "id,name,role,scope,phone,email\nadmin,管理员,admin,hc,,\n"
        "w1,网格员,grid_worker,ty_g1,+86 138 0000 0001,w1@example.org\n", encoding="utf-8")  # fmt: skip
    (tmp_path / "duty.csv").write_text(
        'id,grid,person,days,starts,ends\ns1,ty_g1,w1,"mon,tue",08:00,20:00\n', encoding="utf-8"
    )
    text = head + "devices: {csv: devices.csv}\npeople: {csv: people.csv}\nduty: {csv: duty.csv}\n"
    doc = document.load(write(tmp_path, text))
    assert doc.devices["v1-door1"].settings == {"port": 80}
    assert doc.duty["s1"].days == ("mon", "tue")
    apply_doc(registry_db, doc)
    assert rows(registry_db.dsn, "SELECT days, starts::text FROM duty_shifts") == [
        ([1, 2], "08:00:00")
    ]
    # A bad cell is named by the CSV file's line.
    (tmp_path / "devices.csv").write_text(
        "id,node,kind\nv1-door1,v1-edge,door\nv2-door1,v2-edge,gate\n", encoding="utf-8"
    )
    with pytest.raises(RegistryFileError) as caught:
        document.load(tmp_path / "city.yaml")
    assert caught.value.errors[0].startswith("devices.csv:3: devices[1] (v2-door1) kind: must be")
    # Export with --csv writes the same sections as CSV, and applying it changes nothing.
    (tmp_path / "devices.csv").unlink()
    out = tmp_path / "export"
    result = _cli(registry_db, "registry", "export", "--output", str(out / "all.yaml"),
                  "--csv", str(out / "tables"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    written = yaml.safe_load((out / "all.yaml").read_text(encoding="utf-8"))
    assert written["devices"] == {"csv": "tables/devices.csv"}
    assert apply_doc(registry_db, document.load(out / "all.yaml")).empty


def test_a_scoped_upload_stays_in_its_subtree(registry_db: LocalStack, tmp_path: Path) -> None:
    apply_doc(registry_db, document.load(write(tmp_path, CITY)))
    inside = "version: 1\nvenues:\n  - {id: v3, grid: ty_g1, name: 站, kind: grid_station}\n"
    outside = (
        inside
        + "  - {id: v4, grid: ty_g1, name: 站, kind: grid_station}\n"
        + ("areas:\n  - {id: xc_a, level: subdistrict, name: 西, parent: xc}\n")
    )
    with cli_conn(registry_db) as conn:
        assert len(store.plan(conn, document.load_text(inside, "up.yaml"), scope="dc").changes) == 1
        with pytest.raises(RegistryFileError) as caught:
            store.plan(conn, document.load_text(outside, "up.yaml"), scope="dc")
        assert caught.value.errors == [
            "up.yaml:6: areas[0] (xc_a): outside dc, the area this upload may change"
        ]
        # A node changed beside its venue listed unchanged (an export edited) is inside.
        edited = store.plan(conn, document.load_text(
            "version: 1\nvenues:\n  - {id: v1, grid: ty_g1, name: 桃园社区服务中心, kind:"
            " community_centre, capacity: 200, opening_hours: {mon: [[08:30, 20:30]]}}\n"
            "nodes:\n  - {id: v1-edge, venue: v1, name: renamed}\n", "up.yaml"), scope="dc")  # fmt: skip
        assert [(c.kind, c.id, c.action.value) for c in edited.changes] == [
            ("nodes", "v1-edge", "changed")]  # fmt: skip
        # Pruning within a scope touches only that subtree, never its root, and the file may
        # name the root and the areas above it without listing them.
        assert store.plan(conn, document.load_text("version: 1\n", "up.yaml"), prune=True,
                          scope="xc").empty  # fmt: skip
        district = "\n".join(
            line for line in CITY.splitlines()
            if not any(f"{{id: {x}," in line for x in ("hc", "dc", "xc", "v2", "v2-edge",
                                                       "v2-door1", "admin"))
        )  # fmt: skip
        pruned = store.plan(conn, document.load_text(district, "dc.yaml"), prune=True, scope="dc")
        assert [(c.kind, c.id, c.action.value) for c in pruned.changes] == [
            ("venues", "v2", "disabled"), ("nodes", "v2-edge", "disabled"),
            ("devices", "v2-door1", "disabled"),
        ]  # fmt: skip


def test_the_command_line_plans_applies_and_exports(
    registry_db: LocalStack, tmp_path: Path
) -> None:
    city = write(tmp_path, CITY)
    planned = _cli(registry_db, "registry", "plan", str(city))
    assert planned.returncode == 0, planned.stderr
    assert planned.stdout.startswith("plan: 15 added, 0 changed, 0 disabled, 0 enabled\n")
    assert "+ venue v1 added: grid=ty_g1, name=桃园社区服务中心" in planned.stdout
    assert snapshot(registry_db)[0]["venues"] == []  # a plan changes nothing
    applied = _cli(registry_db, "registry", "apply", str(city), "--as", "admin")
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.rstrip().endswith("applied: 15 added, 0 changed, 0 disabled, 0 enabled")
    assert scalar(registry_db.dsn, "SELECT count(*) FROM audit_log WHERE person_id = 'admin'") == 15
    exported = _cli(registry_db, "registry", "export")
    assert exported.returncode == 0, exported.stderr
    assert "name: 桃园社区服务中心" in exported.stdout and "secret" not in exported.stdout
    again = _cli(registry_db, "registry", "apply", str(write(tmp_path, exported.stdout, "x.yaml")))
    assert again.returncode == 0 and again.stdout.startswith("no changes"), again.stdout


def test_a_plan_shown_as_json_cannot_be_applied_without_its_records(
    registry_db: LocalStack, tmp_path: Path
) -> None:
    with cli_conn(registry_db) as conn:
        plan = store.plan(conn, document.load(write(tmp_path, CITY)))
        shown = store.Plan.model_validate_json(plan.model_dump_json())
        assert shown.changes == plan.changes and shown.counts() == plan.counts()
        with pytest.raises(ValueError, match="a plan read back from JSON cannot be applied"):
            store.apply(conn, shown, "tester")
    assert snapshot(registry_db)[0]["areas"] == []


@pytest.mark.parametrize(
    ("local", "expected"),
    [
        ("2026-12-07 09:00", "w1"),  # Monday, in the day shift
        ("2026-12-07 20:30", None),  # Monday evening: after it
        ("2026-12-09 09:00", None),  # Wednesday: not one of its days
        ("2026-12-09 23:30", "w2"),  # Wednesday night: the night shift
        ("2026-12-10 05:00", "w2"),  # Thursday morning: the same night shift, past midnight
        ("2026-12-11 05:00", None),  # Friday morning: Thursday has no night shift
    ],
)
def test_weekly_shifts_route_tasks_in_their_time_zone(
    registry_db: LocalStack, tmp_path: Path, local: str, expected: str | None
) -> None:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from casework import tasks

    text = CITY.replace(
        '  - {id: s1, grid: ty_g1, person: w1, days: [mon, tue], starts: "08:00", ends: "20:00"}',
        '  - {id: s1, grid: ty_g1, person: w1, days: [mon, tue], starts: "08:00", ends: "20:00"}\n'
        '  - {id: s2, grid: ty_g1, person: w2, days: [wed], starts: "22:00", ends: "06:00"}',
    ).replace(
        "  - {id: w1,", "  - {id: w2, name: 夜班, role: grid_worker, scope: ty_g1}\n  - {id: w1,"
    )
    apply_doc(registry_db, document.load(write(tmp_path, text)))
    at = datetime.fromisoformat(local).replace(tzinfo=ZoneInfo("Asia/Shanghai"))
    with psycopg.connect(registry_db.dsn) as conn:
        assert tasks.on_duty(conn, "ty_g1", at) == expected
