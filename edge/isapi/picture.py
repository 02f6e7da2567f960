"""An event picture from a camera, made small enough to travel as a `camera.snapshot`."""

from __future__ import annotations

import cv2
import numpy as np

from gateway.messages import SNAPSHOT_MAX_BYTES

_MIN_WIDTH = 80
_MAX_INPUT = 8 * 1024 * 1024  # larger than any camera's JPEG: refused before decoding


def small_jpeg(data: bytes, width: int, quality: int = 70) -> tuple[bytes, int, int] | None:
    """The picture resized to `width` (or less) as a JPEG within the contract's limit, with its
    size; None when `data` is not a picture OpenCV can decode or nothing fits."""
    if not data.startswith(b"\xff\xd8\xff") or len(data) > _MAX_INPUT:
        return None
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.shape[0] < 16 or image.shape[1] < 16:
        return None
    height, full = image.shape[:2]
    width = min(width, full)
    while width >= _MIN_WIDTH:  # smaller and coarser until it fits
        high = max(16, min(1080, round(width * height / full)))
        small = cv2.resize(image, (width, high), interpolation=cv2.INTER_AREA)
        ok, out = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok and len(out) <= SNAPSHOT_MAX_BYTES:
            return out.tobytes(), width, high
        if quality > 30:
            quality -= 15
        else:
            width //= 2
    return None
