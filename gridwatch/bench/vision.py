"""`gridwatch bench vision`: the camera analytics against synthetic clips with known ground truth.

It renders the clip catalogue (simulators.scenes: a square seen from a pole camera in
perspective, in the conditions a city's cameras see, and the first catalogue's flat scenes) to
H.264 files, runs the analytics over each file exactly as the edge driver would (decoding
included, one thread), and reports, in total and per condition tag: precision, recall and delay
to alert per alert kind; counting error; false alerts per hour on event-free footage; and
person/animal confusion. Speed is measured on one H.264 file at 640x360 and at 1280x720, beside
a bare decode-and-resize loop over the same file, in the same run.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
from pydantic import ValidationError

from edge.vision.analytics import AlertOut, CameraAnalytics, CountOut, Output
from edge.vision.config import AlertTiming, CameraSettings
from gateway.messages import AlertPhase
from gridwatch.bench import vision_report as report
from simulators import scenes
from simulators.scenes import street
from simulators.scenes.render import RENDER_VERSION

# Clips start at 23:00 so that after-hours schedules would be active; zones here watch always.
CLIP_START = datetime(2026, 11, 25, 23, 0, tzinfo=UTC)
_SLACK_S = 2.0  # an alert may start this much before its event (the event's first frame)
_ZONE_KINDS = ("intrusion", "loitering", "crowd", "object_left")


@dataclass
class ClipResult:
    name: str
    frames: int
    cpu_s: float
    alerts: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # line → in, out


def run_clip(video: Path, settings: CameraSettings) -> ClipResult:
    """Decode and analyse one clip; its alerts (start and end times) and line counts."""
    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise RuntimeError(f"OpenCV cannot open {video}")
    analytics = CameraAnalytics(settings)
    result = ClipResult(video.stem, 0, 0.0)
    open_alerts: dict[Any, dict[str, Any]] = {}
    started = time.process_time()
    when = CLIP_START
    while True:
        ok, frame = cap.read()
        outputs: list[Output]
        if ok:
            when = CLIP_START + timedelta(seconds=result.frames / settings.fps)
            result.frames += 1
            outputs = analytics.process(frame, when)
        else:
            outputs = analytics.flush_counts(when)  # crossings since the last reading
        for out in outputs:
            if isinstance(out, CountOut):
                line = result.counts.setdefault(out.zone, {"in": 0, "out": 0})
                line["in"] += out.entered
                line["out"] += out.exited
                continue
            assert isinstance(out, AlertOut)
            t = (out.when - CLIP_START).total_seconds()
            if out.phase is AlertPhase.START:
                open_alerts[out.alert_id] = {"kind": out.kind.value, "zone": out.zone,
                                             "start_s": t, "end_s": None,
                                             "snapshot_bytes": len(out.snapshot[0]) if out.snapshot else 0}  # fmt: skip
                result.alerts.append(open_alerts[out.alert_id])
            elif out.phase is AlertPhase.END and out.alert_id in open_alerts:
                open_alerts.pop(out.alert_id)["end_s"] = t
        if not ok:
            break
    result.cpu_s = time.process_time() - started
    cap.release()
    return result


def _merged_truth(events: list[dict[str, Any]], timing: AlertTiming) -> list[dict[str, Any]]:
    """Ground-truth events as the analytics should report them: events of one kind and zone
    closer than the cool-down are one alert; events shorter than the minimum duration need not
    alert at all (`optional`)."""
    out: list[dict[str, Any]] = []
    for e in sorted(events, key=lambda e: (e["kind"], str(e["zone"]), e["start_s"])):
        last = out[-1] if out else None
        if (last and last["kind"] == e["kind"] and last["zone"] == e["zone"]
                and e["start_s"] - last["end_s"] <= timing.cooldown_s):  # fmt: skip
            last["end_s"] = max(last["end_s"], e["end_s"])
            continue
        out.append(dict(e))
    for e in out:
        e["optional"] = e["end_s"] - e["start_s"] < timing.min_duration_s
    return out


def match(alerts: list[dict[str, Any]], truth: list[dict[str, Any]], timing: AlertTiming
          ) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:  # fmt: skip
    """Per alert kind: true and false positives, misses, and the delays to alert; and the false
    alerts themselves. An alert is right if it starts within an unmatched event of its kind and
    zone (with `_SLACK_S` either side)."""
    per: dict[str, dict[str, Any]] = defaultdict(lambda: {"tp": 0, "fp": 0, "fn": 0, "delays": []})
    events = _merged_truth(truth, timing)
    matched: set[int] = set()
    false: list[dict[str, Any]] = []
    for a in alerts:
        hit = next((i for i, e in enumerate(events) if i not in matched
                    and e["kind"] == a["kind"] and e["zone"] == a["zone"]
                    and e["start_s"] - _SLACK_S <= a["start_s"] <= e["end_s"] + _SLACK_S), None)  # fmt: skip
        if hit is None:
            per[a["kind"]]["fp"] += 1
            false.append(a)
            continue
        matched.add(hit)
        if not events[hit]["optional"]:
            per[a["kind"]]["tp"] += 1
            per[a["kind"]]["delays"].append(a["start_s"] - events[hit]["start_s"])
    for i, e in enumerate(events):
        if i not in matched and not e["optional"]:
            per[e["kind"]]["fn"] += 1
    return per, false


def score(alerts: list[dict[str, Any]], truth: list[dict[str, Any]], timing: AlertTiming
          ) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Per alert kind: true and false positives, misses, and the delays to alert."""
    return match(alerts, truth, timing)[0]


def confusion(false: list[dict[str, Any]], nuisances: list[dict[str, Any]],
              timing: AlertTiming) -> dict[str, int]:  # fmt: skip
    """False zone alerts explained by an animal (or a vehicle) alone in that zone: the alert
    starts while one is there (with the slack) and no person is. Also how many such visits
    lasted long enough to alert on."""
    out = {"animal_visits": 0, "animal_alerts": 0, "vehicle_visits": 0, "vehicle_alerts": 0}
    for n in nuisances:
        if n["end_s"] - n["start_s"] >= timing.min_duration_s:
            out[f"{n['kind']}_visits"] += 1
    for a in false:
        if a["kind"] not in _ZONE_KINDS:
            continue
        cause = next((n for n in nuisances if n["zone"] == a["zone"]
                      and n["start_s"] - _SLACK_S <= a["start_s"] <= n["end_s"] + _SLACK_S), None)  # fmt: skip
        if cause is not None:
            out[f"{cause['kind']}_alerts"] += 1
    return out


def _digest(scene: scenes.Scene) -> str:
    """What makes a clip (the scene's fields and the renderer's version), in ten characters:
    part of its cached file's name, so a changed scene is rendered again."""
    return hashlib.sha1(f"{RENDER_VERSION}{scene!r}".encode()).hexdigest()[:10]


def ensure_clip(folder: Path, scene: scenes.Scene, suffix: str = "") -> Path:
    """The scene's H.264 file in `folder`, rendered unless it is there already."""
    suffix = f"{suffix}-{_digest(scene)}"
    video = folder / f"{scene.name}{suffix}.mp4"
    if not video.exists():
        scenes.write_h264(scene, folder, suffix=suffix)
    return video


def _colour_on(given: dict[str, Any]) -> None:
    """Turn the experimental colour motion on in a camera's settings as a user gives them."""
    given["tuning"] = {**given.get("tuning", {}), "colour_motion": True}


def settings_for(scene: scenes.Scene, video: Path, calibrated: bool = False,
                 colour: bool = False) -> CameraSettings:  # fmt: skip
    """The camera settings a user would give for the clip; with `calibrated`, also the optional
    calibration block (two people's heights measured on the picture); with `colour`, the
    experimental colour motion on."""
    given = scenes.camera_settings(scene, str(video))
    if calibrated:
        given["calibration"] = scenes.calibration(scene)
    if colour:
        _colour_on(given)
    try:
        return CameraSettings.model_validate(given)
    except ValidationError as e:
        if calibrated and any(err["loc"][:1] == ("calibration",) for err in e.errors()):
            raise SystemExit(
                "--calibrated: these analytics take no `calibration` block in camera settings"
            ) from None
        raise


def evaluate(scene: scenes.Scene, video: Path, calibrated: bool = False,
             colour: bool = False) -> dict[str, Any]:  # fmt: skip
    """One clip: its alerts scored against its truth, its counts, its confusion figures."""
    settings = settings_for(scene, video, calibrated, colour)
    result = run_clip(video, settings)
    truth = scene.truth()
    per, false = match(result.alerts, truth["events"], settings.alerts)
    counts = []
    for name, line in truth["counts"].items():
        got = result.counts.get(name, {"in": 0, "out": 0})
        counts.append({"line": name, "truth": line, "got": got})
    return {"name": scene.name, "tags": truth["tags"] or ["untagged"], "frames": result.frames,
            "cpu_s": result.cpu_s, "duration_s": scene.duration_s,
            "event_free": not truth["events"] and not truth["counts"],
            "per": {k: dict(v) for k, v in per.items()}, "counts": counts,
            "alerts": len(result.alerts),
            "false": [{k: a[k] for k in ("kind", "zone", "start_s")} for a in false],
            "confusion": confusion(false, truth["nuisances"], settings.alerts)}  # fmt: skip


def bare_fps(video: Path, size: tuple[int, int]) -> tuple[int, float]:
    """Frames and CPU seconds of only decoding the file and resizing to `size`, as the driver
    does before any analysis: the limit the analysis is measured against."""
    cap = cv2.VideoCapture(str(video))
    frames, started = 0, time.process_time()
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if (frame.shape[1], frame.shape[0]) != size:
            frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
        frames += 1
    cap.release()
    return frames, time.process_time() - started


def speed(folder: Path, duration_s: float, repeats: int = 3, colour: bool = False
          ) -> dict[str, Any]:  # fmt: skip
    """Bare decode-and-resize and full analysis on the same H.264 file, at 640x360 and at
    1280x720 (analysed at 640x360, as a user would configure it). Each is run `repeats` times,
    the two taking turns, and the fastest run of each counts: what else the machine does only
    ever adds time, so the least is the closest to the code's own cost, for both alike."""
    base = street.quiet(99, duration_s)
    out: dict[str, Any] = {"clip": base.name, "duration_s": duration_s, "repeats": repeats}
    for w, h in ((640, 360), (1280, 720)):
        scene = dataclasses.replace(base, width=w, height=h, _street=None, _background=None,
                                    _noise=[])  # fmt: skip
        video = ensure_clip(folder, scene, f"-{w}x{h}")
        given = scenes.camera_settings(scene, str(video))
        if colour:
            _colour_on(given)
        settings = CameraSettings.model_validate({**given, "width": 640, "height": 360})
        bare_runs, full_runs = [], []
        for _ in range(repeats):
            bare_runs.append(bare_fps(video, (640, 360)))
            result = run_clip(video, settings)
            full_runs.append((result.frames, result.cpu_s))
        frames, bare_s = min(bare_runs, key=lambda r: r[1])
        analysed, full_s = min(full_runs, key=lambda r: r[1])
        bare = frames / bare_s if bare_s else 0.0
        full = analysed / full_s if full_s else 0.0
        out[f"{w}x{h}"] = {"frames": frames, "bare_fps": round(bare, 1),
                           "analysis_fps": round(full, 1),
                           "ratio": round(full / bare, 3) if bare else None,
                           "analysis_ms_per_frame": round(1000 * (1 / full - 1 / bare), 3)
                           if full and bare else None}  # fmt: skip
    return out


def select(catalogue: list[scenes.Scene], tags: list[str]) -> list[scenes.Scene]:
    """The clips carrying any of `tags` (all of them when there are none). An unknown tag is a
    `ValueError` whose message names the known ones."""
    if not tags:
        return catalogue
    known = sorted({tag for scene in catalogue for tag in scene.tags})
    unknown = [tag for tag in tags if tag not in known]
    if unknown:
        raise ValueError(f"no clip is tagged {', '.join(unknown)}; the tags are: "
                         f"{', '.join(known)}")  # fmt: skip
    return [scene for scene in catalogue if any(tag in scene.tags for tag in tags)]


def run(args: argparse.Namespace) -> int:
    cv2.setNumThreads(1)  # a per-core figure: one camera is one thread on the edge box
    folder = Path(args.folder) if args.folder else Path(tempfile.mkdtemp(prefix="gw-vision-"))
    folder.mkdir(parents=True, exist_ok=True)
    quick = bool(getattr(args, "quick", False))
    if quick:
        catalogue = scenes.quick()
    else:
        first = int(getattr(args, "first_seed", 1))
        catalogue = scenes.catalogue(range(first, first + args.seeds),
                                     quiet_s=args.quiet_minutes * 60 / args.seeds)  # fmt: skip
    tags = list(getattr(args, "tag", None) or [])
    try:
        catalogue = select(catalogue, tags)
    except ValueError as e:
        print(f"gridwatch bench vision: {e}", file=sys.stderr)
        return 2
    began = time.monotonic()
    clips = [(scene, ensure_clip(folder, scene)) for scene in catalogue]
    rendered_s = time.monotonic() - began
    calibrated = bool(getattr(args, "calibrated", False))
    colour = bool(getattr(args, "colour_motion", False))
    results = [evaluate(scene, video, calibrated, colour) for scene, video in clips]
    out: dict[str, Any] = {"mode": "quick" if quick else "full", "calibrated": calibrated,
                           "colour_motion": colour,
                           "clips": len(clips),
                           "folder": str(folder), "render_s": round(rendered_s, 1)}  # fmt: skip
    out.update(report.summarise(results))
    if tags:
        out["tags"] = tags  # a part of the catalogue, to look closer at it: no speed figures
    else:
        out["speed"] = speed(folder, 30.0 if quick else 120.0, 1 if quick else 3, colour)
    print(json.dumps(out, indent=2))
    print(report.table(out), file=sys.stderr)
    return 0
