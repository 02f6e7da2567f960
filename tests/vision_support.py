"""Synthetic camera footage for the people and tracking tests: figures (people, dogs, bags)
drawn with known sizes on a textured, noisy background, and the analytics run over it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import cv2

from edge.vision.analytics import AlertOut, CameraAnalytics, CountOut, Frame, Output
from edge.vision.config import CameraSettings
from gateway.messages import AlertPhase
from simulators.scenes import Scene

START = datetime(2026, 11, 25, 23, 0, tzinfo=UTC)
# A camera on a pole: a person 0.3 of the frame tall at the bottom, 0.1 at mid-height.
CALIBRATION = {"person_heights": [{"row": 0.9, "height": 0.3}, {"row": 0.45, "height": 0.1}]}

Place = tuple[float, float, float]  # foot x, foot y (frame fractions), person height there
Path = Callable[[float], Place | None]


def height_at(row: float) -> float:
    """The true person height at a foot row for CALIBRATION's camera."""
    return 0.1 + (row - 0.45) * (0.2 / 0.45)


def person(img: Frame, x: float, y: float, h: float, colour: tuple[int, int, int]) -> None:
    """A standing person `h` of the frame tall: body, head, feet at (x, y)."""
    hh, ww = img.shape[:2]
    ph = h * hh / 0.9  # the figure is 0.9 of this tall
    cx, cy = int(x * ww), int(y * hh)
    body = (max(3, int(ph * 0.18)), max(6, int(ph * 0.36)))
    cv2.ellipse(img, (cx, cy - body[1]), body, 0, 0, 360, colour, -1)
    cv2.circle(img, (cx, cy - 2 * body[1] - int(ph * 0.08)), max(3, int(ph * 0.1)),
               (60, 80, 110), -1)  # fmt: skip


def dog(img: Frame, x: float, y: float, h: float, colour: tuple[int, int, int]) -> None:
    """A dog where a person would be `h` tall: a third of that high, twice as long as high."""
    hh, ww = img.shape[:2]
    dh = h * hh * 0.35
    cx, cy = int(x * ww), int(y * hh)
    cv2.ellipse(img, (cx, cy - int(dh * 0.6)), (int(dh * 0.9), int(dh * 0.3)), 0, 0, 360,
                colour, -1)  # fmt: skip
    cv2.circle(img, (cx + int(dh * 0.9), cy - int(dh * 0.85)), max(2, int(dh * 0.22)), colour, -1)
    for dx in (-0.6, 0.6):
        cv2.line(img, (cx + int(dx * dh), cy - int(dh * 0.4)), (cx + int(dx * dh), cy), colour,
                 max(1, int(dh * 0.12)))  # fmt: skip


def bag(img: Frame, x: float, y: float, h: float, colour: tuple[int, int, int]) -> None:
    """A bag standing on the ground, sized for where a person would be `h` tall."""
    hh, ww = img.shape[:2]
    bw, bh = int(0.3 * h * hh), int(0.24 * h * hh)  # 0.5 m by 0.4 m beside 1.7 m
    cx, cy = int(x * ww), int(y * hh)
    cv2.rectangle(img, (cx - bw // 2, cy - bh), (cx + bw // 2, cy), colour, -1)


Draw = Callable[[Frame, float, float, float, tuple[int, int, int]], None]


@dataclass(frozen=True)
class Figure:
    draw: Draw
    path: Path
    colour: tuple[int, int, int] = (40, 40, 160)


def line(t0: float, t1: float, a: tuple[float, float], b: tuple[float, float],
         h: float | Callable[[float], float]) -> Path:  # fmt: skip
    """In view from t0 to t1, walking straight from a to b; `h` the height or a function of row."""

    def path(t: float) -> Place | None:
        if t < t0 or t > t1:
            return None
        k = (t - t0) / (t1 - t0)
        x, y = a[0] + k * (b[0] - a[0]), a[1] + k * (b[1] - a[1])
        return (x, y, h(y) if callable(h) else h)

    return path


def footage(figures: Sequence[Figure], seconds: float, settings: dict[str, Any],
            fps: float = 5.0) -> tuple[CameraAnalytics, list[Output]]:  # fmt: skip
    """The analytics for a camera with `settings`, run over the figures; everything it said."""
    background = Scene("background", seconds, seed=3, fps=fps)
    analytics = CameraAnalytics(
        CameraSettings.model_validate({"source": "synthetic", "fps": fps, **settings})
    )
    out: list[Output] = []
    for i in range(int(seconds * fps)):
        t = i / fps
        img = background.frame(i)
        places = [(f, f.path(t)) for f in figures]
        for f, p in sorted(places, key=lambda fp: fp[1][1] if fp[1] else 0.0):
            if p is not None:  # the nearer drawn last, over the farther
                f.draw(img, *p, f.colour)
        out += analytics.process(img, START + timedelta(seconds=t))
    return analytics, out + analytics.flush_counts(START + timedelta(seconds=seconds))


def counted(outputs: list[Output]) -> tuple[int, int]:
    """Crossings in and out over all counting-line readings."""
    counts = [o for o in outputs if isinstance(o, CountOut)]
    return sum(c.entered for c in counts), sum(c.exited for c in counts)


def started(outputs: list[Output]) -> list[tuple[str, str | None, float]]:
    """The alerts started: kind, zone, seconds into the footage."""
    return [(o.kind.value, o.zone, (o.when - START).total_seconds()) for o in outputs
            if isinstance(o, AlertOut) and o.phase is AlertPhase.START]  # fmt: skip
