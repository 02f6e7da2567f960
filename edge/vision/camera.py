"""The `opencv` camera driver: the agent reads a camera's stream itself and analyses it.

Whatever OpenCV's VideoCapture opens will do: an RTSP or HTTP (MJPEG) stream, or a file (played
at its own frame rate, from the start again when it ends). Frames are analysed at the configured
rate; those in between are grabbed but not decoded. When the stream cannot be opened or drops,
the camera is reported offline (camera.status) and the driver tries again with back-off,
doubling from `reconnect_min_s` to `reconnect_max_s`.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import cv2
from prometheus_client import Counter, Gauge, Histogram

from edge import drivers as d
from edge.vision.analytics import AlertOut, CameraAnalytics, CountOut, Output
from edge.vision.config import CameraSettings

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

_OPEN_TIMEOUT_MS = 5000
_READ_TIMEOUT_MS = 5000


class AnalyzedCamera(d.CameraAlertSource):
    def __init__(self, device_id: str, settings: CameraSettings, model: str | None = None) -> None:
        super().__init__(device_id, model)
        self.settings = settings
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._emit: d.Emit | None = None
        self.online: bool | None = None
        self.frames = 0

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
        analytics = CameraAnalytics(self.settings)
        backoff = self.settings.reconnect_min_s
        while not self._stop.is_set():
            cap = self._open()
            if not cap.isOpened():
                cap.release()
                self._offline(f"cannot open the stream; trying again in {backoff:g} s")
            else:
                backoff = self.settings.reconnect_min_s
                self._read(cap, analytics)
                cap.release()
                if self._stop.is_set():
                    break
                self._offline(f"the stream ended; trying again in {backoff:g} s")
            RECONNECTS.labels(self.id).inc()
            if self._stop.wait(backoff):
                break
            backoff = min(backoff * 2, self.settings.reconnect_max_s)
        ONLINE.labels(self.id).set(0)

    def _read(self, cap: cv2.VideoCapture, analytics: CameraAnalytics) -> None:
        """Analyse the stream until it ends or the driver stops."""
        period = 1.0 / self.settings.fps
        file_fps = cap.get(cv2.CAP_PROP_FPS) if Path(self.settings.source).exists() else 0.0
        pace = 1.0 / file_fps if file_fps > 0 else 0.0  # a file plays at its own rate
        next_frame = next_analysis = window_start = time.monotonic()
        analysed, last_status = 0, 0.0
        while not self._stop.is_set():
            if pace:
                if self._stop.wait(max(0.0, next_frame - time.monotonic())):
                    return
                next_frame += pace
            if not cap.grab():  # a live stream blocks here until its next frame
                return
            now = time.monotonic()
            if now < next_analysis - period / 2:
                SKIPPED.labels(self.id).inc()
                continue
            next_analysis = max(next_analysis + period, now - period)
            ok, frame = cap.retrieve()
            if not ok:
                return
            started = time.perf_counter()
            outputs = analytics.process(frame, datetime.now(UTC))
            ANALYSIS.labels(self.id).observe(time.perf_counter() - started)
            FRAMES.labels(self.id).inc()
            self.frames += 1
            analysed += 1
            if self.online is not True or now - last_status >= self.settings.status_every_s:
                fps = analysed / (now - window_start) if now > window_start else 0.0
                self._status(True, fps, None)
                last_status, analysed, window_start = now, 0, now
            for out in outputs:
                self._publish(out)

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
            w = self.settings.snapshot_width
            h = max(1, round(w * self.settings.height / self.settings.width))
            self._emit(d.CameraSnapshotSeen(self.id, message_id=snapshot_id, alert_id=out.alert_id,
                                            width=w, height=h, jpeg=out.snapshot, ts=out.when))  # fmt: skip
        self._emit(d.CameraAlertSeen(
            self.id, alert_id=out.alert_id, phase=out.phase, kind=out.kind, score=out.score,
            zone=out.zone, objects=out.objects,
            snapshot=str(snapshot_id) if snapshot_id else None, ts=out.when,
        ))  # fmt: skip
        ALERTS.labels(self.id, out.kind.value, out.phase.value).inc()
        log.info("camera alert device=%s kind=%s zone=%s phase=%s alert=%s",
                 self.id, out.kind.value, out.zone, out.phase.value, out.alert_id)  # fmt: skip

    def _status(self, online: bool, fps: float, detail: str | None) -> None:
        if online != self.online:
            log.log(logging.INFO if online else logging.WARNING,
                    "camera %s device=%s%s", "online" if online else "offline", self.id,
                    f" detail={detail!r}" if detail else "")  # fmt: skip
        self.online = online
        ONLINE.labels(self.id).set(1 if online else 0)
        assert self._emit is not None
        self._emit(d.CameraStatusSeen(self.id, online=online, fps=fps, detail=detail))

    def _offline(self, detail: str) -> None:
        if self.online is not False:
            self._status(False, 0.0, detail[:200])
