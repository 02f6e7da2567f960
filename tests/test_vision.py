"""Camera analytics on synthetic frames and scenes with known ground truth, each detector with
the cases that must alert and those that must not (a light switched on, a shadow, noise)."""

from __future__ import annotations

import itertools
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from edge.vision.alerts import Lifecycle
from edge.vision.analytics import AlertOut, CameraAnalytics, CountOut, Output
from edge.vision.config import AlertTiming, CameraSettings
from edge.vision.motion import MotionDetector
from gateway.messages import SNAPSHOT_MAX_BYTES, AlertPhase
from gridwatch.bench.vision import score
from gridwatch.demo import DEMO_PASSWORD, NodeCredentials
from gridwatch.local.stack import LocalStack
from simulators import scenes
from simulators.scenes import LightSwitch, Scene, Shadow, Walker, ZoneSpec

NIGHT = datetime(2026, 11, 25, 23, 0, tzinfo=UTC)  # a Wednesday
NOON = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def run(scene: Scene, start: datetime = NIGHT, **overrides: Any) -> list[Output]:
    settings = CameraSettings.model_validate({**scenes.camera_settings(scene, "test"), **overrides})
    analytics = CameraAnalytics(settings)
    out: list[Output] = []
    for i in range(scene.frames()):
        out += analytics.process(scene.frame(i), start + timedelta(seconds=i / scene.fps))
    return out + analytics.flush_counts(start + timedelta(seconds=scene.duration_s))


def alerts(outputs: list[Output], start: datetime = NIGHT) -> list[dict[str, Any]]:
    """Alerts as the benchmark scores them: kind, zone, start and end seconds."""
    found: dict[uuid.UUID, dict[str, Any]] = {}
    for o in outputs:
        if not isinstance(o, AlertOut):
            continue
        t = (o.when - start).total_seconds()
        if o.phase is AlertPhase.START:
            found[o.alert_id] = {"kind": o.kind.value, "zone": o.zone, "start_s": t, "end_s": None}
        elif o.phase is AlertPhase.END:
            found[o.alert_id]["end_s"] = t
    return list(found.values())


def kinds(outputs: list[Output]) -> list[str]:
    return [a["kind"] for a in alerts(outputs)]


def perfect(scene: Scene, outputs: list[Output]) -> None:
    """Every ground-truth event alerted once, nothing else."""
    per = score(alerts(outputs), scene.truth()["events"], AlertTiming())
    assert all(s["fp"] == 0 and s["fn"] == 0 for s in per.values()), dict(per)
    assert sum(s["tp"] for s in per.values()) >= 1


# ---- the alert life ----


def test_an_alert_starts_after_its_minimum_and_ends_after_its_cool_down() -> None:
    life = Lifecycle(AlertTiming(min_duration_s=1.0, cooldown_s=10.0, update_every_s=30.0))
    assert life.update(True, 0.0) is None
    assert life.update(False, 0.5) is None  # a blip shorter than the minimum: nothing
    assert life.update(True, 1.0) is None
    start = life.update(True, 2.0)
    assert start is not None and start.phase is AlertPhase.START
    assert life.update(False, 5.0) is None
    assert life.update(True, 9.0) is None  # back within the cool-down: the same alert
    update = life.update(True, 32.5)
    assert update == type(update)(start.alert_id, AlertPhase.UPDATE)  # type: ignore[misc]
    assert life.update(False, 40.0) is None
    end = life.update(False, 50.0)
    assert end is not None and (end.alert_id, end.phase) == (start.alert_id, AlertPhase.END)
    again = [life.update(True, 60.0), life.update(True, 61.0)]
    assert again[1] is not None and again[1].alert_id != start.alert_id


# ---- motion ----


def _scene_frame(scene: Scene, i: int) -> Any:
    return cv2.resize(scene.frame(i), (320, 180), interpolation=cv2.INTER_AREA)


def test_motion_finds_a_person_and_ignores_noise_light_and_shadow() -> None:
    quiet = Scene("quiet", 60, noise=8.0, switches=[LightSwitch(20, 0.55), LightSwitch(40, 1.0)],
                  shadows=[Shadow(5, 55, 0.7)])  # fmt: skip
    motion = MotionDetector(320, 180, min_area_px=0.15 * 0.25 * 36**2, fps=5, background_s=1800)
    found = [motion.apply(_scene_frame(quiet, i)) for i in range(quiet.frames())]
    assert sum(len(b) for b in found) == 0  # noise, two light switches and a shadow: nothing
    person = Scene("person", 12, walkers=[Walker(((2, 0.1, 0.8), (10, 0.9, 0.8)))])
    motion = MotionDetector(320, 180, min_area_px=0.15 * 0.25 * 36**2, fps=5, background_s=1800)
    seen = [motion.apply(_scene_frame(person, i)) for i in range(person.frames())]
    during = seen[15:45]
    assert all(len(b) == 1 for b in during)
    foot = during[10][0].foot
    truth = person.walkers[0].at((15 + 10) / 5)
    assert truth is not None and abs(foot[0] - truth[0]) < 0.03 and abs(foot[1] - truth[1]) < 0.03


# ---- zones ----


def test_intrusion_alerts_once_with_a_snapshot() -> None:
    scene = scenes.intrusion_scene(4)
    outputs = run(scene)
    perfect(scene, outputs)
    starts = [o for o in outputs if isinstance(o, AlertOut) and o.phase is AlertPhase.START]
    pictures = [o.snapshot for o in starts if o.snapshot is not None]
    assert len(pictures) == len(starts)
    assert all(p.startswith(b"\xff\xd8") and len(p) <= SNAPSHOT_MAX_BYTES for p, _ in pictures)
    picture = cv2.imdecode(np.frombuffer(pictures[0][0], np.uint8), cv2.IMREAD_COLOR)
    assert (picture.shape[1], picture.shape[0]) == pictures[0][1] == (320, 180)  # small
    # with the zone drawn in red
    assert ((picture[:, :, 2] > 180) & (picture[:, :, 0] < 90) & (picture[:, :, 1] < 90)).sum() > 50


def test_a_restricted_zone_alerts_only_on_its_schedule() -> None:
    scene = scenes.intrusion_scene(4)
    night_only = scenes.camera_settings(scene, "test")["zones"]
    night_only[0]["active"] = [{"start": "22:00", "end": "06:00"}]
    assert kinds(run(scene, NIGHT, zones=night_only)) == ["intrusion"] * len(
        scene.truth()["events"]
    )
    assert kinds(run(scene, NOON, zones=night_only)) == []


def test_privacy_masks_are_blanked_before_analysis_and_snapshots() -> None:
    scene = scenes.intrusion_scene(4)
    masked = run(scene, privacy_masks=[[(0.5, 0.5), (1.0, 0.5), (1.0, 1.0), (0.5, 1.0)]])
    assert kinds(masked) == []  # the yard is private: nobody is seen in it
    settings = CameraSettings.model_validate(
        {
            **scenes.camera_settings(scene, "t"),
            "privacy_masks": [[(0, 0), (0.5, 0), (0.5, 0.5), (0, 0.5)]],
        }
    )
    frame = CameraAnalytics(settings).prepare(scene.frame(0))
    assert int(frame[: 180 - 2, : 320 - 2].max()) == 0 and int(frame[200:, 400:].max()) > 0


def test_loitering_alerts_for_who_stays_not_for_who_passes() -> None:
    scene = scenes.loitering_scene(4)
    outputs = run(scene)
    perfect(scene, outputs)
    assert kinds(outputs) == ["loitering"]


def test_crowding_alerts_when_more_gather_than_the_limit() -> None:
    scene = scenes.crowd_scene(4)
    outputs = run(scene)
    perfect(scene, outputs)
    objects = [
        o.objects for o in outputs if isinstance(o, AlertOut) and o.phase is AlertPhase.START
    ]
    assert objects and all(n is not None and n > 5 for n in objects)


def test_a_counting_line_counts_both_ways_as_occupancy() -> None:
    scene = scenes.counting_scene(4)
    outputs = run(scene)
    counts = [o for o in outputs if isinstance(o, CountOut)]
    truth = scene.truth()["counts"]["entrance"]
    entered, exited = sum(c.entered for c in counts), sum(c.exited for c in counts)
    assert abs(entered - truth["in"]) <= 1 and abs(exited - truth["out"]) <= 1, (
        entered,
        exited,
        truth,
    )
    assert counts[-1].count >= 0 and kinds(outputs) == []
    gaps = [round((b.when - a.when).total_seconds()) for a, b in itertools.pairwise(counts[:-1])]
    assert set(gaps) == {10}  # a reading every occupancy_every_s, and the last one flushed


# ---- tampering ----


@pytest.mark.parametrize("kind", ["covered", "blurred", "moved"])
def test_tampering_is_told_apart(kind: str) -> None:
    scene = scenes.tamper_scene(4, kind)  # type: ignore[arg-type]
    outputs = run(scene)
    perfect(scene, outputs)
    assert kinds(outputs) == [f"tamper_{kind}"]


def test_quiet_footage_with_light_switches_shadows_and_noise_raises_nothing() -> None:
    scene = scenes.quiet_scene(4, duration=300)
    assert any(s.factor < 1 for s in scene.switches) and scene.shadows
    assert kinds(run(scene)) == []


# ---- configuration ----


def test_camera_settings_name_what_is_wrong() -> None:
    base = {"source": "rtsp://camera.local/stream"}
    with pytest.raises(ValidationError, match="exactly two points"):
        CameraSettings.model_validate({**base, "zones": [
            {"name": "door", "purpose": "counting_line", "points": [[0, 0], [1, 1], [0, 1]]}]})  # fmt: skip
    with pytest.raises(ValidationError, match="outside the frame"):
        CameraSettings.model_validate({**base, "zones": [
            {"name": "yard", "purpose": "restricted", "points": [[0, 0], [2, 0], [0, 1]]}]})  # fmt: skip
    with pytest.raises(ValidationError, match="is empty"):
        CameraSettings.model_validate({**base, "zones": [{"name": "yard", "purpose": "restricted",
            "points": [[0, 0], [1, 0], [0, 1]], "active": [{"start": "00:00", "end": "00:00"}]}]})  # fmt: skip
    with pytest.raises(ValidationError, match="pixels high"):
        CameraSettings.model_validate({**base, "width": 640, "height": 2000, "snapshot_width": 640})
    with pytest.raises(ValidationError, match="unknown time zone"):
        CameraSettings.model_validate({**base, "timezone": "Mars/Olympus"})
    ok = CameraSettings.model_validate({**base, "zones": [{"name": "yard", "purpose": "restricted",
        "points": [[0, 0], [1, 0], [0, 1]], "active": [{"days": ["sat", "sun"], "start": "20:00", "end": "07:00"}]}]})  # fmt: skip
    window = ok.zones[0]
    assert window.watched(datetime(2026, 11, 29, 3, 0))  # Sunday night
    assert window.watched(datetime(2026, 11, 30, 3, 0))  # Monday early morning, Sunday's window
    assert not window.watched(datetime(2026, 11, 30, 21, 0))  # Monday evening


def test_ground_truth_of_a_scene() -> None:
    scene = Scene("gt", 20, walkers=[Walker(((0, 0.1, 0.8), (10, 0.9, 0.8)))],
                  zones=[ZoneSpec("line", "counting_line", ((0.5, 0.3), (0.5, 1.0))),
                         ZoneSpec("right", "restricted", ((0.6, 0.5), (1, 0.5), (1, 1), (0.6, 1)))])  # fmt: skip
    truth = scene.truth()
    assert truth["counts"] == {"line": {"in": 1, "out": 0}}
    (event,) = truth["events"]
    assert (
        event["kind"] == "intrusion" and 6.0 <= event["start_s"] <= 6.4 and event["end_s"] == 10.2
    )


# ---- end to end ----


def test_a_camera_stream_with_an_intrusion_becomes_an_incident_with_its_picture(
    stack: LocalStack, nodes: list[NodeCredentials], ingest: object, tmp_path: Path
) -> None:
    """A simulated camera served as a live MJPEG stream, read by a real edge agent process: an
    intrusion in the yard reaches the platform over MQTT as a camera alert with its snapshot,
    both are stored, an incident is raised and the API shows its picture. The stream dropping
    makes the camera offline; it comes back by itself."""
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.settings import ApiSettings
    from simulators.stream import SceneStream
    from tests.edge_support import site_file
    from tests.support import device_of, rows, scalar, stop_process, wait_until

    yard = scenes.RESTRICTED
    scene = Scene("e2e", 20, walkers=[Walker(((2, 0.3, 0.45), (4, 0.75, 0.8), (9, 0.75, 0.8), (11, 0.3, 0.45)))],
                  zones=[yard])  # fmt: skip
    stream = SceneStream(scene).start()
    camera = device_of(nodes[0], "camera")
    settings = {
        **scenes.camera_settings(scene, stream.url),
        "reconnect_min_s": 0.5,
        "reconnect_max_s": 1.0,
    }
    config = site_file(stack, nodes[0], tmp_path / "site", cameras={camera: settings})
    agent = subprocess.Popen([sys.executable, "-m", "gridwatch.cli", "edge", "--config", str(config)],
                             stdout=(tmp_path / "agent.log").open("ab"), stderr=subprocess.STDOUT)  # fmt: skip
    dsn = stack.dsn
    try:
        started = "SELECT snapshot FROM camera_alerts WHERE device_id = %s AND phase = 'start' AND kind = 'intrusion'"
        wait_until(lambda: bool(rows(dsn, started, (camera,))), 40, "an intrusion alert")
        ref = str(rows(dsn, started, (camera,))[0][0])
        wait_until(
            lambda: bool(rows(dsn, "SELECT 1 FROM camera_snapshots WHERE id = %s", (ref,))),
            10,
            "its snapshot",
        )
        jpeg = bytes(rows(dsn, "SELECT jpeg FROM camera_snapshots WHERE id = %s", (ref,))[0][0])  # type: ignore[call-overload]
        assert jpeg.startswith(b"\xff\xd8")
        incident = "SELECT id, detail->>'snapshot' FROM incidents WHERE rule = 'camera_intrusion' AND device_id = %s"
        wait_until(lambda: bool(rows(dsn, incident, (camera,))), 10, "an incident")
        incident_id, shown = rows(dsn, incident, (camera,))[0]
        assert shown == ref
        assert (
            scalar(
                dsn, "SELECT bool_and(online) FROM camera_status WHERE device_id = %s", (camera,)
            )
            is True
        )
        with TestClient(create_app(ApiSettings(database_url=dsn))) as client:  # type: ignore[arg-type]
            token = client.post(
                "/api/token", data={"username": "operator", "password": DEMO_PASSWORD}
            )
            picture = client.get(f"/api/incidents/{incident_id}/snapshot",
                                 headers={"Authorization": f"Bearer {token.json()['access_token']}"})  # fmt: skip
            assert picture.status_code == 200 and picture.headers["content-type"] == "image/jpeg"
            assert picture.content == jpeg

        port = int(stream.url.split(":")[2].split("/")[0])
        stream.stop()  # the camera's stream drops: offline, reported
        offline = "SELECT count(*) FROM camera_status WHERE device_id = %s AND NOT online"
        wait_until(lambda: scalar(dsn, offline, (camera,)) == 1, 20, "the camera offline")
        assert (
            scalar(dsn, "SELECT online FROM device_status WHERE device_id = %s", (camera,)) is False
        )
        stream = SceneStream(scene, port=port).start()  # back: it reconnects by itself
        wait_until(lambda: scalar(dsn, "SELECT online FROM device_status WHERE device_id = %s", (camera,)) is True,
                   20, "the camera online again")  # fmt: skip
    finally:
        stop_process(agent)
        stream.stop()


def test_the_example_site_files_camera_settings_are_valid() -> None:
    from edge.config import load

    site = load(Path(__file__).parents[1] / "examples" / "site.yaml")
    (camera,) = [d for d in site.devices if d.driver == "opencv"]
    settings = CameraSettings.model_validate(camera.settings)
    assert {z.purpose.value for z in settings.zones} == {"restricted", "counting_line"}
    assert settings.privacy_masks


def test_a_snapshot_too_big_for_the_contract_is_made_smaller() -> None:
    settings = CameraSettings.model_validate(
        {
            "source": "x",
            "width": 1280,
            "height": 720,
            "snapshot_width": 1280,
            "snapshot_quality": 100,
        }
    )
    noise = np.random.default_rng(1).integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    made = CameraAnalytics(settings).snapshot(noise, None, [])
    assert made is not None
    jpeg, (w, h) = made
    assert len(jpeg) <= SNAPSHOT_MAX_BYTES and w < 1280 and h == round(w * 720 / 1280)


def test_the_driver_plays_a_file_in_a_loop_and_reports_its_rate(tmp_path: Path) -> None:
    import time

    from edge import drivers as d
    from edge.vision.camera import AnalyzedCamera

    scene = Scene("loop", 3, fps=10)
    video, _ = scenes.write_clip(scene, tmp_path)
    seen: list[d.Reading] = []
    camera = AnalyzedCamera("cam1", CameraSettings.model_validate(
        {"source": str(video), "fps": 5, "status_every_s": 1}))  # fmt: skip
    camera.start(seen.append)
    time.sleep(5)  # longer than the clip: it starts over
    camera.stop()
    statuses = [r for r in seen if isinstance(r, d.CameraStatusSeen)]
    assert statuses and all(s.online for s in statuses)  # the file's end is not a dropped stream
    rates = [s.fps for s in statuses[1:]]
    assert rates and all(3 <= r <= 6 for r in rates), rates  # about 5 analysed a second
    assert 20 <= camera.frames <= 30


def test_a_camera_left_turned_away_makes_its_new_view_the_reference() -> None:
    """Ten minutes in a new position and the moved view becomes normal: the alert can end (the
    incident it raised stays for people to look at)."""
    from edge.vision.config import Tuning
    from edge.vision.tamper import TamperDetector

    scene = scenes.tamper_scene(4, "moved")
    (tamper,) = scene.tampers
    shifted = scene.frame(int((tamper.start_s + 1) * scene.fps))
    detector = TamperDetector(Tuning())
    for i in range(20):
        detector.check(scene.frame(i), i / scene.fps)
    seen = [detector.check(shifted, 100.0 + k) for k in range(8)]  # confirmed once it persists
    assert not seen[0].moved and any(s.suspected for s in seen) and seen[-1].moved
    assert detector.check(shifted, 100.0 + 599).moved
    assert detector.check(shifted, 100.0 + 600).moved  # still moved…
    detector.check(shifted, 100.0 + 610)  # …ten minutes after the move was seen to hold…
    assert not detector.check(shifted, 100.0 + 611).moved  # …this view is the reference
