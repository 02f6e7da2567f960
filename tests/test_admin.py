"""Admins manage the registry through the API, within their area, over a real PostgreSQL: each
kind added, changed, disabled and enabled; stale updates refused with the current record; a
district admin kept to the district; references checked; every change audited; node secrets
shown once; weekly duty shifts put people on duty."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import ApiSettings
from casework import tasks
from gateway.broker import hash_password
from gridwatch.demo import NodeCredentials
from gridwatch.local.stack import LocalStack
from registry.model import KINDS
from registry.secrets import load_seal_key, unseal
from tests.support import rows, scalar
from tests.test_api import raise_incident, sign_in

ADMIN = "/api/v1/admin"


@pytest.fixture
def client(stack: LocalStack) -> Iterator[TestClient]:
    app = create_app(ApiSettings(database_url=stack.role_dsn("api")))  # type: ignore[arg-type]
    with TestClient(app) as c:
        yield c


def _community(dsn: str) -> str:
    return str(
        scalar(dsn, "SELECT id FROM territory WHERE level = 'community' ORDER BY id LIMIT 1")
    )


def _ok(r: Any, code: int = 200) -> dict[str, Any]:
    assert r.status_code == code, r.text
    body: dict[str, Any] = r.json()
    return body


def editable(kind: str, record: dict[str, Any]) -> dict[str, Any]:
    """What an update sends back of a record read: its fields and version, not what is derived."""
    fields = KINDS[kind].model_fields
    return {k: v for k, v in record.items() if k in fields or k == "version"}


def _with_password(dsn: str, person: str) -> None:
    """Give a person the demo password (the admin's hash), so the test can sign in as them."""
    with psycopg.connect(dsn) as conn:
        conn.execute("UPDATE people SET password_hash = (SELECT password_hash FROM people"
                     " WHERE id = 'admin') WHERE id = %s", (person,))  # fmt: skip


def _build(client: TestClient, h: dict[str, str], community: str) -> dict[str, dict[str, Any]]:
    """A grid with a venue, a node, a device, a worker and a shift, all through the API."""
    made = {}
    for kind, body in [
        ("areas", {"id": "g_new", "level": "grid", "name": "新华网格", "parent": community}),
        ("venues", {"id": "v-new", "grid": "g_new", "name": "新华驿站", "kind": "grid_station",
                    "capacity": 40, "location": {"lat": 30.1, "lon": 120.2},
                    "opening_hours": {"mon": [["08:30", "20:30"]]}}),
        ("nodes", {"id": "n-new", "venue": "v-new", "name": "main box"}),
        ("devices", {"id": "d-new", "node": "n-new", "kind": "door", "name": "front door",
                     "driver": "simulated"}),
        ("people", {"id": "w-new", "name": "王芳", "role": "grid_worker", "scope": "g_new",
                    "email": "wf@example.cn"}),
        ("duty", {"id": "s-new", "grid": "g_new", "person": "w-new", "days": ["mon", "tue"],
                  "starts": "22:00", "ends": "06:00"}),
    ]:  # fmt: skip
        made[kind] = _ok(client.post(f"{ADMIN}/{kind}", json=body, headers=h), 201)
        assert made[kind]["version"] == 1 and made[kind]["disabled"] is False
    return made


EDITS = {
    "areas": {"name": "新华一网格"},
    "venues": {"capacity": 60, "shelter": True},
    "nodes": {"name": "cabinet box"},
    "devices": {"zone": "entrance", "settings": {"host": "10.0.0.5"}},
    "people": {"phone": "+86 139 0000 0000", "language": "en"},
    "duty": {"days": ["sat", "sun"], "ends": "07:00"},
}


def test_an_admin_adds_changes_disables_and_enables_each_kind(
    client: TestClient, stack: LocalStack
) -> None:
    h = sign_in(client, "admin")
    made = _build(client, h, _community(stack.dsn))
    assert made["venues"]["location"] == {"lat": 30.1, "lon": 120.2}
    assert made["duty"]["days"] == ["mon", "tue"] and made["duty"]["starts"] == "22:00"
    assert made["nodes"]["secret_issued_at"] is not None and len(made["nodes"]["secret"]) >= 32
    for kind, edit in EDITS.items():
        rid = made[kind]["id"]
        current = _ok(client.get(f"{ADMIN}/{kind}/{rid}", headers=h))
        body = editable(kind, current) | edit
        changed = _ok(client.put(f"{ADMIN}/{kind}/{rid}", json=body, headers=h))
        assert changed["version"] == 2, kind
        for k, v in edit.items():
            assert changed[k] == v, (kind, k)
        off = _ok(client.post(f"{ADMIN}/{kind}/{rid}/disable", json={"version": 2}, headers=h))
        assert off["disabled"] is True and off["version"] == 3
        listed = _ok(client.get(f"{ADMIN}/{kind}", headers=h))["items"]
        assert rid not in [i["id"] for i in listed], kind
        listed = _ok(client.get(f"{ADMIN}/{kind}", params={"include_disabled": True}, headers=h))
        assert rid in [i["id"] for i in listed["items"]], kind
        on = _ok(client.post(f"{ADMIN}/{kind}/{rid}/enable", headers=h))
        assert on["disabled"] is False and on["version"] == 4
    assert scalar(stack.dsn, "SELECT active FROM people WHERE id = 'w-new'") is True
    assert scalar(stack.dsn, "SELECT days FROM duty_shifts WHERE id = 's-new'") == [6, 7]
    actions = rows(stack.dsn, "SELECT action, target FROM audit_log WHERE person_id = 'admin'"
                              " AND action LIKE 'registry.%%' ORDER BY id")  # fmt: skip
    names = {"areas": "area", "venues": "venue", "nodes": "node", "devices": "device",
             "people": "person", "duty": "shift"}  # fmt: skip
    expected = [(f"registry.{names[k]}.create", made[k]["id"]) for k in made]
    for k in made:
        expected += [(f"registry.{names[k]}.{v}", made[k]["id"])
                     for v in ("update", "disable", "enable")]  # fmt: skip
    assert actions == expected
    (detail,) = rows(stack.dsn, "SELECT detail FROM audit_log WHERE action = "
                                "'registry.person.update'")[0]  # fmt: skip
    assert detail["changes"]["language"] == {"before": "zh-CN", "after": "en"}
    # Filters and pages.
    devices = _ok(client.get(f"{ADMIN}/devices", params={"node": "n-new"}, headers=h))
    assert [d["id"] for d in devices["items"]] == ["d-new"]
    first = _ok(client.get(f"{ADMIN}/venues", params={"limit": 2}, headers=h))
    rest = _ok(client.get(f"{ADMIN}/venues", params={"after": first["next_after"]}, headers=h))
    ids = [v["id"] for v in first["items"] + rest["items"]]
    assert "v-new" in ids and len(ids) == len(set(ids)) == 4


def test_a_stale_update_gets_409_with_the_current_record(
    client: TestClient, stack: LocalStack, nodes: list[NodeCredentials]
) -> None:
    h = sign_in(client, "admin")
    venue = _ok(client.get(f"{ADMIN}/venues/{nodes[0].site}", headers=h))
    body = editable("venues", venue)
    _ok(client.put(f"{ADMIN}/venues/{venue['id']}", json=body | {"name": "甲"}, headers=h))
    late = client.put(f"{ADMIN}/venues/{venue['id']}", json=body | {"name": "乙"}, headers=h)
    assert late.status_code == 409, late.text
    answer = late.json()
    assert answer["error"] == "conflict" and "version" in answer["detail"]
    assert answer["current"]["name"] == "甲" and answer["current"]["version"] == body["version"] + 1
    assert scalar(stack.dsn, "SELECT name FROM venues WHERE id = %s", (venue["id"],)) == "甲"
    stale_off = client.post(f"{ADMIN}/venues/{venue['id']}/disable", json={"version": 1},
                            headers=h)  # fmt: skip
    assert stale_off.status_code == 409 and stale_off.json()["current"]["disabled"] is False
    refused = rows(stack.dsn, "SELECT detail->>'status' FROM audit_log WHERE action = 'refused'")
    assert refused == [("409",), ("409",)]


def test_a_district_admin_manages_only_the_district(
    client: TestClient, stack: LocalStack, nodes: list[NodeCredentials]
) -> None:
    city = sign_in(client, "admin")
    district = str(scalar(stack.dsn, "SELECT id FROM territory WHERE level = 'district'"))
    for body in (
        {"id": "xicheng", "level": "district", "name": "西城区", "parent": "haicheng"},
        {"id": "xc_sub", "level": "subdistrict", "name": "街道", "parent": "xicheng"},
        {"id": "xc_com", "level": "community", "name": "社区", "parent": "xc_sub"},
        {"id": "xc_g1", "level": "grid", "name": "网格", "parent": "xc_com"},
    ):
        _ok(client.post(f"{ADMIN}/areas", json=body, headers=city), 201)
    _ok(client.post(f"{ADMIN}/venues", json={"id": "v-xc", "grid": "xc_g1", "name": "西城站",
                                            "kind": "estate"}, headers=city), 201)  # fmt: skip
    _ok(client.post(f"{ADMIN}/people", json={"id": "admin-dc", "name": "区管理员", "role": "admin",
                                            "scope": district}, headers=city), 201)  # fmt: skip
    _with_password(stack.dsn, "admin-dc")
    h = sign_in(client, "admin-dc")

    seen = {v["id"] for v in _ok(client.get(f"{ADMIN}/venues", headers=h))["items"]}
    assert "v-xc" not in seen and nodes[0].site in seen
    assert client.get(f"{ADMIN}/venues/v-xc", headers=h).status_code == 404
    assert client.get(f"{ADMIN}/venues", params={"area": "xicheng"}, headers=h).status_code == 404
    assert client.post(f"{ADMIN}/venues/v-xc/disable", headers=h).status_code == 404
    mine = _ok(client.get(f"{ADMIN}/venues/{nodes[0].site}", headers=h))
    moved = client.put(f"{ADMIN}/venues/{mine['id']}", headers=h,
                       json=editable("venues", mine) | {"grid": "xc_g1"})  # fmt: skip
    assert moved.status_code == 422 and moved.json()["field"] == "grid", moved.text
    for scope, role in (("haicheng", "grid_worker"), ("xicheng", "admin")):
        above = client.post(f"{ADMIN}/people", headers=h, json={"id": f"p-{scope}",
                            "name": "x", "role": role, "scope": scope})  # fmt: skip
        assert above.status_code == 422 and above.json()["field"] == "scope", above.text
    city_area = client.post(f"{ADMIN}/areas", headers=h, json={"id": "dc2", "level": "district",
                            "name": "x", "parent": "haicheng"})  # fmt: skip
    assert city_area.status_code == 422 and city_area.json()["field"] == "parent"
    me = _ok(client.get(f"{ADMIN}/people/admin-dc", headers=h))
    promote = client.put(f"{ADMIN}/people/admin-dc", headers=h, json=editable("people", me) | {"scope": "haicheng"})  # fmt: skip
    assert promote.status_code == 409  # not one's own scope, even before the area check
    assert client.post(f"{ADMIN}/people/admin-dc/disable", headers=h).status_code == 409
    assert scalar(stack.dsn, "SELECT grid_id FROM venues WHERE id = %s", (mine["id"],)) != "xc_g1"
    assert scalar(stack.dsn, "SELECT count(*) FROM people WHERE id LIKE 'p-%%'") == 0


@pytest.mark.parametrize("person", ["operator", "dispatcher"])
def test_only_admins_manage_the_registry(
    client: TestClient, stack: LocalStack, nodes: list[NodeCredentials], person: str
) -> None:
    if person == "dispatcher":
        person = str(scalar(stack.dsn, "SELECT id FROM people WHERE role = 'dispatcher' LIMIT 1"))
        _with_password(stack.dsn, person)
    h = sign_in(client, person)
    for method, url, body in [
        ("GET", f"{ADMIN}/venues", None),
        ("GET", f"{ADMIN}/venues/{nodes[0].site}", None),
        ("POST", f"{ADMIN}/venues", {"id": "v-x", "grid": "g", "name": "x", "kind": "estate"}),
        ("POST", f"{ADMIN}/nodes/{nodes[0].node}/secret", None),
        ("POST", f"{ADMIN}/nodes/{nodes[0].node}/disable", None),
    ]:
        r = client.request(method, url, json=body, headers=h)
        assert r.status_code == 403, (url, r.text)
        assert "admins" in r.json()["detail"]
    assert scalar(stack.dsn, "SELECT count(*) FROM edge_nodes WHERE disabled") == 0


def test_bad_records_are_422_naming_the_field(
    client: TestClient, stack: LocalStack, nodes: list[NodeCredentials]
) -> None:
    h = sign_in(client, "admin")
    grid = str(scalar(stack.dsn, "SELECT grid_id FROM venues WHERE id = %s", (nodes[0].site,)))
    dispatcher = str(scalar(stack.dsn, "SELECT id FROM people WHERE role = 'dispatcher' LIMIT 1"))
    door = next(d for d, k in nodes[1].devices if k == "door")
    venue = {"id": "v-bad", "grid": grid, "name": "x", "kind": "estate"}
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("venues", venue | {"capacity": 0}, "capacity"),
        ("venues", venue | {"grid": "nowhere"}, "grid"),
        ("venues", venue | {"grid": "haicheng"}, "grid"),  # a city, not a grid
        ("venues", venue | {"opening_hours": {"mon": [["09:00", "08:00"]]}}, "opening_hours"),
        ("venues", venue | {"id": "bad/id"}, "id"),
        ("venues", venue | {"id": nodes[0].site}, "id"),  # exists already
        ("nodes", {"id": "n-bad", "venue": "v-none"}, "venue"),
        ("devices", {"id": door, "node": nodes[0].node, "kind": "door"}, "id"),
        ("devices", {"id": "d-bad", "node": "n-none", "kind": "door"}, "node"),
        ("devices", {"id": "d-bad", "node": nodes[0].node, "kind": "lamp"}, "kind"),
        ("people", {"id": "p-bad", "name": "x", "role": "admin", "scope": "nowhere"}, "scope"),
        ("people", {"id": "p-bad", "name": "x", "role": "king", "scope": grid}, "role"),
        ("duty", {"id": "s-bad", "grid": grid, "person": dispatcher, "starts": "08:00",
                  "ends": "12:00"}, "person"),  # a dispatcher is not dispatched tasks
        ("duty", {"id": "s-bad", "grid": grid, "person": f"worker-{grid}", "starts": "08:00",
                  "ends": "12:00", "days": ["funday"]}, "days"),
    ]  # fmt: skip
    for kind, body, field in cases:
        r = client.post(f"{ADMIN}/{kind}", json=body, headers=h)
        assert r.status_code == 422, (kind, body, r.text)
        answer = r.json()
        assert answer["error"] == "invalid"
        assert field in answer["detail"], (field, answer)
        if "field" in answer:
            assert answer["field"] == field, answer
    assert "already under node" in client.post(f"{ADMIN}/devices", headers=h, json={
        "id": door, "node": nodes[0].node, "kind": "door"}).json()["detail"]  # fmt: skip
    assert scalar(stack.dsn, "SELECT count(*) FROM venues WHERE id = 'v-bad'") == 0
    assert scalar(stack.dsn, "SELECT node_id FROM devices WHERE id = %s", (door,)) == nodes[1].node


def test_a_node_secret_is_shown_once_and_stored_only_hashed(
    client: TestClient, stack: LocalStack, nodes: list[NodeCredentials]
) -> None:
    h = sign_in(client, "admin")
    # Registering a node creates its secret, in the answer only.
    r = client.post(f"{ADMIN}/nodes", json={"id": "n-fresh", "venue": nodes[0].site}, headers=h)
    first = _ok(r, 201)["secret"]
    assert r.headers["cache-control"] == "no-store"
    assert len(first) >= 32 and first not in str(scalar(
        stack.dsn, "SELECT password_hash FROM edge_nodes WHERE id = 'n-fresh'"))  # fmt: skip
    r = client.post(f"{ADMIN}/nodes/n-fresh/secret", headers=h)
    issued = _ok(r)
    assert r.headers["cache-control"] == "no-store"
    secret = issued["secret"]
    assert secret != first
    assert len(secret) >= 32
    stored, sealed = rows(stack.dsn, "SELECT password_hash, secret_sealed FROM edge_nodes"
                                     " WHERE id = 'n-fresh'")[0]  # fmt: skip
    assert isinstance(stored, str) and stored.startswith("$7$") and secret not in stored
    assert isinstance(sealed, bytes) and secret.encode() not in sealed
    salt_and_hash = stored.split("$")
    assert hash_password(secret, iterations=int(salt_and_hash[2]),
                         salt=__import__("base64").b64decode(salt_and_hash[3])) == stored  # fmt: skip
    assert unseal(sealed, load_seal_key(stack.seal_key_file)) == secret  # for the reconcile only
    node = _ok(client.get(f"{ADMIN}/nodes/n-fresh", headers=h))
    assert node["secret_issued_at"] is not None and "secret" not in node
    again = _ok(client.post(f"{ADMIN}/nodes/n-fresh/secret", headers=h))
    assert again["secret"] != secret
    audited = rows(stack.dsn, "SELECT detail::text FROM audit_log WHERE action = "
                              "'registry.node.secret' ORDER BY id")  # fmt: skip
    assert [('"rotated": false' in d, '"rotated": true' in d) for (d,) in audited] == [
        (False, True), (False, True)]  # fmt: skip
    everything = " ".join(str(r) for r in rows(stack.dsn, "SELECT detail::text FROM audit_log"))
    assert all(s not in everything for s in (first, secret, again["secret"]))
    assert client.post(f"{ADMIN}/nodes/n-none/secret", headers=h).status_code == 404


def _worker(client: TestClient, h: dict[str, str], grid: str, person: str) -> None:
    _ok(client.post(f"{ADMIN}/people", json={"id": person, "name": person, "role": "grid_worker",
                                            "scope": grid}, headers=h), 201)  # fmt: skip


def test_a_weekly_shift_puts_its_person_on_duty(
    client: TestClient, stack: LocalStack, nodes: list[NodeCredentials]
) -> None:
    h = sign_in(client, "admin")
    grid, site = "g_shift", "v-shift"  # a grid without the demo's year-long roster
    _ok(client.post(f"{ADMIN}/areas", json={"id": grid, "level": "grid", "name": "网格",
                                           "parent": _community(stack.dsn)}, headers=h), 201)  # fmt: skip
    _ok(client.post(f"{ADMIN}/venues", json={"id": site, "grid": grid, "name": "站",
                                            "kind": "grid_station"}, headers=h), 201)  # fmt: skip
    for person in ("w-one", "w-shift"):  # two workers: nobody is on duty by default
        _worker(client, h, grid, person)
    first = raise_incident(stack.dsn, site, subject="before")
    assert scalar(stack.dsn, "SELECT assignee FROM tasks WHERE id = %s", (first,)) is None
    _ok(client.post(f"{ADMIN}/duty", json={"id": "always", "grid": grid, "person": "w-shift",
                                          "starts": "00:00", "ends": "00:00"}, headers=h), 201)  # fmt: skip
    on_duty = {p["id"]: p["on_duty"] for p in _ok(client.get("/api/people", headers=h))}
    assert on_duty["w-shift"] is True and on_duty["w-one"] is False
    task = raise_incident(stack.dsn, site, subject="after")
    assert rows(stack.dsn, "SELECT state::text, assignee FROM tasks WHERE id = %s", (task,)) == [
        ("dispatched", "w-shift")]  # fmt: skip
    shift = _ok(client.get(f"{ADMIN}/duty/always", headers=h))
    _ok(client.post(f"{ADMIN}/duty/always/disable", json={"version": shift["version"]}, headers=h))
    third = raise_incident(stack.dsn, site, subject="off")
    assert scalar(stack.dsn, "SELECT assignee FROM tasks WHERE id = %s", (third,)) is None


# Monday 2026-11-30 in Beijing; shifts in Asia/Shanghai unless said otherwise.
_CASES = [
    # (days, starts, ends, timezone, valid_from, valid_to, local time, on duty)
    (["mon"], "08:00", "17:00", "Asia/Shanghai", None, None, "2026-11-30 08:00", True),
    (["mon"], "08:00", "17:00", "Asia/Shanghai", None, None, "2026-11-30 17:00", False),
    (["tue"], "08:00", "17:00", "Asia/Shanghai", None, None, "2026-11-30 09:00", False),
    (["mon"], "22:00", "06:00", "Asia/Shanghai", None, None, "2026-11-30 23:30", True),
    (["mon"], "22:00", "06:00", "Asia/Shanghai", None, None, "2026-12-01 05:59", True),
    (["mon"], "22:00", "06:00", "Asia/Shanghai", None, None, "2026-11-30 05:00", False),
    (["sun"], "22:00", "06:00", "Asia/Shanghai", None, None, "2026-11-30 05:00", True),
    (["mon"], "08:00", "24:00", "Asia/Shanghai", None, None, "2026-11-30 23:59", True),
    (["mon"], "00:00", "00:00", "Asia/Shanghai", None, None, "2026-11-30 00:00", True),
    (["mon"], "00:00", "00:00", "Asia/Shanghai", None, None, "2026-12-01 00:00", False),
    # 09:00 in Beijing is 01:00 in London: not in a London shift from 08:00.
    (["mon"], "08:00", "17:00", "Europe/London", None, None, "2026-11-30 09:00", False),
    (["mon"], "08:00", "17:00", "Europe/London", None, None, "2026-11-30 17:00", True),
    (["mon"], "08:00", "17:00", "Asia/Shanghai", "2026-12-01", None, "2026-11-30 09:00", False),
    (["mon"], "08:00", "17:00", "Asia/Shanghai", None, "2026-11-29", "2026-11-30 09:00", False),
    # The night from Monday into Tuesday belongs to Monday's dates.
    (["mon"], "22:00", "06:00", "Asia/Shanghai", None, "2026-11-30", "2026-12-01 05:00", True),
]


def test_who_is_on_duty_by_weekly_shifts(stack: LocalStack, nodes: list[NodeCredentials]) -> None:
    from zoneinfo import ZoneInfo

    grid = str(scalar(stack.dsn, "SELECT grid_id FROM venues WHERE id = %s", (nodes[0].site,)))
    beijing = ZoneInfo("Asia/Shanghai")
    with psycopg.connect(stack.dsn) as conn:
        conn.execute("DELETE FROM duty_roster")  # the demo's year-long roster comes first
        conn.execute("INSERT INTO people (id, name, role, scope_id) VALUES"
                     " ('w-two', 'Two', 'grid_worker', %s)", (grid,))  # fmt: skip
        for i, (days, starts, ends, tz, since, until, local, expected) in enumerate(_CASES):
            conn.execute("DELETE FROM duty_shifts")
            conn.execute(
                """INSERT INTO duty_shifts (id, grid_id, person_id, days, starts, ends, timezone,
                                            valid_from, valid_to)
                   VALUES (%s, %s, 'w-two', %s, %s, %s, %s, %s, %s)""",
                (f"s{i}", grid, [["mon", "tue", "wed", "thu", "fri", "sat", "sun"].index(d) + 1
                                 for d in days], starts, ends, tz, since, until),
            )  # fmt: skip
            at = datetime.strptime(local, "%Y-%m-%d %H:%M").replace(tzinfo=beijing)
            found = tasks.on_duty(conn, grid, at.astimezone(UTC))
            assert (found == "w-two") is expected, _CASES[i]


def test_an_uploaded_file_is_planned_then_applied_within_the_area(
    client: TestClient, stack: LocalStack
) -> None:
    h = sign_in(client, "admin")
    community = _community(stack.dsn)
    text = f"""version: 1
areas:
  - {{id: g_up, level: grid, name: 上传网格, parent: {community}}}
venues:
  - {{id: v-up, grid: g_up, name: 上传驿站, kind: grid_station, capacity: 30}}
people:
  - {{id: w-up, name: 李雷, role: grid_worker, scope: g_up}}
"""
    upload = {"text": text, "filename": "upload.yaml"}
    planned = _ok(client.post(f"{ADMIN}/registry/plan", json=upload, headers=h))
    assert planned["summary"]["added"] == 3 and planned["changes"] == 3
    assert "v-up" in planned["text"] and "capacity=30" in planned["text"]
    assert scalar(stack.dsn, "SELECT count(*) FROM venues WHERE id = 'v-up'") == 0  # only a plan
    applied = _ok(client.post(f"{ADMIN}/registry/apply", headers=h,
                              json=upload | {"fingerprint": planned["fingerprint"]}))  # fmt: skip
    assert applied["summary"]["added"] == 3
    assert scalar(stack.dsn, "SELECT capacity FROM venues WHERE id = 'v-up'") == 30
    assert _ok(client.post(f"{ADMIN}/registry/plan", json=upload, headers=h))["changes"] == 0
    audited = rows(stack.dsn, "SELECT action, target FROM audit_log WHERE action LIKE"
                              " 'registry.%%' ORDER BY id")  # fmt: skip
    assert audited == [("registry.added", "area:g_up"), ("registry.added", "venue:v-up"),
                       ("registry.added", "person:w-up"), ("registry.upload", "upload.yaml")]  # fmt: skip

    # The registry moves on between the plan and its apply: 409 with the plan as it is now.
    renamed = upload | {"text": text.replace("上传驿站", "新名字")}
    shown = _ok(client.post(f"{ADMIN}/registry/plan", json=renamed, headers=h))
    assert shown["summary"]["changed"] == 1
    venue = _ok(client.get(f"{ADMIN}/venues/v-up", headers=h))
    _ok(client.put(f"{ADMIN}/venues/v-up", json=editable("venues", venue) | {"capacity": 31},
                   headers=h))  # fmt: skip
    late = client.post(f"{ADMIN}/registry/apply", headers=h,
                       json=renamed | {"fingerprint": shown["fingerprint"]})  # fmt: skip
    assert late.status_code == 409, late.text
    assert "capacity" in late.json()["current"]["text"]
    assert scalar(stack.dsn, "SELECT name FROM venues WHERE id = 'v-up'") == "上传驿站"

    bad = client.post(f"{ADMIN}/registry/plan", headers=h, json={"filename": "bad.yaml",
                      "text": text.replace("grid: g_up", "grid: g_nowhere")})  # fmt: skip
    assert bad.status_code == 422 and "bad.yaml:5" in bad.json()["detail"], bad.text

    # An admin of one grid cannot upload what lies outside it.
    _ok(client.post(f"{ADMIN}/people", json={"id": "admin-g", "name": "网格管理员", "role": "admin",
                                            "scope": "g_up"}, headers=h), 201)  # fmt: skip
    _with_password(stack.dsn, "admin-g")
    small = sign_in(client, "admin-g")
    other_grid = str(scalar(stack.dsn, "SELECT id FROM territory WHERE level = 'grid' AND"
                                       " id <> 'g_up' ORDER BY id LIMIT 1"))  # fmt: skip
    outside = f"version: 1\nvenues:\n  - {{id: v-out, grid: {other_grid}, name: x, kind: estate}}\n"
    refused = client.post(f"{ADMIN}/registry/apply", headers=small,
                          json={"text": outside, "filename": "out.yaml"})  # fmt: skip
    assert refused.status_code == 422 and "outside g_up" in refused.json()["detail"], refused.text
    assert scalar(stack.dsn, "SELECT count(*) FROM venues WHERE id = 'v-out'") == 0
    # Nor take away their own access through a file, as the single-record routes refuse it.
    for own in (
        "  - {id: admin-g, name: 网格管理员, role: grid_worker, scope: g_up}\n",
        "  - {id: admin-g, name: 网格管理员, role: admin, scope: g_up, disabled: true}\n",
    ):
        mine = client.post(
            f"{ADMIN}/registry/apply",
            headers=small,
            json={"text": f"version: 1\npeople:\n{own}", "filename": "me.yaml"},
        )
        assert mine.status_code == 409 and "your own" in mine.json()["detail"], mine.text
    whole = client.post(f"{ADMIN}/registry/apply", headers=small, json={
        "text": "version: 1\nareas:\n  - {id: g_up, level: grid, name: 上传网格, parent: "
        f"{community}, disabled: true}}\n", "filename": "area.yaml"})  # fmt: skip
    assert whole.status_code == 409 and "your own area" in whole.json()["detail"], whole.text
    assert scalar(stack.dsn, "SELECT role::text FROM people WHERE id = 'admin-g'") == "admin"


def test_refused_broker_connects_are_shown_to_admins_of_their_area(
    client: TestClient, stack: LocalStack, nodes: list[NodeCredentials]
) -> None:
    with psycopg.connect(stack.dsn) as conn:
        conn.execute("INSERT INTO broker_refusals (client, node_id, reason, count) VALUES"
                     " (%s, %s, 'disabled', 3), ('stranger', NULL, 'unknown', 7)",
                     (nodes[0].node, nodes[0].node))  # fmt: skip
    city = sign_in(client, "admin")
    seen = _ok(client.get(f"{ADMIN}/broker/refusals", headers=city))
    assert {(r["client"], r["count"], r["site"]) for r in seen} == {
        (nodes[0].node, 3, nodes[0].site), ("stranger", 7, None)}  # fmt: skip
    other = "g_far"  # a grid without the node
    _ok(client.post(f"{ADMIN}/areas", json={"id": other, "level": "grid", "name": "远",
                                           "parent": _community(stack.dsn)}, headers=city), 201)  # fmt: skip
    _ok(client.post(f"{ADMIN}/people", json={"id": "admin-o", "name": "x", "role": "admin",
                                            "scope": other}, headers=city), 201)  # fmt: skip
    _with_password(stack.dsn, "admin-o")
    assert _ok(client.get(f"{ADMIN}/broker/refusals", headers=sign_in(client, "admin-o"))) == []
    assert (
        client.get(f"{ADMIN}/broker/refusals", headers=sign_in(client, "operator")).status_code
        == 403
    )
