"""Event clips that hold: a clip never hides a camera going offline, never delays an alarm, never
grows without bound on the edge, and never outlives the platform's retention (docs/vision.md,
"Event clips"). Unit tests here; the platform's ones use the real broker and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from casework.rules import RuleBook, evaluate
from casework.venues import VenueInfo
from edge import drivers as d
from edge.agent import to_message
from edge.outbox import Outbox, Priority, Store
from edge.vision.camera import AnalyzedCamera
from edge.vision.clips import Clip, encode_webm, parts_of
from edge.vision.config import CameraSettings
from gateway import codec, topics
from gateway import messages as m
from gateway.codec import RejectReason
from gridwatch.demo import NodeCredentials
from gridwatch.local.stack import LocalStack
from tests.support import Node, device_of, rows, scalar, start_ingest, stop_process, wait_until
from tests.test_clips import FPS, T0, a_clip, frame, recorder

VENUE = VenueInfo("v1", "community_centre", 100, False, True, {}, "Asia/Shanghai", "g1", "c.d.g1")
CAMERA = "v1-camera1"


def _signals(message: m.DeviceMessage, kind: str) -> list[str]:
    inbound = codec.Inbound(topics.parse(topics.event("v1", "v1-edge", CAMERA, kind)), message)
    return [f"{type(s).__name__}:{getattr(s, 'key', '')}" for s in
            evaluate(inbound, VENUE, RuleBook())]  # fmt: skip


# ---- 1. a clip part is no sign of life ----


def test_a_clip_part_after_the_camera_went_offline_leaves_its_offline_timer_running() -> None:
    down = datetime.now(UTC)
    status = m.CameraStatus(**m.envelope(1, ts=down), device=CAMERA, online=False, fps=0.0)
    assert any(s.startswith("StartTimer:device_offline") for s in _signals(status, "status"))
    clip = a_clip(1000)
    part = parts_of(CAMERA, clip)[0]
    later = to_message(part, m.envelope(2, ts=down + timedelta(seconds=0.5)), b"k")
    assert isinstance(later, m.CameraClip)
    said = _signals(later, "clip")
    assert not [s for s in said if "device_offline" in s], said


def test_clip_parts_are_stamped_with_the_clip_s_last_frame(tmp_path: Path) -> None:
    camera = AnalyzedCamera(CAMERA, CameraSettings(source=str(tmp_path / "none.mp4")))
    sent: list[d.Reading] = []
    camera._emit = sent.append
    clip = a_clip(m.CLIP_PART_BYTES + 10)
    camera._send_clip(clip)
    assert len(sent) == 2 and {r.ts for r in sent} == {clip.end}


# ---- 3. a clip's length is monotonic time, and its frames are capped ----


def test_a_wall_clock_stepped_back_does_not_make_a_clip_collect_without_end() -> None:
    rec, got = recorder(pre_s=1.0, post_s=2.0)
    mono = 1000.0
    for i in range(10):
        rec.feed(T0 + i / FPS, frame(i), mono + i / FPS)
    assert rec.start(uuid.uuid4(), T0 + 9 / FPS)
    for i in range(10, 40):  # an hour back on the wall; the monotonic clock goes on
        rec.feed(T0 - 3600 + i / FPS, frame(i), mono + i / FPS)
    clip = got.wait(1)[0]
    assert clip.frames <= rec.max_frames == 17
    assert 0 <= (clip.end - clip.start).total_seconds() <= 3.0


def test_a_clip_never_holds_more_frames_than_its_length_at_the_rate() -> None:
    rec, got = recorder(pre_s=1.0, post_s=2.0)
    assert rec.start(uuid.uuid4(), T0)
    for i in range(100):  # a source delivering far faster than the analysis rate, same instant
        rec.feed(T0, frame(i), 5.0)
    assert got.wait(1)[0].frames == rec.max_frames


def test_a_clip_plays_at_the_rate_its_frames_were_taken(tmp_path: Path) -> None:
    rec, got = recorder(pre_s=0.0, post_s=4.0)  # configured for 5 fps; the stream gives 2
    rec.feed(T0, frame(0))
    assert rec.start(uuid.uuid4(), T0)
    for i in range(1, 10):
        rec.feed(T0 + i / 2, frame(i))
    clip = got.wait(1)[0]
    assert clip.fps == pytest.approx(2.0, abs=0.01)
    assert (clip.end - clip.start).total_seconds() == pytest.approx(4.0)


def test_a_portrait_camera_s_clip_fits_the_contract() -> None:
    tall = [np.full((2160, 640, 3), 90, np.uint8) for _ in range(3)]
    _, w, h, _ = encode_webm(tall, FPS, 2_000_000)
    assert h <= 1080 and w <= 1920 and w * 2160 == pytest.approx(h * 640, rel=0.02)


# ---- 4, 5, 9. the platform bounds what a node's clips hold ----

CAP_INCOMPLETE = 2


@pytest.fixture
def limited_ingest(stack: LocalStack) -> Any:
    proc, _ = start_ingest(stack, env={"GRIDWATCH_CLIP_MAX_INCOMPLETE": str(CAP_INCOMPLETE)})
    yield proc
    stop_process(proc)


def _parts(node: Node, clip: Clip) -> list[m.Message]:
    camera = device_of(node.creds, "camera")
    return [to_message(p, m.envelope(node.next_seq()), b"k") for p in parts_of(camera, clip)]


def test_a_future_dated_clip_is_kept_by_the_platform_s_time_and_its_id_is_its_node_s(
    stack: LocalStack, nodes: list[NodeCredentials], limited_ingest: object
) -> None:
    mine, other = Node(stack, nodes[0]).wait_connected(), Node(stack, nodes[1]).wait_connected()
    try:
        future = datetime(2099, 1, 1, tzinfo=UTC)
        clip = replace(a_clip(m.CLIP_PART_BYTES + 10), start=future,
                       end=future + timedelta(seconds=10))  # fmt: skip
        first, last = _parts(mine, clip)
        mine.deliver([mine.send(first)])
        # Another node that learned the clip id sends a part of "it" that disagrees.
        intruder = replace(clip, alert_id=uuid.uuid4())
        other.deliver([other.send(_parts(other, intruder)[1])])
        mine.deliver([mine.send(last)])
        wait_until(lambda: scalar(stack.dsn, "SELECT count(*) FROM camera_clips") == 1, 20,
                   "the clip")  # fmt: skip
        assert rows(stack.dsn, "SELECT reason FROM rejected_messages") == []
        assert rows(stack.dsn, "SELECT ts <= received_at FROM camera_clips") == [(True,)]
        started, node = rows(stack.dsn, "SELECT started_at, node_id FROM camera_clips")[0]
        assert started == future and node == nodes[0].node
        # The other node's part waits as its own (and is cleaned up after a day).
        assert rows(stack.dsn, "SELECT node_id FROM camera_clip_parts") == [(nodes[1].node,)]
    finally:
        mine.close()
        other.close()


def test_a_node_cannot_hold_more_incomplete_clips_than_the_cap(
    stack: LocalStack, nodes: list[NodeCredentials], limited_ingest: object
) -> None:
    node = Node(stack, nodes[0]).wait_connected()
    try:
        clips = [a_clip(m.CLIP_PART_BYTES + 10 + i) for i in range(CAP_INCOMPLETE + 1)]
        split = [_parts(node, c) for c in clips]
        node.deliver([node.send(parts[0]) for parts in split])  # first halves only
        reasons = "SELECT reason, detail FROM rejected_messages"
        wait_until(lambda: len(rows(stack.dsn, reasons)) == 1, 20, "the refusal")
        ((reason, detail),) = rows(stack.dsn, reasons)
        assert reason == RejectReason.IMPLAUSIBLE.value
        assert f"over the platform's cap of {CAP_INCOMPLETE}" in str(detail)
        assert scalar(stack.dsn, "SELECT count(DISTINCT clip_id) FROM camera_clip_parts") == 2
        waiting = {r[0] for r in rows(stack.dsn, "SELECT clip_id FROM camera_clip_parts")}
        kept = next(i for i, c in enumerate(clips) if c.clip_id in waiting)
        node.deliver([node.send(split[kept][1])])  # a clip under the cap still completes
        wait_until(lambda: scalar(stack.dsn, "SELECT count(*) FROM camera_clips") == 1, 20,
                   "the clip under the cap")  # fmt: skip
    finally:
        node.close()


# ---- 2. clips have a lane of their own in the outbox, bounded in bytes ----


def _add(outbox: Outbox, name: str, priority: Priority, group: str | None = None) -> int:
    seq, _ = outbox.add(lambda s: (f"t/{name}", name.encode() * 100), priority, group=group)
    return seq


def test_clips_over_the_byte_budget_go_whole_oldest_first_and_nothing_else_goes(
    tmp_path: Path,
) -> None:
    outbox = Outbox(Store(tmp_path / "o.db"), "n1", max_messages=1000, max_bulk_bytes=1500)
    _add(outbox, "alarm", Priority.EVENT)
    for clip in ("a", "b", "c"):  # 3 parts of 200 bytes each: the budget holds two clips
        for part in range(3):
            _add(outbox, f"{clip}{part}", Priority.BULK, group=clip)
        _add(outbox, f"reading-{clip}", Priority.TELEMETRY)
    bulk = [e.topic for e in outbox.pending(0, 100, bulk=True)]
    assert bulk == ["t/b0", "t/b1", "t/b2", "t/c0", "t/c1", "t/c2"]  # clip a went, all of it
    others = [e.topic for e in outbox.pending(0, 100)]
    assert others == ["t/alarm", "t/reading-a", "t/reading-b", "t/reading-c"]
    assert outbox.dropped_groups == 1 and outbox.dropped == 3
    assert outbox.bulk_bytes() == 6 * 200
    outbox.store.close()
    again = Outbox(Store(tmp_path / "o.db"), "n1", max_messages=1000, max_bulk_bytes=1500)
    assert len(again) == 10 and again.dropped_groups == 1  # restart-safe, counted
    again.store.close()


class _Wire:
    """Stands in for paho: what the agent publishes, in order."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> SimpleNamespace:
        self.sent.append(json.loads(payload)["type"])
        return SimpleNamespace(rc=0, mid=len(self.sent))


def test_an_alarm_goes_before_the_clip_parts_waiting_and_few_parts_go_at_once(
    stack: LocalStack, nodes: list[NodeCredentials], tmp_path: Path
) -> None:
    from edge import config as edge_config
    from edge.agent import EdgeAgent
    from gridwatch.simulate import Drivers
    from tests.edge_support import site_file

    config = edge_config.load(site_file(stack, nodes[0], tmp_path))
    drivers = Drivers(config, "")
    agent = EdgeAgent(config, [drivers.build(dev) for dev in config.devices], drivers=drivers.build)
    try:
        wire = _Wire()
        agent.client = wire  # type: ignore[assignment]
        agent.watch.connected.set()
        agent._probing = False
        camera, door = device_of(nodes[0], "camera"), device_of(nodes[0], "door")
        clip = a_clip(4 * m.CLIP_PART_BYTES)
        for part in parts_of(camera, clip):
            agent.submit(part)
        agent.submit(d.ForcedSeen(door))
        agent.pump()
        assert wire.sent == ["door.forced", "camera.clip", "camera.clip"]
        lanes = agent.outbox._db.execute("SELECT priority, grp FROM outbox ORDER BY seq")
        assert lanes.fetchall() == [(Priority.BULK, str(clip.clip_id))] * 4 + [
            (Priority.EVENT, None)
        ]
    finally:
        agent.outbox.store.close()


# ---- the clip is served only with its incident ----


def _get(dsn: str, user: str, path: str) -> int:
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.settings import ApiSettings
    from gridwatch.demo import DEMO_PASSWORD

    with TestClient(create_app(ApiSettings(database_url=dsn))) as client:  # type: ignore[arg-type]
        token = client.post("/api/token", data={"username": user, "password": DEMO_PASSWORD})
        got = client.get(path, headers={"Authorization": f"Bearer {token.json()['access_token']}"})
        return got.status_code


def test_a_clip_is_served_only_to_its_incident_s_grid(
    stack: LocalStack, nodes: list[NodeCredentials]
) -> None:
    """A stored clip, and an incident of another grid: its grid's operator gets the clip, the
    neighbouring grid's does not; a clip of the same alert id from another device is not it."""
    import psycopg

    from api.security import hash_password
    from casework import incidents, tasks
    from casework.rules import Raise, Rule, Severity
    from gridwatch.demo import DEMO_PASSWORD
    from ingest import registry
    from registry import store
    from registry.model import Person
    from tests.test_api import _second_grid

    dsn, site = stack.dsn, nodes[0].site
    other = _second_grid(dsn, site)
    grid = str(scalar(dsn, "SELECT grid_id FROM venues WHERE id = %s", (site,)))
    camera, door = device_of(nodes[0], "camera"), device_of(nodes[0], "door")
    now, data = datetime.now(UTC), a_clip(1000).data
    ids = []
    with psycopg.connect(dsn) as conn:
        store.put(conn, [
            Person(id="op-in", name="In", role=tasks.Role.OPERATOR, scope="g_other"),
            Person(id="op-out", name="Out", role=tasks.Role.OPERATOR, scope=grid),
        ], "test", audit=False)  # fmt: skip
        conn.execute("UPDATE people SET password_hash = %s WHERE id IN ('op-in', 'op-out')",
                     (hash_password(DEMO_PASSWORD),))  # fmt: skip
        venue = registry.load(conn).venues[other]
        for subject, device in (("mine", camera), ("elsewhere", door)):
            alert = uuid.uuid4()
            conn.execute(
                """INSERT INTO camera_clips (ts, started_at, clip_id, node_id, device_id, alert_id,
                                             mime, width, height, fps, ended_at, size, data)
                   VALUES (%s, %s, %s, %s, %s, %s, 'video/webm', 320, 180, 5, %s, %s, %s)""",
                (now, now, uuid.uuid4(), nodes[0].node, device, alert, now, len(data), data),
            )
            incidents.apply(conn, [Raise(Rule.CAMERA_INTRUSION, f"{camera}:{subject}", Severity.RED,
                                         venue, now, device=camera,
                                         detail={"kind": "intrusion", "alert_id": str(alert)})],
                            tasks.DeadlinePolicy())  # fmt: skip
            row = conn.execute("SELECT max(id) FROM incidents").fetchone()
            assert row is not None
            ids.append(row[0])
    mine, elsewhere = ids
    assert _get(dsn, "op-in", f"/api/incidents/{mine}/clip") == 200
    assert _get(dsn, "op-out", f"/api/incidents/{mine}/clip") == 404
    assert _get(dsn, "op-in", f"/api/incidents/{elsewhere}/clip") == 404  # another device's


def test_a_clip_that_fails_to_encode_is_counted_and_the_next_one_is_still_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from edge.vision import clips as clips_module

    real, calls = clips_module.encode_webm, []

    def flaky(*args: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("OpenCV cannot write WebM (VP8): its FFmpeg lacks libvpx")
        return real(*args)

    monkeypatch.setattr(clips_module, "encode_webm", flaky)
    failed = clips_module.CLIPS.labels("cam1", "failed")
    before = failed._value.get()
    rec, got = recorder(pre_s=0.4, post_s=0.4)
    first, second = uuid.uuid4(), uuid.uuid4()
    for n, alert in enumerate((first, second)):
        rec.feed(T0 + n, frame(0))
        assert rec.start(alert, T0 + n)
        for i in range(1, 4):
            rec.feed(T0 + n + i / FPS, frame(i))
    assert [c.alert_id for c in got.wait(1)] == [second]
    rec.close()
    assert failed._value.get() == before + 1
