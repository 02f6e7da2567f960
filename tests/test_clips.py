"""Event clips: the ring buffer and the recorder at the edge, the `camera.clip` parts on the
wire, the outbox dropping them first, the platform joining them (or refusing them with a reason),
and an alert's clip from a camera stream through the agent, broker, ingest and database to the
API and the console."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from edge import drivers as d
from edge.agent import to_message
from edge.outbox import Outbox, Priority, Store
from edge.vision.clips import Clip, ClipRecorder, FrameRing, encode_webm, parts_of
from edge.vision.config import CameraSettings, ClipSettings
from gateway import codec
from gateway import messages as m
from gateway.codec import DecodeError, RejectReason
from gridwatch.demo import DEMO_PASSWORD, NodeCredentials
from gridwatch.local.stack import LocalStack
from simulators import scenes
from simulators.scenes import Scene, Walker
from tests.support import Node, device_of, rows, scalar, stop_process, wait_until

FPS = 5.0
T0 = 1_780_000_000.0  # epoch seconds of the first frame


def frame(i: int, size: tuple[int, int] = (320, 180)) -> np.ndarray[Any, Any]:
    """An analysis-size frame with a moving box and a little sensor noise."""
    w, h = size
    img = np.full((h, w, 3), (70, 90, 80), np.uint8)
    x = (i * 6) % (w - 30)
    cv2.rectangle(img, (x, h // 3), (x + 20, h // 3 + 50), (40, 40, 200), -1)
    noise = np.random.default_rng(i).integers(0, 6, img.shape, dtype=np.uint8)
    return cv2.add(img, noise)


def decoded_frames(data: bytes, folder: Path) -> tuple[int, int, int]:
    """(frames, width, height) OpenCV reads back from a WebM."""
    path = folder / f"{hashlib.sha256(data).hexdigest()[:12]}.webm"
    path.write_bytes(data)
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    size = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    cap.release()
    return n, *size


class Collected:
    """A recorder's deliveries, waited for."""

    def __init__(self) -> None:
        self.clips: list[Clip] = []
        self._ready = threading.Condition()

    def __call__(self, clip: Clip) -> None:
        with self._ready:
            self.clips.append(clip)
            self._ready.notify_all()

    def wait(self, n: int) -> list[Clip]:
        with self._ready:
            assert self._ready.wait_for(lambda: len(self.clips) >= n, 60), self.clips
        return self.clips


def recorder(**settings: Any) -> tuple[ClipRecorder, Collected]:
    got = Collected()
    return ClipRecorder(ClipSettings.model_validate(settings), FPS, got, "cam1"), got


# ---- the ring buffer ----


def test_the_ring_keeps_only_the_pre_roll_and_holds_the_frames_themselves() -> None:
    ring = FrameRing(2.0, FPS)
    frames = [frame(i) for i in range(30)]
    for i, f in enumerate(frames):
        ring.push(T0 + i / FPS, f)
    assert len(ring) == 11  # 2 s at 5 fps, both ends included
    kept = ring.since(T0)
    assert kept[0].frame is frames[19] and kept[-1].frame is frames[29]  # references, not copies
    assert [f.wall for f in ring.since(T0 + 28 / FPS)] == [T0 + 28 / FPS, T0 + 29 / FPS]


# ---- the recorder ----


def test_a_clip_runs_from_pre_s_before_the_start_to_post_s_after(tmp_path: Path) -> None:
    rec, got = recorder(pre_s=2, post_s=3)
    alert = uuid.uuid4()
    for i in range(60):
        t = T0 + i / FPS
        rec.feed(t, frame(i))
        if i == 20:
            assert rec.start(alert, t)
    (clip,) = got.wait(1)
    rec.close()
    assert clip.alert_id == alert
    assert clip.frames == 26  # 2 s before, the start's own frame, 3 s after, at 5 fps
    assert clip.start == datetime.fromtimestamp(T0 + 10 / FPS, UTC)
    assert clip.end == datetime.fromtimestamp(T0 + 35 / FPS, UTC)
    assert clip.data.startswith(b"\x1a\x45\xdf\xa3") and len(clip.data) <= 500_000
    frames, w, h = decoded_frames(clip.data, tmp_path)
    assert abs(frames - 25) <= 1 and (w, h) == (clip.width, clip.height)


def test_overlapping_alerts_share_frames_and_each_gets_its_clip(tmp_path: Path) -> None:
    rec, got = recorder(pre_s=2, post_s=2)
    first, second = uuid.uuid4(), uuid.uuid4()
    for i in range(40):
        t = T0 + i / FPS
        rec.feed(t, frame(i))
        if i == 15:
            rec.start(first, t)
        if i == 18:
            rec.start(second, t)
            a, b = rec._collecting  # both collecting now
            shared = {id(f.frame) for f in a.frames} & {id(f.frame) for f in b.frames}
            assert len(shared) == len(b.frames)  # the same arrays, not copies
    clips = {c.alert_id: c for c in got.wait(2)}
    rec.close()
    assert clips[first].frames == clips[second].frames == 21
    assert clips[second].start - clips[first].start == timedelta(seconds=3 / FPS)
    for clip in clips.values():
        assert abs(decoded_frames(clip.data, tmp_path)[0] - 20) <= 1


def test_an_alert_past_max_pending_goes_without_a_clip() -> None:
    rec, got = recorder(pre_s=1, post_s=5, max_pending=2)
    for i in range(3):
        rec.feed(T0 + i / FPS, frame(i))
    assert rec.start(uuid.uuid4(), T0)
    assert rec.start(uuid.uuid4(), T0)
    assert not rec.start(uuid.uuid4(), T0)
    rec.close()  # the stream ends: the two are made with what they have
    assert [c.frames for c in got.wait(2)] == [3, 3]


def test_a_clip_too_large_is_made_smaller_until_it_fits(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    noisy = [rng.integers(0, 256, (180, 320, 3), dtype=np.uint8) for _ in range(10)]
    first, *_ = encode_webm(noisy, FPS, 10_000_000)
    data, w, h, fps = encode_webm(noisy, FPS, 30_000)
    assert len(first) > 30_000 >= len(data)
    assert w < 320 and h < 180
    frames, dw, dh = decoded_frames(data, tmp_path)
    assert (dw, dh) == (w, h) and frames == len(noisy[:: round(FPS / fps)])
    with pytest.raises(ValueError, match="at its coarsest"):
        encode_webm(noisy, FPS, 100)


def test_clip_settings_name_what_is_wrong() -> None:
    with pytest.raises(ValidationError, match="pre_s or post_s above 0"):
        ClipSettings(pre_s=0, post_s=0)
    with pytest.raises(ValidationError, match="max_bytes"):
        CameraSettings.model_validate({"source": "x", "clips": {"max_bytes": 10**9}})
    with pytest.raises(ValidationError, match="extra"):
        CameraSettings.model_validate({"source": "x", "clips": {"seconds": 10}})
    assert CameraSettings(source="x").clips == ClipSettings(enabled=True, pre_s=5, post_s=5)


# ---- the wire ----


def a_clip(size: int) -> Clip:
    data = b"\x1a\x45\xdf\xa3" + bytes(np.random.default_rng(size).integers(0, 256, size - 4,
                                                                            dtype=np.uint8))  # fmt: skip
    start = datetime.fromtimestamp(T0, UTC)
    return Clip(uuid.uuid4(), uuid.uuid4(), data, 320, 180, FPS, start,
                start + timedelta(seconds=10), 51)  # fmt: skip


def wire(part: d.CameraClipSeen, seq: int = 1) -> dict[str, Any]:
    message = to_message(part, m.envelope(seq), b"k")
    payload = codec.encode(message)
    assert len(payload) < codec.DEFAULT_MAX_PAYLOAD
    decoded = codec.decode(payload)
    assert decoded == message
    data: dict[str, Any] = json.loads(payload)
    return data


def test_a_clip_is_cut_into_parts_that_each_fit_a_message_and_join_back() -> None:
    clip = a_clip(2 * m.CLIP_PART_BYTES + 123)
    parts = parts_of("v0001-camera3", clip)
    assert [p.part for p in parts] == [0, 1, 2] and {p.parts for p in parts} == {3}
    sent = [wire(p, i) for i, p in enumerate(parts)]
    joined = b"".join(base64.b64decode(s["data"]) for s in sent)
    assert joined == clip.data and hashlib.sha256(joined).hexdigest() == sent[0]["sha256"]


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"part": 3}, "part 3 of a clip of 3 parts"),
        ({"parts": 2}, "has 3 parts"),
        ({"size": 10}, "has 1 parts"),
        ({"data": base64.b64encode(b"short").decode()}, "holds 5 bytes"),
        ({"data": "%%%"}, "not base64"),
        ({"end": "2026-01-01T00:00:00Z"}, "from start to end"),
        ({"mime": "video/mp4"}, "video/webm"),
        ({"sha256": "ab"}, "sha256"),
    ],
)
def test_a_clip_part_that_contradicts_itself_is_refused(change: dict[str, Any], says: str) -> None:
    data = wire(parts_of("v0001-camera3", a_clip(2 * m.CLIP_PART_BYTES + 123))[0])
    with pytest.raises(DecodeError, match=says) as refused:
        codec.decode(json.dumps(data | change).encode())
    assert refused.value.reason is RejectReason.SCHEMA


def test_a_first_part_that_is_not_webm_is_refused() -> None:
    clip = a_clip(1000)
    parts = parts_of("v0001-camera3", Clip(**{**_fields(clip), "data": b"RIFF" + clip.data[4:]}))
    with pytest.raises(DecodeError, match="not a WebM"):
        codec.decode(json.dumps(wire_unchecked(parts[0])).encode())


def _fields(clip: Clip) -> dict[str, Any]:
    return {f: getattr(clip, f) for f in Clip.__slots__}  # type: ignore[attr-defined]


def wire_unchecked(part: d.CameraClipSeen) -> dict[str, Any]:
    return {"v": 1, "id": str(uuid.uuid4()), "ts": "2026-11-25T08:30:00Z", "seq": 1,
            "type": "camera.clip", "device": part.device, "clip_id": str(part.clip_id),
            "alert_id": str(part.alert_id), "part": part.part, "parts": part.parts,
            "mime": "video/webm", "width": part.width, "height": part.height, "fps": part.fps,
            "start": part.start.isoformat(), "end": part.end.isoformat(), "size": part.size,
            "sha256": part.sha256, "data": base64.b64encode(part.data).decode()}  # fmt: skip


# ---- the outbox ----


def test_a_full_outbox_drops_clip_parts_before_alarms_and_telemetry(tmp_path: Path) -> None:
    outbox = Outbox(Store(tmp_path / "outbox.db"), "n1", max_messages=4)
    kinds = {}
    for name, priority in [("alarm", Priority.EVENT), ("clip-0", Priority.BULK),
                           ("reading", Priority.TELEMETRY), ("clip-1", Priority.BULK),
                           ("alarm-2", Priority.EVENT), ("reading-2", Priority.TELEMETRY)]:  # fmt: skip
        seq, _ = outbox.add(lambda s, n=name: (f"t/{n}", n.encode()), priority)
        kinds[seq] = name
    left = [kinds[e.seq] for e in outbox.pending(0, 10)]
    assert left == ["alarm", "reading", "alarm-2", "reading-2"]
    assert outbox.dropped == 2


# The agent's lanes and priorities (read from the outbox's rows) and the byte budget:
# tests/test_clips_hold.py.


# ---- the platform ----


def _parts_messages(node: Node, camera: str, clip: Clip) -> list[m.Message]:
    return [to_message(p, m.envelope(node.next_seq()), b"k") for p in parts_of(camera, clip)]


@pytest.fixture
def node(stack: LocalStack, nodes: list[NodeCredentials]) -> Any:
    n = Node(stack, nodes[0]).wait_connected()
    yield n
    n.close()


CAP = 50_000  # the platform's clip cap in these tests (GRIDWATCH_CLIP_MAX_BYTES; 2 MB by default)


@pytest.fixture
def capped_ingest(stack: LocalStack) -> Any:
    from tests.support import start_ingest

    proc, _ = start_ingest(stack, env={"GRIDWATCH_CLIP_MAX_BYTES": str(CAP)})
    yield proc
    stop_process(proc)


def test_the_platform_joins_a_clips_parts_once_in_any_order(
    stack: LocalStack, node: Node, capped_ingest: object, tmp_path: Path
) -> None:
    camera = device_of(node.creds, "camera")
    data, w, h, fps = encode_webm([frame(i) for i in range(24)], FPS, CAP)
    assert m.CLIP_PART_BYTES < len(data) <= CAP, "two parts"
    start = datetime.now(UTC)
    clip = Clip(uuid.uuid4(), uuid.uuid4(), data, w, h, fps, start,
                start + timedelta(seconds=24 / FPS), 24)  # fmt: skip
    first, last = _parts_messages(node, camera, clip)
    node.deliver([node.send(last)])  # the last part first
    wait_until(lambda: scalar(stack.dsn, "SELECT count(*) FROM camera_clip_parts") == 1, 20,
               "the first part stored")  # fmt: skip
    assert scalar(stack.dsn, "SELECT count(*) FROM camera_clips") == 0
    node.deliver([node.send(last)])  # again: stored once
    node.deliver([node.send(first)])
    wait_until(lambda: scalar(stack.dsn, "SELECT count(*) FROM camera_clips") == 1, 20, "the clip")
    stored = rows(stack.dsn, "SELECT data, alert_id, device_id, width, size FROM camera_clips")[0]
    assert bytes(stored[0]) == data  # type: ignore[call-overload]
    assert stored[1:] == (clip.alert_id, camera, w, len(data))
    node.deliver([node.send(first), node.send(last)])  # the outbox replaying: nothing new
    wait_until(lambda: scalar(stack.dsn, "SELECT count(*) FROM camera_clip_parts") == 0, 20,
               "the replayed parts cleared")  # fmt: skip
    assert scalar(stack.dsn, "SELECT count(*) FROM camera_clips") == 1
    assert scalar(stack.dsn, "SELECT count(*) FROM rejected_messages") == 0
    assert abs(decoded_frames(data, tmp_path)[0] - 24) <= 1


def test_parts_that_disagree_and_a_clip_over_the_cap_are_rejected_with_the_reason(
    stack: LocalStack, node: Node, capped_ingest: object
) -> None:
    camera = device_of(node.creds, "camera")
    first, second = _parts_messages(node, camera, a_clip(m.CLIP_PART_BYTES + 10))
    assert isinstance(second, m.CameraClip)
    other = second.model_copy(update={"alert_id": uuid.uuid4()})  # the same clip, another alert
    node.deliver([node.send(first), node.send(other)])
    reasons = "SELECT reason, detail FROM rejected_messages ORDER BY reason"
    wait_until(lambda: len(rows(stack.dsn, reasons)) == 1, 20, "the refusal")
    big = _parts_messages(node, camera, a_clip(CAP + 1))  # refused as soon as one part says so
    node.deliver([node.send(big[1])])
    wait_until(lambda: len(rows(stack.dsn, reasons)) == 2, 20, "the second refusal")
    (conflict, why), (oversized, says) = rows(stack.dsn, reasons)
    assert conflict == RejectReason.CONFLICT.value and "disagree" in str(why)
    assert oversized == RejectReason.OVERSIZED.value and f"cap of {CAP}" in str(says)
    assert scalar(stack.dsn, "SELECT count(*) FROM camera_clips") == 0
    assert scalar(stack.dsn, "SELECT count(*) FROM camera_clip_parts") == 0


def test_old_clips_and_parts_of_clips_that_never_completed_are_deleted(
    stack: LocalStack, nodes: list[NodeCredentials]
) -> None:
    """The leader's retention on plain PostgreSQL, as the ingest's own role: clips after 30 days
    (TimescaleDB's policy does it there), parts of an incomplete clip after a day."""
    import psycopg

    from casework import tasks
    from casework.rules import RuleBook
    from ingest.leader import Leader
    from ingest.registry import Registry

    camera, node = device_of(nodes[0], "camera"), nodes[0].node
    clip = a_clip(1000)
    row = (node, camera, clip.alert_id, 320, 180, 5.0, clip.end, 1000, clip.data)
    with psycopg.connect(stack.dsn, autocommit=True) as conn:
        for age in ("31 days", "29 days"):
            conn.execute(
                """INSERT INTO camera_clips (ts, started_at, clip_id, node_id, device_id, alert_id,
                                             mime, width, height, fps, ended_at, size, data)
                   VALUES (now() - %s::interval, now(), %s, %s, %s, %s, 'video/webm', %s, %s, %s,
                           %s, %s, %s)""",
                (age, uuid.uuid4(), *row),
            )
        for age, part in (("25 hours", 0), ("1 hour", 1)):
            conn.execute(
                """INSERT INTO camera_clip_parts (ts, id, received_at, node_id, device_id, seq,
                       clip_id, alert_id, part, parts, mime, width, height, fps, started_at,
                       ended_at, size, sha256, data)
                   VALUES (now(), %s, now() - %s::interval, %s, %s, 1, %s, %s, %s, 3, 'video/webm',
                           320, 180, 5, now(), now(), 100000, %s, '\\x00')""",
                (uuid.uuid4(), age, node, camera, clip.clip_id, clip.alert_id, part, "0" * 64),
            )
    leader = Leader(stack.role_dsn("ingest"), Registry(60), RuleBook(60), tasks.DeadlinePolicy(),
                    lambda topic, payload: None, threading.Event(), "test")  # fmt: skip
    with psycopg.connect(stack.role_dsn("ingest"), autocommit=True) as conn:
        leader._retention(conn)
    assert rows(stack.dsn, "SELECT now() - ts < interval '30 days' FROM camera_clips") == [(True,)]
    assert rows(stack.dsn, "SELECT part FROM camera_clip_parts") == [(1,)]


# ---- end to end ----


def _api_get(dsn: str, path: str) -> tuple[int, str, bytes]:
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.settings import ApiSettings

    with TestClient(create_app(ApiSettings(database_url=dsn))) as client:  # type: ignore[arg-type]
        token = client.post("/api/token", data={"username": "operator", "password": DEMO_PASSWORD})
        got = client.get(path, headers={"Authorization": f"Bearer {token.json()['access_token']}"})
        return got.status_code, got.headers["content-type"], got.content


def test_an_intrusion_on_a_camera_stream_reaches_the_api_as_a_playable_clip(
    stack: LocalStack, nodes: list[NodeCredentials], tmp_path: Path
) -> None:
    """A simulated camera served as a live MJPEG stream, read by a real edge agent process: an
    intrusion's clip is made at the edge and sent in parts while the ingest is down (the outbox
    keeps them, with the alert), and once the ingest is there it is joined, stored with the alert,
    and the API serves it as a WebM that decodes to about (pre + post) x fps frames."""
    from simulators.stream import SceneStream
    from tests.edge_support import site_file
    from tests.support import start_ingest

    scene = Scene("clip", 20, walkers=[Walker(((2, 0.3, 0.45), (4, 0.75, 0.8), (9, 0.75, 0.8),
                                               (11, 0.3, 0.45)))], zones=[scenes.RESTRICTED])  # fmt: skip
    stream = SceneStream(scene).start()
    camera = device_of(nodes[0], "camera")
    settings = {**scenes.camera_settings(scene, stream.url), "clips": {"pre_s": 2, "post_s": 3}}
    config = site_file(stack, nodes[0], tmp_path / "site", cameras={camera: settings})
    log = tmp_path / "agent.log"
    agent = subprocess.Popen([sys.executable, "-m", "gridwatch.cli", "edge", "--config", str(config)],
                             stdout=log.open("ab"), stderr=subprocess.STDOUT)  # fmt: skip
    dsn = stack.dsn
    ingest = None
    try:
        # The platform is down while the camera sees the intrusion and the clip is made.
        wait_until(lambda: "clip made" in log.read_text(errors="replace"), 60, "the clip made")
        assert scalar(dsn, "SELECT count(*) FROM camera_alerts") == 0
        ingest, _ = start_ingest(stack)  # there now: the outbox sends what it kept
        started = "SELECT alert_id FROM camera_alerts WHERE device_id = %s AND phase = 'start'"
        wait_until(lambda: bool(rows(dsn, started, (camera,))), 60, "the intrusion alert")
        alert = rows(dsn, started, (camera,))[0][0]
        clips = "SELECT clip_id, data FROM camera_clips WHERE device_id = %s AND alert_id = %s"
        wait_until(lambda: bool(rows(dsn, clips, (camera, alert))), 60, "the clip stored")
        incident = "SELECT id FROM incidents WHERE rule = 'camera_intrusion' AND device_id = %s"
        wait_until(lambda: bool(rows(dsn, incident, (camera,))), 20, "the incident")
        incident_id = scalar(dsn, incident, (camera,))
        code, kind, body = _api_get(dsn, f"/api/incidents/{incident_id}/clip")
        assert (code, kind) == (200, "video/webm")
        assert body == bytes(rows(dsn, clips, (camera, alert))[0][1])  # type: ignore[call-overload]
        frames, w, h = decoded_frames(body, tmp_path)
        assert 20 <= frames <= 30, frames  # about 5 s at 5 fps: the rate the stream allows
        assert (w, h) == (320, 180)
        code, _, body = _api_get(dsn, f"/api/incidents/{incident_id}/context")
        assert json.loads(body)["clip"] is True
    finally:
        stop_process(agent)
        if ingest is not None:
            stop_process(ingest)
        stream.stop()


# ---- the console ----


def test_the_incident_page_plays_the_clip_beside_the_picture(
    stack: LocalStack, nodes: list[NodeCredentials], api_url: str, browser: Any, tmp_path: Path
) -> None:
    """The console shows a <video> of the clip on the incident page, and the browser plays it:
    its source answers and the browser reads the video's size (a WebM it can decode). The clip
    comes after the alert: one stored after the page opened still shows, without a reload."""
    import psycopg
    from playwright.sync_api import expect

    from casework import incidents, tasks
    from casework.rules import Raise, Rule, Severity
    from gateway.contract_doc import TINY_JPEG
    from ingest import registry
    from tests.console_support import signed_in

    camera = device_of(nodes[0], "camera")
    data, w, h, _ = encode_webm([frame(i) for i in range(20)], FPS, 2_000_000)
    alert, picture, now = uuid.uuid4(), uuid.uuid4(), datetime.now(UTC)
    with psycopg.connect(stack.dsn) as conn:
        conn.execute(
            """INSERT INTO camera_snapshots (ts, id, node_id, device_id, seq, alert_id, width, height, jpeg)
               VALUES (%s, %s, %s, %s, 1, %s, 16, 16, %s)""",
            (now, picture, nodes[0].node, camera, alert, base64.b64decode(TINY_JPEG)),
        )
        venue = registry.load(conn).venues[nodes[0].site]
        incidents.apply(conn, [Raise(Rule.CAMERA_INTRUSION, f"{camera}:intrusion", Severity.RED, venue, now,
                                     device=camera, detail={"kind": "intrusion", "snapshot": str(picture),
                                                            "alert_id": str(alert)})],
                        tasks.DeadlinePolicy())  # fmt: skip
        row = conn.execute("SELECT id FROM incidents WHERE device_id = %s", (camera,)).fetchone()
        assert row is not None
    errors: list[str] = []
    page = signed_in(browser, api_url, "operator", errors)
    page.goto(f"{api_url}/#/incident/{row[0]}")
    expect(page.locator("#incident-snapshot img")).to_be_visible()
    video = page.locator("#incident-clip video")
    assert video.count() == 0  # no clip yet
    clip_url = f"/api/incidents/{row[0]}/clip"
    with (
        page.expect_response(lambda r: r.url.endswith(clip_url), timeout=40_000) as got,
        psycopg.connect(stack.dsn) as conn,
    ):
        conn.execute(
            """INSERT INTO camera_clips (ts, started_at, clip_id, node_id, device_id, alert_id,
                                             mime, width, height, fps, ended_at, size, data)
                   VALUES (%s, %s, %s, %s, %s, %s, 'video/webm', %s, %s, 5, %s, %s, %s)""",
            (now, now, uuid.uuid4(), nodes[0].node, camera, alert, w, h, now, len(data), data),
        )
    answer = got.value
    assert answer.status == 200 and answer.headers["content-type"] == "video/webm"  # it answers
    assert answer.headers["cache-control"] == "no-store"  # a video of people: never cached
    assert answer.headers["x-content-type-options"] == "nosniff"
    expect(video).to_be_visible()
    assert video.evaluate("v => [v.controls, v.muted, v.hasAttribute('playsinline')]") == [
        True, True, True,
    ]  # fmt: skip
    size = video.evaluate("""async (v) => {
        if (v.readyState < 1 && !v.error) await new Promise((ok) => {
          v.addEventListener("loadedmetadata", ok, { once: true });
          v.addEventListener("error", ok, { once: true });
        });
        return [v.src.startsWith("blob:"), v.videoWidth, v.videoHeight, v.error && v.error.message];
    }""")  # fmt: skip
    assert size == [True, w, h, None]  # the browser decodes it (and the CSP lets it play)
    # An incident without a clip: 404 in the API's error shape, and the context says so.
    import httpx

    from tests.test_api import raise_incident

    raise_incident(stack.dsn, nodes[0].site, "no-clip")
    bare = scalar(stack.dsn, "SELECT max(id) FROM incidents")
    token = httpx.post(f"{api_url}/api/token",
                       data={"username": "operator", "password": DEMO_PASSWORD}).json()  # fmt: skip
    auth = {"Authorization": f"Bearer {token['access_token']}", "Accept-Language": "en"}
    missing = httpx.get(f"{api_url}/api/incidents/{bare}/clip", headers=auth)
    assert missing.status_code == 404
    assert missing.json()["detail"] == f"incident {bare} has no video clip"
    context = httpx.get(f"{api_url}/api/incidents/{bare}/context", headers=auth).json()
    assert context["clip"] is False
    assert errors == [], errors
