"""The synthetic street camera: its perspective, its figures' classes and the ground truth they
make, its conditions (IR is monochrome), its H.264 files, and how the benchmark scores them."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.vision.config import AlertTiming, CameraSettings
from gridwatch.bench.vision import confusion, match, select
from simulators import scenes
from simulators.scenes import Conditions, Figure, PoleCamera, Scene, ZoneSpec, street

CAM = PoleCamera()
NEAR_ZONE = ZoneSpec("gate", "restricted", ((0.3, 0.5), (0.7, 0.5), (0.7, 0.9), (0.3, 0.9)))


def _street(name: str, duration: float, figures: list[Figure], **kw: object) -> Scene:
    return Scene(name, duration, width=320, height=180, camera=CAM, walkers=figures,
                 zones=[NEAR_ZONE], **kw)  # type: ignore[arg-type]  # fmt: skip


def _across(shape: str, t0: float = 0.0, v: float = 0.7, height: float = 1.7) -> Figure:
    """A figure walking across the zone from left to right at image row v."""
    a, b = CAM.ground(0.05, v), CAM.ground(0.95, v)
    return Figure(CAM, street.route(t0, [a, b], 2.0), shape, height)  # type: ignore[arg-type]


def test_the_camera_maps_ground_to_image_and_back() -> None:
    for u, v in ((0.5, 0.9), (0.1, 0.4), (0.8, 0.2)):
        x, y = CAM.ground(u, v)
        assert CAM.project(x, y) == pytest.approx((u, v), abs=1e-9)
    with pytest.raises(ValueError, match="horizon"):
        PoleCamera(tilt_deg=5).ground(0.5, 0.0)


def test_perspective_shrinks_a_person_with_distance() -> None:
    """A person 1.7 m tall drawn at 6 m and at 30 m: the far one is several times smaller,
    as the projection says."""
    heights = []
    for y in (6.0, 30.0):
        fig = Figure(CAM, ((0.0, 0.0, y), (10.0, 0.0, y)), "walker", 1.7)
        empty = Scene("empty", 1, width=640, height=360, camera=CAM, noise=0.0)
        seen = Scene("one", 1, width=640, height=360, camera=CAM, noise=0.0, walkers=[fig])
        diff = cv2.absdiff(seen.frame(0), empty.frame(0)).max(axis=2)
        rows = np.flatnonzero((diff > 20).any(axis=1))
        heights.append(rows.max() - rows.min() + 1)
        foot, head = CAM.project(0, y), CAM.project(0, y, 1.7)
        assert heights[-1] == pytest.approx((foot[1] - head[1]) * 360, rel=0.15)
    assert heights[0] > 2.5 * heights[1]


def test_a_dog_in_a_zone_is_no_intrusion_and_is_a_nuisance() -> None:
    scene = _street("dog", 12, [_across("dog", height=0.55)])
    truth = scene.truth()
    assert truth["events"] == []
    assert truth["figures"] == [{"index": 0, "class": "animal"}]
    (visit,) = truth["nuisances"]
    assert (
        visit["kind"] == "animal" and visit["zone"] == "gate" and visit["end_s"] > visit["start_s"]
    )
    person = _street("person", 12, [_across("walker")]).truth()
    assert [e["kind"] for e in person["events"]] == ["intrusion"] and person["nuisances"] == []


def test_only_persons_cross_a_counting_line() -> None:
    line = ZoneSpec("entrance", "counting_line", ((0.5, 0.2), (0.5, 1.0)))
    pair = [_across("walker", v=0.6), _across("walker", v=0.65), _across("dog", v=0.7, height=0.5)]
    scene = Scene("line", 12, width=320, height=180, camera=CAM, walkers=pair, zones=[line])
    assert scene.truth()["counts"] == {"entrance": {"in": 2, "out": 0}}  # as test_vision's


@pytest.mark.parametrize(("picked", "end"), [(None, 49.8), (45.0, 45.0)])
def test_a_bag_left_in_a_zone_is_an_object_left_after_left_s(
    picked: float | None, end: float
) -> None:
    """The bag is put down at 5 s: left behind from 35 s (left_s 30) until it is picked up or
    the clip ends. The person who brought it is an intrusion, the bag is not."""
    spot = CAM.ground(0.5, 0.7)
    owner = Figure(CAM, street.route(0.0, [CAM.ground(0.5, 1.0), spot, CAM.ground(0.5, 0.2)]
                                     ), "walker", 1.7, carrying_until=5.0)  # fmt: skip
    put = owner.path[1][0]
    bag = Figure(CAM, ((put, *spot), (picked or 60.0, *spot)), "bag", 0.3)
    truth = _street("bag", 50, [owner, bag]).truth()
    left = [e for e in truth["events"] if e["kind"] == "object_left"]
    assert left == [{"kind": "object_left", "zone": "gate",
                     "start_s": pytest.approx(put + 30, abs=0.2), "end_s": end}]  # fmt: skip
    assert [e["kind"] for e in truth["events"]].count("intrusion") == 1


def test_ir_frames_are_monochrome_and_daylight_is_not() -> None:
    night = _street("ir", 3, [_across("walker")], conditions=Conditions(night=True, ir=True))
    frame = night.frame(5)
    assert (frame[:, :, 0] == frame[:, :, 1]).all() and (frame[:, :, 1] == frame[:, :, 2]).all()
    day = _street("day", 3, [_across("walker")]).frame(5)
    assert not (day[:, :, 0] == day[:, :, 2]).all()


def test_rendering_is_deterministic_and_conditions_change_the_picture() -> None:
    make = lambda: street.quiet(3, 20.0)  # noqa: E731
    a, b = make(), make()
    assert np.array_equal(a.frame(17), b.frame(17))
    assert not np.array_equal(a.frame(17), a.frame(18))  # rain, wind, shake: never still
    assert {"rain", "foliage", "shake", "event-free"} <= set(a.tags)


def test_h264_clips_round_trip_through_opencv(tmp_path: Path) -> None:
    scene = _street("h264", 4, [_across("walker")], fps=5.0)
    video, truth = scenes.write_h264(scene, tmp_path, crf=36)
    cap = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    assert len(frames) == scene.frames() == 20
    assert frames[0].shape == (180, 320, 3)
    assert cv2.absdiff(frames[10], scene.frame(10)).mean() < 8  # lossy, but the same picture
    assert truth.read_text().startswith("{")


def test_camera_settings_give_only_what_a_user_configures() -> None:
    scene = street.crowd(1)
    settings = scenes.camera_settings(scene, "clip.mp4")
    assert set(settings) == {"source", "fps", "width", "height", "zones"}
    CameraSettings.model_validate(settings)


def test_the_bench_scores_object_left_and_blames_animals() -> None:
    timing = AlertTiming()
    truth = [{"kind": "object_left", "zone": "gate", "start_s": 40.0, "end_s": 60.0}]
    alerts = [{"kind": "object_left", "zone": "gate", "start_s": 41.0},
              {"kind": "intrusion", "zone": "gate", "start_s": 12.0}]  # fmt: skip
    per, false = match(alerts, truth, timing)
    assert (per["object_left"]["tp"], per["intrusion"]["fp"]) == (1, 1)
    dog = [{"kind": "animal", "zone": "gate", "start_s": 11.0, "end_s": 15.0}]
    assert confusion(false, dog, timing) == {"animal_visits": 1, "animal_alerts": 1,
                                             "vehicle_visits": 0, "vehicle_alerts": 0}  # fmt: skip


def test_the_command_line_offers_every_scene_kind() -> None:
    from gridwatch.cli import SCENE_KINDS

    assert list(scenes.KINDS) == SCENE_KINDS
    assert scenes.KINDS["street-tamper-moved-night"](2).tampers[0].kind == "moved"


def test_the_optional_calibration_is_what_a_user_measures_on_the_picture() -> None:
    """Two reference heights of a 1.7 m person, near and far, as image fractions."""
    far, near = scenes.calibration(street.crowd(1))["person_heights"]
    assert far["row"] < near["row"] and far["height"] < near["height"] < 0.3
    x, y = CAM.ground(0.5, near["row"])
    assert near["height"] == pytest.approx(near["row"] - CAM.project(x, y, 1.7)[1], abs=1e-3)


def test_the_bench_takes_the_clips_of_a_tag_and_names_the_tags_when_one_is_unknown() -> None:
    catalogue = scenes.catalogue(range(1, 3), quiet_s=60)
    counting = select(catalogue, ["counting"])
    assert counting and all("counting" in s.tags for s in counting)
    assert {s.name for s in counting} == {s.name for s in catalogue if "counting" in s.tags}
    both = select(catalogue, ["counting", "crowd"])
    assert {s.name for s in both} > {s.name for s in counting}
    assert select(catalogue, []) == catalogue
    with pytest.raises(ValueError, match=r"no clip is tagged countin;.*counting"):
        select(catalogue, ["countin"])
