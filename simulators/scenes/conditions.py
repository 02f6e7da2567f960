"""The conditions a street camera works in: moving cloud shadows, rain and snow, night with
street lamps, IR night mode, auto-exposure steps, foliage in the wind and a shaking pole.

The expensive parts (textures, light maps, weather layers) are made once per scene; per frame
the renderer only shifts, samples and adds them, so hours of footage render in minutes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from cv2.typing import MatLike
from numpy.typing import NDArray

from simulators.scenes.geometry import PoleCamera

Point = tuple[float, float]
_CLOUD_PX_M = 4.0  # metres per texel of the cloud texture (512 texels: a 2 km period)


@dataclass(frozen=True, slots=True)
class Clouds:
    """Cloud shadows sliding over the ground: `darkness` is how much darker the ground is in
    shadow (0.2, 0.4, 0.6), `speed_mps` their ground speed, `cover` the share in shadow."""

    darkness: float = 0.4
    speed_mps: float = 4.0
    heading_deg: float = 20.0  # direction of travel on the ground, 0 = +x (to the right)
    cover: float = 0.5
    size_m: float = 80.0  # typical size of a cloud's shadow


@dataclass(frozen=True, slots=True)
class Tree:
    """A tree whose crown sways in the wind; it moves, but nobody is there."""

    x: float
    y: float
    height_m: float = 6.0
    crown_m: float = 2.5


@dataclass(frozen=True, slots=True)
class ExposureStep:
    """The camera's auto-exposure over-reacting: the picture's gain jumps by `gain` (1.3: 30%
    brighter) at `at_s` and settles back over `settle_s`."""

    at_s: float
    gain: float
    settle_s: float = 3.0


@dataclass(frozen=True, slots=True)
class Conditions:
    clouds: Clouds | None = None
    rain: float = 0.0  # 0-1: drizzle to downpour
    snow: float = 0.0  # 0-1
    night: bool = False  # dark but for street lamps and headlights
    ir: bool = False  # night seen by the camera's IR illuminator: monochrome
    lamps: tuple[Point, ...] = ()  # street lamps' ground positions (lit at night)
    trees: tuple[Tree, ...] = ()
    wind: float = 1.0  # how strongly foliage sways
    shake_px: float = 0.0  # pole shake: the view jitters about this many pixels
    exposure: tuple[ExposureStep, ...] = ()
    drift: float = 0.05  # slow light change, ± this share over 10 minutes

    def tags(self) -> list[str]:
        out = []
        if self.clouds is not None:
            out.append(f"clouds{round(self.clouds.darkness * 100)}")
        for name, on in (("rain", self.rain > 0), ("snow", self.snow > 0),
                         ("night", self.night or self.ir), ("ir", self.ir),
                         ("foliage", bool(self.trees)), ("shake", self.shake_px > 0),
                         ("exposure", bool(self.exposure))):  # fmt: skip
            if on:
                out.append(name)
        return out


def cloud_texture(seed: int, clouds: Clouds, size: int = 512) -> NDArray[np.float32]:
    """A periodic field of shadow (0 lit, 1 in shadow) with soft edges, by low-passed noise."""
    rng = np.random.default_rng(seed + 101)
    white = rng.normal(0, 1, (size, size))
    f = np.fft.fftfreq(size)[:, None] ** 2 + np.fft.fftfreq(size)[None, :] ** 2
    sigma = _CLOUD_PX_M / clouds.size_m  # in cycles per texel
    smooth = np.real(np.fft.ifft2(np.fft.fft2(white) * np.exp(-f / (2 * sigma**2))))
    smooth = (smooth - smooth.mean()) / (smooth.std() + 1e-9)
    level = float(np.quantile(smooth, 1 - clouds.cover))
    soft = np.clip((smooth - level) / 0.5 + 0.5, 0, 1)  # a penumbra of ~0.5 sd, some metres
    out: NDArray[np.float32] = (soft * soft * (3 - 2 * soft)).astype(np.float32)
    return out


class CloudShadows:
    """Samples the cloud texture at each pixel's ground point (at a quarter of the frame's size,
    then enlarged: shadows are soft) as it slides with the wind."""

    def __init__(self, camera: PoleCamera, clouds: Clouds, w: int, h: int, seed: int) -> None:
        self.clouds = clouds
        self.size = (w, h)
        self.texture = cloud_texture(seed, clouds)
        gx, gy = camera.ground_maps(max(16, w // 4), max(9, h // 4))
        self.gx, self.gy = gx / _CLOUD_PX_M, np.minimum(gy, 400.0) / _CLOUD_PX_M
        a = math.radians(clouds.heading_deg)
        self.v = (math.cos(a) * clouds.speed_mps / _CLOUD_PX_M,
                  math.sin(a) * clouds.speed_mps / _CLOUD_PX_M)  # fmt: skip

    def factor(self, t: float) -> MatLike:
        """A 3-channel uint8 light factor (255 = fully lit) for the whole frame at time t."""
        mx = (self.gx - self.v[0] * t).astype(np.float32)
        my = (self.gy - self.v[1] * t).astype(np.float32)
        shade = cv2.remap(self.texture, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
        lit = cv2.resize(255 * (1 - self.clouds.darkness * shade), self.size).astype(np.uint8)
        return cv2.cvtColor(lit, cv2.COLOR_GRAY2BGR)


def lamp_light(gx: NDArray[np.float32], gy: NDArray[np.float32], lamps: tuple[Point, ...],
               ambient: float = 0.1, reach_m: float = 6.0) -> NDArray[np.float32]:  # fmt: skip
    """Light on the ground at night: a dim ambient level and a pool under each lamp."""
    light = np.full(gx.shape, ambient, np.float32)
    for lx, ly in lamps:
        d2 = (gx - lx) ** 2 + (gy - ly) ** 2
        light += 0.9 * np.exp(-d2 / (2 * reach_m**2)).astype(np.float32)
    out: NDArray[np.float32] = np.minimum(light, 1.1)
    return out


def ir_falloff(gx: NDArray[np.float32], gy: NDArray[np.float32], mount_m: float
               ) -> NDArray[np.float32]:  # fmt: skip
    """The IR illuminator's light: bright near the pole, falling with the square of distance."""
    d2 = gx**2 + gy**2 + mount_m**2
    out: NDArray[np.float32] = np.clip(130.0 / d2 + 0.08, 0, 1.2).astype(np.float32)
    return out


def exposure_gain(t: float, steps: tuple[ExposureStep, ...]) -> float:
    return 1.0 + sum((s.gain - 1) * math.exp(-(t - s.at_s) / s.settle_s)
                     for s in steps if t >= s.at_s)  # fmt: skip


def shake(t: float, amplitude: float, seed: int) -> tuple[float, float]:
    """The pole's sway and vibration: a few incommensurate sines (jittery at 5 fps)."""
    if amplitude <= 0:
        return 0.0, 0.0
    p = seed * 0.37
    dx = math.sin(2.1 * t + p) + 0.6 * math.sin(7.3 * t + 2 * p) + 0.4 * math.sin(13.7 * t + p)
    dy = math.sin(1.7 * t + 3 * p) + 0.5 * math.sin(9.1 * t + p)
    return amplitude * dx / 2.0, amplitude * dy / 1.5


def precipitation(w: int, h: int, seed: int, rain: float, snow: float) -> NDArray[np.uint8]:
    """One tile of rain streaks and snowflakes, twice the frame each way so a shifted window of
    it is always whole; the renderer adds a window of it to each frame."""
    rng = np.random.default_rng(seed + 202)
    tile = np.zeros((h, w, 3), np.uint8)
    for _ in range(int(rain * w * h / 300)):
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        length = int(rng.integers(h // 30, h // 10))
        v = int(rng.integers(25, 70))
        cv2.line(tile, (x, y), (x + length // 6, y + length), (v, v, v), 1)
    for _ in range(int(snow * w * h / 400)):
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        r = int(rng.choice([1, 1, 1, 2, 2, 3]))
        v = int(rng.integers(120, 210))
        cv2.circle(tile, (x, y), r, (v, v, v), -1)
    out: NDArray[np.uint8] = np.tile(tile, (2, 2, 1))
    return out


def draw_trees(img: MatLike, trees: tuple[Tree, ...], camera: PoleCamera, t: float, w: int,
               h: int, wind: float, light: float, seed: int) -> None:  # fmt: skip
    """Trunks and swaying crowns: leaf clusters move more the higher they are."""
    for k, tree in enumerate(trees):
        base = camera.project(tree.x, tree.y)
        top = camera.project(tree.x, tree.y, tree.height_m)
        s = (base[1] - top[1]) * h / tree.height_m
        bark = tuple(int(c * light) for c in (30, 50, 70))
        crown_z = tree.height_m - tree.crown_m
        trunk_top = camera.project(tree.x, tree.y, crown_z)
        cv2.line(img, (int(base[0] * w), int(base[1] * h)),
                 (int(trunk_top[0] * w), int(trunk_top[1] * h)), bark, max(2, int(0.25 * s)))  # fmt: skip
        rng = np.random.default_rng(seed * 31 + k)
        n = 36
        offs = rng.normal(0, 0.5, (n, 2)) * tree.crown_m
        phase = rng.uniform(0, 2 * math.pi, n)
        greens = rng.integers(0, 60, n)
        gust = 0.6 + 0.4 * math.sin(0.4 * t + k)
        for i in range(n):
            lift = 0.5 + offs[i, 1] / (2 * tree.crown_m)
            sway = wind * gust * 0.35 * (0.5 + lift) * (math.sin(2.4 * t + phase[i])
                                                        + 0.5 * math.sin(5.9 * t + 2 * phase[i]))  # fmt: skip
            cx = trunk_top[0] * w + (offs[i, 0] + sway) * s
            cy = trunk_top[1] * h - (tree.crown_m * 0.9 + offs[i, 1]) * s
            g = int(greens[i])
            colour = (int((30 + g // 2) * light), int((90 + g) * light), int((40 + g // 3) * light))
            cv2.circle(
                img, (int(cx), int(cy)), max(2, int(0.45 * tree.crown_m * s / 2)), colour, -1
            )
