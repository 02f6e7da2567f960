"""The `opencv` camera driver: the agent reads a camera's stream itself and analyses it.

Whatever OpenCV's VideoCapture opens will do: an RTSP or HTTP (MJPEG) stream, or a file (played
at its own frame rate, from the start again when it ends). Frames are analysed at the configured
rate; those in between are grabbed but not decoded. When the stream cannot be opened or drops,
the camera is reported offline (camera.status) and the driver tries again with back-off,
doubling from `reconnect_min_s` to `reconnect_max_s`.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import cv2
from prometheus_client import Counter, Gauge, Histogram
from pydantic import ValidationError

from edge import drivers as d
from edge.vision.analytics import AlertOut, CameraAnalytics, CountOut, Output
from edge.vision.clips import Clip, ClipRecorder, parts_of
from edge.vision.config import CameraSettings
from edge.vision.people import LearnedScale
from gateway.messages import AlertPhase

log = logging.getLogger(__name__)

FRAMES = Counter("gridwatch_camera_frames_total", "Frames analysed", ["device"])
SKIPPED = Counter(
    "gridwatch_camera_frames_skipped_total", "Frames grabbed, not analysed", ["device"]
)
RECONNECTS = Counter(
    "gridwatch_camera_reconnects_total",
    "Stream opens that failed or streams that dropped",
    ["device"],
)
ONLINE = Gauge("gridwatch_camera_online", "1 while the stream is read", ["device"])
ANALYSIS = Histogram(
    "gridwatch_camera_analysis_seconds", "Time to analyse one frame", ["device"],
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5),
)  # fmt: skip
ALERTS = Counter(
    "gridwatch_camera_alerts_total", "Alert phases published", ["device", "kind", "phase"]
)

_MAX_FPS = 1000.0  # camera.status's bound
_OPEN_TIMEOUT_MS = 5000
_READ_TIMEOUT_MS = 5000
_KEEP_EVERY_S = 600.0


class AnalyzedCamera(d.CameraAlertSource):
    def __init__(self, device_id: str, settings: CameraSettings, model: str | None = None,
                 state_dir: Path | None = None) -> None:  # fmt: skip
        """`state_dir`: where the perspective it learns is kept across restarts (none: it is
        learned again each time the driver starts)."""
        super().__init__(device_id, model)
        self.settings = settings
        self.perspective_file = state_dir / f"{device_id}.perspective.json" if state_dir else None
        self._kept_version = 0
        self._kept_at = -math.inf
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._emit: d.Emit | None = None
        self.online: bool | None = None
        self._status_at = 0.0
        # Metric children looked up once: the frame loop only counts.
        self._frames = FRAMES.labels(device_id)
        self._skipped = SKIPPED.labels(device_id)
        self._analysis = ANALYSIS.labels(device_id)
        self.frames = 0
        self._clips: ClipRecorder | None = None

    def start(self, emit: d.Emit) -> None:
        self._emit = emit
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"camera-{self.id}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=_READ_TIMEOUT_MS / 1000 + 2)

    # ---- the stream ----

    def _open(self) -> cv2.VideoCapture:
        source = self.settings.source
        if Path(source).exists():
            return cv2.VideoCapture(source)
        return cv2.VideoCapture(source, cv2.CAP_FFMPEG, [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, _OPEN_TIMEOUT_MS,
            cv2.CAP_PROP_READ_TIMEOUT_MSEC, _READ_TIMEOUT_MS,
        ])  # fmt: skip

    def _run(self) -> None:
        try:
            self._analyse()
        finally:
            if self._clips is not None:  # the clips being made still go out
                self._clips.close()
                self._clips = None

    def _analyse(self) -> None:
        analytics = CameraAnalytics(self.settings)
        self._resume_perspective(analytics)
        if self.settings.clips.enabled:
            self._clips = ClipRecorder(self.settings.clips, self.settings.fps, self._send_clip,
                                       self.id)  # fmt: skip
        backoff = self.settings.reconnect_min_s
        while not self._stop.is_set():
            cap = self._open()
            if not cap.isOpened():
                cap.release()
                problem = "cannot open the stream"
            else:
                try:
                    analysed = self._read(cap, analytics)
                    problem = "the stream ended"
                except Exception as exc:  # a bad frame or a bug must not silence the camera
                    log.exception("camera analysis failed device=%s", self.id)
                    analysed, problem = 0, f"analysis failed: {type(exc).__name__}"
                finally:
                    cap.release()
                    self._keep_perspective(analytics, time.monotonic(), force=True)
                    if self._clips is not None:
                        self._clips.flush()  # no more frames for now: clip what there is
                if self._stop.is_set():
                    break
                if analysed:  # it worked for a while: start the back-off over
                    backoff = self.settings.reconnect_min_s
            RECONNECTS.labels(self.id).inc()
            if self._offline_until_retry(f"{problem}; trying again in {backoff:g} s", backoff):
                break
            backoff = min(backoff * 2, self.settings.reconnect_max_s)
        ONLINE.labels(self.id).set(0)

    def _read(self, cap: cv2.VideoCapture, analytics: CameraAnalytics) -> int:
        """Analyse the stream until it ends or the driver stops; how many frames it analysed.
        A file starts over when it ends."""
        period = 1.0 / self.settings.fps
        is_file = Path(self.settings.source).exists()
        file_fps = cap.get(cv2.CAP_PROP_FPS) if is_file else 0.0
        pace = 1.0 / file_fps if file_fps > 0 else 0.0  # a file plays at its own rate
        next_frame = next_analysis = window_start = time.monotonic()
        analysed = in_window = 0
        last_status = -self.settings.status_every_s
        while not self._stop.is_set():
            if pace:
                if self._stop.wait(max(0.0, next_frame - time.monotonic())):
                    break
                next_frame += pace
            if not cap.grab():  # a live stream blocks here until its next frame
                if is_file and analysed and cap.set(cv2.CAP_PROP_POS_FRAMES, 0):
                    continue
                break
            now = time.monotonic()
            if now < next_analysis - period / 2:
                self._skipped.inc()
                continue
            next_analysis = max(next_analysis + period, now - period)
            ok, frame = cap.retrieve()
            if not ok:
                break
            started = time.perf_counter()
            when = datetime.now(UTC)
            outputs = analytics.process(frame, when)
            if self._clips is not None:
                self._clips.feed(when.timestamp(), analytics.small, time.monotonic())
            self._analysis.observe(time.perf_counter() - started)
            self._frames.inc()
            self.frames += 1
            analysed += 1
            in_window += 1
            if self.online is not True or now - last_status >= self.settings.status_every_s:
                # The rate over the last status period (none yet on the first frame).
                elapsed = now - window_start
                fps = min(in_window / elapsed, _MAX_FPS) if elapsed >= 1.0 else 0.0
                self._status(True, fps, None)
                last_status, in_window, window_start = now, 0, now
            for out in outputs:
                self._publish(out)
            self._keep_perspective(analytics, now)
        return analysed

    # ---- the perspective learned, kept ----

    def _resume_perspective(self, analytics: CameraAnalytics) -> None:
        path = self.perspective_file
        if path is None or not path.exists():
            return
        try:
            kept = LearnedScale.model_validate_json(path.read_bytes())
        except (OSError, ValidationError) as exc:
            problem = exc.strerror if isinstance(exc, OSError) else "not a perspective file"
            log.warning("camera perspective not resumed device=%s file=%s: %s; it is learned "
                        "again and the file replaced", self.id, path, problem)  # fmt: skip
            return
        scale = analytics.people.scale
        if scale.resume(kept):
            self._kept_version = scale.version
            log.info("camera perspective resumed device=%s file=%s level=%.3f slope=%.3f",
                     self.id, path, kept.level, kept.slope)  # fmt: skip
        else:
            log.info("camera perspective in %s is for other settings device=%s; learned again",
                     path, self.id)  # fmt: skip

    def _keep_perspective(self, analytics: CameraAnalytics, now: float, force: bool = False
                          ) -> None:  # fmt: skip
        """Write the learned line when it changed: at once the first time, then at most once
        every `_KEEP_EVERY_S` (it is refitted often and changes little), and when the driver
        stops; delete it at once when the line is forgotten. Written to a new file and
        renamed, so a crash leaves the old one whole."""
        path, scale = self.perspective_file, analytics.people.scale
        if path is None or scale.version == self._kept_version:
            return
        if (
            scale.learned
            and not force
            and self._kept_version
            and (now - self._kept_at < _KEEP_EVERY_S)
        ):
            return
        learnt = scale.learnt()
        self._kept_version, self._kept_at = scale.version, now
        tmp = path.with_name(path.name + ".tmp")
        try:
            if learnt is None:  # forgotten (the camera was moved): not to be resumed
                path.unlink(missing_ok=True)
                return
            tmp.write_text(learnt.model_dump_json())
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("camera perspective not kept device=%s file=%s: %s", self.id, path,
                        exc.strerror)  # fmt: skip

    # ---- readings ----

    def _publish(self, out: Output) -> None:
        assert self._emit is not None
        if isinstance(out, CountOut):
            self._emit(d.OccupancySeen(self.id, zone=out.zone, count=out.count,
                                       entered=out.entered, exited=out.exited, ts=out.when))  # fmt: skip
            return
        assert isinstance(out, AlertOut)
        snapshot_id = None
        if out.snapshot is not None:
            snapshot_id = uuid.uuid4()
            jpeg, (w, h) = out.snapshot
            self._emit(d.CameraSnapshotSeen(self.id, message_id=snapshot_id, alert_id=out.alert_id,
                                            width=w, height=h, jpeg=jpeg, ts=out.when))  # fmt: skip
        self._emit(d.CameraAlertSeen(
            self.id, alert_id=out.alert_id, phase=out.phase, kind=out.kind, score=out.score,
            zone=out.zone, objects=out.objects,
            snapshot=str(snapshot_id) if snapshot_id else None, ts=out.when,
        ))  # fmt: skip
        ALERTS.labels(self.id, out.kind.value, out.phase.value).inc()
        if out.phase is AlertPhase.START and self._clips is not None:
            self._clips.start(out.alert_id, out.when.timestamp())
        log.info("camera alert device=%s kind=%s zone=%s phase=%s alert=%s",
                 self.id, out.kind.value, out.zone, out.phase.value, out.alert_id)  # fmt: skip

    def _send_clip(self, clip: Clip) -> bool:
        """A finished clip (the recorder's thread): its parts go out through the outbox; False
        when the agent stopped and did not take them (EdgeAgent.submit says so)."""
        assert self._emit is not None
        # Stamped with the clip's last frame, not the time it was encoded: a clip finished after
        # the stream dropped must not look newer than the camera's offline status.
        parts = parts_of(self.id, clip, ts=clip.end)
        return all(self._emit(part) is not False for part in parts)

    def _status(self, online: bool, fps: float, detail: str | None) -> None:
        if online != self.online:
            log.log(logging.INFO if online else logging.WARNING,
                    "camera %s device=%s%s", "online" if online else "offline", self.id,
                    f" detail={detail!r}" if detail else "")  # fmt: skip
        self.online, self._status_at = online, time.monotonic()
        ONLINE.labels(self.id).set(1 if online else 0)
        assert self._emit is not None
        self._emit(d.CameraStatusSeen(self.id, online=online, fps=fps, detail=detail))

    def _offline_until_retry(self, detail: str, wait_s: float) -> bool:
        """Report the camera offline, again every `status_every_s` (a node's birth after a
        reconnect would otherwise show it online), until the retry is due; True if stopped."""
        deadline = time.monotonic() + wait_s
        while True:
            if (
                self.online is not False
                or time.monotonic() - self._status_at >= self.settings.status_every_s
            ):
                self._status(False, 0.0, detail[:200])
            left = deadline - time.monotonic()
            if left <= 0:
                return self._stop.is_set()
            if self._stop.wait(min(left, self.settings.status_every_s)):
                return True
