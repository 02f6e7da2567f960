"""Tampering on synthetic frames: what must be told (a cover, a defocus, a turn, by day and by
IR night) and what must not (a moving cloud shadow, headlights with their glare and the camera's
exposure answering them, an exposure step), and zones analysed while tampering is only
suspected."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import cv2
import numpy as np
import pytest
from cv2.typing import MatLike

from edge.vision.analytics import AlertOut, CameraAnalytics
from edge.vision.config import CameraSettings, Tuning
from edge.vision.tamper import TamperDetector, TamperState
from gateway.messages import AlertPhase
from simulators import scenes
from simulators.scenes import Scene, Walker

Effect = Callable[[MatLike, float], MatLike]
START = datetime(2026, 11, 25, 23, 0, tzinfo=UTC)
ANALYSIS = (320, 180)  # what the analytics hands the detector; the clips here are made at it
FROM_S, UNTIL_S = 6.0, 14.0  # when an effect holds, in each clip here (20 s long)


def street(seed: int = 3, duration: float = 20.0) -> Scene:
    """A textured view with people walking across it (far from tampering)."""
    walkers = [Walker(((t0, -0.05, y), (t0 + 9, 1.05, y))) for t0, y in
               ((1, 0.5), (5, 0.8), (9, 0.6), (12, 0.9))]  # fmt: skip
    return Scene(f"street-{seed}", duration, seed=seed, width=ANALYSIS[0], height=ANALYSIS[1],
                 walkers=walkers)  # fmt: skip


def watch(
    scene: Scene, effect: Effect | None = None, *, night: bool = False
) -> list[tuple[float, TamperState]]:
    """The detector's verdict on every frame of `scene` with `effect` applied, as analysed;
    `night`: all of it seen in IR night mode (the lens's effect comes before the sensor's)."""
    detector = TamperDetector(Tuning())
    out = []
    for i in range(scene.frames()):
        t = i / scene.fps
        frame = scene.frame(i)
        if effect is not None and FROM_S <= t < UNTIL_S:
            frame = effect(frame, t - FROM_S)
        if night:
            frame = ir_night(frame, t)
        out.append((t, detector.check(frame, t)))
    return out


def confirmed(states: list[tuple[float, TamperState]]) -> set[str]:
    return {k for _, s in states for k in ("covered", "blurred", "moved") if getattr(s, k)}


def noise(frame: MatLike, sigma: float, seed: int) -> MatLike:
    grain = np.random.default_rng(seed).normal(0, sigma, frame.shape)
    out: MatLike = np.clip(frame.astype(np.float32) + grain, 0, 255).astype(np.uint8)
    return out


# ---- what is not tampering ----


def square(seed: int = 2, width: int = ANALYSIS[0], height: int = ANALYSIS[1]) -> MatLike:
    """A paved square seen from a pole: little texture (faint paving joints), a few benches and
    bins. Where the view has little structure of its own, a shadow's edge is most of it."""
    rng = np.random.default_rng(seed)
    img = np.full((height, width), 120, np.float32) + rng.normal(0, 5, (height, width))
    for x in range(0, width, 20):
        cv2.line(img, (x, 0), (x, height), 100, 1)
    for y in range(0, height, 15):
        cv2.line(img, (0, y), (width, y), 100, 1)
    for _ in range(6):
        x0, y0 = int(rng.integers(0, width - 30)), int(rng.integers(0, height - 20))
        x1, y1 = x0 + int(rng.integers(10, 30)), y0 + int(rng.integers(5, 20))
        cv2.rectangle(img, (x0, y0), (x1, y1), float(rng.integers(40, 200)), -1)
    return np.clip(cv2.merge([img * 0.95, img, img * 1.05]), 0, 255).astype(np.uint8)


def cloud_shadows(frame: MatLike, t: float, darkness: float = 0.4) -> MatLike:
    """Broken cloud: shadows `darkness` darker with soft irregular edges, drifting across the
    view so that one crosses it in 6 s (about 4 m/s over a 25 m wide square)."""
    h, w = frame.shape[:2]
    rng = np.random.default_rng(5)
    field = cv2.resize(rng.random((6, 24)).astype(np.float32), (4 * w, h),
                       interpolation=cv2.INTER_CUBIC)  # fmt: skip
    shade = cv2.GaussianBlur((field > 0.5).astype(np.float32), (0, 0), 5)
    x = int(t / 6.0 * w) % (3 * w)
    dark = 1.0 - darkness * shade[:, x : x + w]
    out: MatLike = (frame.astype(np.float32) * dark[:, :, None]).astype(np.uint8)
    return out


def test_moving_cloud_shadows_are_not_tampering() -> None:
    """Cloud shadows 40% darker drifting over a plain square, one crossing after another:
    nothing confirmed, nothing even suspected."""
    detector, plain = TamperDetector(Tuning()), square()
    states = []
    for i in range(150):
        t = i / 5
        frame = cloud_shadows(plain, t - 4) if t >= 4 else plain
        states.append((t, detector.check(noise(frame, 3.0, i), t)))
    assert confirmed(states) == set()
    assert not [t for t, s in states if getattr(s, "suspected", False)]


def headlights(frame: MatLike, t: float) -> MatLike:
    """A car turning toward the camera: its lamps' glare grows to a bright saturated halo over a
    fifth of the view, and the camera's auto-exposure darkens the rest to half, then the car
    passes and the exposure recovers."""
    h, w = frame.shape[:2]
    strength = min(1.0, t / 1.5) if t < 6 else max(0.0, 1 - (t - 6) / 1.5)
    gain = 1.0 - 0.5 * strength
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    x0 = (0.3 + 0.02 * t) * w  # the car comes on, moving a little
    halo = np.exp(-(((xx - x0) / (0.12 * w)) ** 2 + ((yy - 0.55 * h) / (0.15 * h)) ** 2))
    lit = frame.astype(np.float32) * gain + 400.0 * strength * halo[:, :, None]
    out: MatLike = np.clip(lit, 0, 255).astype(np.uint8)
    return out


def exposure_steps(frame: MatLike, t: float) -> MatLike:
    """Auto-exposure jumping 40% down and settling, then 30% up and settling."""
    gain = (0.6 + 0.3 * min(1.0, t / 2)) if t < 4 else (1.3 - 0.3 * min(1.0, (t - 4) / 2))
    return cv2.convertScaleAbs(frame, alpha=gain)


@pytest.mark.parametrize("effect", [headlights, exposure_steps], ids=["headlights", "exposure"])
def test_a_bright_light_or_an_exposure_change_is_not_blur(effect: Effect) -> None:
    states = watch(street(), effect)
    assert "blurred" not in confirmed(states)
    assert confirmed(states) == set()


def paving(seed: int = 4, width: int = ANALYSIS[0], height: int = ANALYSIS[1]) -> MatLike:
    """Paving stones of varied greys, 10 by 8 pixels, with darker joints: coarse texture that
    a shaking pole moves under every pixel."""
    rng = np.random.default_rng(seed)
    stones = rng.normal(110, 25, (height // 8 + 1, width // 10 + 1)).astype(np.float32)
    img = cv2.resize(stones, (stones.shape[1] * 10, stones.shape[0] * 8),
                     interpolation=cv2.INTER_NEAREST)[:height, :width].copy()  # fmt: skip
    img[:, ::10] -= 30
    img[::8, :] -= 30
    return np.clip(cv2.merge([img] * 3), 0, 255).astype(np.uint8)


def shaken_under_clouds(frame: MatLike, t: float) -> MatLike:
    """A pole swaying about a pixel while big cloud shadows pass: 8 s lit, 4 s darkening by
    40%, 8 s in shade, 4 s brightening; little sensor noise."""
    h, w = frame.shape[:2]
    m = np.array([[1, 0, 1.2 * np.sin(7.3 * t) + 0.6 * np.sin(13.7 * t)],
                  [0, 1, 0.8 * np.sin(9.1 * t + 1)]], np.float32)  # fmt: skip
    swayed = cv2.warpAffine(frame, m, (w, h), borderMode=cv2.BORDER_REFLECT)
    p = (t % 24.0) / 4.0
    k = 0.0 if p < 2 else p - 2 if p < 3 else 1.0 if p < 5 else 6 - p if p < 6 else 0.0
    return noise(cv2.convertScaleAbs(swayed, alpha=1.0 - 0.4 * k * k * (3 - 2 * k)), 1.0,
                 int(t * 5))  # fmt: skip


@pytest.mark.parametrize("defocus", [False, True], ids=["sharp", "defocused-in-shade"])
def test_shade_on_a_shaking_view_is_not_blur(defocus: bool) -> None:
    """Shake and a drifting shadow change every pixel between checks; that is not sensor
    noise, and taken for it, it ate the shaded picture's gradient energy: blur was confirmed
    on a sharp view. A real defocus in the shade is still told."""
    detector, stones = TamperDetector(Tuning()), paving()
    states = []
    for i in range(75):  # only the frames it measures: one every 0.8 s
        t = i * 0.8
        frame = defocused(stones, t) if defocus and 36 <= t < 46 else stones
        states.append((t, detector.check(shaken_under_clouds(frame, t), t)))
    assert confirmed(states) == ({"blurred"} if defocus else set())
    assert all(not s.blurred for t, s in states if not 36 <= t < 48)


def ir_night(frame: MatLike, t: float) -> MatLike:
    """IR night mode: a grey picture, a fifth as bright, noisy, lit by the camera's own IR
    lamp (brighter in the middle)."""
    h, w = frame.shape[:2]
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    falloff = 1.0 - 0.6 * (((xx - w / 2) / w) ** 2 + ((yy - h / 2) / h) ** 2) * 2
    dark = noise(cv2.merge([grey * 0.22 * falloff] * 3), 3.0, int(t * 5))
    return dark


def test_a_dark_ir_night_view_with_structure_is_not_covered() -> None:
    assert confirmed(watch(street(), night=True)) == set()


def test_switching_to_ir_night_and_back_is_not_tampering() -> None:
    """The camera's IR mode comes on (a grey, dark, noisy picture) and goes off again."""
    assert confirmed(watch(street(), ir_night)) == set()


def coloured(frame: MatLike, t: float) -> MatLike:
    """A daytime colour picture: the scene warmed toward orange, far from grey."""
    out: MatLike = cv2.addWeighted(frame, 0.6, np.full_like(frame, (40, 120, 220)), 0.4, 0)
    return out


def test_a_colour_view_switching_to_ir_is_learned_again_not_tampering() -> None:
    """Colour by day, then the camera's IR mode, bright where its lamp lights a near wall: a
    grey picture with as much structure as the colour one. The detector forgets the colour
    view and learns the grey one, mid-check, without failing."""
    detector = TamperDetector(Tuning())
    scene = street()
    states = []
    for i in range(scene.frames()):
        t = i / scene.fps
        frame = scene.frame(i)
        grey = noise(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), 3.0, i)  # one sensor channel
        frame = cv2.merge([grey] * 3) if FROM_S <= t < UNTIL_S else coloured(frame, t)
        states.append((t, detector.check(frame, t)))
    assert confirmed(states) == set()


# ---- what is tampering ----


def covered(frame: MatLike, t: float) -> MatLike:
    """A hand or a bag over the lens: dark, featureless but for the sensor's noise."""
    return noise(np.full_like(frame, 22), 4.0, int(t * 5))


def covered_at_night(frame: MatLike, t: float) -> MatLike:
    """A hand over the lens lit by the IR lamp beside it: bright grey, brightest at one edge."""
    h, w = frame.shape[:2]
    lit = np.tile(np.linspace(200, 120, w, dtype=np.float32), (h, 1))
    return noise(cv2.merge([lit] * 3), 4.0, int(t * 5))


def defocused(frame: MatLike, t: float) -> MatLike:
    """The lens turned out of focus."""
    return cv2.GaussianBlur(frame, (0, 0), 2)


def turned(frame: MatLike, t: float) -> MatLike:
    """The camera knocked aside: the view rotated by 6° and slid by a tenth of its width."""
    h, w = frame.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 6, 1.0)
    m[0, 2] += 0.1 * w
    return cv2.warpAffine(frame, m, (w, h), borderMode=cv2.BORDER_REFLECT)


_ELSEWHERE = Scene("elsewhere", 20, seed=11, width=ANALYSIS[0], height=ANALYSIS[1])


def turned_away(frame: MatLike, t: float) -> MatLike:
    """The camera turned to look at something else entirely."""
    return _ELSEWHERE.frame(int(t * 5))


@pytest.mark.parametrize(
    ("effect", "kind"),
    [(covered, "covered"), (covered_at_night, "covered"), (defocused, "blurred"),
     (turned, "moved"), (turned_away, "moved")],
    ids=["covered", "covered-ir", "defocused", "turned", "turned-away"],
)  # fmt: skip
def test_tampering_is_confirmed_once_it_persists(effect: Effect, kind: str) -> None:
    confirm = Tuning().tamper_confirm_s
    states = watch(street(), effect)
    assert confirmed(states) == {kind}
    during = [(t, s) for t, s in states if FROM_S <= t < UNTIL_S]
    first = min(t for t, s in during if getattr(s, kind))
    # held long enough, not much more (features are matched on a view averaged over ~1.5 s)
    assert FROM_S + confirm <= first <= FROM_S + confirm + 3
    assert all(s.suspected for t, s in during if first - confirm <= t < first)  # suspected first
    assert all(getattr(s, kind) for t, s in during if first <= t)  # and stays confirmed
    assert not any(getattr(s, kind) for t, s in states if t >= UNTIL_S + 2)  # then it ends


@pytest.mark.parametrize(
    ("effect", "kind"), [(covered, "covered"), (defocused, "blurred"), (turned, "moved")],
    ids=["covered", "defocused", "turned"],
)  # fmt: skip
def test_tampering_at_night_is_told_on_the_ir_view(effect: Effect, kind: str) -> None:
    assert confirmed(watch(street(), effect, night=True)) == {kind}


# ---- zones while tampering is only suspected ----


def test_an_intrusion_during_an_unconfirmed_suspicion_is_reported() -> None:
    """The lens hunts for focus for two seconds (suspected, never confirmed) while someone
    walks into the yard: the intrusion is reported, no tampering is."""
    yard = scenes.RESTRICTED
    intruder = Walker(((6, 0.75, 0.99), (8, 0.8, 0.8), (12, 0.8, 0.75), (15, 0.3, 0.45)))
    scene = Scene("hunt", 20, seed=3, walkers=[intruder], zones=[yard])
    analytics = CameraAnalytics(CameraSettings.model_validate(scenes.camera_settings(scene, "t")))
    alone = TamperDetector(Tuning())  # the same view, watched alone: was it suspected?
    starts: list[tuple[str, float]] = []
    suspected = []
    for i in range(scene.frames()):
        t = i / scene.fps
        frame = scene.frame(i)
        if 8 <= t < 10:
            frame = cv2.GaussianBlur(frame, (0, 0), 4)
        for o in analytics.process(frame, START + timedelta(seconds=t)):
            if isinstance(o, AlertOut) and o.phase is AlertPhase.START:
                starts.append((o.kind.value, t))
        view = alone.check(cv2.resize(frame, ANALYSIS, interpolation=cv2.INTER_AREA), t)
        suspected += [t] if getattr(view, "suspected", False) else []
    assert [k for k, _ in starts] == ["intrusion"], starts
    assert 6 <= starts[0][1] <= 12
    assert suspected and all(8 <= t < 11 for t in suspected)
