"""The notification API: a person's inbox and preferences, every delivery of an incident and a
task, the short links; and, with real API and ingest processes, a forced door paging the worker
on duty, escalating to the dispatcher, and stopping when the worker accepts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import ApiSettings
from casework.tasks import DeadlinePolicy
from gridwatch.demo import DEMO_PASSWORD
from gridwatch.local.services import free_port, wait_for_port
from gridwatch.local.stack import LocalStack
from notify.channels.console import ConsoleChannel
from notify.settings import NotifySettings
from tests.support import metric, scalar, start_ingest, stop_process, wait_until
from tests.test_notify import channels_for, people_of, raise_at, run
from tests.webhook_server import SECRET, WebhookServer, webhook_server


@pytest.fixture
def client(stack: LocalStack) -> Iterator[TestClient]:
    app = create_app(ApiSettings(database_url=stack.role_dsn("api")))  # type: ignore[arg-type]
    with TestClient(app) as c:
        yield c


def sign_in(client: TestClient, person: str) -> dict[str, str]:
    r = client.post("/api/token", data={"username": person, "password": DEMO_PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def test_inbox_read_deliveries_and_links(stack: LocalStack, client: TestClient) -> None:
    worker, _ = people_of(stack.dsn)
    task = raise_at(stack.dsn, "api-1")
    incident = scalar(stack.dsn, "SELECT incident_id FROM tasks WHERE id = %s", (task,))
    with webhook_server() as hook:
        run(stack, channels_for(hook), NotifySettings())
    me = sign_in(client, worker)
    inbox = client.get("/api/v1/notifications", params={"unread": True}, headers=me).json()
    assert inbox["unread"] == 1
    item = inbox["items"][0]
    assert item["kind"] == "task.dispatched" and item["task_id"] == task and item["read_at"] is None
    # The link opens the task in the console (sign-in there offers accept to its assignee).
    token = item["link"].rsplit("/t/", 1)[1]
    opened = client.get(f"/t/{token}", follow_redirects=False)
    assert opened.status_code == 303
    assert opened.headers["location"] == f"/console/#/task/{task}?for={worker}"
    bad = client.get("/t/" + "x" * 22, follow_redirects=False)
    assert bad.status_code == 404 and "not valid or has expired" in bad.json()["detail"]
    # Read: by id, audited; the count follows.
    empty = client.post("/api/v1/notifications/read", json={}, headers=me)
    assert empty.json() == {"marked": 0, "unread": 1}  # naming none marks none
    done = client.post("/api/v1/notifications/read", json={"ids": [item["id"]]}, headers=me)
    assert done.json() == {"marked": 1, "unread": 0}
    assert scalar(stack.dsn, "SELECT count(*) FROM audit_log WHERE action = 'notifications.read'"
                             " AND person_id = %s", (worker,)) == 1  # fmt: skip
    # Nobody reads another's inbox: the operator's holds only the operator's own.
    op = sign_in(client, "operator")
    assert {i["kind"] for i in client.get("/api/v1/notifications", headers=op).json()["items"]} == {
        "incident.red"
    }
    # Every delivery of the task and of the incident, with its outcome.
    by_task = client.get(f"/api/v1/tasks/{task}/deliveries", headers=op).json()
    assert {(d["person_id"], d["channel"], d["state"]) for d in by_task} == {
        (worker, "console", "sent"), (worker, "webhook", "sent"),
    }  # fmt: skip
    by_incident = client.get(f"/api/v1/incidents/{incident}/deliveries", headers=op).json()
    assert len(by_incident) == len(by_task) + 4  # the operator's and the dispatcher's too
    other = _outsider(stack, client)
    assert client.get(f"/api/v1/tasks/{task}/deliveries", headers=other).status_code == 404


def _outsider(stack: LocalStack, client: TestClient) -> dict[str, str]:
    """A worker of another grid (outside the task's area)."""
    from tests.test_api import _second_grid

    _second_grid(stack.dsn, "v0001")
    return sign_in(client, "worker-g_other")


def test_preferences(stack: LocalStack, client: TestClient) -> None:
    worker, _ = people_of(stack.dsn)
    me = sign_in(client, worker)
    start = client.get("/api/v1/me/notify", headers=me).json()
    assert start["channels"][0] == "console" and start["quiet_hours"] is None
    assert start["language"] == "zh-CN"
    wrong = client.put("/api/v1/me/notify", headers=me,
                       json={"channels": ["pigeon"], "language": "en"})  # fmt: skip
    assert wrong.status_code == 422 and "unknown channel 'pigeon'" in wrong.text
    late = client.put("/api/v1/me/notify", headers=me, json={
        "channels": ["sms"], "language": "en", "quiet_hours": {"from": "25:00", "to": "07:00"}})  # fmt: skip
    assert late.status_code == 422 and "'25:00' is not a time of day" in late.text
    body = {"channels": ["wecom", "console", "sms"], "language": "en",
            "quiet_hours": {"from": "22:00", "to": "07:00"}, "timezone": "Asia/Shanghai"}  # fmt: skip
    put = client.put("/api/v1/me/notify", headers=me, json=body)
    assert put.status_code == 200, put.text
    assert client.get("/api/v1/me/notify", headers=me).json() == body
    assert scalar(stack.dsn, "SELECT language FROM people WHERE id = %s", (worker,)) == "en"
    assert scalar(stack.dsn, "SELECT count(*) FROM audit_log WHERE action = 'notify.prefs'") == 1
    # Titles now come in English.
    raise_at(stack.dsn, "api-en")
    run(stack, {"console": ConsoleChannel()}, NotifySettings())
    titles = client.get("/api/v1/notifications", headers=me).json()["items"]
    assert titles[0]["title"].startswith("New task:")


def _events(stream: httpx.Response, kinds: set[str], count: int) -> list[dict[str, Any]]:
    """The next `count` events of the given kinds from an SSE stream."""
    found: list[dict[str, Any]] = []
    kind = ""
    for line in stream.iter_lines():
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: ") and kind in kinds:
            found.append({"kind": kind, **json.loads(line[6:])})
            if len(found) >= count:
                return found
    return found


def test_end_to_end_forced_door_pages_up_the_tree_until_accepted(stack: LocalStack) -> None:
    """Real ingest (its leader routes and sends) and API processes: a forced door → the worker
    on duty in the console (live) and on the webhook → not accepted in time (short deadlines) →
    the community's dispatcher is paged → the worker accepts → nothing of the task is pending."""
    worker, dispatcher = people_of(stack.dsn)
    port = free_port()
    with webhook_server() as hook:
        env = {
            "GRIDWATCH_NOTIFY_WEBHOOK_ENABLED": "true", "GRIDWATCH_NOTIFY_WEBHOOK_URL": hook.url,
            "GRIDWATCH_NOTIFY_WEBHOOK_SECRET": SECRET, "GRIDWATCH_NOTIFY_BURST_PER_MINUTE": "100",
            "GRIDWATCH_DEADLINES__RED_ACCEPT_S": "8", "GRIDWATCH_NOTIFY_PUBLIC_URL": f"http://127.0.0.1:{port}",
        }  # fmt: skip
        ingest, metrics_port = start_ingest(stack, env=env)
        api = stack.start_api(port)
        try:
            assert wait_for_port("127.0.0.1", port, 30), (stack.logs / "api.log").read_text()
            base = f"http://127.0.0.1:{port}"
            token = httpx.post(f"{base}/api/token",
                               data={"username": worker, "password": DEMO_PASSWORD}).json()  # fmt: skip
            bearer = {"Authorization": f"Bearer {token['access_token']}"}
            with httpx.stream("GET", f"{base}/api/live", headers=bearer,
                              timeout=httpx.Timeout(60.0)) as live:  # fmt: skip
                # as the ingest would with its settings: the deadlines are short
                task = raise_at(stack.dsn, "e2e", policy=DeadlinePolicy(red_accept_s=8))
                got = _events(live, {"notification"}, 1)
            assert got[0]["kind"] == "task.dispatched" and got[0]["task_id"] == task
            wait_until(lambda: _paged(hook, worker, "task.dispatched"), 60, "the worker's webhook")
            wait_until(lambda: _paged(hook, dispatcher, "task.escalated"), 90,
                       "the dispatcher to be paged after the deadline")  # fmt: skip
            assert _paged(hook, worker, "task.deadline")  # flagged at 80% first
            # The link in the message opens the task; the worker accepts there.
            link = next(r.body["link"] for r in hook.ok() if r.body["kind"] == "task.dispatched")
            assert httpx.get(link, follow_redirects=True).status_code == 200  # the console's page
            act = httpx.post(f"{base}/api/tasks/{task}/actions", json={"action": "accept"},
                             headers=bearer)  # fmt: skip
            assert act.status_code == 200, act.text
            assert scalar(stack.dsn, "SELECT count(*) FROM deliveries WHERE task_id = %s"
                                     " AND state = 'pending'", (task,)) == 0  # fmt: skip
            states = client_deliveries(base, task, bearer)
            assert metric(metrics_port, "gridwatch_notify_deliveries_total") >= len(hook.ok())
            assert metric(metrics_port, "gridwatch_notify_events_total") >= 4
            assert (dispatcher, "webhook") in {(p, c) for p, c, s in states if s == "sent"}
        finally:
            stop_process(api)
            stop_process(ingest)
        assert all(r.genuine for r in hook.received)
        keys = [r.key for r in hook.ok()]
        assert len(keys) == len(set(keys))


def _paged(hook: WebhookServer, person: str, kind: str) -> bool:
    return any(
        r.body["recipient"]["person_id"] == person and r.body["kind"] == kind for r in hook.ok()
    )


def client_deliveries(base: str, task: int, bearer: dict[str, str]) -> set[tuple[str, str, str]]:
    got = httpx.get(f"{base}/api/v1/tasks/{task}/deliveries", headers=bearer).json()
    return {(d["person_id"], d["channel"], d["state"]) for d in got}
