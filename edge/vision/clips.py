"""Event clips: each alert's start gets a short video of the analysed frames around it.

A ring buffer keeps the last `pre_s` seconds of analysed frames (the privacy-masked frames at
the analysis size, as `CameraAnalytics.small` holds them) by reference: feeding it costs an
append, never a copy or an encode. On an alert's start a clip takes the frames from `pre_s`
before; it keeps taking frames until `post_s` after, then goes to a worker thread that encodes
it as WebM (VP8, which browsers play in a <video>), smaller and coarser until it fits
`max_bytes`. Overlapping alerts share the same frame arrays. At most `max_pending` clips are in
hand at once (collected or encoded), so memory stays bounded: an alert past that has no clip,
and that is counted. A finished clip is cut into parts that travel as `camera.clip` messages
through the outbox (see docs/vision.md, "Event clips").
"""

from __future__ import annotations

import hashlib
import logging
import math
import queue
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import cv2
from cv2.typing import MatLike
from prometheus_client import Counter, Gauge, Histogram

from edge import drivers as d
from edge.vision.config import ClipSettings
from gateway.messages import CLIP_PART_BYTES

log = logging.getLogger(__name__)

Frame = MatLike

PENDING = Gauge(
    "gridwatch_camera_clips_pending", "Clips being collected or waiting to be encoded", ["device"]
)
CLIPS = Counter(
    "gridwatch_camera_clips_total",
    "Alert clips by outcome: sent, busy (too many in hand), too_large, failed",
    ["device", "outcome"],
)
CLIP_BYTES = Counter("gridwatch_camera_clip_bytes_total", "Bytes of clips sent", ["device"])
ENCODE = Histogram(
    "gridwatch_camera_clip_encode_seconds", "Time to encode one clip (all tries)", ["device"],
    buckets=(0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0),
)  # fmt: skip

_FOURCC = cv2.VideoWriter.fourcc(*"VP80")
_MIN_SIDE = 16  # the contract's smallest clip
# Tries, each smaller or coarser than the one before: (scale, blur kernel, keep every n-th frame).
# Blurring first costs little to look at and removes the sensor noise VP8 spends most bits on.
_LADDER = (
    (1.0, 0, 1), (1.0, 3, 1), (0.75, 3, 1), (0.5, 3, 1), (0.5, 3, 2), (0.35, 5, 2), (0.25, 5, 3),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Clip:
    """An encoded clip of an alert."""

    clip_id: uuid.UUID
    alert_id: uuid.UUID
    data: bytes
    width: int
    height: int
    fps: float
    start: datetime
    end: datetime
    frames: int


class FrameRing:
    """The last `seconds` of frames with their times (epoch seconds), kept by reference."""

    def __init__(self, seconds: float, fps: float) -> None:
        self.seconds = seconds
        # A hard bound whatever the clock does: twice the frames the analysis rate gives.
        self._frames: deque[tuple[float, Frame]] = deque(maxlen=math.ceil(seconds * fps * 2) + 2)

    def push(self, t: float, frame: Frame) -> None:
        self._frames.append((t, frame))
        while self._frames and self._frames[0][0] < t - self.seconds:
            self._frames.popleft()

    def since(self, t: float) -> list[tuple[float, Frame]]:
        """The frames taken at `t` or later, oldest first."""
        return [f for f in self._frames if f[0] >= t]

    def __len__(self) -> int:
        return len(self._frames)


@dataclass(slots=True)
class _Collecting:
    alert_id: uuid.UUID
    until: float
    frames: list[tuple[float, Frame]] = field(default_factory=list)


def encode_webm(frames: list[Frame], fps: float, max_bytes: int) -> tuple[bytes, int, int, float]:
    """The frames as a WebM (VP8) video of at most `max_bytes`: (data, width, height, fps).
    Raises ValueError when even the coarsest try is too large, RuntimeError when OpenCV cannot
    write VP8."""
    if not frames:
        raise ValueError("no frames to encode")
    h0, w0 = frames[0].shape[:2]
    with tempfile.TemporaryDirectory(prefix="gridwatch-clip-") as folder:
        path = Path(folder) / "clip.webm"
        smallest = 0
        for scale, blur, step in _LADDER:
            w = max(_MIN_SIDE, round(w0 * scale / 2) * 2)
            h = max(_MIN_SIDE, round(h0 * scale / 2) * 2)
            rate = fps / step
            writer = cv2.VideoWriter(str(path), _FOURCC, rate, (w, h))
            if not writer.isOpened():
                raise RuntimeError("OpenCV cannot write WebM (VP8): its FFmpeg lacks libvpx")
            for frame in frames[::step]:
                out = frame
                if (w, h) != (w0, h0):
                    out = cv2.resize(out, (w, h), interpolation=cv2.INTER_AREA)
                if blur:
                    out = cv2.GaussianBlur(out, (blur, blur), 0)
                writer.write(out)
            writer.release()
            data = path.read_bytes()
            if len(data) <= max_bytes:
                return data, w, h, rate
            smallest = len(data)
    raise ValueError(f"the clip is {smallest} bytes at its coarsest, over {max_bytes}")


def parts_of(device: str, clip: Clip, ts: datetime | None = None) -> list[d.CameraClipSeen]:
    """The clip cut into the readings that become its `camera.clip` parts."""
    digest = hashlib.sha256(clip.data).hexdigest()
    chunks = [clip.data[i : i + CLIP_PART_BYTES] for i in range(0, len(clip.data), CLIP_PART_BYTES)]
    out: list[d.CameraClipSeen] = []
    for i, chunk in enumerate(chunks):
        out.append(d.CameraClipSeen(
            device, clip_id=clip.clip_id, alert_id=clip.alert_id, part=i, parts=len(chunks),
            width=clip.width, height=clip.height, fps=round(clip.fps, 3), start=clip.start,
            end=clip.end, size=len(clip.data), sha256=digest, data=chunk, ts=ts,
        ))  # fmt: skip
    return out


class ClipRecorder:
    """Feeds a ring buffer from the frame loop and makes a clip for each alert's start.

    `feed`, `start` and `flush` are called from the frame loop; `deliver` is called from the
    recorder's worker thread with each finished clip."""

    def __init__(
        self, settings: ClipSettings, fps: float, deliver: Callable[[Clip], None],
        device: str = "",
    ) -> None:  # fmt: skip
        self.settings = settings
        self.fps = fps
        self.deliver = deliver
        self.device = device
        self.ring = FrameRing(settings.pre_s, fps)
        self._collecting: list[_Collecting] = []
        self._in_hand = 0  # collecting, queued or being encoded
        self._lock = threading.Lock()
        self._queue: queue.Queue[_Collecting | None] = queue.Queue()
        self._pending = PENDING.labels(device)
        self._worker = threading.Thread(target=self._work, name=f"clips-{device}", daemon=True)
        self._worker.start()

    # ---- the frame loop ----

    def feed(self, t: float, frame: Frame) -> None:
        """One analysed frame taken at `t` (epoch seconds): a reference is kept, nothing more."""
        self.ring.push(t, frame)
        if not self._collecting:
            return
        for c in self._collecting:
            if t <= c.until:
                c.frames.append((t, frame))
        done = [c for c in self._collecting if t >= c.until]
        if done:
            self._collecting = [c for c in self._collecting if t < c.until]
            for c in done:
                self._queue.put(c)

    def start(self, alert_id: uuid.UUID, t: float) -> bool:
        """An alert started at `t` (after its frame was fed): begin its clip; False when too
        many clips are in hand already (the alert goes without one)."""
        with self._lock:
            if self._in_hand >= self.settings.max_pending:
                CLIPS.labels(self.device, "busy").inc()
                log.warning("clip dropped, %d in hand already device=%s alert=%s",
                            self._in_hand, self.device, alert_id)  # fmt: skip
                return False
            self._in_hand += 1
            self._pending.set(self._in_hand)
        c = _Collecting(
            alert_id, t + self.settings.post_s, self.ring.since(t - self.settings.pre_s)
        )
        if self.settings.post_s <= 0:
            self._queue.put(c)
        else:
            self._collecting.append(c)
        return True

    def flush(self) -> None:
        """The stream ended: encode the clips being collected with the frames they have."""
        collecting, self._collecting = self._collecting, []
        for c in collecting:
            self._queue.put(c)

    def close(self, timeout: float = 30.0) -> None:
        """Flush, let the worker finish what it holds, and stop it."""
        self.flush()
        self._queue.put(None)
        self._worker.join(timeout)

    # ---- the worker ----

    def _work(self) -> None:
        while (c := self._queue.get()) is not None:
            try:
                self._encode(c)
            except Exception:  # a bad clip must not stop the clips after it
                CLIPS.labels(self.device, "failed").inc()
                log.exception("clip failed device=%s alert=%s", self.device, c.alert_id)
            finally:
                with self._lock:
                    self._in_hand -= 1
                    self._pending.set(self._in_hand)

    def _encode(self, c: _Collecting) -> None:
        if not c.frames:
            CLIPS.labels(self.device, "failed").inc()
            log.warning("clip without frames device=%s alert=%s", self.device, c.alert_id)
            return
        started = time.perf_counter()
        try:
            data, w, h, fps = encode_webm([f for _, f in c.frames], self.fps,
                                          self.settings.max_bytes)  # fmt: skip
        except ValueError as exc:
            CLIPS.labels(self.device, "too_large").inc()
            log.warning("clip not sent device=%s alert=%s: %s", self.device, c.alert_id, exc)
            return
        finally:
            ENCODE.labels(self.device).observe(time.perf_counter() - started)
        clip = Clip(
            uuid.uuid4(), c.alert_id, data, w, h, fps,
            datetime.fromtimestamp(c.frames[0][0], UTC), datetime.fromtimestamp(c.frames[-1][0], UTC),
            len(c.frames),
        )  # fmt: skip
        log.info("clip made device=%s alert=%s frames=%d bytes=%d size=%dx%d seconds=%.2f",
                 self.device, c.alert_id, len(c.frames), len(data), w, h,
                 time.perf_counter() - started)  # fmt: skip
        self.deliver(clip)
        CLIPS.labels(self.device, "sent").inc()
        CLIP_BYTES.labels(self.device).inc(len(data))
