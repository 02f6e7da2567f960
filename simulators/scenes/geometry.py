"""A camera on a pole looking down at a square: the ground plane seen in true perspective.

Ground coordinates are metres: x to the right of the pole, y away from it along the view, z up.
Image coordinates are fractions of the frame (x right, y down), as zones are given. The camera is
`mount_m` above the ground, tilted down by `tilt_deg`, with a horizontal field of view
`hfov_deg`; projection is the pinhole model, so a person 1.7 m tall is large at 5 m and small
at 30 m, and straight paths on the ground stay straight in the picture.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Point = tuple[float, float]


@dataclass(frozen=True, slots=True)
class PoleCamera:
    mount_m: float = 6.0
    tilt_deg: float = 30.0
    hfov_deg: float = 70.0
    aspect: float = 16 / 9  # width over height

    @property
    def _f(self) -> float:
        """Focal length as a share of the frame's width."""
        return 0.5 / math.tan(math.radians(self.hfov_deg) / 2)

    def depth(self, x: float, y: float, z: float = 0.0) -> float:
        """Distance along the optical axis (metres) of a point: what scales its size."""
        t = math.radians(self.tilt_deg)
        return y * math.cos(t) + (self.mount_m - z) * math.sin(t)

    def project(self, x: float, y: float, z: float = 0.0) -> Point:
        """The image point (fractions) of a ground point at height z."""
        t = math.radians(self.tilt_deg)
        h = self.mount_m - z
        depth = y * math.cos(t) + h * math.sin(t)
        down = -y * math.sin(t) + h * math.cos(t)
        depth = max(depth, 1e-3)
        return (0.5 + self._f * x / depth, 0.5 + self._f * self.aspect * down / depth)

    def ground(self, u: float, v: float) -> Point:
        """The ground point (metres) seen at image point (u, v); ValueError above the horizon."""
        t = math.radians(self.tilt_deg)
        a = (u - 0.5) / self._f
        b = (v - 0.5) / (self._f * self.aspect)
        drop = b * math.cos(t) + math.sin(t)
        if drop <= 1e-6:
            raise ValueError(f"image point ({u}, {v}) is above the horizon")
        k = self.mount_m / drop
        return (a * k, k * (math.cos(t) - b * math.sin(t)))

    def metres_to_px(self, x: float, y: float, width_px: int, z: float = 0.0) -> float:
        """Pixels per metre, across the view, at a ground point, in a frame `width_px` wide."""
        return self._f * width_px / max(self.depth(x, y, z), 1e-3)

    def ground_maps(self, w: int, h: int) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """Ground x and y (metres) of every pixel of a w x h frame; rows above the horizon get
        a far distance (they are sky or facade, never ground)."""
        t = math.radians(self.tilt_deg)
        u = (np.arange(w, dtype=np.float32) + 0.5) / w
        v = (np.arange(h, dtype=np.float32) + 0.5) / h
        a = (u - 0.5) / self._f
        b = (v - 0.5) / (self._f * self.aspect)
        drop = np.maximum(b * math.cos(t) + math.sin(t), 1e-3)
        k = self.mount_m / drop  # per row
        gy = (k * (math.cos(t) - b * math.sin(t))).astype(np.float32)
        gx = (a[None, :] * k[:, None]).astype(np.float32)
        return gx, np.repeat(gy[:, None], w, axis=1)


def along(waypoints: tuple[tuple[float, float, float], ...], t: float) -> Point | None:
    """Where a path of timed waypoints (t_s, x, y) is at `t`, in straight legs between them;
    None before the first and after the last."""
    w = waypoints
    if t < w[0][0] or t > w[-1][0]:
        return None
    for (t0, x0, y0), (t1, x1, y1) in itertools.pairwise(w):
        if t0 <= t <= t1:
            a = 0.0 if t1 == t0 else (t - t0) / (t1 - t0)
            return (x0 + a * (x1 - x0), y0 + a * (y1 - y0))
    return (w[-1][1], w[-1][2])
