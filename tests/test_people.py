"""People told from animals and left objects, against the camera's perspective (issue 16,
causes 6, 7 and 8): a dog at a person's distance, a crowd seen at an angle, a bag left in a
zone, the perspective learned from tracks or set with two reference heights."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from edge.config import DeviceConfig
from edge.vision.analytics import AlertOut, CameraAnalytics, Frame, Output
from edge.vision.camera import AnalyzedCamera
from edge.vision.config import CameraSettings
from edge.vision.motion import Blob
from edge.vision.people import People, PersonScale
from edge.vision.tracking import ObjectKind, Track
from gridwatch.simulate import OPENCV_DRIVER, hardware_driver
from simulators.scenes import Scene, camera_settings, street
from tests.vision_support import (
    CALIBRATION,
    START,
    Draw,
    Figure,
    Place,
    bag,
    dog,
    footage,
    height_at,
    line,
    person,
    started,
)

YARD = {"name": "yard", "purpose": "restricted",
        "points": [[0.5, 0.5], [0.98, 0.5], [0.98, 0.98], [0.5, 0.98]]}  # fmt: skip


@pytest.mark.parametrize("row", [0.6, 0.8])
@pytest.mark.parametrize("calibrated", [True, False], ids=["set", "learning"])
def test_a_dog_in_a_restricted_zone_is_no_intrusion_and_a_person_there_is(
    row: float, calibrated: bool
) -> None:
    """The dog walks the same path as the person, where a person would be as tall as the
    person is; its area is well above the smallest person's."""
    settings: dict[str, Any] = {"zones": [YARD]}
    if calibrated:
        settings["calibration"] = CALIBRATION
    path = line(2, 14, (0.3, row), (0.9, row + 0.05), height_at)
    _, with_dog = footage([Figure(dog, path, (90, 70, 50))], 18, settings)
    assert started(with_dog) == []
    _, with_person = footage([Figure(person, path, (90, 70, 50))], 18, settings)
    assert [kind for kind, _, _ in started(with_person)] == ["intrusion"]


def _in_low_sun(draw: Draw, length: float) -> Draw:
    """`draw` with its shadow on the ground beside it, `length` of a person's height long and
    the ground under it at 45% of its light (the sun low to one side)."""

    def drawn(img: Frame, x: float, y: float, h: float, colour: tuple[int, int, int]) -> None:
        hh, ww = img.shape[:2]
        cx, cy, half = int(x * ww), int(y * hh), int(length * h * hh / 2)
        ground = np.zeros(img.shape[:2], np.uint8)
        cv2.ellipse(ground, (cx + half, cy), (half + 2, max(2, int(0.1 * h * hh))), 0, 0, 360,
                    255, -1)  # fmt: skip
        img[ground > 0] = (img[ground > 0] * 0.45).astype(np.uint8)
        draw(img, x, y, h, colour)

    return drawn


def test_a_person_with_a_long_shadow_beside_them_is_a_person_before_the_perspective_is_known(
) -> None:  # fmt: skip
    """In low sun a walker's shadow joins their blob, about as wide as they are tall: too wide
    for the shape alone to say person while the perspective is still unknown. Tall against the
    configured person height, and not wider than tall, it is one (a dog with its shadow is
    neither)."""
    path = line(2, 14, (0.3, 0.6), (0.9, 0.65), height_at)
    _, walker = footage([Figure(_in_low_sun(person, 0.75), path, (90, 70, 50))], 18,
                        {"zones": [YARD]})  # fmt: skip
    assert [kind for kind, _, _ in started(walker)] == ["intrusion"]
    _, with_dog = footage([Figure(_in_low_sun(dog, 0.3), path, (90, 70, 50))], 18,
                          {"zones": [YARD]})  # fmt: skip
    assert started(with_dog) == []


def _street_alerts(scene: Scene) -> list[float]:
    """When the alerts of the rendered square start, its camera configured as a user would
    (no reference heights: the perspective is learned from the people seen)."""
    analytics = CameraAnalytics(CameraSettings.model_validate(camera_settings(scene, "test")))
    out: list[Output] = []
    for i in range(scene.frames()):
        out += analytics.process(scene.frame(i), START + timedelta(seconds=i / scene.fps))
    return [t for _, _, t in started(out)]


@pytest.mark.parametrize("seed", [2, 6])
def test_cars_driving_through_a_restricted_zone_are_no_intrusion(seed: int) -> None:
    """Two people walk into the gate zone (the perspective is learned from the passers-by),
    then three cars drive through it: away from the camera, toward it and across. A car's
    blob fills 0.6 of its box (roof, windows, the motion mask's rim) and is as tall as a
    person at its row: only its size and solid fill tell it from one."""
    scene = street.cars_through(seed)
    truth = [e["start_s"] for e in scene.truth()["events"]]
    alerts = _street_alerts(scene)
    assert len(alerts) == 2 and all(0 <= a - t <= 3 for a, t in zip(alerts, truth, strict=True))


def test_a_car_is_no_person_before_the_perspective_is_learned() -> None:
    """Cars only, at a car park's 2 m/s, on a camera that has not seen anyone yet: the blob of
    a car seen from the front is about as wide as tall and tall against the configured
    height, like a walker with their shadow, but twice a person's area or more and solid."""
    cars = [street.Figure(street.CAMERA, street.route(3 + 17 * k, leg, 2.0), "car", 1.5, k)
            for k, leg in enumerate(street.car_legs())]  # fmt: skip
    scene = street._scene("cars", 60.0, 2, list(cars), [street.GATE], street.Conditions(),
                          ["vehicle"])  # fmt: skip
    assert _street_alerts(scene) == []


def test_a_standing_crowd_member_taken_for_a_left_object_still_counts_in_the_crowd() -> None:
    """People gather on the square and stand. One of them, merged with a neighbour and then
    fading into the background, is taken for something put down (their track kept on a blob
    much smaller than they were): their looks are still a person's, and the crowd estimate
    keeps their blob, so the crowd alert holds until the crowd disperses instead of ending
    and starting again."""
    scene = street.crowd(2)
    analytics = CameraAnalytics(CameraSettings.model_validate(camera_settings(scene, "test")))
    phases = []
    for i in range(scene.frames()):
        for o in analytics.process(scene.frame(i), START + timedelta(seconds=i / scene.fps)):
            if isinstance(o, AlertOut) and o.kind.value == "crowd":
                phases.append((o.phase.value, (o.when - START).total_seconds()))
    (truth,) = [e for e in scene.truth()["events"] if e["kind"] == "crowd"]
    starts = [t for phase, t in phases if phase == "start"]
    ends = [t for phase, t in phases if phase == "end"]
    assert len(starts) == 1 and abs(starts[0] - truth["start_s"]) <= 4
    assert len(ends) == 1 and ends[0] >= truth["end_s"]


# Eight people walking in and standing; four far ones shoulder to shoulder (one blob).
FAR_GROUP = [(0.30, 0.48), (0.325, 0.48), (0.35, 0.485), (0.375, 0.48),
             (0.6, 0.5), (0.63, 0.5), (0.45, 0.7), (0.75, 0.88)]  # fmt: skip
PALETTE = [(40, 40, 160), (150, 60, 30), (30, 110, 40), (20, 20, 20), (170, 170, 60)]


def _arrive(x: float, y: float, t0: float) -> Any:
    side = -0.15 if x < 0.5 else 0.15

    def path(t: float) -> Place | None:
        if t < t0:
            return None
        k = min(1.0, (t - t0) / 3)
        return (x + side * (1 - k), y, height_at(y))

    return path


def test_a_crowd_seen_in_perspective_is_counted_within_one() -> None:
    """Far people are a third the height of near ones: counted per ground area, not by one
    person's area for the whole picture."""
    hall = {"name": "hall", "purpose": "crowd", "crowd_limit": 5,
            "points": [[0.02, 0.3], [0.98, 0.3], [0.98, 0.99], [0.02, 0.99]]}  # fmt: skip
    figures = [Figure(person, _arrive(x, y, 2 + 0.8 * k), PALETTE[k % len(PALETTE)])
               for k, (x, y) in enumerate(FAR_GROUP)]  # fmt: skip
    settings = {"zones": [hall], "calibration": CALIBRATION, "alerts": {"update_every_s": 1}}
    _, outputs = footage(figures, 20, settings)
    settled = [o.objects for o in outputs if isinstance(o, AlertOut) and o.kind.value == "crowd"
               and (o.when - START).total_seconds() >= 13]  # all arrived  # fmt: skip
    assert settled and all(abs(n - len(FAR_GROUP)) <= 1 for n in settled), settled


def _carried(t: float) -> Place | None:
    """A person walks into the yard, puts a bag down at 8 s and walks out of view."""
    if 2 <= t < 7:
        return (0.3 + (t - 2) / 5 * 0.4, 0.8, 0.2)
    if 7 <= t < 9:
        return (0.7, 0.8, 0.2)
    if 9 <= t < 15:
        return (0.7 - (t - 9) / 6 * 0.6, 0.8 - (t - 9) / 6 * 0.3, 0.2)
    return None


def _the_bag(t: float) -> Place | None:
    p = _carried(t)
    if t < 8:
        return None if p is None else (p[0] + 0.025, p[1], 0.2)
    return (0.725, 0.8, 0.2) if t < 70 else None


def test_a_bag_left_in_a_zone_is_an_object_left_not_a_second_intrusion() -> None:
    figures = [Figure(person, _carried), Figure(bag, _the_bag, (20, 120, 200))]
    _, outputs = footage(figures, 90, {"zones": [YARD]})
    kinds = [(kind, zone) for kind, zone, _ in started(outputs)]
    assert kinds == [("intrusion", "yard"), ("object_left", "yard")]
    left = [o for o in outputs if isinstance(o, AlertOut) and o.kind.value == "object_left"]
    start, end = left[0], left[-1]
    assert start.snapshot is not None  # its own picture, the bag drawn
    assert 38 <= (start.when - START).total_seconds() <= 50  # 30 s after it was left
    assert end.phase.value == "end" and (end.when - START).total_seconds() >= 70  # taken


def _walkers() -> list[Figure]:
    """People walking across at several distances, dogs among them (50 s)."""
    figures = []
    for k, row in enumerate([0.5, 0.85, 0.6, 0.75, 0.55, 0.9, 0.7, 0.65, 0.8, 0.95]):
        t0 = 1 + 4 * k
        a, b = ((0.05, row), (0.95, row)) if k % 2 else ((0.95, row), (0.05, row))
        figures.append(Figure(person, line(t0, t0 + 9, a, b, height_at), PALETTE[k % 5]))
        if k % 3 == 0:
            figures.append(Figure(dog, line(t0 + 2, t0 + 8, b, a, height_at), (90, 70, 50)))
    return figures


def test_the_perspective_is_learned_from_the_people_tracked() -> None:
    """People walking across at several distances, dogs among them: the learned height by row
    comes within a tenth of the true one."""
    analytics, _ = footage(_walkers(), 50, {})
    scale = analytics.people.scale
    assert scale.learned
    for row in (0.5, 0.6, 0.7, 0.8, 0.9):
        # The blob is the figure and the mask's rim around it.
        assert scale.height(row) - scale.pad == pytest.approx(height_at(row), rel=0.1), row


def test_a_learned_perspective_is_kept_across_a_restart_for_the_same_settings_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The driver keeps the line it learned beside the outbox; started again, it goes on from
    it, unless the analysis size changed or the file is damaged (then it learns again)."""
    learned, _ = footage(_walkers(), 50, {})
    dev = DeviceConfig(id="cam1", kind="camera", driver=OPENCV_DRIVER,
                       settings={"source": "synthetic", "fps": 5})  # fmt: skip
    camera = hardware_driver(dev, "", tmp_path)
    assert isinstance(camera, AnalyzedCamera)
    camera._keep_perspective(learned, 0.0)  # what the frame loop does when the line changes
    assert camera.perspective_file == tmp_path / "cam1.perspective.json"
    assert camera.perspective_file.exists()

    again = hardware_driver(dev, "", tmp_path)
    assert isinstance(again, AnalyzedCamera)
    fresh = CameraAnalytics(again.settings)
    again._resume_perspective(fresh)  # what the driver does before its first frame
    assert fresh.people.scale.learned
    for row in (0.5, 0.7, 0.9):
        assert fresh.people.scale.height(row) == pytest.approx(learned.people.scale.height(row))

    # Moved for good (the tamper detector took the new view as its reference): the line is
    # forgotten, and so is the file, not to be resumed after the next restart.
    fresh.tamper.rebases += 1
    fresh.process(np.zeros((360, 640, 3), np.uint8), START)
    assert not fresh.people.scale.learned
    again._keep_perspective(fresh, 1.0)
    assert not camera.perspective_file.exists()
    restarted = hardware_driver(dev, "", tmp_path)
    assert isinstance(restarted, AnalyzedCamera)
    restarted._keep_perspective(learned, 0.0)
    assert camera.perspective_file.exists()

    coarser = CameraAnalytics(CameraSettings.model_validate(
        {**again.settings.model_dump(), "tuning": {"analysis_width": 160}}))  # fmt: skip
    again._resume_perspective(coarser)
    assert not coarser.people.scale.learned

    camera.perspective_file.write_text('{"level": "a lot"}')
    damaged = CameraAnalytics(again.settings)
    again._resume_perspective(damaged)
    assert not damaged.people.scale.learned
    assert any("not resumed device=cam1" in r.getMessage() for r in caplog.records)


def test_reference_heights_are_checked_with_a_clear_message() -> None:
    base = {"source": "rtsp://camera.local/stream"}

    def settings(heights: list[dict[str, float]]) -> CameraSettings:
        return CameraSettings.model_validate({**base, "calibration": {"person_heights": heights}})

    ok = settings([{"row": 0.45, "height": 0.1}, {"row": 0.9, "height": 0.3}])
    assert [r.row for r in ok.calibration.person_heights] == [0.45, 0.9]
    with pytest.raises(ValidationError, match="two reference heights"):
        settings([{"row": 0.9, "height": 0.3}])
    with pytest.raises(ValidationError, match="too close"):
        settings([{"row": 0.5, "height": 0.1}, {"row": 0.55, "height": 0.12}])
    with pytest.raises(ValidationError, match="nearer and looks taller"):
        settings([{"row": 0.9, "height": 0.1}, {"row": 0.45, "height": 0.3}])
    with pytest.raises(ValidationError, match="one and a half frames"):
        settings([{"row": 0.2, "height": 0.05}, {"row": 0.35, "height": 0.5}])
    with pytest.raises(ValidationError, match="less than or equal to 1"):
        settings([{"row": 1.2, "height": 0.3}, {"row": 0.45, "height": 0.1}])
    with pytest.raises(ValidationError, match="greater than 0"):
        CameraSettings.model_validate({**base, "zones": [{**YARD, "left_s": 0}]})
    assert CameraSettings.model_validate({**base, "zones": [{**YARD, "left_s": None}]})


def test_the_person_check_looks_again_a_second_later_a_few_times() -> None:
    """One look is one pose: a walker's legs together, or a blurred frame, hide them from
    OpenCV's detectors (on the street clips they see a walker in about one frame of five). A
    track they did not see a person in is looked at again a second later, three looks at most;
    a person once seen is kept."""
    people = People(PersonScale(0.2, [], 180), 320, 180, 5.0, 0.15)
    frame = street.intrusion(5).frame(220)  # a walker near the camera, in a pose they see
    near = Track(1, Blob(219, 115, 29, 46, 696, (0.73, 0.89)), 0.73, 0.89, hits=10)
    assert people.check(cv2.GaussianBlur(frame, (0, 0), 6), near) is False
    assert people.check(frame, near) is False  # not within the second
    near.hits += 5
    assert people.check(frame, near) is True and near.checked
    assert people.check(np.zeros_like(frame), near) is True  # kept, not asked again
    noise = np.random.default_rng(1).integers(0, 256, (360, 640, 3), dtype=np.uint8)
    nobody = Track(2, Blob(100, 60, 14, 36, 250, (0.33, 0.53)), 0.33, 0.53)
    for _ in range(5):
        assert people.check(noise, nobody) is False
        nobody.hits += 5
    assert nobody.checks == 3 and nobody.checked is False


def test_a_person_broken_into_pieces_is_one_person_in_a_crowd_estimate() -> None:
    """In low sun or against a busy ground the mask breaks a standing person into pieces
    (head and shoulders, hips, legs), each a blob. Counted as at least one person each, the
    pieces made one person three and raised a crowd alert seconds early (crowd-angle-3). Blobs
    not tracked as people add up their areas; a tracked person is at least one, however
    little of them moves."""
    people = People(PersonScale(0.2, [], 180), 320, 180, 5.0, 0.15)
    mask = np.zeros((180, 320), np.uint8)
    mask[87:124, 110:120] = 255  # one person's area at the prior's 38 px, feet on row 124
    pieces = [Blob(110, y0, 10, y1 - y0, 10 * (y1 - y0), (115 / 320, y1 / 180))
              for y0, y1 in ((87, 100), (101, 111), (112, 124))]  # fmt: skip
    for rows in ((100, 101), (111, 112)):
        mask[rows[0] : rows[1], 110:120] = 0  # the gaps between the pieces
    everywhere = [True] * 3
    assert people.crowd(pieces, mask, everywhere, [False] * 3) == 1
    # A tracked person is one, and so are several tracked people however small.
    assert people.crowd(pieces, mask, everywhere, [True] * 3) == 3
    # Not in the zone, not counted.
    assert people.crowd(pieces, mask, [False] * 3, [False] * 3) == 0


def test_people_standing_together_in_one_still_blob_count_in_the_crowd_and_a_bag_does_not() -> None:
    """People who walked into a square and stand close together can end in one blob that no
    longer moves, a still "object" for the tracker. Larger than a person, it is people, not
    something put down, and counts in the crowd estimate; a bag there does not."""
    hall = {"name": "hall", "purpose": "crowd", "crowd_limit": 5,
            "points": [[0.02, 0.3], [0.98, 0.3], [0.98, 0.99], [0.02, 0.99]]}  # fmt: skip
    analytics = CameraAnalytics(
        CameraSettings.model_validate({"source": "synthetic", "fps": 5.0, "zones": [hall]})
    )
    zone = analytics.settings.zones[0]
    for box, expected in (((100, 70, 90, 40), 5), ((150, 100, 10, 8), 0)):
        x, y, w, h = box
        mask = np.zeros((180, 320), np.uint8)
        mask[y : y + h, x : x + w] = 255
        blob = Blob(x, y, w, h, w * h, ((x + w / 2) / 320, (y + h) / 180))
        still = Track(1, blob, *blob.foot, hits=200)
        still.kind = ObjectKind.OBJECT
        analytics.tracker.tracks = [still]
        analytics.motion.mask = mask
        n = analytics._crowd_estimate(zone, [], [blob])
        assert (n >= expected) if expected else n == 0, (box, n)


def test_a_person_with_a_shadow_is_not_split_by_a_neighbours_feet_in_its_box() -> None:
    """A person (16x37 at the prior's 38 px) with their shadow on the ground to one side: one
    blob, low where the shadow is, not two people. The feet of someone standing just above
    reach into its box there; they are another blob and give the shadow no head."""
    people = People(PersonScale(0.2, [], 180), 320, 180, 5.0, 0.15)
    mask = np.zeros((180, 320), np.uint8)
    mask[87:124, 110:126] = 255  # the person
    mask[104:120, 94:110] = 255  # their shadow on the ground, half a person high
    mask[84:90, 94:101] = 255  # the neighbour's feet, above the shadow (a blob of its own)
    b = Blob(94, 87, 32, 37, int((mask[87:124, 94:126] > 0).sum()), (110 / 320, 124 / 180))
    assert people._split(b, mask, people.person_px(b.foot[1])[0]) == [b]


def test_a_head_over_its_own_shadow_is_one_person_and_a_neighbours_head_is_not() -> None:
    """Clothes of the ground's grey hide a person's body from the mask: only the dark head
    moves, and below it the long shadow they cast in low sun, wider than a person. Seen
    apart, neither is a person (the head too small, the shadow low and wide), and someone
    standing in a restricted zone raised no intrusion (intrusion-car-2). The head sticks out
    a pixel past the shadow's edge; the mask's own padding makes that much. Pieces further to
    the side are two people, and stay two."""
    people = People(PersonScale(0.2, [], 180), 320, 180, 5.0, 0.15)
    mask = np.zeros((180, 320), np.uint8)
    mask[102:117, 208:223] = 255  # the head and shoulders, in the air above the feet
    for row in range(118, 140):  # the shadow, slanting away to the right of the feet
        mask[row, 209 + (139 - row) // 2 : 226 + (139 - row) // 2] = 255
    head = Blob(208, 102, 15, 15, 15 * 15, (215.5 / 320, 117 / 180))
    shadow = Blob(209, 118, 27, 22, int((mask[118:140] > 0).sum()), (222.5 / 320, 140 / 180))
    (joined,) = people.prepare([shadow, head], mask)
    assert (joined.x, joined.y, joined.w, joined.h) == (208, 102, 28, 38)
    assert joined.area == shadow.area + head.area
    # Someone beside a person, their head six pixels past the person's side: two blobs.
    near = Blob(100, 100, 16, 38, 16 * 38, (108 / 320, 138 / 180))
    beside = Blob(106, 95, 16, 14, 16 * 14, (114 / 320, 109 / 180))
    assert len(people.prepare([near, beside], mask)) == 2


def test_a_level_learned_from_far_walkers_is_not_the_height_expected_near_by() -> None:
    """Only far people walked by (feet on rows 0.2-0.25, a tenth of the frame tall): the level
    holds there, but a dog near the camera (row 0.6) is not to be judged against it."""
    scale = PersonScale(0.2, [], 180)
    rng = np.random.default_rng(3)
    for i in range(60):
        scale.observe(float(rng.uniform(0.2, 0.25)), float(rng.normal(0.1, 0.005)), i % 5)
    assert scale.learned and scale.slope == 0.0
    assert abs(scale.height(0.22) - 0.1) < 0.02  # where they were seen
    assert scale.height(0.6) > 0.18  # near by: about the configured height, not the level


SNOW_DRIFT = (-0.004, 0.016)  # frame fractions a frame: the wind's sideways push and the fall


def _flakes() -> list[Track]:
    """A dozen flakes over the view, too small for anyone, drifting together."""
    return [Track(i, Blob(20 * i, 10 + 11 * i, 8, 8, 27, ((20 * i + 4) / 320, (18 + 11 * i) / 180)),
                  (20 * i + 4) / 320, (18 + 11 * i) / 180, *SNOW_DRIFT, hits=10)
            for i in range(1, 13)]  # fmt: skip


def _snowfall(velocity: tuple[float, float]) -> Track:
    """Five seconds of looks at the flakes and at two flakes one above the other (a far
    person's size before the perspective is learned) moving at `velocity`."""
    people = People(PersonScale(0.2, [], 180), 320, 180, 5.0, 0.15)
    flakes = _flakes()
    pair = Track(99, Blob(200, 60, 10, 16, 61, (205 / 320, 76 / 180)), 205 / 320, 76 / 180,
                 *velocity, hits=10)  # fmt: skip
    for k in range(25):
        people.observe([*flakes, pair], k / 5.0)
    return pair


def test_two_flakes_drifting_with_the_snow_are_not_a_person() -> None:
    """Snow flakes move with the wind together; a blob that moves with them is weather, while
    the same blob walking its own way is someone far away."""
    assert _snowfall(SNOW_DRIFT).kind is not ObjectKind.PERSON
    assert _snowfall((0.02, 0.0)).kind is ObjectKind.PERSON


def test_a_persons_track_passed_on_to_a_flake_stops_being_a_person() -> None:
    """When a person leaves the view the track may go on with a flake near by: nothing of a
    person's size in all its recent looks, drifting with the snow, it is no person any more
    (and the person check is asked again, about the flake)."""
    people = People(PersonScale(0.2, [], 180), 320, 180, 5.0, 0.15)
    flakes = _flakes()
    track = Track(99, Blob(150, 100, 8, 8, 27, (154 / 320, 108 / 180)), 154 / 320, 108 / 180,
                  *SNOW_DRIFT, hits=30, kind=ObjectKind.PERSON, checked=True)  # fmt: skip
    for k in range(10):
        people.observe([*flakes, track], k / 5.0)
    assert track.kind is not ObjectKind.PERSON and track.checked is None


def test_someone_standing_in_light_snow_stays_a_person() -> None:
    """Light snow falls slowly (a few pixels a frame); someone standing still has nearly no
    velocity, within foot noise of the snow's. Standing is not drifting: they stay a person."""
    people = People(PersonScale(0.2, [], 180), 320, 180, 5.0, 0.15)
    slow = (0.0, 0.005)
    flakes = [Track(i, Blob(20 * i, 10 + 11 * i, 8, 8, 27, ((20 * i + 4) / 320, (18 + 11 * i) / 180)),
                    (20 * i + 4) / 320, (18 + 11 * i) / 180, *slow, hits=10)
              for i in range(1, 13)]  # fmt: skip
    standing = Track(99, Blob(150, 70, 14, 38, 300, (157 / 320, 108 / 180)), 157 / 320, 108 / 180,
                     hits=1)  # fmt: skip
    for k in range(25):
        standing.hits += 1
        people.observe([*flakes, standing], k / 5.0)
    assert standing.kind is ObjectKind.PERSON and not standing.drifted


def test_a_dog_that_stops_stays_a_dog_while_its_blob_fades() -> None:
    """A dog trots (wide and low: animal looks), then stands: the background takes it in and
    what is left of its blob is narrow, a person's shape before the perspective is learned.
    Those still, faded looks do not outvote how it moved."""
    people = People(PersonScale(0.2, [], 180), 320, 180, 5.0, 0.15)
    row = 119 / 180
    dog = Track(7, Blob(100, 105, 20, 14, 150, (110 / 320, row)), 110 / 320, row, hits=5)
    for k in range(4):  # trotting to the right
        x = 100 + 4 * k
        dog.blob = Blob(x, 105, 20, 14, 150, ((x + 10) / 320, row))
        people.observe([dog], k / 5.0)
    assert dog.kind is ObjectKind.ANIMAL
    for k in range(4, 16):  # standing; its blob a narrow remnant, half what it was
        dog.blob = Blob(117, 105, 10, 14, 72, (122 / 320, row))
        people.observe([dog], k / 5.0)
    assert dog.kind is ObjectKind.ANIMAL


def test_a_faint_person_whose_figure_drops_out_now_and_then_still_raises_an_intrusion() -> None:
    """In rain, snow or dim light a faint figure's mask misses a frame now and then: the
    person is still there, and the intrusion must hold long enough to start (it used to start
    over at every missed frame and never reach its minimum)."""
    walk = line(2, 14, (0.55, 0.7), (0.9, 0.75), height_at)

    def flickering(t: float) -> Place | None:
        return None if round(t * 5) % 3 == 2 else walk(t)  # every third frame at 5 fps

    _, out = footage([Figure(person, flickering, (90, 70, 50))], 18, {"zones": [YARD]})
    assert [(kind, zone) for kind, zone, _ in started(out)] == [("intrusion", "yard")]
    _, with_dog = footage([Figure(dog, flickering, (90, 70, 50))], 18, {"zones": [YARD]})
    assert started(with_dog) == []


def test_what_arrived_where_it_stands_is_no_left_object_and_what_was_put_there_is() -> None:
    """A person in clothes of the ground's grey is seen only by their head. Their track can be
    born on one blob and take the head a person's width away at its next look, then stand
    there: it moved by itself, so it is no left object. The same blob seen where it stays from
    its first look is one."""
    row = 0.47

    def stands(first_x: int) -> Track:
        people = People(PersonScale(0.2, [], 180), 320, 180, 5.0, 0.15)
        tr = Track(4, Blob(first_x, 75, 11, 10, 60, ((first_x + 5.5) / 320, row)),
                   (first_x + 5.5) / 320, row)  # fmt: skip
        people.observe([tr], 0.0)
        for k in range(1, 250):  # 50 s standing at x = 75
            tr.hits += 1
            tr.blob = Blob(75, 75, 11, 10, 60, (80.5 / 320, row))
            people.observe([tr], k / 5.0)
        return tr

    assert stands(first_x=107).kind is not ObjectKind.OBJECT  # arrived: 32 px away at first
    assert stands(first_x=75).kind is ObjectKind.OBJECT  # put down there
