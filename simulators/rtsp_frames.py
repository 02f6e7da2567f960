"""The frames an RTSP camera sends: a frame source rendered and JPEG-encoded once per frame on
the scene's clock, shared by every session (each viewer sees the same moment)."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Protocol

import cv2
from cv2.typing import MatLike

from simulators.rtp_jpeg import CLOCK_RATE, JpegFrame, parse

log = logging.getLogger(__name__)

_IDLE_S = 2.0  # no session asked for a frame this long: stop rendering until one does


class FrameSource(Protocol):
    """What a camera films: frame `index` of `frames()`, at `fps` (a simulators.scenes.Scene)."""

    @property
    def fps(self) -> float: ...

    def frames(self) -> int: ...

    def frame(self, index: int) -> MatLike: ...


@dataclass(frozen=True, slots=True)
class Encoded:
    number: int  # frames since the clock started (past the source's end when it loops)
    rtp_time: int  # 90 kHz ticks since the clock started
    jpeg: JpegFrame


class Frames:
    def __init__(self, source: FrameSource, *, loop: bool = True, quality: int = 85) -> None:
        if source.fps <= 0 or source.frames() <= 0:
            raise ValueError("the frame source needs a positive frame rate and at least one frame")
        self.source, self.loop, self.quality = source, loop, quality
        self.fps = float(source.fps)
        self.ended = False  # a source played once (loop=False) has reached its end
        self._started = 0.0
        self._latest: Encoded | None = None
        self._wanted = 0.0
        self._cond = threading.Condition()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._encode(0)  # fails here, at once, for a source RTP/JPEG cannot carry

    def start(self) -> None:
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="rtsp-frames", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._closing.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def next_after(self, number: int, timeout: float) -> Encoded | None:
        """The first frame after frame `number`, waiting up to `timeout` for it."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._wanted = time.monotonic()
            self._cond.notify_all()
            while self._latest is None or self._latest.number <= number:
                left = deadline - time.monotonic()
                if left <= 0 or self.ended or self._closing.is_set():
                    return None
                self._cond.wait(left)
            return self._latest

    def _encode(self, index: int) -> JpegFrame:
        ok, data = cv2.imencode(".jpg", self.source.frame(index), [
            cv2.IMWRITE_JPEG_QUALITY, self.quality,
            cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420,
        ])  # fmt: skip
        if not ok:
            raise ValueError(f"frame {index} of the source could not be encoded as JPEG")
        return parse(data.tobytes())

    def _run(self) -> None:
        count = self.source.frames()
        while not self._closing.is_set():
            with self._cond:
                while time.monotonic() - self._wanted > _IDLE_S and not self._closing.is_set():
                    self._cond.wait(1.0)
            number = int((time.monotonic() - self._started) * self.fps)
            if number >= count and not self.loop:
                with self._cond:
                    self.ended = True
                    self._cond.notify_all()
                return
            try:
                jpeg = self._encode(number % count)
            except (ValueError, cv2.error):  # a frame the source got wrong: skipped
                log.exception("rtsp frame %d could not be sent", number % count)
            else:
                encoded = Encoded(number, round(number * CLOCK_RATE / self.fps), jpeg)
                with self._cond:
                    self._latest = encoded
                    self._cond.notify_all()
            due = self._started + (number + 1) / self.fps
            self._closing.wait(max(0.0, due - time.monotonic()))
