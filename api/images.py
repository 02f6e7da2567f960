"""Uploaded pictures: checked to be a JPEG or PNG that decodes, their location (EXIF GPS, XMP)
removed unless kept on purpose, and a small thumbnail made for slow phone networks.

The location is removed at the byte level, keeping everything else: in a JPEG, the GPS IFD of
each Exif (APP1) segment is blanked and its pointer taken out of IFD0 (so the orientation and
the camera's other tags stay), XMP segments (which may repeat the position) and whatever follows
the picture's end (a multi-picture file's other pictures) are dropped; in
a PNG, the eXIf chunk and XMP text chunks are dropped. The image data itself is never re-encoded.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

JPEG = "image/jpeg"
PNG = "image/png"
TYPES = (JPEG, PNG)
THUMBNAIL_PX = 320  # the longer side of a thumbnail
_GPS_IFD = 0x8825
_EXIF = b"Exif\x00\x00"
_XMP = b"http://ns.adobe.com/xap/1.0/\x00"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8}


class NotAnImage(ValueError):
    """The bytes are not a JPEG or PNG picture that can be decoded; the message says what."""


@dataclass(frozen=True, slots=True)
class Picture:
    content_type: str
    data: bytes
    thumbnail: bytes  # a JPEG
    width: int
    height: int
    sha256: str


def sniff(data: bytes) -> str | None:
    """The picture's type from its first bytes (not from what the client claims)."""
    if data.startswith(b"\xff\xd8\xff"):
        return JPEG
    if data.startswith(_PNG_SIGNATURE):
        return PNG
    return None


def prepare(data: bytes, declared: str, *, keep_location: bool) -> Picture:
    """The picture to store: its type checked against what was declared, decoded once (a broken
    or disguised file is refused), the location stripped unless kept, and its thumbnail."""
    kind = sniff(data)
    if kind is None:
        raise NotAnImage("the body is not a JPEG or PNG picture (its first bytes say neither)")
    if kind != declared:
        raise NotAnImage(f"the body is a {kind} picture but was sent as {declared}")
    if not keep_location:
        data = strip_location(data)
    import cv2  # imported here: only uploads need OpenCV, not every API process start
    import numpy as np

    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise NotAnImage(f"the {kind} picture cannot be decoded (damaged or truncated)")
    height, width = int(image.shape[0]), int(image.shape[1])
    scale = min(1.0, THUMBNAIL_PX / max(width, height))
    small = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))),
                       interpolation=cv2.INTER_AREA)  # fmt: skip
    ok, thumb = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 70])
    if not ok:
        raise NotAnImage("no thumbnail could be made of the picture")
    return Picture(kind, data, thumb.tobytes(), width, height, hashlib.sha256(data).hexdigest())


def strip_location(data: bytes) -> bytes:
    """The same picture without its recorded location (see the module's description)."""
    kind = sniff(data)
    if kind == JPEG:
        return _strip_jpeg(data)
    if kind == PNG:
        return _strip_png(data)
    return data


def _strip_jpeg(data: bytes) -> bytes:
    out = bytearray(data[:2])
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            break  # not a marker where one should be: leave the rest as it is
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            out.append(0xFF)
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length
            out += data[pos : pos + 2]
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        end = pos + 2 + length
        segment = data[pos:end]
        if marker in (0xDA, 0xD9):
            # The image data, to its end. What follows the end (a multi-picture file's other
            # pictures, with Exif segments of their own) is dropped with what it may record.
            eoi = data.find(b"\xff\xd9", pos + 2) if marker == 0xDA else pos
            return bytes(out + (data[pos:] if eoi < 0 else data[pos : eoi + 2]))
        if marker == 0xE1 and segment[4:].startswith(_XMP):
            pos = end  # XMP may carry exif:GPSLatitude and the like: dropped
            continue
        if marker == 0xE1 and segment[4:].startswith(_EXIF):
            head = 4 + len(_EXIF)
            segment = segment[:head] + _without_gps(segment[head:])
        out += segment
        pos = end
    out += data[pos:]
    return bytes(out)


def _without_gps(tiff: bytes) -> bytes:
    """A TIFF (Exif) block with its GPS IFD blanked and IFD0's pointer to it removed; its size
    and every other offset unchanged. Returned as it is when it cannot be read."""
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return tiff
    e = "<" if tiff[:2] == b"II" else ">"
    buf = bytearray(tiff)

    def u16(at: int) -> int:
        return int(struct.unpack_from(e + "H", buf, at)[0])

    def u32(at: int) -> int:
        return int(struct.unpack_from(e + "I", buf, at)[0])

    try:
        ifd0 = u32(4)
        count = u16(ifd0)
        entries = ifd0 + 2
        gps_at = None
        for n in range(count):
            at = entries + 12 * n
            if u16(at) == _GPS_IFD:
                gps_at = n
                break
        if gps_at is None:
            return tiff
        gps = u32(entries + 12 * gps_at + 8)
        # Blank the GPS IFD: each entry's out-of-line value, then the entries themselves.
        gps_count = u16(gps)
        for n in range(gps_count):
            at = gps + 2 + 12 * n
            kind, items = u16(at + 2), u32(at + 4)
            size = _TYPE_SIZES.get(kind, 1) * items
            if size > 4:
                value = u32(at + 8)
                if value + size <= len(buf):
                    buf[value : value + size] = bytes(size)
        buf[gps : gps + 2 + 12 * gps_count + 4] = bytes(2 + 12 * gps_count + 4)
        # Take the pointer out of IFD0: the later entries and the next-IFD offset move up one.
        tail_start = entries + 12 * (gps_at + 1)
        tail_end = entries + 12 * count + 4
        buf[entries + 12 * gps_at : tail_end - 12] = buf[tail_start:tail_end]
        buf[tail_end - 12 : tail_end] = bytes(12)
        struct.pack_into(e + "H", buf, ifd0, count - 1)
    except struct.error:
        return tiff  # a truncated block: nothing there can be read as a position either
    return bytes(buf)


def _strip_png(data: bytes) -> bytes:
    out = bytearray(_PNG_SIGNATURE)
    pos = len(_PNG_SIGNATURE)
    while pos + 12 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        body = data[pos + 8 : pos + 8 + length]
        xmp = kind in (b"iTXt", b"tEXt", b"zTXt") and body.startswith(b"XML:com.adobe.xmp\x00")
        if kind != b"eXIf" and not xmp:
            out += data[pos:end]
        pos = end
        if kind == b"IEND":
            break
    out += data[pos:]
    return bytes(out)
