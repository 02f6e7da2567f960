"""Moving objects: background subtraction on a downscaled frame (tracking: edge/vision/tracking.py).

The background is a running average per pixel that learns only where nothing is moving, so a
person who stops stays in the foreground (for loitering) instead of fading into the background;
what stays put for `background_s` (a parked bicycle) is learned slowly all the same. It follows
gradual light changes within seconds; a sudden change of most of the frame (a light switched on
or off) makes it take the new frame as the background at once instead of reporting the whole
picture as moving. Pixels that are only a darker (or, as a shadow moves off, a lighter) version
of the background, with the same colour, are shadows and do not count. Blobs smaller than a share of a person are noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from cv2.typing import MatLike
from numpy.typing import NDArray

Frame = MatLike

_GLOBAL_CHANGE = 0.4  # this share of the frame changing at once is light, not people
_WARMUP_FRAMES = 3
_FOLLOW_S = 10.0  # the background follows slow light changes over about this long
_MIN_THRESHOLD = 14.0  # grey levels: differences below this are never motion
_NOISE_K = 4.0  # differences above this many noise deviations are motion
_SHADOW_RATIO = (0.4, 0.93)  # a shadow darkens the background by this much…
_SHADOW_CHROMA = 0.06  # …and keeps its colour (normalised r, g within this)
_NOISE_EVERY = 5  # frames between updates of the noise estimate


@dataclass(frozen=True, slots=True)
class Blob:
    """A moving region in analysis pixels, with its foot point (bottom centre) in frame fractions."""

    x: int
    y: int
    w: int
    h: int
    area: int
    foot: tuple[float, float]


class MotionDetector:
    def __init__(
        self, width: int, height: int, *, min_area_px: float, fps: float, background_s: float
    ) -> None:
        self.width, self.height = width, height
        self.min_area_px = min_area_px
        self._follow = min(1.0, 1.0 / (fps * _FOLLOW_S))
        self._absorb = min(1.0, 1.0 / (fps * background_s))
        self._kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
        self._bg: MatLike | None = None
        self._noise = 3.0
        self._frames = 0
        self.mask: Frame = np.zeros((height, width), np.uint8)
        self.global_change = False

    def apply(self, small: Frame) -> list[Blob]:
        """Blobs moving in `small` (a BGR frame at the analysis size)."""
        self._frames += 1
        f = small.astype(np.float32)
        if self._bg is None or self._frames <= _WARMUP_FRAMES:
            self._bg = f if self._bg is None else cv2.addWeighted(self._bg, 0.5, f, 0.5, 0)
            return []
        bg = self._bg
        diff = cv2.cvtColor(cv2.absdiff(f, bg), cv2.COLOR_BGR2GRAY)
        moving = diff > max(_MIN_THRESHOLD, _NOISE_K * self._noise)
        if moving.mean() > _GLOBAL_CHANGE:  # the light changed, not the scene
            self.global_change = True
            self._bg = f
            self.mask = np.zeros_like(self.mask)
            return []
        self.global_change = False
        if moving.any():
            moving[moving] = ~self._shadow(f, bg, moving)
        fg = cv2.morphologyEx(moving.astype(np.uint8) * 255, cv2.MORPH_OPEN, self._kernel)
        fg = cv2.dilate(fg, self._kernel, iterations=2)
        still = cv2.bitwise_not(fg)
        if self._frames % _NOISE_EVERY == 0:  # noise level from the background's own pixels
            mean_diff = cv2.mean(diff, mask=still)[0]
            self._noise += 0.2 * (mean_diff * 1.25 - self._noise)
        cv2.accumulateWeighted(f, bg, self._follow, mask=still)
        cv2.accumulateWeighted(f, bg, self._absorb, mask=fg)
        self.mask = fg
        contours, _ = cv2.findContours(fg, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        blobs = []
        for c in contours:
            area = cv2.contourArea(c)
            if area < self.min_area_px:
                continue
            x, y, w, h = cv2.boundingRect(c)
            blobs.append(Blob(x, y, w, h, int(area),
                              ((x + w / 2) / self.width, (y + h) / self.height)))  # fmt: skip
        return blobs

    @staticmethod
    def _shadow(f: MatLike, bg: MatLike, where: NDArray[np.bool_]) -> NDArray[np.bool_]:
        """Which of the pixels `where` are light changes only (shadows), in their order."""
        # Colour is compared on slightly blurred copies: sensor noise would swamp it in the dark.
        fp, bp = cv2.blur(f, (5, 5))[where], cv2.blur(bg, (5, 5))[where]
        fs, bs = fp.sum(axis=1) + 1.0, bp.sum(axis=1) + 1.0
        ratio = fs / bs
        chroma = np.abs(fp[:, 2] / fs - bp[:, 2] / bs) + np.abs(fp[:, 1] / fs - bp[:, 1] / bs)
        lo, hi = _SHADOW_RATIO
        # Darker (a shadow falls) or lighter (a shadow the background still holds moves away).
        light_only = ((ratio > lo) & (ratio < hi)) | ((ratio > 1 / hi) & (ratio < 1 / lo))
        shadow: NDArray[np.bool_] = light_only & (chroma < _SHADOW_CHROMA)
        return shadow
