"""`gridwatch bench vision`: the camera analytics against synthetic clips with known ground truth.

It renders the clip catalogue (simulators.scenes) to video files, runs the analytics over each
file exactly as the edge driver would (decoding included, one thread), and reports per alert
kind precision, recall and delay to alert; counting error; false alerts per hour on quiet
footage (noise, drifting light, lights switched, cloud shadows, people outside the zones); and
frames per second per core at 640x360.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2

from edge.vision.analytics import AlertOut, CameraAnalytics, CountOut, Output
from edge.vision.config import AlertTiming, CameraSettings
from gateway.messages import AlertPhase
from simulators import scenes

# Clips start at 23:00 so that after-hours schedules would be active; zones here watch always.
CLIP_START = datetime(2026, 11, 25, 23, 0, tzinfo=UTC)
_SLACK_S = 2.0  # an alert may start this much before its event (the event's first frame)


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


def score(alerts: list[dict[str, Any]], truth: list[dict[str, Any]], timing: AlertTiming
          ) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Per alert kind: true and false positives, misses, and the delays to alert."""
    per: dict[str, dict[str, Any]] = defaultdict(lambda: {"tp": 0, "fp": 0, "fn": 0, "delays": []})
    events = _merged_truth(truth, timing)
    matched: set[int] = set()
    for a in alerts:
        hit = next((i for i, e in enumerate(events) if i not in matched
                    and e["kind"] == a["kind"] and e["zone"] == a["zone"]
                    and e["start_s"] - _SLACK_S <= a["start_s"] <= e["end_s"] + _SLACK_S), None)  # fmt: skip
        if hit is None:
            per[a["kind"]]["fp"] += 1
            continue
        matched.add(hit)
        if not events[hit]["optional"]:
            per[a["kind"]]["tp"] += 1
            per[a["kind"]]["delays"].append(a["start_s"] - events[hit]["start_s"])
    for i, e in enumerate(events):
        if i not in matched and not e["optional"]:
            per[e["kind"]]["fn"] += 1
    return per


def run(args: argparse.Namespace) -> int:
    cv2.setNumThreads(1)  # a per-core figure: one camera is one thread on the edge box
    folder = Path(args.folder) if args.folder else Path(tempfile.mkdtemp(prefix="gw-vision-"))
    catalogue = scenes.catalogue(
        range(1, args.seeds + 1), quiet_s=args.quiet_minutes * 60 / args.seeds
    )
    began = time.monotonic()
    clips = []
    for scene in catalogue:
        video = folder / f"{scene.name}.avi"
        if not video.exists():
            scenes.write_clip(scene, folder)
        clips.append((scene, video))
    rendered_s = time.monotonic() - began
    totals: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"tp": 0, "fp": 0, "fn": 0, "delays": []}
    )
    frames, cpu_s = 0, 0.0
    counted = {"truth": 0, "error": 0}
    quiet = {"hours": 0.0, "alerts": 0}
    for scene, video in clips:
        settings = CameraSettings.model_validate(scenes.camera_settings(scene, str(video)))
        result = run_clip(video, settings)
        frames, cpu_s = frames + result.frames, cpu_s + result.cpu_s
        truth = scene.truth()
        for kind, s in score(result.alerts, truth["events"], settings.alerts).items():
            for k in ("tp", "fp", "fn"):
                totals[kind][k] += s[k]
            totals[kind]["delays"] += s["delays"]
        for name, line in truth["counts"].items():
            got = result.counts.get(name, {"in": 0, "out": 0})
            counted["truth"] += line["in"] + line["out"]
            counted["error"] += abs(got["in"] - line["in"]) + abs(got["out"] - line["out"])
        if scene.name.startswith("quiet-"):
            quiet["hours"] += scene.duration_s / 3600
            quiet["alerts"] += len(result.alerts)
    report: dict[str, Any] = {
        "clips": len(clips), "frames": frames, "folder": str(folder),
        "render_s": round(rendered_s, 1),
        "fps_per_core_640x360": round(frames / cpu_s, 1) if cpu_s else None,
        "counting_error_pct": round(100 * counted["error"] / max(1, counted["truth"]), 2),
        "crossings": counted["truth"],
        "false_alerts_per_hour_quiet": round(quiet["alerts"] / max(quiet["hours"], 1e-9), 2),
        "quiet_hours": round(quiet["hours"], 2),
        "alerts": {},
    }  # fmt: skip
    for kind, s in sorted(totals.items()):
        tp, fp, fn = s["tp"], s["fp"], s["fn"]
        delays = sorted(s["delays"])
        report["alerts"][kind] = {
            "events": tp + fn, "tp": tp, "fp": fp, "fn": fn,
            "precision": round(tp / (tp + fp), 3) if tp + fp else None,
            "recall": round(tp / (tp + fn), 3) if tp + fn else None,
            "delay_s_median": round(delays[len(delays) // 2], 2) if delays else None,
            "delay_s_max": round(delays[-1], 2) if delays else None,
        }  # fmt: skip
    print(json.dumps(report, indent=2))
    return 0
