"""An object left behind, on the platform: a camera's `object_left` alert becomes its own
incident and a grid task, with its snapshot, and stays for a person to look at when the alert
ends (someone picking the bag up is no all-clear). Real broker, real database, real ingest."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator

import cv2
import numpy as np
import pytest

from casework.rules import DEFAULTS, Rule, Severity
from gateway import messages as m
from gridwatch.demo import NodeCredentials
from gridwatch.local.stack import LocalStack
from tests.support import Node, birth, device_of, envelope, rows, scalar, wait_until


@pytest.fixture
def node(stack: LocalStack, nodes: list[NodeCredentials]) -> Iterator[Node]:
    n = Node(stack, nodes[0]).wait_connected()
    yield n
    n.close()


def test_the_rule_is_its_own_and_yellow_by_default() -> None:
    assert DEFAULTS[Rule.CAMERA_OBJECT_LEFT].severity is Severity.YELLOW
    assert m.CameraAlertKind("object_left") is m.CameraAlertKind.OBJECT_LEFT


def test_an_object_left_alert_becomes_an_incident_and_a_task_with_its_picture(
    stack: LocalStack, node: Node, ingest: object
) -> None:
    dsn = stack.dsn
    camera = device_of(node.creds, "camera")
    node.send(birth(node, bdseq=1))
    alert_id = uuid.uuid4()
    picture = np.full((90, 160, 3), 120, np.uint8)
    cv2.rectangle(picture, (70, 50), (90, 70), (30, 60, 160), -1)  # the bag
    ok, jpeg = cv2.imencode(".jpg", picture)
    assert ok
    snapshot = m.CameraSnapshot(**envelope(node), device=camera, alert_id=alert_id, width=160,
                                height=90, jpeg=base64.b64encode(jpeg.tobytes()).decode())  # fmt: skip
    node.send(snapshot)

    def alert(phase: m.AlertPhase) -> m.CameraAlert:
        return m.CameraAlert(**envelope(node), device=camera, alert_id=alert_id, phase=phase,
                             kind=m.CameraAlertKind.OBJECT_LEFT, zone="hall", score=0.8,
                             snapshot=str(snapshot.id) if phase is m.AlertPhase.START else None)  # fmt: skip

    node.send(alert(m.AlertPhase.START))
    incident = """SELECT id, severity::text, status::text, detail->>'snapshot', detail->>'kind',
                         detail->>'zone'
                  FROM incidents WHERE rule = 'camera_object_left' AND device_id = %s"""
    wait_until(lambda: bool(rows(dsn, incident, (camera,))), 20, "an object-left incident")
    ((incident_id, severity, status, shown, kind, zone),) = rows(dsn, incident, (camera,))
    assert (severity, status, kind, zone) == ("yellow", "open", "object_left", "hall")
    assert shown == str(snapshot.id)
    stored = "SELECT jpeg FROM camera_snapshots WHERE id = %s"
    wait_until(lambda: bool(rows(dsn, stored, (shown,))), 10, "its snapshot stored")
    assert bytes(rows(dsn, stored, (shown,))[0][0]) == jpeg.tobytes()  # type: ignore[call-overload]
    task = "SELECT title_code FROM tasks WHERE incident_id = %s"
    wait_until(lambda: bool(rows(dsn, task, (incident_id,))), 10, "its grid task")
    assert scalar(dsn, task, (incident_id,)) == "task.camera_object_left"
    # The one alert raised one incident, of its own rule (not also an intrusion, say).
    assert rows(dsn, "SELECT rule FROM incidents WHERE device_id = %s", (camera,)) == [
        ("camera_object_left",)
    ]

    node.send(alert(m.AlertPhase.END))  # the bag is picked up: the incident stays for a person
    ended = "SELECT count(*) FROM camera_alerts WHERE device_id = %s AND phase = 'end'"
    wait_until(lambda: scalar(dsn, ended, (camera,)) == 1, 20, "the alert's end stored")
    assert scalar(dsn, "SELECT status::text FROM incidents WHERE id = %s", (incident_id,)) == "open"
