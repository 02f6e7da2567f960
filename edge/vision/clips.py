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
    "Alert clips by outcome: sent, busy (too many in hand), too_large, failed, dropped (at"
    " shutdown)",
    ["device", "outcome"],
)
CLIP_BYTES = Counter("gridwatch_camera_clip_bytes_total", "Bytes of clips sent", ["device"])
ENCODE = Histogram(
    "gridwatch_camera_clip_encode_seconds", "Time to encode one clip (all tries)", ["device"],
    buckets=(0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0),
)  # fmt: skip

_FOURCC = cv2.VideoWriter.fourcc(*"VP80")
_MIN_SIDE = 16  # the contract's smallest clip
CLIP_MAX_WIDTH, CLIP_MAX_HEIGHT = 1920, 1080  # and its largest (gateway/messages.py CameraClip)
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


@dataclass(frozen=True, slots=True)
class Taken:
    """A frame with when it was taken: `mono` (monotonic seconds) orders and times it, `wall`
    (epoch seconds) only names it: a wall clock stepped back or forward by NTP must not make a
    clip longer or shorter."""

    mono: float
    wall: float
    frame: Frame


class FrameRing:
    """The last `seconds` of frames (by their monotonic time), kept by reference."""

    def __init__(self, seconds: float, fps: float) -> None:
        self.seconds = seconds
        # A hard bound whatever the clock does: twice the frames the analysis rate gives.
        self._frames: deque[Taken] = deque(maxlen=math.ceil(seconds * fps * 2) + 2)

    def push(self, t: float, frame: Frame, mono: float | None = None) -> None:
        mono = t if mono is None else mono
        self._frames.append(Taken(mono, t, frame))
        while self._frames and self._frames[0].mono < mono - self.seconds:
            self._frames.popleft()

    def since(self, mono: float) -> list[Taken]:
        """The frames taken at `mono` (monotonic seconds) or later, oldest first."""
        return [f for f in self._frames if f.mono >= mono]

    def __len__(self) -> int:
        return len(self._frames)


@dataclass(slots=True)
class _Collecting:
    alert_id: uuid.UUID
    until: float  # monotonic seconds
    frames: list[Taken] = field(default_factory=list)


def real_fps(taken: list[Taken], fallback: float) -> float:
    """The rate the frames were taken at (from their monotonic times), so a clip plays in the
    time it shows; `fallback` for a single frame. Bounded by the contract's 0-60."""
    if len(taken) < 2 or taken[-1].mono <= taken[0].mono:
        return min(fallback, 60.0)
    return min(60.0, max(0.1, (len(taken) - 1) / (taken[-1].mono - taken[0].mono)))


def encode_webm(frames: list[Frame], fps: float, max_bytes: int) -> tuple[bytes, int, int, float]:
    """The frames as a WebM (VP8) video of at most `max_bytes`: (data, width, height, fps).
    Raises ValueError when even the coarsest try is too large, RuntimeError when OpenCV cannot
    write VP8."""
    if not frames:
        raise ValueError("no frames to encode")
    h0, w0 = frames[0].shape[:2]
    # Within the contract's largest clip (a portrait camera's frames may be taller than that).
    fit = min(1.0, CLIP_MAX_WIDTH / w0, CLIP_MAX_HEIGHT / h0)
    with tempfile.TemporaryDirectory(prefix="gridwatch-clip-") as folder:
        path = Path(folder) / "clip.webm"
        smallest = 0
        for scale, blur, step in _LADDER:
            w = max(_MIN_SIDE, min(CLIP_MAX_WIDTH, round(w0 * fit * scale / 2) * 2))
            h = max(_MIN_SIDE, min(CLIP_MAX_HEIGHT, round(h0 * fit * scale / 2) * 2))
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
        self, settings: ClipSettings, fps: float, deliver: Callable[[Clip], bool | None],
        device: str = "",
    ) -> None:  # fmt: skip
        self.settings = settings
        self.fps = fps
        self.deliver = deliver
        self.device = device
        self.ring = FrameRing(settings.pre_s, fps)
        # A hard cap per clip, whatever the clocks do: the frames its length holds at the rate.
        self.max_frames = math.ceil((settings.pre_s + settings.post_s) * fps) + 2
        self._last = (0.0, 0.0)  # (wall, mono) of the last frame fed
        self._collecting: list[_Collecting] = []
        self._in_hand = 0  # collecting, queued or being encoded
        self._lock = threading.Lock()
        self._queue: queue.Queue[_Collecting | None] = queue.Queue()
        self._pending = PENDING.labels(device)
        self._worker = threading.Thread(target=self._work, name=f"clips-{device}", daemon=True)
        self._worker.start()

    # ---- the frame loop ----

    def feed(self, t: float, frame: Frame, mono: float | None = None) -> None:
        """One analysed frame taken at `t` (epoch seconds) and `mono` (monotonic seconds, `t`
        when not given): a reference is kept, nothing more."""
        mono = t if mono is None else mono
        self._last = (t, mono)
        self.ring.push(t, frame, mono)
        if not self._collecting:
            return
        for c in self._collecting:
            if mono <= c.until:
                c.frames.append(Taken(mono, t, frame))
        done = [c for c in self._collecting if mono >= c.until or len(c.frames) >= self.max_frames]
        if done:
            self._collecting = [c for c in self._collecting if c not in done]
            for c in done:
                self._queue.put(c)

    def start(self, alert_id: uuid.UUID, t: float, mono: float | None = None) -> bool:
        """An alert started at `t` (epoch seconds; `mono` monotonic, else taken from the last
        frame fed) after its frame was fed: begin its clip; False when too many clips are in
        hand already (the alert goes without one)."""
        if mono is None:
            wall, last = self._last
            mono = last + (t - wall)
        with self._lock:
            if self._in_hand >= self.settings.max_pending:
                CLIPS.labels(self.device, "busy").inc()
                log.warning("clip dropped, %d in hand already device=%s alert=%s",
                            self._in_hand, self.device, alert_id)  # fmt: skip
                return False
            self._in_hand += 1
            self._pending.set(self._in_hand)
        c = _Collecting(
            alert_id, mono + self.settings.post_s,
            self.ring.since(mono - self.settings.pre_s)[-self.max_frames :],
        )  # fmt: skip
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
            data, w, h, fps = encode_webm([f.frame for f in c.frames],
                                          real_fps(c.frames, self.fps),
                                          self.settings.max_bytes)  # fmt: skip
        except ValueError as exc:
            CLIPS.labels(self.device, "too_large").inc()
            log.warning("clip not sent device=%s alert=%s: %s", self.device, c.alert_id, exc)
            return
        finally:
            ENCODE.labels(self.device).observe(time.perf_counter() - started)
        clip = Clip(
            uuid.uuid4(), c.alert_id, data, w, h, fps,
            datetime.fromtimestamp(c.frames[0].wall, UTC),
            datetime.fromtimestamp(c.frames[0].wall + c.frames[-1].mono - c.frames[0].mono, UTC),
            len(c.frames),
        )  # fmt: skip
        log.info("clip made device=%s alert=%s frames=%d bytes=%d size=%dx%d seconds=%.2f",
                 self.device, c.alert_id, len(c.frames), len(data), w, h,
                 time.perf_counter() - started)  # fmt: skip
        if self.deliver(clip) is False:  # the agent is stopping: the clip is not kept
            CLIPS.labels(self.device, "dropped").inc()
            log.warning("clip dropped at shutdown device=%s alert=%s", self.device, c.alert_id)
            return
        CLIPS.labels(self.device, "sent").inc()
        CLIP_BYTES.labels(self.device).inc(len(data))
