"""The incident page's API: its task and assignee, device, venue and one timeline with names."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
from fastapi.testclient import TestClient
from psycopg.types.json import Jsonb

from casework import incidents, tasks
from casework.rules import Raise, Rule, Severity
from gateway import messages as m
from gridwatch.demo import NodeCredentials
from gridwatch.local.stack import LocalStack
from ingest import registry
from tests.support import scalar
from tests.test_api import _second_grid, client, people_of, raise_incident, sign_in

__all__ = ["client"]  # the fixture, used by name


def test_context_tells_the_whole_story_with_names(
    client: TestClient, stack: LocalStack, nodes: list[NodeCredentials]
) -> None:
    site = nodes[0].site
    task_id = raise_incident(stack.dsn, site)
    incident_id = int(
        str(scalar(stack.dsn, "SELECT incident_id FROM tasks WHERE id = %s", (task_id,)))
    )
    worker, dispatcher = people_of(stack.dsn, site)
    boss, me = sign_in(client, dispatcher), sign_in(client, worker)
    client.post(f"/api/tasks/{task_id}/actions", json={"action": "accept"}, headers=me)
    client.post(f"/api/incidents/{incident_id}/silence", json={"minutes": 30, "note": "在现场"},
                headers=boss)  # fmt: skip
    worker_name = str(scalar(stack.dsn, "SELECT name FROM people WHERE id = %s", (worker,)))
    boss_name = str(scalar(stack.dsn, "SELECT name FROM people WHERE id = %s", (dispatcher,)))

    r = client.get(f"/api/incidents/{incident_id}/context", headers=boss)
    assert r.status_code == 200, r.text
    c = r.json()
    assert c["task"]["id"] == task_id and c["task"]["state"] == "accepted"
    assert (c["task"]["assignee"], c["task"]["assignee_name"]) == (worker, worker_name)
    venue = scalar(stack.dsn, "SELECT name FROM venues WHERE id = %s", (site,))
    assert c["venue"]["id"] == site and c["venue"]["name"] == venue
    assert c["venue"]["timezone"] == "Asia/Shanghai" and "address" in c["venue"]
    assert c["device"] is None and c["snapshot"] is False  # raised without a device
    kinds = [e["kind"] for e in c["timeline"]]
    assert kinds == ["opened", "task", "task_create", "task_dispatch", "task_accept", "silenced"]
    dispatch = c["timeline"][3]
    assert dispatch["data"]["assignee_name"] == worker_name and dispatch["actor"] == "system"
    assert c["timeline"][4]["actor_name"] == worker_name
    assert (c["timeline"][5]["actor_name"], c["timeline"][5]["note"]) == (boss_name, "在现场")
    assert [e["at"] for e in c["timeline"]] == sorted(e["at"] for e in c["timeline"])
    # The assignee sees the same page; another grid's worker does not.
    assert client.get(f"/api/incidents/{incident_id}/context", headers=me).json() == c
    _second_grid(stack.dsn, site)
    stranger = sign_in(client, "worker-g_other")
    assert client.get(f"/api/incidents/{incident_id}/context", headers=stranger).status_code == 404


def test_repeats_show_once_with_their_count(
    client: TestClient, stack: LocalStack, nodes: list[NodeCredentials]
) -> None:
    site = nodes[0].site
    task_id = raise_incident(stack.dsn, site)
    with psycopg.connect(stack.dsn) as conn:  # the same key twice more: one incident, counted
        venue = registry.load(conn).venues[site]
        for _ in range(2):
            repeat = Raise(Rule.DOOR_FORCED, f"{site}-x", Severity.RED, venue, datetime.now(UTC))
            incidents.apply(conn, [repeat], tasks.DeadlinePolicy())
    incident_id = scalar(stack.dsn, "SELECT incident_id FROM tasks WHERE id = %s", (task_id,))
    assert scalar(stack.dsn, "SELECT occurrences FROM incidents WHERE id = %s", (incident_id,)) == 3
    c = client.get(
        f"/api/incidents/{incident_id}/context", headers=sign_in(client, "operator")
    ).json()
    repeats = [e for e in c["timeline"] if e["kind"] == "repeated"]
    assert len(repeats) == 1 and repeats[0]["data"] == {"occurrences": 3}


def test_the_device_carries_its_drivers_last_word_on_it(
    client: TestClient, stack: LocalStack, nodes: list[NodeCredentials]
) -> None:
    """An offline device's incident says why, in the driver's words (`device.health`)."""
    site = nodes[0].site
    with psycopg.connect(stack.dsn) as conn:
        venue = registry.load(conn).venues[site]
        door = str(conn.execute(
            "SELECT d.id FROM devices d JOIN edge_nodes n ON n.id = d.node_id"
            " WHERE n.venue_id = %s AND d.kind = 'door' ORDER BY d.id LIMIT 1", (site,),
        ).fetchone()[0])  # type: ignore[index]  # fmt: skip
        health = m.DeviceHealth(
            **m.envelope(1), device=door, online=False, condition=m.DeviceCondition.UNREACHABLE,
            detail="IO module 10.0.5.21:502: cannot connect to 10.0.5.21:502",
        )  # fmt: skip
        conn.execute(
            "INSERT INTO device_latest (device_id, type, ts, seq, id, payload)"
            " VALUES (%s, 'device.health', %s, 1, %s, %s) ON CONFLICT (device_id, type)"
            " DO UPDATE SET payload = excluded.payload",
            (door, health.ts, health.id, Jsonb(health.model_dump(mode="json"))),
        )
        offline = Raise(Rule.DEVICE_OFFLINE, door, Severity.YELLOW, venue, datetime.now(UTC),
                        device=door)  # fmt: skip
        incidents.apply(conn, [offline], tasks.DeadlinePolicy())
        incident_id = conn.execute(
            "SELECT id FROM incidents WHERE rule = 'device_offline' AND device_id = %s", (door,)
        ).fetchone()[0]  # type: ignore[index]
    c = client.get(
        f"/api/incidents/{incident_id}/context", headers=sign_in(client, "operator")
    ).json()
    assert c["device"]["id"] == door
    assert c["device"]["condition"] == "unreachable"
    assert c["device"]["condition_detail"] == health.detail
