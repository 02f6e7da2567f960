"""Dispatch beyond one grid: whom a task can go to (its grid, the community's other grids, the
departments the grid calls in), dispatch and reassignment to them only, and the assignee from
elsewhere seeing and working the task; the card's context (venue, device, picture, hand-back)."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.security import hash_password
from api.settings import ApiSettings
from casework import incidents, tasks
from casework.rules import Raise, Rule, Severity
from gateway.contract_doc import TINY_JPEG
from gridwatch.demo import DEMO_PASSWORD, NodeCredentials
from gridwatch.local.stack import LocalStack
from ingest import registry
from registry import store
from registry.model import Area, Level, Person, Venue, VenueKind
from tests.support import device_of, rows, scalar
from tests.test_api import people_of, sign_in


@pytest.fixture
def client(stack: LocalStack) -> Iterator[TestClient]:
    app = create_app(ApiSettings(database_url=stack.role_dsn("api")))  # type: ignore[arg-type]
    with TestClient(app) as c:
        yield c


@pytest.fixture
def world(stack: LocalStack, nodes: list[NodeCredentials]) -> dict[str, str]:
    """The demo's grid and community, with a second grid of the community (its own worker) and
    a far subdistrict (a worker and a police station) that the community cannot call in."""
    dsn = stack.dsn
    site = nodes[0].site
    grid, community, subdistrict, district = rows(
        dsn,
        """SELECT g.id, c.id, s.id, d.id FROM venues v JOIN territory g ON g.id = v.grid_id
           JOIN territory c ON c.id = g.parent_id JOIN territory s ON s.id = c.parent_id
           JOIN territory d ON d.id = s.parent_id WHERE v.id = %s""",
        (site,),
    )[0]
    with psycopg.connect(dsn) as conn:
        store.put(conn, [
            Area(id="g_next", level=Level.GRID, name="第二网格", parent=str(community)),
            Venue(id="v-next", grid="g_next", name="邻网格工作站", kind=VenueKind.GRID_STATION),
            Person(id="worker-g_next", name="邻网格网格员", role=tasks.Role.GRID_WORKER,
                   scope="g_next"),
            Area(id="far_sub", level=Level.SUBDISTRICT, name="远街道", parent=str(district)),
            Area(id="far_c", level=Level.COMMUNITY, name="远社区", parent="far_sub"),
            Area(id="far_g", level=Level.GRID, name="远网格", parent="far_c"),
            Person(id="worker-far", name="远网格网格员", role=tasks.Role.GRID_WORKER,
                   scope="far_g"),
            Person(id="police-far", name="远派出所", role=tasks.Role.DEPARTMENT, scope="far_sub"),
        ], "test", audit=False)  # fmt: skip
        conn.execute(
            "UPDATE people SET password_hash = %s WHERE password_hash IS NULL",
            (hash_password(DEMO_PASSWORD),),
        )
    worker, dispatcher = people_of(dsn, site)
    return {"site": site, "grid": str(grid), "community": str(community),
            "police": f"police-{subdistrict}", "fire": f"fire-{district}",
            "property": f"property-{community}", "worker": worker,
            "dispatcher": dispatcher}  # fmt: skip


def _task_with_picture(dsn: str, node: NodeCredentials) -> int:
    camera = device_of(node, "camera")
    picture, now = uuid.uuid4(), datetime.now(UTC)
    with psycopg.connect(dsn) as conn:
        conn.execute(
            """INSERT INTO camera_snapshots (ts, id, node_id, device_id, seq, alert_id, width,
                                             height, jpeg)
               VALUES (%s, %s, %s, %s, 1, %s, 16, 16, %s)""",
            (now, picture, node.node, camera, uuid.uuid4(), base64.b64decode(TINY_JPEG)),
        )
        venue = registry.load(conn).venues[node.site]
        applied = incidents.apply(conn, [Raise(
            Rule.CAMERA_INTRUSION, f"{camera}:intrusion", Severity.RED, venue, now, device=camera,
            detail={"kind": "intrusion", "snapshot": str(picture)})], tasks.DeadlinePolicy())  # fmt: skip
    return applied.tasks[0]


def _act(client: TestClient, who: dict[str, str], task_id: int, **body: Any) -> Any:
    return client.post(f"/api/tasks/{task_id}/actions", json=body, headers=who)


def test_candidates_are_the_grid_the_community_and_the_departments_it_calls_in(
    client: TestClient, stack: LocalStack, nodes: list[NodeCredentials], world: dict[str, str]
) -> None:
    task_id = _task_with_picture(stack.dsn, nodes[0])
    boss = sign_in(client, world["dispatcher"])
    answer = client.get(f"/api/tasks/{task_id}/candidates", headers=boss)
    assert answer.status_code == 200, answer.text
    groups = answer.json()
    assert [c["id"] for c in groups["grid"]] == [world["worker"]]
    assert [c["id"] for c in groups["community"]] == ["worker-g_next"]
    assert {c["id"] for c in groups["departments"]} == {
        world["police"],
        world["fire"],
        world["property"],
    }
    mine = groups["grid"][0]
    assert mine["on_duty"] is True and mine["open_tasks"] == 1  # the task itself, on duty
    assert groups["community"][0] == {
        "id": "worker-g_next", "name": "邻网格网格员", "role": "grid_worker",
        "scope_id": "g_next", "scope_name": "第二网格", "on_duty": False, "open_tasks": 0,
    }  # fmt: skip
    names = {c["id"]: c["name"] for c in groups["departments"]}
    assert names[world["police"]].endswith("派出所") and "消防" in names[world["fire"]]
    assert names[world["property"]].endswith("物业服务中心")
    # Not a worker's question: whom to send it to is the dispatcher's.
    worker = sign_in(client, world["worker"])
    refused = client.get(f"/api/tasks/{task_id}/candidates", headers=worker)
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"


def test_reassigned_to_another_grid_the_worker_sees_works_and_hands_it_back(
    client: TestClient, stack: LocalStack, nodes: list[NodeCredentials], world: dict[str, str]
) -> None:
    dsn = stack.dsn
    task_id = _task_with_picture(dsn, nodes[0])
    assert scalar(dsn, "SELECT assignee FROM tasks WHERE id = %s", (task_id,)) == world["worker"]
    boss, mine = sign_in(client, world["dispatcher"]), sign_in(client, world["worker"])
    outsider = sign_in(client, "worker-g_next")
    # Before: another grid's worker sees nothing of it.
    assert client.get(f"/api/tasks/{task_id}", headers=outsider).status_code == 404
    assert client.get(f"/api/tasks/{task_id}/snapshot", headers=outsider).status_code == 404
    incident = scalar(dsn, "SELECT incident_id FROM tasks WHERE id = %s", (task_id,))
    assert client.get(f"/api/incidents/{incident}/snapshot", headers=outsider).status_code == 404

    # Refusals: no reason, the same person, someone the grid cannot call in, not a dispatcher.
    before = rows(dsn, "SELECT state::text, assignee, deadline_at FROM tasks WHERE id = %s",
                  (task_id,))  # fmt: skip
    no_reason = _act(client, boss, task_id, action="reassign", assignee="worker-g_next")
    assert no_reason.status_code == 409 and "reason" in no_reason.json()["detail"]
    same = _act(client, boss, task_id, action="reassign", assignee=world["worker"], reason="x")
    assert same.status_code == 409 and "already" in same.json()["detail"]
    for stranger in ("worker-far", "police-far", world["dispatcher"], "operator", "nobody"):
        far = _act(client, boss, task_id, action="reassign", assignee=stranger, reason="busy")
        assert far.status_code in (403, 409), (stranger, far.text)
        if stranger != "nobody":
            assert far.status_code == 403 and "not a worker" in far.json()["detail"], far.text
    by_worker = _act(client, mine, task_id, action="reassign", assignee="worker-g_next",
                     reason="I am busy")  # fmt: skip
    assert by_worker.status_code == 403
    assert rows(dsn, "SELECT state::text, assignee, deadline_at FROM tasks WHERE id = %s",
                (task_id,)) == before  # fmt: skip

    # Accepted by the grid's worker, then reassigned to the next grid's: dispatched again to
    # them, with the time that was left (the clock does not restart), in the timeline, the
    # audit log and their notifications.
    assert _act(client, mine, task_id, action="accept").status_code == 200
    clock = rows(dsn, "SELECT stage_started, deadline_at FROM tasks WHERE id = %s", (task_id,))
    moved = _act(client, boss, task_id, action="reassign", assignee="worker-g_next",
                 reason="邻网格网格员离现场更近")  # fmt: skip
    assert moved.status_code == 200, moved.text
    task = moved.json()
    assert (task["state"], task["assignee"]) == ("dispatched", "worker-g_next")
    assert task["context"]["assignee_name"] == "邻网格网格员"
    # The new assignee inherits the remaining time: reassigning does not move the deadline.
    assert rows(dsn, "SELECT stage_started, deadline_at FROM tasks WHERE id = %s",
                (task_id,)) == clock  # fmt: skip
    events = client.get(f"/api/tasks/{task_id}/events", headers=boss).json()
    last = events[-1]
    assert (last["action"], last["from_state"], last["to_state"]) == (
        "reassign", "accepted", "dispatched")  # fmt: skip
    assert last["reason"] == "邻网格网格员离现场更近"
    assert last["data"] == {"assignee": "worker-g_next", "from": world["worker"]}
    assert last["actor_name"] and last["actor_name"].endswith("调度员")
    assert rows(dsn, "SELECT detail->>'assignee' FROM audit_log WHERE action = 'task.reassign'"
                " AND target = %s", (str(task_id),)) == [("worker-g_next",)]  # fmt: skip
    assert scalar(dsn, "SELECT count(*) FROM notify_events WHERE kind = 'task.dispatched'"
                       " AND task_id = %s AND person_id = 'worker-g_next'", (task_id,)) == 1  # fmt: skip
    # Their live stream carries the task, addressed to them in their own area.
    assert rows(dsn, "SELECT path::text, payload->>'assignee' FROM changes WHERE kind = 'task'"
                     " AND person_id = 'worker-g_next' ORDER BY id DESC LIMIT 1") == [
        (str(scalar(dsn, "SELECT path::text FROM territory WHERE id = 'g_next'")), "worker-g_next")
    ]  # fmt: skip

    # The new assignee sees it in their inbox, with the card's context, and its picture.
    inbox = client.get("/api/tasks", params={"mine": True}, headers=outsider).json()["items"]
    assert [t["id"] for t in inbox] == [task_id]
    context = inbox[0]["context"]
    venue = rows(dsn, "SELECT name, address, latitude, longitude FROM venues WHERE id = %s",
                 (world["site"],))[0]  # fmt: skip
    assert (context["venue_name"], context["venue_address"], context["latitude"],
            context["longitude"]) == venue  # fmt: skip
    assert context["rule"] == "camera_intrusion" and context["snapshot"] is True
    assert context["device_name"] == scalar(
        dsn, "SELECT name FROM devices WHERE id = %s", (device_of(nodes[0], "camera"),)
    )
    assert context["timezone"] == "Asia/Shanghai"
    picture = client.get(f"/api/tasks/{task_id}/snapshot", headers=outsider)
    assert picture.status_code == 200 and picture.headers["content-type"] == "image/jpeg"
    assert picture.content == base64.b64decode(TINY_JPEG)
    assert picture.headers["cache-control"] == "no-store"  # a picture of an incident: not kept
    # The incident's page of their task opens for them too, with the same picture.
    incident_id = scalar(dsn, "SELECT incident_id FROM tasks WHERE id = %s", (task_id,))
    page = client.get(f"/api/incidents/{incident_id}/context", headers=outsider)
    assert page.status_code == 200 and page.json()["snapshot"] is True
    same = client.get(f"/api/incidents/{incident_id}/snapshot", headers=outsider)
    assert same.content == picture.content and same.headers["cache-control"] == "no-store"
    # The grid's worker still sees it (their grid) but it is no longer theirs to work.
    assert _act(client, mine, task_id, action="start").status_code == 403
    # The outsider accepts it, then hands it back with a reason shown on the card.
    assert _act(client, outsider, task_id, action="accept").status_code == 200
    back = _act(client, outsider, task_id, action="hand_back", reason="需要物业配合开门")
    assert back.status_code == 200, back.text
    handed = client.get(f"/api/tasks/{task_id}", headers=boss).json()
    assert handed["state"] == "returned" and handed["assignee"] is None
    assert handed["context"]["handed_back"]["reason"] == "需要物业配合开门"
    assert handed["context"]["handed_back"]["by"] == "worker-g_next"
    assert handed["context"]["handed_back"]["by_name"] == "邻网格网格员"
    # Handed back, it is out of the outsider's sight again.
    assert client.get(f"/api/tasks/{task_id}", headers=outsider).status_code == 404
    assert client.get(f"/api/incidents/{incident_id}", headers=outsider).status_code == 404

    # A dispatch to someone the grid cannot call in is refused like a reassignment; to the
    # property management the community calls in it goes, theirs to see and work.
    far = _act(client, boss, task_id, action="dispatch", assignee="police-far")
    assert far.status_code == 403 and "not a worker" in far.json()["detail"]
    sent = _act(client, boss, task_id, action="dispatch", assignee=world["property"])
    assert sent.status_code == 200, sent.text
    dept = sign_in(client, world["property"])
    assert _act(client, dept, task_id, action="accept").status_code == 200
    assert _act(client, dept, task_id, action="start").status_code == 200
    done = _act(client, dept, task_id, action="feedback", note="已开门检查")
    assert done.status_code == 200, done.text
    assert done.json()["state"] == "feedback" and done.json()["context"]["photos"] == []


def test_a_reassigned_task_stops_paging_its_old_assignee(
    stack: LocalStack, nodes: list[NodeCredentials], world: dict[str, str]
) -> None:
    dsn = stack.dsn
    task_id = _task_with_picture(dsn, nodes[0])
    with psycopg.connect(dsn) as conn:
        event = conn.execute(
            "SELECT id FROM notify_events WHERE task_id = %s ORDER BY id LIMIT 1", (task_id,)
        ).fetchone()
        assert event is not None
        conn.execute(
            """INSERT INTO deliveries (event_id, person_id, channel, state, kind, severity,
                                       task_id, title, body)
               VALUES (%s, %s, 'sms', 'pending', 'task.dispatched', 'red', %s, 't', 'b')""",
            (event[0], world["worker"], task_id),
        )
        tasks.act(conn, task_id, tasks.Action.REASSIGN, world["dispatcher"],
                  reason="换人", assignee="worker-g_next")  # fmt: skip
    assert rows(dsn, "SELECT state::text, last_error FROM deliveries WHERE task_id = %s"
                     " AND person_id = %s", (task_id, world["worker"])) == [
        ("cancelled", "task reassigned")]  # fmt: skip


def test_reassigning_does_not_move_the_deadline(
    stack: LocalStack, nodes: list[NodeCredentials], world: dict[str, str]
) -> None:
    """Passed round (A, B, A), a task keeps its stage's start and deadline, so it still
    escalates when the time runs out; more time is an extension, logged as one."""
    dsn = stack.dsn
    task_id = _task_with_picture(dsn, nodes[0])
    clock = "SELECT stage_started, deadline_at FROM tasks WHERE id = %s"
    before = rows(dsn, clock, (task_id,))
    assert before[0][1] is not None
    with psycopg.connect(dsn) as conn:
        for who in ("worker-g_next", world["worker"], "worker-g_next"):
            tasks.act(conn, task_id, tasks.Action.REASSIGN, world["dispatcher"],
                      reason="换人", assignee=who)  # fmt: skip
            conn.commit()
            assert rows(dsn, clock, (task_id,)) == before, who
    assert scalar(dsn, "SELECT due_at FROM timers WHERE kind = %s AND key = %s",
                  (tasks.TIMER_DEADLINE, str(task_id))) == before[0][1]  # fmt: skip
