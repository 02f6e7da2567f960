"""Incident and task titles as codes with parameters: the catalogue in both languages, the
console's copy of it, what the ingest writes, and the migration of titles stored as English."""

# ruff: noqa: RUF001  (Chinese text takes its own full-width punctuation)

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from casework import incidents, titles
from casework.rules import Raise, Rule, Severity
from casework.tasks import DeadlinePolicy
from gridwatch.local.stack import LocalPostgres, LocalStack
from ingest import migrate, platform, registry
from notify import texts

ROOT = Path(__file__).resolve().parent.parent
CATALOGUES = ROOT / "api" / "console" / "i18n"


@pytest.mark.parametrize("code", sorted(titles.TITLES))
def test_every_title_is_in_both_languages_with_the_same_parameters(code: str) -> None:
    texts_ = titles.TITLES[code]
    assert set(texts_) == set(titles.LANGUAGES)
    assert titles.placeholders(texts_["zh-CN"]) == titles.placeholders(texts_["en"])
    assert all(t.strip() for t in texts_.values())


def test_every_rule_has_a_title_a_task_title_and_a_short_name() -> None:
    for rule in Rule:
        assert rule.value in titles.TITLES
        assert titles.TASK_PREFIX + rule.value in titles.TITLES
        assert set(titles.RULE_NAMES[rule.value]) == set(titles.LANGUAGES)
    assert titles.placeholders(titles.TITLES["task.door_forced"]["zh-CN"]) == {"venue"}


def test_titles_render_in_the_readers_language() -> None:
    params = {"venue": "桃园社区服务中心", "venue_id": "taoyuan1", "device": "门禁1"}
    assert titles.render("task.door_forced", params, "zh-CN") == "桃园社区服务中心：门被强行打开"
    assert titles.render("task.door_forced", params, "en") == "Door forced open at 桃园社区服务中心"
    assert titles.render("door_forced", params, "en-GB") == "Door forced open"
    assert titles.render("door_forced", params, None) == "门被强行打开"  # zh-CN by default
    assert titles.render("door_forced", params, "fr") == "门被强行打开"
    group = {"group": "xicheng"}
    assert titles.render("platform_broker_group", group, "en").endswith("(ingest group xicheng)")
    # Old text no code matched, and a code this version does not know, show as they were.
    assert titles.render(titles.TEXT, {"text": "Fire exit blocked"}, "zh-CN") == "Fire exit blocked"
    assert titles.render("some_new_rule", {}, "zh-CN") == "some_new_rule"
    assert titles.render("task.door_forced", {}, "zh-CN") == "：门被强行打开"  # never a KeyError
    assert titles.rule_name("door_forced", "zh-CN") == "强行开门"


def _catalogue(lang: str) -> tuple[str, dict[str, Any]]:
    text = (CATALOGUES / f"{lang}.json").read_text()
    return text, json.loads(text)


@pytest.mark.parametrize("lang", titles.LANGUAGES)
def test_the_console_catalogues_say_what_ingest_titles_says(lang: str) -> None:
    text, catalogue = _catalogue(lang)
    assert text == json.dumps(catalogue, ensure_ascii=False, indent=2, sort_keys=True) + "\n"
    ours = {f"title.{c}": t[lang] for c, t in titles.TITLES.items()}
    ours |= {f"rule.{r}": t[lang] for r, t in titles.RULE_NAMES.items()}
    console = {k: v for k, v in catalogue.items() if k.startswith(("title.", "rule."))}
    assert console == ours


def test_incidents_and_tasks_are_written_as_codes_with_the_names_they_show(
    stack: LocalStack,
) -> None:
    with psycopg.connect(stack.dsn) as conn:
        venue = next(iter(registry.load(conn).venues.values()))
        door, name = conn.execute(
            """SELECT d.id, d.name FROM devices d JOIN edge_nodes n ON n.id = d.node_id
               WHERE n.venue_id = %s AND d.kind = 'door' ORDER BY d.id LIMIT 1""",
            (venue.id,),
        ).fetchone()  # type: ignore[misc]
        signal = Raise(Rule.DOOR_FORCED, door, Severity.RED, venue, datetime.now(UTC),
                       device=door, node=f"{venue.id}-edge")  # fmt: skip
        incidents.apply(conn, [signal], DeadlinePolicy())
        platform.open_platform_incident(conn, 90, "xicheng")
        conn.commit()
        row = conn.execute(
            "SELECT title, title_code, title_params FROM incidents WHERE rule = 'door_forced'"
        ).fetchone()
        task = conn.execute("SELECT title, title_code, title_params FROM tasks").fetchone()
        broker = conn.execute(
            "SELECT title, title_code, title_params FROM incidents WHERE rule = 'platform_broker'"
        ).fetchone()
        event = conn.execute(
            "SELECT params FROM notify_events WHERE kind = 'task.dispatched'"
        ).fetchone()
        change = conn.execute("SELECT payload FROM changes WHERE kind = 'task'").fetchone()
    assert venue.name and name
    params = {"venue": venue.name, "venue_id": venue.id, "device": name, "device_id": door,
              "node_id": f"{venue.id}-edge"}  # fmt: skip
    assert row == ("Door forced open", "door_forced", params)  # `title` is the English one
    assert task == (f"Door forced open at {venue.name}", "task.door_forced", params)
    assert broker is not None and broker[1:] == ("platform_broker_group", {"group": "xicheng"})
    assert broker[0] == "The platform cannot reach its MQTT broker (ingest group xicheng)"
    # The worker is told in their language; the live feed carries the code and its parameters.
    assert event is not None and event[0]["title_code"] == "task.door_forced"
    said, _ = texts.render("task.dispatched", event[0], "zh-CN")
    assert said == f"新任务：{venue.name}：门被强行打开"
    assert texts.render("task.dispatched", event[0], "en")[0].endswith(f"at {venue.name}")
    assert change is not None and change[0]["title_params"] == params


def test_titles_stored_as_english_are_migrated_to_codes(
    stack: LocalStack, postgres: LocalPostgres, tmp_path: Path
) -> None:
    older = tmp_path / "migrations"
    older.mkdir()
    for f in migrate.MIGRATIONS_DIR.glob("*.sql"):
        if int(f.name[:3]) < 21:
            (older / f.name).write_text(f.read_text())
    postgres.create_database(f"{stack.database}_titles")
    dsn = postgres.dsn(f"{stack.database}_titles")
    migrate.migrate(dsn, folder=older)
    with psycopg.connect(dsn) as conn:
        conn.execute(
            """INSERT INTO territory (id, parent_id, level, name, path) VALUES
                   ('city', NULL, 'city', '滨海市', 'city'),
                   ('g1', 'city', 'grid', '第一网格', 'city.g1');
               INSERT INTO venues (id, grid_id, name, kind) VALUES
                   ('v1', 'g1', '桃园社区服务中心', 'community_centre');
               INSERT INTO edge_nodes (id, venue_id, password_hash) VALUES ('v1-edge', 'v1', 'x');
               INSERT INTO devices (id, node_id, kind, name) VALUES
                   ('v1-door1', 'v1-edge', 'door', '门禁1');
               INSERT INTO incidents (dedup_key, rule, severity, title, venue_id, device_id,
                                      node_id, grid_id, path, detail, first_seen, last_seen)
               VALUES ('door_forced:v1-door1', 'door_forced', 'red', 'Door forced open', 'v1',
                       'v1-door1', 'v1-edge', 'g1', 'city.g1', '{}', now(), now()),
                      ('platform_broker:city', 'platform_broker', 'red',
                       'The platform cannot reach its MQTT broker (ingest group east)', NULL,
                       NULL, NULL, 'city', 'city', '{"ingest_group": "east"}', now(), now()),
                      ('hand:1', 'by_hand', 'yellow', 'Fire exit blocked', 'v1', NULL, NULL,
                       'g1', 'city.g1', '{}', now(), now()),
                      ('emergency_proposed:city', 'emergency_proposed', 'red',
                       'Emergency proposed by a rule: confirm or dismiss', 'v1', NULL, NULL,
                       'g1', 'city.g1', '{"area": "city"}', now(), now())"""
        )
        conn.execute(
            """INSERT INTO tasks (incident_id, title, severity, grid_id, path, level_id)
               SELECT id, title || ' at Taoyuan centre', severity, grid_id, path, grid_id
               FROM incidents WHERE venue_id IS NOT NULL"""
        )
    migrate.migrate(dsn)
    with psycopg.connect(dsn) as conn:
        found = conn.execute(
            "SELECT rule, title, title_code, title_params FROM incidents ORDER BY rule"
        ).fetchall()
        tasks = conn.execute(
            """SELECT i.rule, t.title, t.title_code, t.title_params FROM tasks t
               JOIN incidents i ON i.id = t.incident_id ORDER BY i.rule"""
        ).fetchall()
    named = {"venue": "桃园社区服务中心", "venue_id": "v1"}
    door = named | {"device": "门禁1", "device_id": "v1-door1", "node_id": "v1-edge"}
    assert found == [
        ("by_hand", "Fire exit blocked", "text", named | {"text": "Fire exit blocked"}),
        ("door_forced", "Door forced open", "door_forced", door),
        ("emergency_proposed", "Emergency proposed by a rule: confirm or dismiss",
         "emergency_proposed", named | {"area_id": "city", "area": "滨海市"}),
        ("platform_broker", "The platform cannot reach its MQTT broker (ingest group east)",
         "platform_broker_group", {"group": "east"}),
    ]  # fmt: skip
    assert tasks == [
        ("by_hand", "Fire exit blocked at Taoyuan centre", "text",
         named | {"text": "Fire exit blocked at Taoyuan centre"}),
        ("door_forced", "Door forced open at Taoyuan centre", "task.door_forced", door),
        ("emergency_proposed", "Emergency proposed by a rule: confirm or dismiss at Taoyuan centre",
         "task.emergency_proposed", named | {"area_id": "city", "area": "滨海市"}),
    ]  # fmt: skip
    # What the old rows now say to a reader of Chinese: the venue's name of today.
    assert titles.render(tasks[1][2], tasks[1][3], "zh-CN") == "桃园社区服务中心：门被强行打开"


def test_notifications_name_things_rather_than_show_their_ids() -> None:
    venue = {"venue": "桃园社区服务中心", "venue_id": "taoyuan1"}
    offline = texts.render(
        "node.offline", venue | {"node": "边缘网关", "node_id": "tao-edge"}, "zh-CN"
    )
    assert offline == ("场所离线：桃园社区服务中心", "桃园社区服务中心的边缘节点边缘网关已离线。")
    escalated = {"task_id": 7, "level": "桃园社区", "level_id": "taoyuan", "from_level": "第一网格",
                 "from": "taoyuan_g1", "title_code": "task.door_forced", "title_params": venue}  # fmt: skip
    assert texts.render("task.escalated", escalated, "zh-CN") == (
        "任务升级至桃园社区：桃园社区服务中心：门被强行打开",
        "任务 7 超时未办，已从第一网格升级。",
    )
    assert texts.render("task.escalated", escalated, "en")[0] == (
        "Task escalated to 桃园社区: Door forced open at 桃园社区服务中心"
    )
    failed = {"command_id": "c1", "device": "门禁1", "device_id": "tao-door1", "action": "unlock",
              "state": "expired", "detail": "", "venue": "桃园社区服务中心"}  # fmt: skip
    assert texts.render("command.failed", failed, "zh-CN")[1] == "开门指令超时未应答（指令 c1）："
    # An event raised before names were added still says something: its ids.
    old = {"task_id": 7, "level_id": "taoyuan", "from": "taoyuan_g1", "title": "Door forced open"}
    assert texts.render("task.escalated", old, "fr") == (
        "任务升级至taoyuan：Door forced open",
        "任务 7 超时未办，已从taoyuan_g1升级。",
    )


def test_an_emergency_is_told_with_its_area_and_who_by_name(stack: LocalStack) -> None:
    from casework import emergency

    with psycopg.connect(stack.dsn) as conn:
        city, city_name = conn.execute(
            "SELECT id, name FROM territory WHERE parent_id IS NULL"
        ).fetchone()  # type: ignore[misc]
        operator = conn.execute("SELECT name FROM people WHERE id = 'operator'").fetchone()
        emergency.start(conn, city, actor="operator", reason="台风")
        emergency.end(conn, city, actor="operator")
        events = dict(
            conn.execute(
                "SELECT kind, params FROM notify_events WHERE kind LIKE 'emergency.%%'"
            ).fetchall()
        )
    assert operator is not None
    assert events["emergency.ended"]["by_name"] == operator[0]
    ended = texts.render("emergency.ended", events["emergency.ended"], "zh-CN")
    assert ended == (f"应急状态结束：{city_name}", f"由{operator[0]}结束。")
    assert texts.render("emergency.started", events["emergency.started"], "en")[0] == (
        f"Emergency started: {city_name}"
    )


def test_an_emergency_a_rule_proposes_names_its_area(stack: LocalStack) -> None:
    with psycopg.connect(stack.dsn) as conn:
        venue = next(iter(registry.load(conn).venues.values()))
        community, name = conn.execute(
            """SELECT c.id, c.name FROM territory g JOIN territory c ON c.id = g.parent_id
               WHERE g.id = %s""",
            (venue.grid_id,),
        ).fetchone()  # type: ignore[misc]
        signal = Raise(Rule.DOOR_FORCED, "x", Severity.RED, venue, datetime.now(UTC),
                       emergency_level="community")  # fmt: skip
        incidents.apply(conn, [signal], DeadlinePolicy())
        english, code, params = conn.execute(
            "SELECT title, title_code, title_params FROM incidents"
            " WHERE rule = 'emergency_proposed'"
        ).fetchone()  # type: ignore[misc]
        reason, source = conn.execute(
            "SELECT reason, source_id FROM emergency_proposals"
        ).fetchone()  # type: ignore[misc]
    assert (code, params["area_id"], params["area"]) == ("emergency_proposed", community, name)
    assert titles.render(code, params, "zh-CN") == f"规则提议{name}启动应急状态，请确认或驳回"
    assert reason == f"{venue.name}：门被强行打开（事件 {source}）"
    assert english == f"Emergency proposed by a rule for {name}: confirm or dismiss"


def test_a_rule_gives_its_emergency_a_reason_in_the_platforms_language() -> None:
    title = titles.Title("door_forced", {"venue": "桃园社区服务中心"})
    assert title.reason(12) == "桃园社区服务中心：门被强行打开（事件 12）"
    assert title.reason(12, "en") == "Door forced open at 桃园社区服务中心 (incident 12)"
