"""Event clips that hold: a clip never hides a camera going offline, never delays an alarm, never
grows without bound on the edge, and never outlives the platform's retention (docs/vision.md,
"Event clips"). Unit tests here; the platform's ones use the real broker and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from edge import drivers as d
from edge.agent import to_message
from edge.vision.camera import AnalyzedCamera
from edge.vision.clips import parts_of
from edge.vision.config import CameraSettings
from gateway import codec, topics
from gateway import messages as m
from ingest.registry import VenueInfo
from ingest.rules import RuleBook, evaluate
from tests.test_clips import a_clip

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
