"""What moves on the square, on the ground plane: articulated walkers, dogs and cats, cars, and
bags left behind. A figure follows straight legs between timed ground waypoints (t_s, x_m, y_m);
its image position (`at`, fractions, the feet) is the camera's projection, and the renderer
draws it from its ground position, so its size follows its distance.

Each figure has a class: only persons make intrusion, loitering, crowd and counting truth; an
animal or a vehicle in a zone is a nuisance; an object is what a person leaves behind.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
from cv2.typing import MatLike
from numpy.typing import NDArray

from simulators.scenes.geometry import PoleCamera, along

Point = tuple[float, float]
FigureClass = Literal["person", "animal", "vehicle", "object"]
Shape = Literal["walker", "dog", "cat", "car", "bag"]
Colour = tuple[int, int, int]

_SHAPE_CLASS: dict[str, FigureClass] = {
    "walker": "person", "dog": "animal", "cat": "animal", "car": "vehicle", "bag": "object",
}  # fmt: skip
_CLOTHES = [(40, 40, 150), (150, 60, 30), (30, 100, 40), (25, 25, 25), (160, 160, 60),
            (90, 30, 120), (60, 130, 190), (200, 200, 205), (70, 70, 70), (30, 60, 110)]  # fmt: skip
_FUR = [(40, 60, 90), (30, 30, 30), (160, 170, 180), (60, 110, 160), (20, 40, 60)]


@dataclass(frozen=True, slots=True)
class Figure:
    camera: PoleCamera
    path: tuple[tuple[float, float, float], ...]  # (t_s, x_m, y_m); not in view outside it
    shape: Shape = "walker"
    height_m: float = 1.7
    seed: int = 0  # colours and gait
    carrying_until: float | None = None  # a walker holding a bag until then (drawn)

    @property
    def kind(self) -> FigureClass:
        return _SHAPE_CLASS[self.shape]

    def ground_at(self, t: float) -> Point | None:
        return along(self.path, t)

    def at(self, t: float) -> Point | None:
        """Where the feet are in the image (fractions), or None when not in view."""
        g = self.ground_at(t)
        return None if g is None else self.camera.project(*g)

    @property
    def waypoints(self) -> tuple[tuple[float, float, float], ...]:
        """The path in image fractions: straight on the ground is straight in the picture, so
        line crossings of these legs are the figure's crossings."""
        return tuple((t, *self.camera.project(x, y)) for t, x, y in self.path)

    def motion(self, t: float) -> tuple[float, float, float]:
        """Distance walked so far (m, for the gait's phase) and the ground velocity (m/s)."""
        walked = 0.0
        for (t0, x0, y0), (t1, x1, y1) in itertools.pairwise(self.path):
            leg = math.hypot(x1 - x0, y1 - y0)
            if t <= t1:
                a = 0.0 if t1 == t0 else (t - t0) / (t1 - t0)
                dt = max(t1 - t0, 1e-6)
                return walked + a * leg, (x1 - x0) / dt, (y1 - y0) / dt
            walked += leg
        return walked, 0.0, 0.0


def palette(seed: int, options: list[Colour]) -> Colour:
    return options[seed % len(options)]


def _shade(colour: Colour, light: float) -> Colour:
    return (int(min(255, colour[0] * light)), int(min(255, colour[1] * light)),
            int(min(255, colour[2] * light)))  # fmt: skip


def draw(img: MatLike, fig: Figure, t: float, w: int, h: int, light: float) -> None:
    """Draw the figure as it is at time t into img (w x h), lit by `light` (1: daylight)."""
    g = fig.ground_at(t)
    if g is None:
        return
    cam = fig.camera
    fx, fy = cam.project(*g)
    foot = (fx * w, fy * h)
    head = cam.project(g[0], g[1], fig.height_m)
    scale = (fy - head[1]) * h / fig.height_m  # pixels per metre, upright, at this distance
    if scale <= 0:
        return
    walked, vx, vy = fig.motion(t)
    speed = math.hypot(vx, vy)
    # How much of the motion is across the view: legs spread sideways only then.
    across = abs(vx) / speed if speed > 1e-6 else 0.0
    facing = 1 if vx >= 0 else -1
    if fig.shape == "walker":
        _walker(img, fig, foot, scale, walked, speed, across, light, t)
    elif fig.shape in ("dog", "cat"):
        _animal(img, fig, foot, scale, walked, speed, across, facing, light)
    elif fig.shape == "car":
        _car(img, fig, foot, scale, across, light)
    else:
        _bag(img, foot, scale, light, fig.height_m)


def shadow(fig: Figure, t: float, w: int, h: int, sun: Point) -> NDArray[np.int32] | None:
    """The figure's own shadow on the ground in sunshine, as an image polygon: a strip from its
    feet away from the sun, `sun` being the shadow's ground direction and length per metre of
    height."""
    g = fig.ground_at(t)
    if g is None:
        return None
    half = {"walker": 0.22, "dog": 0.3, "cat": 0.15, "car": 1.0, "bag": 0.35}[fig.shape]
    length = fig.height_m * math.hypot(*sun)
    ux, uy = sun[0] / math.hypot(*sun), sun[1] / math.hypot(*sun)
    px, py = -uy, ux
    tip = (g[0] + ux * length, g[1] + uy * length)
    ground = [(g[0] + px * half, g[1] + py * half), (tip[0] + px * half * 0.7, tip[1] + py * half * 0.7),
              (tip[0] - px * half * 0.7, tip[1] - py * half * 0.7), (g[0] - px * half, g[1] - py * half)]  # fmt: skip
    pts = [fig.camera.project(x, max(y, 0.3)) for x, y in ground]
    return np.array([[round(u * w), round(v * h)] for u, v in pts], np.int32)


def _pt(p: tuple[float, float]) -> tuple[int, int]:
    return (round(p[0]), round(p[1]))


def _walker(img: MatLike, fig: Figure, foot: tuple[float, float], s: float, walked: float,
            speed: float, across: float, light: float, t: float) -> None:  # fmt: skip
    shirt = _shade(palette(fig.seed, _CLOTHES), light)
    trousers = _shade(palette(fig.seed // 2 + 1, _CLOTHES[3:]), light)
    skin = _shade((70, 100, 150), light)
    hm = fig.height_m
    stride = 0.75 * hm / 1.7
    swing = math.sin(2 * math.pi * walked / (2 * stride)) if speed > 0.05 else 0.0
    leg = 0.5 * hm * s
    hip = (foot[0], foot[1] - leg)
    spread = 0.22 * hm * s * swing * (0.25 + 0.75 * across)
    thick = max(1, round(0.07 * hm * s))
    for sign in (1, -1):
        cv2.line(img, _pt(hip), _pt((foot[0] + sign * spread, foot[1])), trousers, thick)
    torso_h = 0.32 * hm * s
    shoulder = (hip[0], hip[1] - torso_h)
    half_w = 0.12 * hm * s * (1.0 - 0.25 * across)
    torso = np.array([_pt((hip[0] - half_w * 0.8, hip[1])), _pt((hip[0] + half_w * 0.8, hip[1])),
                      _pt((shoulder[0] + half_w, shoulder[1])), _pt((shoulder[0] - half_w, shoulder[1]))],
                     np.int32)  # fmt: skip
    cv2.fillConvexPoly(img, torso, shirt)
    arm = 0.3 * hm * s
    arm_thick = max(1, round(0.05 * hm * s))
    carrying = fig.carrying_until is not None and t < fig.carrying_until
    for sign in (1, -1):
        a = -sign * swing * 0.6 * (0.25 + 0.75 * across)
        hand = (shoulder[0] + sign * half_w + arm * math.sin(a), shoulder[1] + arm * math.cos(a))
        cv2.line(
            img, _pt((shoulder[0] + sign * half_w, shoulder[1] + 2)), _pt(hand), shirt, arm_thick
        )
        if carrying and sign == 1:
            _bag(img, (hand[0], hand[1] + 0.3 * s), s, light)
    r = max(1, round(0.065 * hm * s))
    cv2.circle(img, _pt((shoulder[0], shoulder[1] - r * 1.1)), r, skin, -1)


def _animal(img: MatLike, fig: Figure, foot: tuple[float, float], s: float, walked: float,
            speed: float, across: float, facing: int, light: float) -> None:  # fmt: skip
    fur = _shade(palette(fig.seed, _FUR), light)
    hm = fig.height_m  # at the shoulder
    length = (1.6 if fig.shape == "dog" else 1.5) * hm * s * (0.35 + 0.65 * across)
    leg = 0.5 * hm * s
    body_y = foot[1] - leg - 0.18 * hm * s
    swing = math.sin(2 * math.pi * walked / (1.2 * hm)) if speed > 0.05 else 0.0
    thick = max(1, round(0.1 * hm * s))
    for end in (-0.35, 0.35):
        x = foot[0] + end * length
        for sign in (1, -1):
            cv2.line(img, _pt((x, body_y)), _pt((x + sign * swing * 0.12 * length, foot[1])),
                     fur, thick)  # fmt: skip
    axes = (max(2, round(length / 2)), max(1, round(0.22 * hm * s)))
    cv2.ellipse(img, _pt((foot[0], body_y)), axes, 0, 0, 360, fur, -1)
    head = (foot[0] + facing * 0.5 * length, body_y - 0.25 * hm * s)
    cv2.circle(img, _pt(head), max(1, round(0.18 * hm * s)), fur, -1)
    tail = (foot[0] - facing * 0.7 * length, body_y - 0.3 * hm * s)
    cv2.line(
        img, _pt((foot[0] - facing * 0.45 * length, body_y)), _pt(tail), fur, max(1, thick // 2)
    )


def _car(img: MatLike, fig: Figure, foot: tuple[float, float], s: float, across: float,
         light: float) -> None:  # fmt: skip
    paint = _shade(palette(fig.seed + 3, _CLOTHES), light)
    length = (1.8 + 2.4 * across) * s
    body_h = 1.0 * s
    x0, x1 = foot[0] - length / 2, foot[0] + length / 2
    cv2.rectangle(img, _pt((x0, foot[1] - body_h)), _pt((x1, foot[1] - 0.25 * s)), paint, -1)
    roof = (x0 + 0.2 * length, foot[1] - 1.5 * s, x1 - 0.2 * length)
    cv2.rectangle(img, _pt((roof[0], roof[1])), _pt((roof[2], foot[1] - body_h)),
                  _shade((60, 50, 40), light), -1)  # fmt: skip
    for wx in (x0 + 0.2 * length, x1 - 0.2 * length):
        cv2.circle(img, _pt((wx, foot[1] - 0.3 * s)), max(1, round(0.33 * s)), (15, 15, 15), -1)


def _bag(img: MatLike, foot: tuple[float, float], s: float, light: float, height: float = 0.32
         ) -> None:  # fmt: skip
    w, h = 1.4 * height * s, height * s
    cv2.rectangle(img, _pt((foot[0] - w / 2, foot[1] - h)), _pt((foot[0] + w / 2, foot[1])),
                  _shade((20, 45, 70), light), -1)  # fmt: skip
    cv2.line(img, _pt((foot[0] - w / 4, foot[1] - h)), _pt((foot[0], foot[1] - h * 1.4)),
             _shade((15, 30, 50), light), max(1, round(0.04 * s)))  # fmt: skip
