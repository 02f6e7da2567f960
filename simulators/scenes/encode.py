"""Scenes to video files, with their ground truth (JSON) beside them.

Motion JPEG in AVI is what every OpenCV build reads (tests, `gridwatch scene write`). H.264 is
what street cameras send, at a low quality for their uplink: the benchmark's clips are H.264 in
MP4 made by ffmpeg's libx264 from raw frames on a pipe (OpenCV's own writer may lack the codec).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import cv2

from simulators.scenes.base import Scene


def write_clip(scene: Scene, folder: Path) -> tuple[Path, Path]:
    """The scene as a video file (Motion JPEG in AVI: every OpenCV build reads it) with its
    ground truth beside it; their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    video, truth = folder / f"{scene.name}.avi", folder / f"{scene.name}.json"
    partial = folder / f"{scene.name}.partial.avi"  # renamed when complete: no half clips
    writer = cv2.VideoWriter(str(partial), cv2.VideoWriter.fourcc(*"MJPG"), scene.fps,
                             (scene.width, scene.height))  # fmt: skip
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {partial}")
    try:
        for i in range(scene.frames()):
            writer.write(scene.frame(i))
    finally:
        writer.release()
    truth.write_text(json.dumps(scene.truth(), indent=1))
    partial.replace(video)
    return video, truth


def write_h264(scene: Scene, folder: Path, *, crf: int | None = None, gop_s: float = 2.0,
               suffix: str = "") -> tuple[Path, Path]:  # fmt: skip
    """The scene as H.264 in MP4 (libx264, `crf` default the scene's own, a key frame every
    `gop_s`) with its ground truth beside it; their paths. `suffix` names a variant (a size)."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise RuntimeError(
            "ffmpeg is not installed (scripts/setup installs it): cannot write H.264"
        )
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{scene.name}{suffix}"
    video, truth = folder / f"{stem}.mp4", folder / f"{stem}.json"
    partial = folder / f"{stem}.partial.mp4"
    gop = max(1, round(gop_s * scene.fps))
    command = [ffmpeg, "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "bgr24",
               "-s", f"{scene.width}x{scene.height}", "-r", f"{scene.fps:g}", "-i", "-",
               "-c:v", "libx264", "-preset", "veryfast", "-crf", str(crf or scene.crf),
               "-g", str(gop), "-pix_fmt", "yuv420p", "-threads", "1", str(partial)]  # fmt: skip
    with subprocess.Popen(command, stdin=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdin is not None
        try:
            for i in range(scene.frames()):
                proc.stdin.write(scene.frame(i).tobytes())
        except BrokenPipeError:
            pass  # ffmpeg stopped: its exit status and message say why
        finally:
            proc.stdin.close()
        error = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"ffmpeg failed writing {video} ({proc.returncode}): {error.strip()}")
    truth.write_text(json.dumps(scene.truth(), indent=1))
    partial.replace(video)
    return video, truth
