"""The benchmark's clips: events in the conditions a city's cameras see them, on several seeds,
and event-free footage with every nuisance for false alerts per hour."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from simulators.scenes import flat, street
from simulators.scenes.base import Scene, TamperKind
from simulators.scenes.conditions import Clouds, Conditions, ExposureStep, Tree

_LAMPS = ((-6.0, 9.0), (6.0, 9.0), (-7.0, 22.0), (7.0, 22.0))


def street_clips(seed: int) -> list[Scene]:
    """One seed's event clips on the square, each combining an event with conditions."""
    rain = Conditions(rain=0.6, trees=(Tree(-6.5, 7.0),), shake_px=1.5)
    return [
        street.intrusion(seed, conditions=Conditions(night=True, ir=True), extra=["ir"], dog=True),
        street.intrusion(seed, conditions=Conditions(clouds=Clouds(0.4, 4.0)), extra=["clouds40"]),
        street.intrusion(seed, conditions=Conditions(clouds=Clouds(0.6, 8.0, 200.0)),
                         extra=["clouds60"]),
        street.intrusion(seed + 100, dog=True),
        street.cars_through(seed),
        street.intrusion(seed, conditions=rain, extra=["rain"]),
        street.intrusion(seed, conditions=Conditions(snow=0.7), extra=["snow"]),
        street.intrusion(seed, conditions=Conditions(
            exposure=(ExposureStep(20, 1.35), ExposureStep(45, 0.75), ExposureStep(70, 1.25))),
            extra=["exposure"]),
        street.loitering(seed, conditions=Conditions(clouds=Clouds(0.2, 2.0, 90.0)),
                         extra=["clouds20"]),
        street.loitering(seed, conditions=Conditions(night=True, lamps=_LAMPS), extra=["night"]),
        street.counting(seed),
        street.counting(seed + 100, conditions=Conditions(clouds=Clouds(0.4, 3.0, 45.0))),
        street.crowd(seed),
        street.headlights(seed),
        street.bag_left(seed),
        street.animals(seed),
        *[street.tamper(seed, kind, night) for kind in ("covered", "blurred", "moved")
          for night in (False, True)],
    ]  # fmt: skip


def flat_clips(seed: int) -> list[Scene]:
    """The first catalogue's clips (flat scenes, one kind of event each), tagged `flat`."""
    out = [flat.intrusion_scene(seed), flat.loitering_scene(seed), flat.crowd_scene(seed),
           flat.counting_scene(seed)]  # fmt: skip
    out += [flat.tamper_scene(seed, kind) for kind in ("covered", "blurred", "moved")]
    for scene in out:
        scene.tags = ["flat", scene.name.rsplit("-", 1)[0].replace("tamper-", "tamper_")]
    return out


def catalogue(seeds: range = range(1, 4), quiet_s: float = 600.0) -> list[Scene]:
    """Every clip for each seed, and `quiet_s` of event-free footage per seed (day and night)."""
    out: list[Scene] = []
    for seed in seeds:
        out += street_clips(seed) + flat_clips(seed)
        out += [street.quiet(seed, quiet_s / 2), street.quiet(seed, quiet_s / 2, night=True)]
    return out


def quick() -> list[Scene]:
    """A handful of short clips, the worst conditions first, for development loops."""
    return [
        street.intrusion(1, 60, Conditions(night=True, ir=True), ["ir"], dog=True),
        street.intrusion(1, 60, Conditions(clouds=Clouds(0.4, 4.0)), ["clouds40"]),
        street.loitering(1, 80, Conditions(clouds=Clouds(0.2, 2.0, 90.0)), ["clouds20"]),
        street.counting(1, 60),
        street.crowd(1, 75),
        street.headlights(1, 60),
        street.bag_left(1, 75),
        street.tamper(1, "moved", True, 70),
        street.animals(1, 60),
        street.quiet(1, 240),
    ]


_IR = Conditions(night=True, ir=True)
_TAMPERS: tuple[TamperKind, ...] = ("covered", "blurred", "moved")


def _flat_tamper(kind: TamperKind) -> Callable[[int], Scene]:
    return lambda seed: flat.tamper_scene(seed, kind)


def _street_tamper(kind: TamperKind, night: bool) -> Callable[[int], Scene]:
    return lambda seed: street.tamper(seed, kind, night)


# `gridwatch scene write|serve KIND`: the flat kinds as before, and the street clips.
KINDS: dict[str, Callable[[int], Scene]] = {
    "intrusion": flat.intrusion_scene,
    "loitering": flat.loitering_scene,
    "crowd": flat.crowd_scene,
    "counting": flat.counting_scene,
    "quiet": flat.quiet_scene,
    **{f"tamper-{k}": _flat_tamper(k) for k in _TAMPERS},
    "street-intrusion-ir-dog": lambda s: street.intrusion(s, conditions=_IR, extra=["ir"], dog=True),
    "street-intrusion-clouds40": lambda s: street.intrusion(
        s, conditions=Conditions(clouds=Clouds(0.4, 4.0)), extra=["clouds40"]),
    "street-loitering-clouds20": lambda s: street.loitering(
        s, conditions=Conditions(clouds=Clouds(0.2, 2.0, 90.0)), extra=["clouds20"]),
    "street-counting-pairs": street.counting,
    "street-crowd": street.crowd,
    "street-headlights": street.headlights,
    "street-bag-left": street.bag_left,
    **{f"street-tamper-{k}-{n}": _street_tamper(k, n == "night") for k in _TAMPERS
       for n in ("day", "night")},
    "street-animals": street.animals,
    "street-quiet-day": street.quiet,
    "street-quiet-night": lambda s: street.quiet(s, night=True),
}  # fmt: skip


def camera_settings(scene: Scene, source: str) -> dict[str, Any]:
    """The camera configuration a clip is made for (the `settings` of an `opencv` camera): what
    a user configures (zones, rate, size), nothing of the ground truth."""
    zones = []
    for z in scene.zones:
        zone: dict[str, Any] = {
            "name": z.name,
            "purpose": z.purpose,
            "points": [list(p) for p in z.points],
        }
        if z.purpose == "loitering":
            zone["loiter_s"] = z.loiter_s
        if z.purpose == "crowd":
            zone["crowd_limit"] = z.crowd_limit
        zones.append(zone)
    return {"source": source, "fps": scene.fps, "width": scene.width, "height": scene.height,
            "zones": zones}  # fmt: skip


def calibration(scene: Scene) -> dict[str, Any]:
    """The optional `calibration` block a user would add for the clip's camera: two people's
    heights measured on the picture, one near (low in the frame) and one far. Typical people
    (1.7 m) on a street camera; on a flat scene, the size every person there has."""
    if scene.camera is None:
        refs = [(0.5, 0.2), (0.9, 0.2)]
    else:
        cam = scene.camera
        refs = []
        for row in (0.4, 0.9):
            x, y = cam.ground(0.5, row)
            refs.append((row, round(row - cam.project(x, y, 1.7)[1], 4)))
    return {"person_heights": [{"row": r, "height": h} for r, h in refs]}
