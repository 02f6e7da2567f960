"""The street renderer: a paved square seen from a pole camera, its figures, and its conditions,
frame by frame. Order follows the light: the scene (ground, figures, trees), the sun's cloud
shadows or the night's lamps and headlights, the weather in front of the lens, the lens (glare,
tampering, pole shake), then the sensor (IR monochrome, exposure gain, noise).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
from cv2.typing import MatLike
from numpy.typing import NDArray

from simulators.scenes import conditions as cond
from simulators.scenes.figures import Figure, draw, shadow
from simulators.scenes.geometry import PoleCamera
from simulators.scenes.ground import square

Frame = MatLike
RENDER_VERSION = 3  # bump when what a scene looks like changes: cached clips are made again


class StreetRenderer:
    def __init__(self, camera: PoleCamera, conditions: cond.Conditions, w: int, h: int,
                 seed: int, noise: float) -> None:  # fmt: skip
        self.camera, self.c, self.w, self.h, self.seed = camera, conditions, w, h, seed
        gx, gy = camera.ground_maps(w, h)
        day = square(camera, w, h, seed, conditions.lamps)
        if conditions.snow > 0:  # snow lying on the ground: whiter, less contrast
            day = cv2.addWeighted(day, 0.55, np.full_like(day, 225), 0.45, 0)
        if conditions.rain > 0:  # wet and dull
            day = cv2.convertScaleAbs(day, alpha=0.8, beta=8)
        self.light_map: NDArray[np.float32] | None = None
        if conditions.ir:
            self.light_map = cond.ir_falloff(gx, gy, camera.mount_m)
        elif conditions.night:
            self.light_map = cond.lamp_light(gx, gy, conditions.lamps)
        if self.light_map is not None:
            tint = (0.75, 0.9, 1.1) if not conditions.ir else (1.0, 1.0, 1.0)  # sodium lamps
            lit = day.astype(np.float32) * self.light_map[:, :, None] * np.array(tint, np.float32)
            day = np.clip(lit, 0, 255).astype(np.uint8)
        self.base = day
        self.clouds = (cond.CloudShadows(camera, conditions.clouds, w, h, seed)
                       if conditions.clouds is not None and not conditions.night else None)  # fmt: skip
        self.weather = (cond.precipitation(w, h, seed, conditions.rain, conditions.snow)
                        if conditions.rain > 0 or conditions.snow > 0 else None)  # fmt: skip
        rng = np.random.default_rng(seed + 1)
        angle = float(rng.uniform(0.6, 2.5))  # the sun behind or beside the camera, low or high
        reach = float(rng.uniform(0.5, 1.4))
        self.sun = (reach * math.cos(angle), reach * math.sin(angle))
        self.full_sun = np.full((h, w, 3), 255, np.uint8)
        sd = noise * (1.8 if conditions.night or conditions.ir else 1.0)  # gain up at night
        channels = 1 if conditions.ir else 3
        self.noise: list[tuple[Frame, Frame]] = []
        for _ in range(8):
            n = rng.normal(0, sd, (h, w, channels))
            pos, neg = np.clip(n, 0, 255).astype(np.uint8), np.clip(-n, 0, 255).astype(np.uint8)
            if channels == 1:
                pos, neg = np.repeat(pos, 3, axis=2), np.repeat(neg, 3, axis=2)
            self.noise.append((pos, neg))

    def _light_at(self, fig: Figure, t: float) -> float:
        if self.light_map is None:
            return 1.0
        p = fig.at(t)
        if p is None:
            return 1.0
        x = min(self.w - 1, max(0, int(p[0] * self.w)))
        y = min(self.h - 1, max(0, int(p[1] * self.h)))
        return float(self.light_map[y, x]) * (1.3 if self.c.ir else 1.0)

    def frame(self, t: float, index: int, figures: Sequence[Figure], tampers: Sequence[Any],
              light: float) -> Frame:  # fmt: skip
        """The frame at time t: `tampers` are the scene's Tamper spans, `light` its level."""
        from simulators.scenes.base import tampered  # the lens effects, shared with flat scenes

        img = self.base.copy()
        w, h, c = self.w, self.h, self.c
        visible = [f for f in figures if f.ground_at(t) is not None]
        for fig in sorted(visible, key=lambda f: -(f.ground_at(t) or (0.0, 0.0))[1]):
            draw(img, fig, t, w, h, self._light_at(fig, t))
        if c.trees:
            tl = 1.0 if self.light_map is None else 0.35
            cond.draw_trees(img, c.trees, self.camera, t, w, h, c.wind, tl, self.seed)
        if not (c.night or c.ir):  # sunshine: figures cast shadows, clouds shade the square
            lit = self.clouds.factor(t) if self.clouds is not None else self.full_sun
            if visible:
                lit = lit.copy() if lit is self.full_sun else lit
                for fig in visible:
                    poly = shadow(fig, t, w, h, self.sun)
                    if poly is None:
                        continue
                    x, y = np.clip(poly[0], 0, (w - 1, h - 1))
                    here = int(lit[y, x, 0])  # under a cloud's shadow, no sharp shadow of one's own
                    dark = int(here * (1 - 0.45 * max(0.0, (here - 150) / 105)))
                    cv2.fillConvexPoly(lit, poly, (dark, dark, dark))
            if lit is not self.full_sun:
                img = cv2.multiply(img, lit, scale=1 / 255)
        if c.night or c.ir:
            cars = [f for f in visible if f.shape == "car"]
            if cars:
                img = cv2.add(img, self._headlights(cars, t))
        if self.weather is not None:
            fall = 0.9 if c.rain > 0 else 0.08  # frame heights per second
            oy = int((t * fall * h + (index * 7919 % h if c.rain > 0 else 0)) % h)
            ox = int((t * 0.02 * w + 3 * math.sin(0.5 * t) * (c.snow > 0)) % w)
            img = cv2.add(img, self.weather[h - oy : 2 * h - oy, ox : ox + w])
        for tamper in tampers:
            if tamper.start_s <= t <= tamper.end_s:
                img = tampered(img, tamper)
        dx, dy = cond.shake(t, c.shake_px, self.seed)
        if dx or dy:
            m = np.array([[1, 0, dx], [0, 1, dy]], np.float32)
            img = cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REPLICATE)
        if c.ir:
            img = cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
        gain = light * cond.exposure_gain(t, c.exposure)
        if abs(gain - 1.0) > 1e-3:
            img = cv2.convertScaleAbs(img, alpha=gain)
        pos, neg = self.noise[index % len(self.noise)]
        out: Frame = cv2.subtract(cv2.add(img, pos), neg)
        return out

    def _headlights(self, cars: list[Figure], t: float) -> Frame:
        """Beams on the ground ahead of each car, and glare when a car faces the camera."""
        sw, sh = max(16, self.w // 4), max(9, self.h // 4)
        layer = np.zeros((sh, sw), np.float32)
        cam = self.camera
        for car in cars:
            g = car.ground_at(t)
            _, vx, vy = car.motion(t)
            speed = math.hypot(vx, vy)
            if g is None or speed < 0.1:
                continue
            hx, hy = vx / speed, vy / speed
            front = (g[0] + 2.0 * hx, g[1] + 2.0 * hy)
            beam = [front]
            for a in (-0.3, 0.3):
                ca, sa = math.cos(a), math.sin(a)
                dx, dy = hx * ca - hy * sa, hx * sa + hy * ca
                beam.append((front[0] + 22 * dx, front[1] + 22 * dy))
            pts = [cam.project(x, max(y, 0.5)) for x, y in beam]
            poly = np.array([[int(u * sw), int(v * sh)] for u, v in pts], np.int32)
            cv2.fillConvexPoly(layer, poly, 110.0)
            dist = math.hypot(front[0], front[1])
            toward = -(front[0] * hx + front[1] * hy) / max(dist, 1e-6)  # 1: straight at us
            lamp = cam.project(front[0], front[1], 0.7)
            strength = 255.0 if toward > 0.6 else 160.0
            radius = 1 + int(max(0.0, toward - 0.5) * 0.5 * sw)
            cv2.circle(layer, (int(lamp[0] * sw), int(lamp[1] * sh)), radius, strength, -1)
        glow = cv2.GaussianBlur(layer, (0, 0), 1.5)
        big = cv2.resize(np.clip(glow, 0, 255).astype(np.uint8), (self.w, self.h))
        out: Frame = cv2.merge([(big * 0.85).astype(np.uint8), (big * 0.95).astype(np.uint8), big])
        return out
