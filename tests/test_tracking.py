"""Tracking: identities kept through a crossing, crossings counted once per person, people
walking side by side counted as two (issue 16, cause 4)."""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import pytest

from edge.vision.analytics import CameraAnalytics, Output
from edge.vision.config import CameraSettings, PersonHeight
from edge.vision.motion import Blob
from edge.vision.people import PERSON_FILL, People, PersonScale
from edge.vision.tracking import ObjectKind, Track, Tracker
from simulators.scenes import calibration, camera_settings, street
from tests.vision_support import CALIBRATION, START, Figure, counted, footage, line, person

W, H = 320, 180
DOOR = {"name": "door", "purpose": "counting_line", "points": [[0.5, 0.3], [0.5, 1.0]]}


def blob(x: float, y: float, w: int = 12, h: int = 36) -> Blob:
    """A person-sized blob with its foot at (x, y), in frame fractions."""
    px, py = round(x * W - w / 2), round(y * H) - h
    return Blob(px, py, w, h, w * h // 2, ((px + w / 2) / W, (py + h) / H))


def test_two_tracks_passing_through_one_merged_blob_keep_their_identities() -> None:
    """Two people walk towards each other on one row and are one blob while they pass: each
    track comes out on the side its person walked to."""
    tracker = Tracker(max_step=0.12, max_missed=5, width=W, height=H)
    left_to_right = right_to_left = None
    for i in range(30):
        a, b = 0.2 + 0.02 * i, 0.8 - 0.02 * i
        if abs(a - b) < 0.06:  # together: the mask holds one wide blob
            blobs = [Blob(round(min(a, b) * W - 6), 90, round(abs(a - b) * W) + 12, 36, 700,
                          ((a + b) / 2, 126 / H))]  # fmt: skip
        else:
            blobs = [blob(a, 0.7), blob(b, 0.7)]
        tracker.update(blobs)
        if i == 5:
            by_x = sorted(tracker.tracks, key=lambda tr: tr.foot[0])
            left_to_right, right_to_left = by_x[0], by_x[-1]
    assert left_to_right is not None and right_to_left is not None
    assert (
        left_to_right.foot[0] > 0.7 and right_to_left.foot[0] < 0.3
    )  # through the merge, not back


@pytest.mark.parametrize("other_row", [0.7, 0.72])
def test_two_people_crossing_paths_on_a_counting_line_are_counted_once_each(
    other_row: float,
) -> None:
    """They meet right on the line: one crossing each way, not none."""
    figures = [
        Figure(person, line(1, 9, (0.1, 0.7), (0.9, 0.7), 0.2), (40, 40, 160)),
        Figure(person, line(1, 9, (0.9, other_row), (0.1, other_row), 0.2), (150, 60, 30)),
    ]
    _, outputs = footage(figures, 11, {"zones": [DOOR]})
    assert counted(outputs) == (1, 1)


@pytest.mark.parametrize("gap", [0.035, 0.05])
def test_two_people_walking_side_by_side_are_counted_as_two(gap: float) -> None:
    """Walking down the picture side by side, one blob in the mask, across a level line."""
    across = {"name": "door", "purpose": "counting_line", "points": [[0.05, 0.65], [0.95, 0.65]]}
    figures = [
        Figure(person, line(1, 9, (0.3, 0.35), (0.3, 0.95), 0.18), (40, 40, 160)),
        Figure(person, line(1, 9, (0.3 + gap, 0.35), (0.3 + gap, 0.95), 0.18), (150, 60, 30)),
    ]
    _, outputs = footage(figures, 11, {"zones": [across]})
    assert counted(outputs) == (0, 2)


def _street(walkers: list[street.Figure]) -> tuple[int, int]:
    """Counts of the street's entrance line over a few seconds of the rendered square, with
    the camera's two reference heights set (as a user would)."""
    scene = street._scene("abreast", 12.0, 1, list(walkers), [street.ENTRANCE],
                          street.Conditions(), ["counting"])  # fmt: skip
    given = camera_settings(scene, "rtsp://camera.local/stream")
    settings = CameraSettings.model_validate({**given, "calibration": calibration(scene)})
    analytics = CameraAnalytics(settings)
    outputs: list[Output] = []
    for i in range(scene.frames()):
        outputs += analytics.process(scene.frame(i), START + timedelta(seconds=i / scene.fps))
    outputs += analytics.flush_counts(START + timedelta(seconds=scene.duration_s))
    return counted(outputs)


def _walk(t0: float, row: float, height_m: float, deeper_m: float = 0.0) -> street.Figure:
    a, b = street.g(0.12, row), street.g(0.88, row)
    path = ((t0, a[0], a[1] + deeper_m), (t0 + math.dist(a, b) / 1.4, b[0], b[1] + deeper_m))
    return street.Figure(street.CAMERA, path, "walker", height_m, 7)


@pytest.mark.parametrize("row", [0.6, 0.8])
def test_two_people_abreast_across_the_view_one_behind_the_other_are_counted_as_two(
    row: float,
) -> None:
    """Walking abreast across a line that runs into the picture, under a pole camera: the far
    one is a little higher in the picture and mostly hidden by the near one, one blob from
    start to end (no width to split it by)."""
    assert _street([_walk(1, row, 1.7, 0.6), _walk(1, row, 1.75)]) == (2, 0)


@pytest.mark.parametrize("height_m", [1.6, 1.8])
def test_one_person_across_the_view_is_counted_once(height_m: float) -> None:
    """Short or tall (the calibration is for 1.7 m): one person (see docs/vision.md, Limits,
    for taller still)."""
    assert _street([_walk(1, 0.7, height_m)]) == (1, 0)


def test_a_blob_holding_people_stacked_in_depth_is_counted_for_each() -> None:
    """The head count of a track from its blob's height and area over a person's at its row."""
    refs = [PersonHeight(row=0.45, height=0.1), PersonHeight(row=0.9, height=0.3)]
    people = People(PersonScale(0.2, refs, H), W, H, 5.0, 0.15)
    eh, area = people.person_px(0.7)

    def looks(height: float, size: float, width: float = 0.5) -> Track:
        track = Track(1, blob(0.5, 0.7), 0.5, 0.7)
        look = (0.7, round(height * eh), round(size * area), round(width * eh))
        track.sizes.extend([look] * 8)
        return track

    assert people.headcount(looks(1.0, 1.3)) == 1  # one person
    assert people.headcount(looks(1.1, 1.45)) == 1  # a tall one
    assert people.headcount(looks(1.2, 2.0)) == 2  # the far one's head and legs stick out
    assert people.headcount(looks(1.5, 3.2)) == 3
    assert people.headcount(looks(1.2, 2.0, width=1.4)) == 1  # wide: merged with a shadow


def test_a_track_counted_before_its_size_was_known_is_counted_again_for_the_rest() -> None:
    """A pair crosses before enough looks at it (or before the scale is learned): it is
    counted as one at once, and the second person when its looks show two."""
    settings = CameraSettings.model_validate(
        {"source": "rtsp://camera.local/stream", "zones": [DOOR], "calibration": CALIBRATION}
    )
    analytics = CameraAnalytics(settings)
    eh, area = analytics.people.person_px(0.7)
    track = Track(1, blob(0.5, 0.7), 0.5, 0.7, hits=3, kind=ObjectKind.PERSON)
    track.crossings.append(("door", 1))
    analytics._count([])  # nothing on the line yet
    analytics._count([track])
    assert analytics._lines["door"].entered == 1
    track.sizes.extend([(0.7, round(1.2 * eh), round(2.0 * area), round(0.5 * eh))] * 8)
    track.hits = 5
    analytics._count([track])
    assert analytics._lines["door"].entered == 2
    analytics._count([track])  # counted for two already
    assert analytics._lines["door"].entered == 2


def _door_analytics(calibrated: bool = True) -> CameraAnalytics:
    given = {"source": "rtsp://camera.local/stream", "zones": [DOOR]}
    if calibrated:
        given["calibration"] = CALIBRATION
    return CameraAnalytics(CameraSettings.model_validate(given))


def _step(analytics: CameraAnalytics, track: Track, x: float, seen: bool = True) -> None:
    track.x, track.seen = x, seen
    track.blob = blob(x, track.y)
    analytics._count([track])


def test_a_foot_jittering_on_the_line_after_crossing_it_is_counted_once() -> None:
    """The foot point of someone on the line wavers by a few pixels (gait, the mask): one
    crossing, until they are clearly (a person's width) back on the side they came from."""
    analytics = _door_analytics()
    track = Track(1, blob(0.3, 0.7), 0.3, 0.7, hits=9, kind=ObjectKind.PERSON)
    for x in (0.3, 0.4, 0.46, 0.51, 0.49, 0.515, 0.488, 0.52):
        _step(analytics, track, x)
    assert (analytics._lines["door"].entered, analytics._lines["door"].exited) == (1, 0)
    for x in (0.6, 0.35):  # clearly across, then really back
        _step(analytics, track, x)
    assert (analytics._lines["door"].entered, analytics._lines["door"].exited) == (1, 1)


def test_a_track_only_predicted_across_the_line_does_not_cross_it() -> None:
    """Coasting inside someone else's blob, a track's foot is only predicted; it crosses the
    line where it is seen again, not where the prediction took it (and back)."""
    analytics = _door_analytics()
    track = Track(1, blob(0.3, 0.7), 0.3, 0.7, hits=9, kind=ObjectKind.PERSON)
    for x, seen in ((0.3, True), (0.42, True), (0.53, False), (0.56, False), (0.47, True)):
        _step(analytics, track, x, seen)
    assert (analytics._lines["door"].entered, analytics._lines["door"].exited) == (0, 0)


def _crossing_ends_undecided(track: Track, height: int) -> tuple[int, int]:
    """`track` (undecided) crosses the door line with a blob `height` px tall, then is lost:
    what the line has counted once it is gone."""
    analytics = _door_analytics()
    for x in (0.3, 0.4, 0.6, 0.7):
        track.x, track.seen, track.blob = x, True, blob(x, track.y, w=max(3, height // 3), h=height)
        analytics._count([track])
    track.seen, track.missed = False, analytics.tracker.max_missed + 1
    analytics._count([])
    return analytics._lines["door"].entered, analytics._lines["door"].exited


def test_an_undecided_track_that_crossed_is_counted_at_its_end_only_if_it_could_be_someone(
) -> None:  # fmt: skip
    """Before the perspective is learned, a person with their shadow is too wide to be judged
    and ends undecided: its crossing counts when it ends. A speck, a flake drifting with the
    snow, or a track the person check refused does not."""
    assert sum(_crossing_ends_undecided(Track(1, blob(0.3, 0.7), 0.3, 0.7, hits=9), 36)) == 1
    assert sum(_crossing_ends_undecided(Track(2, blob(0.3, 0.7), 0.3, 0.7, hits=9), 6)) == 0
    flake = Track(3, blob(0.3, 0.7), 0.3, 0.7, hits=9, drifted=True)
    assert sum(_crossing_ends_undecided(flake, 36)) == 0
    refused = Track(4, blob(0.3, 0.7), 0.3, 0.7, hits=9, checked=False)
    assert sum(_crossing_ends_undecided(refused, 36)) == 0


def test_the_shadow_walking_beside_a_person_is_not_counted_too() -> None:
    """Low sun: the shadow a walker casts is a blob of its own beside them, crossing the line
    with them; it dims the ground evenly, the person does not, so only the person counts."""
    analytics = _door_analytics()
    motion = analytics.motion
    rng = np.random.default_rng(1)
    ground = rng.integers(90, 150, (motion.height, motion.width)).astype(np.float32)
    frame = ground.copy()
    walker = Blob(174, 90, 12, 36, 432, (180 / W, 126 / H))
    shadow = Blob(160, 100, 12, 20, 240, (166 / W, 120 / H))
    frame[90:126, 174:186] = rng.integers(20, 230, (36, 12))  # clothes, skin, hair
    frame[100:120, 160:172] *= 0.55  # the same ground, dimmed
    mask = np.zeros((motion.height, motion.width), np.uint8)
    mask[90:126, 174:186] = mask[100:120, 160:172] = 255
    motion._bg, motion.grey, motion.mask = ground, frame.astype(np.uint8), mask
    tracks = []
    for i, b in enumerate((walker, shadow)):
        tr = Track(i + 1, b, b.foot[0] - 0.1, b.foot[1], hits=9, kind=ObjectKind.PERSON)
        analytics._count([tr])  # first seen left of the line
        tr.x = b.foot[0]
        tracks.append(tr)
    analytics._count(tracks)
    assert (analytics._lines["door"].entered, analytics._lines["door"].exited) == (1, 0)


def test_a_pair_counted_before_the_perspective_was_known_is_counted_again_once_it_is() -> None:
    """A pair one behind the other crosses in a new camera's first minute, counted as one
    (nothing to judge its size by yet); once the perspective is learned from later walkers,
    its looks show two people, and the second is counted then."""
    analytics = _door_analytics(calibrated=False)
    people = analytics.people
    level, slope = -0.05, 0.35  # the line the walkers will teach: 0.195 of the frame at 0.7
    eh = (level + slope * 0.7) * H
    pair = Track(1, blob(0.3, 0.7), 0.3, 0.7, hits=9, kind=ObjectKind.PERSON)
    pair.sizes.extend([(0.7, round(1.25 * eh), round(2.1 * PERSON_FILL * eh * eh),
                        round(0.6 * eh))] * 8)  # fmt: skip
    for x in (0.3, 0.4, 0.6, 0.7):
        pair.x, pair.seen = x, True
        analytics._count([pair])
    pair.seen, pair.missed = False, analytics.tracker.max_missed + 1
    analytics._count([])  # gone, counted as one
    assert (analytics._lines["door"].entered, analytics._lines["door"].exited) == (1, 0)
    rng = np.random.default_rng(4)
    for i in range(60):  # later walkers at every distance teach the perspective
        row = float(rng.uniform(0.45, 0.95))
        people.scale.observe(row, level + slope * row + float(rng.normal(0, 0.004)), 10 + i % 6)
    assert people.scale.learned
    analytics._count([])
    assert (analytics._lines["door"].entered, analytics._lines["door"].exited) == (2, 0)
    analytics._count([])  # and once only
    assert (analytics._lines["door"].entered, analytics._lines["door"].exited) == (2, 0)
