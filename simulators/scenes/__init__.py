"""Synthetic camera scenes with known ground truth, for the edge's camera analytics.

`base` holds the scene and its truth; `geometry` the pole camera's perspective; `figures` what
moves (walkers, animals, cars, bags); `conditions` weather, night, IR, exposure, foliage and
shake; `render` draws street scenes; `flat` and `street` make clips; `catalogue` lists the
benchmark's; `encode` writes them (MJPEG AVI or H.264 MP4) with their truth beside them.
`simulators.stream` and `simulators.rtsp` serve a scene as a live camera.
"""

from simulators.scenes.base import (
    Frame,
    LightSwitch,
    Mover,
    Point,
    Scene,
    Shadow,
    Tamper,
    TamperKind,
    Walker,
    ZoneSpec,
)
from simulators.scenes.catalogue import KINDS, camera_settings, catalogue, quick
from simulators.scenes.conditions import Clouds, Conditions, ExposureStep, Tree
from simulators.scenes.encode import write_clip, write_h264
from simulators.scenes.figures import Figure
from simulators.scenes.flat import (
    CROWD,
    LINE,
    LOITER,
    RESTRICTED,
    counting_scene,
    crowd_scene,
    intrusion_scene,
    loitering_scene,
    quiet_scene,
    tamper_scene,
)
from simulators.scenes.geometry import PoleCamera

__all__ = [
    "CROWD", "KINDS", "LINE", "LOITER", "RESTRICTED", "Clouds", "Conditions", "ExposureStep", "Figure",
    "Frame", "LightSwitch", "Mover", "Point", "PoleCamera", "Scene", "Shadow", "Tamper",
    "TamperKind", "Tree", "Walker", "ZoneSpec", "camera_settings", "catalogue", "counting_scene",
    "crowd_scene", "intrusion_scene", "loitering_scene", "quick", "quiet_scene", "tamper_scene",
    "write_clip", "write_h264",
]  # fmt: skip
