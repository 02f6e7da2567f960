"""The API in its reader's language: every error's `message` follows Accept-Language (zh-CN by
default) from a catalogue in both languages, and incident and task titles do too."""

# ruff: noqa: RUF001  (Chinese text takes its own full-width punctuation)

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api import messages
from api.app import create_app
from api.live import Change
from api.settings import ApiSettings
from casework import titles, words
from gridwatch.demo import DEMO_PASSWORD
from gridwatch.local.stack import LocalStack
from tests.support import scalar
from tests.test_api import _second_grid, people_of, raise_incident, sign_in

ROOT = Path(__file__).resolve().parent.parent
ZH, EN = {"Accept-Language": "zh-CN"}, {"Accept-Language": "en"}
# Errors raised with a code: the API's own, and the ingest's and the registry records' refusals.
_CODED = {
    "ApiError": 1,
    "TaskError": 1,
    "TaskForbidden": 1,
    "EmergencyError": 1,
    "ProposalError": 1,
    "Invalid": 2,
    "not_signed_in": 0,
    "DatabaseUnavailable": 1,
}  # the code's position among the args
# Raise sites allowed to fall back on a status's message: none today (the framework's own 404
# and 405 for unknown paths and methods are the only answers that use one).
_FALLBACKS_ALLOWED = 0


@pytest.mark.parametrize("code", sorted(messages.MESSAGES))
def test_every_message_is_in_both_languages_with_the_same_parameters(code: str) -> None:
    said = messages.MESSAGES[code]
    assert set(said) == set(messages.LANGUAGES)
    assert all(text.strip() for text in said.values())
    # The English may say pydantic's own words ({msg}); every parameter of the Chinese is given.
    assert titles.placeholders(said["zh-CN"]) <= titles.placeholders(said["en"]) | {
        "min_length", "max_length", "expected", "field"
    }  # fmt: skip
    if not code.startswith("invalid."):
        assert titles.placeholders(said["zh-CN"]) == titles.placeholders(said["en"])


def test_words_shown_for_codes_are_in_both_languages() -> None:
    for kind, of_kind in words.WORDS.items():
        for code, said in of_kind.items():
            assert set(said) == set(messages.LANGUAGES), (kind, code)


@pytest.mark.parametrize(
    ("header", "expected"),
    [(None, "zh-CN"), ("", "zh-CN"), ("zh-CN", "zh-CN"), ("zh", "zh-CN"), ("en", "en"),
     ("en-US,en;q=0.9", "en"), ("fr-FR, en;q=0.5, zh;q=0.4", "en"), ("de", "zh-CN"),
     ("en;q=0.2, zh-TW;q=0.8", "zh-CN"), ("en;q=0", "zh-CN"), ("*", "zh-CN"),
     ("en;q=bogus, zh", "zh-CN")],
)  # fmt: skip
def test_the_language_of_a_request(header: str | None, expected: str) -> None:
    assert messages.from_header(header) == expected


def _calls() -> Iterator[tuple[str, ast.Call]]:
    for folder in ("api", "ingest", "registry"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Call):
                    yield f"{path.relative_to(ROOT)}:{node.lineno}", node


def _name(call: ast.Call) -> str:
    f = call.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""


def test_every_raise_site_gives_a_code_the_catalogue_has_with_its_parameters() -> None:
    uncoded, wrong = [], []
    for where, call in _calls():
        name = _name(call)
        if name == "HTTPException" and "limits.py" not in where:  # BodyTooLarge sets its code
            uncoded.append(where)
        if name not in _CODED:
            continue
        at = _CODED[name]
        arg = call.args[at] if len(call.args) > at else None
        # A code, or either of two codes (`"a" if ... else "b"`).
        options = [arg] if isinstance(arg, ast.Constant) else [arg.body, arg.orelse] if (
            isinstance(arg, ast.IfExp)) else []  # fmt: skip
        if not options or not all(isinstance(o, ast.Constant) for o in options):
            passed_on = name == "ApiError" and (
                isinstance(arg, ast.Attribute)  # a ProposalError's own code, passed on
                or (isinstance(arg, ast.Name) and where.startswith("api/deps.py"))  # not_signed_in
            )
            if not passed_on and not (name == "not_signed_in" and arg is None):
                uncoded.append(where)
            continue
        given = {k.arg for k in call.keywords} - {"headers"}
        for option in options:
            assert isinstance(option, ast.Constant)
            code = option.value
            if code not in messages.MESSAGES:
                wrong.append(f"{where}: no message {code!r}")
            elif missing := titles.placeholders(messages.MESSAGES[code]["zh-CN"]) - given:
                wrong.append(f"{where}: {code} lacks {sorted(missing)}")
    assert wrong == []
    assert len(uncoded) <= _FALLBACKS_ALLOWED, uncoded


@pytest.fixture
def client(stack: LocalStack) -> Iterator[TestClient]:
    settings = ApiSettings(
        database_url=stack.role_dsn("api"),  # type: ignore[arg-type]
        api_sign_in_failures_per_person=3,
    )
    with TestClient(create_app(settings)) as c:
        yield c


def _said(response: object, status: int) -> tuple[str, str, str]:
    from httpx import Response

    assert isinstance(response, Response)
    assert response.status_code == status, response.text
    body = response.json()
    return body["error"], body["detail"], body["message"]


def test_real_refusals_are_said_in_the_requests_language(
    client: TestClient, stack: LocalStack
) -> None:
    venue = _first_venue(stack)
    worker, _ = people_of(stack.dsn, venue)
    task = raise_incident(stack.dsn, venue)
    wrong = {"username": "operator", "password": "not-the-password"}

    # 401: a wrong password.
    zh = _said(client.post("/api/token", data=wrong, headers=ZH), 401)
    en = _said(client.post("/api/token", data=wrong, headers=EN), 401)
    assert zh == ("unauthorized", "wrong person id or password", "账号或密码错误")
    assert en == ("unauthorized", "wrong person id or password", "wrong person id or password")
    assert _said(client.post("/api/token", data=wrong), 401)[2] == "账号或密码错误"  # no header
    # 429: throttled after three failures.
    ok = {"username": "operator", "password": DEMO_PASSWORD}
    zh = _said(client.post("/api/token", data=ok, headers=ZH), 429)
    assert zh[2].startswith("该账号或该地址登录失败次数过多，请 ") and zh[2].endswith(" 秒后再试")
    en = _said(client.post("/api/token", data=ok, headers=EN), 429)
    assert en[2].startswith("too many failed sign-ins") and en[1].startswith("too many failed")

    as_worker = sign_in(client, worker)
    # 403: not the role's to do (the ingest's refusal, with its code).
    action = f"/api/tasks/{task}/actions"
    zh = _said(client.post(action, json={"action": "approve"}, headers=as_worker | ZH), 403)
    en = _said(client.post(action, json={"action": "approve"}, headers=as_worker | EN), 403)
    assert zh == ("forbidden", "a grid_worker cannot approve a task", "网格员不能办结任务")
    assert en[2] == "a grid worker cannot approve a task"
    # 409: not in this state.
    assert client.post(action, json={"action": "accept"}, headers=as_worker).status_code == 200
    zh = _said(client.post(action, json={"action": "accept"}, headers=as_worker | ZH), 409)
    assert zh[0] == "conflict" and zh[1].startswith("cannot accept a task that is accepted")
    assert zh[2].startswith("任务当前为已签收，不能签收（仅限") and "待签收" in zh[2]
    en = _said(client.post(action, json={"action": "accept"}, headers=as_worker | EN), 409)
    assert en[2].startswith("cannot accept a task that is accepted (only when dispatched")
    # 422: a body that is not an action.
    zh = _said(client.post(action, json={"action": "fly"}, headers=as_worker | ZH), 422)
    assert zh[0] == "invalid" and zh[2].startswith("action 应为以下之一：")
    field = client.post(action, json={"action": "fly"}, headers=as_worker | ZH).json()["field"]
    assert field == "action"  # the field at fault, named for a form to mark it
    en = _said(client.post(action, json={"action": "fly"}, headers=as_worker | EN), 422)
    assert en[2] == en[1] and en[2].startswith("body.action: Input should be")
    # 404: a task outside the person's area looks missing, in either language.
    _second_grid(stack.dsn, venue)
    other = sign_in(client, "worker-g_other")
    zh = _said(client.get(f"/api/tasks/{task}", headers=other | ZH), 404)
    en = _said(client.get(f"/api/tasks/{task}", headers=other | EN), 404)
    assert zh == ("not_found", f"no task {task}", f"没有编号为 {task} 的任务")
    assert en == ("not_found", f"no task {task}", f"no task {task}")
    # A path that does not exist: the framework's own 404, with the status's message.
    assert _said(client.get("/api/nowhere", headers=ZH), 404)[2] == "未找到"


def _first_venue(stack: LocalStack) -> str:
    from tests.support import scalar

    return str(scalar(stack.dsn, "SELECT id FROM venues ORDER BY id LIMIT 1"))


def test_incident_and_task_titles_follow_the_request(client: TestClient, stack: LocalStack) -> None:
    venue = _first_venue(stack)
    worker, _ = people_of(stack.dsn, venue)
    task = raise_incident(stack.dsn, venue)
    name = str(_venue_name(stack, venue))
    me = sign_in(client, worker)
    zh = client.get(f"/api/tasks/{task}", headers=me | ZH).json()
    en = client.get(f"/api/tasks/{task}", headers=me | EN).json()
    plain = client.get(f"/api/tasks/{task}", headers=me).json()
    assert zh["title_code"] == en["title_code"] == "task.door_forced"
    assert zh["title_params"]["venue"] == name and zh["title_params"]["venue_id"] == venue
    assert zh["title"] == plain["title"] == f"{name}：门被强行打开"
    assert en["title"] == f"Door forced open at {name}"
    listed = client.get("/api/incidents", headers=me | EN).json()["items"]
    assert [(i["title_code"], i["title"]) for i in listed] == [("door_forced", "Door forced open")]
    one = client.get(f"/api/incidents/{listed[0]['id']}", headers=me | ZH).json()
    assert one["title"] == "门被强行打开"
    # The wall's ticker and tasks due say them too.
    operator = sign_in(client, "operator")
    city = str(scalar(stack.dsn, "SELECT id FROM territory WHERE parent_id IS NULL"))
    wall = client.get(f"/api/wall/{city}", headers=operator | EN).json()
    assert [t["title"] for t in wall["ticker"]] == ["Door forced open"]
    wall = client.get(f"/api/wall/{city}", headers=operator | ZH).json()
    assert wall["ticker"][0]["title"] == "门被强行打开"


def _venue_name(stack: LocalStack, venue: str) -> object:
    from tests.support import scalar

    return scalar(stack.dsn, "SELECT name FROM venues WHERE id = %s", (venue,))


def test_the_live_feed_renders_a_title_once_per_language() -> None:
    payload = (
        '{"id": 4, "title": "Door forced open at v1", "title_code": "task.door_forced",'
        ' "title_params": {"venue": "桃园社区服务中心", "venue_id": "v1"}}'
    )
    change = Change.of(9, "task", "city.g1", None, payload)
    zh, en = change.frame_in("zh-CN"), change.frame_in("en")
    assert zh.startswith("id: 9\nevent: task\ndata: {") and zh.endswith("}\n\n")
    assert '"title": "桃园社区服务中心：门被强行打开"' in zh
    assert '"title": "Door forced open at 桃园社区服务中心"' in en
    presence = Change.of(10, "presence", "city.g1", None, '{"node_id": "n1"}')
    assert presence.frame_in("en") == presence.frame_in("zh-CN")
    assert presence.frame_en is None  # nothing to render: one frame


def test_what_a_role_may_not_do_is_said_in_words() -> None:
    """Every `what` of api/routes/operations.py's role checks has its words."""
    source = (ROOT / "api" / "routes" / "operations.py").read_text()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and _name(node) == "_require":
            what = node.args[2]
            assert isinstance(what, ast.Constant) and what.value in words.WORDS["what"]
    said = messages.render("role.cannot", {"role": "dispatcher", "what": "broadcast"}, "zh-CN")
    assert said == "调度员无权发起广播"


def test_few_messages_carry_an_english_sentence_from_elsewhere() -> None:
    """Where an error's words come from another library or component (a registry file's
    parse error, psycopg's reason, the enrolment's), the Chinese frames them: kept to these."""
    quoting = {code for code, said in messages.MESSAGES.items()
               if titles.placeholders(said["zh-CN"]) & {"detail", "reason", "msg"}}  # fmt: skip
    assert quoting == {"registry.file", "enrol.unavailable", "enrol.refused", "db.value"}
    fallbacks = {code for code in messages.MESSAGES if code.startswith("status.")}
    assert len(fallbacks) <= 12  # one per status the API answers with, for the framework's own


@pytest.mark.parametrize(("lang", "said"), [("zh-CN", "请求内容过大：最多 2048 字节"),
                                            ("en", "the request body is larger than 2048 bytes")])  # fmt: skip
def test_a_body_too_large_is_refused_in_the_requests_language(
    stack: LocalStack, lang: str, said: str
) -> None:
    settings = ApiSettings(
        database_url=stack.role_dsn("api"),  # type: ignore[arg-type]
        api_max_body_bytes=2048,
    )
    with TestClient(create_app(settings)) as c:
        r = c.post("/api/token", content=b"x" * 5000, headers={"Accept-Language": lang,
                   "Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert r.status_code == 413
    assert r.json()["error"] == "too_large" and r.json()["message"].startswith(said)


def test_refusals_name_areas_not_their_ids(client: TestClient, stack: LocalStack) -> None:
    grid = str(
        scalar(stack.dsn, "SELECT grid_id FROM venues WHERE id = %s", (_first_venue(stack),))
    )
    name = str(scalar(stack.dsn, "SELECT name FROM territory WHERE id = %s", (grid,)))
    city = str(scalar(stack.dsn, "SELECT name FROM territory WHERE parent_id IS NULL"))
    boss = sign_in(client, "operator")
    start = {"area": grid, "reason": "防汛演练"}
    assert client.post("/api/emergencies", json=start, headers=boss).status_code == 200
    _, detail, said = _said(client.post("/api/emergencies", json=start, headers=boss | ZH), 409)
    assert name in said and grid not in said and grid in detail  # detail stays the script's
    assert client.post(f"/api/emergencies/{grid}/end", headers=boss).status_code == 200
    _, _, said = _said(client.post(f"/api/emergencies/{grid}/end", headers=boss | EN), 409)
    assert said == f"{name} is not in an emergency"
    # Under a wider emergency: the one that covers it, by name.
    top = str(scalar(stack.dsn, "SELECT id FROM territory WHERE parent_id IS NULL"))
    assert (
        client.post("/api/emergencies", json=start | {"area": top}, headers=boss).status_code == 200
    )
    _, _, said = _said(client.post("/api/emergencies", json=start, headers=boss | EN), 409)
    assert said == f"{name} is already in an emergency (of {city})"
