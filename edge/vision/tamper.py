"""Tampering: a covered lens, a defocused lens, a camera turned away.

Measured on a small grey copy of each frame, against the camera's own baseline so that one
threshold suits every scene:
- covered: the view is featureless (its grey levels hardly spread), dark or not;
- blurred: sharpness (variance of the Laplacian over the contrast, so light level does not matter)
  falls below a share of its usual value;
- moved: the view no longer matches the reference view taken after start-up (phase correlation
  finds a shift, or the correlation itself collapses). People passing change only part of the
  view and do not move the match.
After a long time in a new position the new view becomes the reference: the alert ends, the
incident it raised stays for people to look at.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from cv2.typing import MatLike

from edge.vision.config import Tuning

_SIZE = (160, 90)
_WARMUP_FRAMES = 10
_BASELINE_ALPHA = 0.02
_REFERENCE_EVERY_S = 120.0  # a calm view refreshes the reference this often (slow scene changes)
_REBASE_AFTER_S = 600.0  # a view moved for this long becomes the new normal


@dataclass(frozen=True, slots=True)
class TamperState:
    covered: bool
    blurred: bool
    moved: bool
    sharpness: float
    match: float
    shift: float
    std: float


class TamperDetector:
    def __init__(self, tuning: Tuning) -> None:
        self.tuning = tuning
        self._window = cv2.createHanningWindow(_SIZE, cv2.CV_32F)
        self._sharp_seen: list[float] = []
        self.baseline: float | None = None
        self.reference: MatLike | None = None
        self._reference_t = 0.0
        self._moved_since: float | None = None

    def check(self, frame: MatLike, t: float, *, busy: bool = False) -> TamperState:
        """The state of the view in `frame` (BGR, any size) at `t`; `busy`: much is moving, so
        the view is not a good reference."""
        grey = cv2.resize(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), _SIZE,
                          interpolation=cv2.INTER_AREA).astype(np.float32)  # fmt: skip
        mean, std = (float(v[0][0]) for v in cv2.meanStdDev(grey))
        covered = std < self.tuning.covered_std
        lap_std = float(cv2.meanStdDev(cv2.Laplacian(grey, cv2.CV_32F))[1][0][0])
        sharpness = lap_std * lap_std / max(std * std, 1.0)
        norm = (grey - mean) / (std if std > 1e-3 else 1.0)
        match, shift = 1.0, 0.0
        if self.reference is not None and not covered:
            match = float(cv2.mean(cv2.multiply(norm, self.reference))[0])
            # phaseCorrelate applies the window to its inputs in place: give it copies.
            (dx, dy), _ = cv2.phaseCorrelate(self.reference.copy(), norm.copy(), self._window)
            shift = float(np.hypot(dx, dy)) / _SIZE[0]
        blurred = (
            not covered and self.baseline is not None
            and sharpness < self.tuning.blur_ratio * self.baseline
        )  # fmt: skip
        moved = (
            not covered and not blurred and self.reference is not None
            and (shift > self.tuning.moved_shift or match < self.tuning.moved_match)
        )  # fmt: skip
        calm = not (covered or blurred or moved or busy)
        if calm:
            self._learn(sharpness, norm, t)
        self._moved_since = (self._moved_since or t) if moved else None
        if moved and self._moved_since is not None and t - self._moved_since >= _REBASE_AFTER_S:
            self.reference, self._reference_t, self._moved_since = norm, t, None
        return TamperState(covered, blurred, moved, sharpness, match, shift, std)

    def _learn(self, sharpness: float, norm: MatLike, t: float) -> None:
        if self.baseline is None:
            self._sharp_seen.append(sharpness)
            if len(self._sharp_seen) >= _WARMUP_FRAMES:
                self.baseline = float(np.median(self._sharp_seen))
                self.reference, self._reference_t = norm, t
            return
        self.baseline += _BASELINE_ALPHA * (sharpness - self.baseline)
        if t - self._reference_t >= _REFERENCE_EVERY_S:
            self.reference, self._reference_t = norm, t
