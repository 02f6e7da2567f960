"""Uploaded pictures: checked to be a JPEG or PNG that decodes, their location (EXIF GPS, XMP)
removed unless kept on purpose, and a small thumbnail made for slow phone networks.

The location is removed at the byte level, fail-closed, keeping what is known to be harmless: in
a JPEG, the GPS IFD of each Exif (APP1) segment is blanked and its pointer taken out of IFD0 (so
the orientation and the camera's other tags stay); an Exif segment that cannot be read cleanly
and every other APP1 (XMP, extended XMP, which may repeat the position), APP13 (IPTC: city,
sublocation), stray bytes between
segments and whatever follows the picture's end (a multi-picture file's other pictures) are
dropped. In a PNG, the eXIf chunk, XMP and "Raw profile type exif/APP1" text chunks and anything
after IEND are dropped. The image data itself is never re-encoded.

A picture's dimensions are read from its header (PNG IHDR, JPEG SOFn) before it is decoded: a
small file that says it is huge would take gigabytes to decode, and is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

JPEG = "image/jpeg"
PNG = "image/png"
TYPES = (JPEG, PNG)
THUMBNAIL_PX = 320  # the longer side of a thumbnail
_GPS_IFD = 0x8825
_EXIF = b"Exif\x00\x00"
MAX_PIXELS = 50_000_000  # a picture may have at most this many pixels (50 megapixels)
# SOFn markers (frame headers: their height and width), not DHT (C4), JPG (C8) or DAC (CC).
_SOF = frozenset((0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF))
_SOS, _EOI = 0xDA, 0xD9
# PNG text chunks whose keyword says they carry Exif or XMP (which may record the position).
_PNG_TEXT = (b"tEXt", b"zTXt", b"iTXt")
_PNG_META_KEYWORDS = (b"xml:com.adobe.xmp", b"raw profile type exif", b"raw profile type app1",
                      b"raw profile type xmp")  # fmt: skip
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8}


class NotAnImage(ValueError):
    """The bytes are not a JPEG or PNG picture that can be decoded. The message says what (in
    English); `code` and `params` are its message in api/messages.py, for every language."""

    def __init__(self, message: str, code: str, **params: Any) -> None:
        super().__init__(message)
        self.code = code
        self.params = params


@dataclass(frozen=True, slots=True)
class Picture:
    content_type: str
    data: bytes
    thumbnail: bytes  # a JPEG
    width: int
    height: int
    sha256: str


class TooManyPixels(NotAnImage):
    """The picture's header says it is larger than MAX_PIXELS: refused before decoding it."""


class _Unreadable(Exception):
    """An Exif block that cannot be read cleanly (it is then dropped whole)."""


def sniff(data: bytes) -> str | None:
    """The picture's type from its first bytes (not from what the client claims)."""
    if data.startswith(b"\xff\xd8\xff"):
        return JPEG
    if data.startswith(_PNG_SIGNATURE):
        return PNG
    return None


def dimensions(data: bytes, kind: str) -> tuple[int, int] | None:
    """(width, height) as the picture's header says (PNG IHDR, JPEG's first SOFn), or None."""
    if kind == PNG:
        if len(data) < 24 or data[12:16] != b"IHDR":
            return None
        width, height = struct.unpack_from(">II", data, 16)
        return int(width), int(height)
    for marker, segment in _jpeg_segments(data):
        if marker in _SOF and len(segment) >= 9:
            height, width = struct.unpack_from(">HH", segment, 5)
            return int(width), int(height)
        if marker == _SOS:
            return None  # the image data begins before any frame header: not a valid JPEG
    return None


def prepare(data: bytes, declared: str, *, keep_location: bool) -> Picture:
    """The picture to store: its type checked against what was declared, its size read from its
    header (too many pixels are refused undecoded), decoded once (a broken or disguised file is
    refused), the location stripped unless kept, and its thumbnail."""
    kind = sniff(data)
    if kind is None:
        raise NotAnImage("the body is not a JPEG or PNG picture (its first bytes say neither)",
                         "photo.not_image")  # fmt: skip
    if kind != declared:
        raise NotAnImage(f"the body is a {kind} picture but was sent as {declared}",
                         "photo.mismatch", picture=kind, sent=declared)  # fmt: skip
    size = dimensions(data, kind)
    if size is None:
        raise NotAnImage(f"the {kind} picture cannot be decoded (damaged or truncated)",
                         "photo.undecodable", picture=kind)  # fmt: skip
    if size[0] * size[1] > MAX_PIXELS:
        raise TooManyPixels(
            f"the picture is {size[0]} x {size[1]} pixels, more than {MAX_PIXELS // 1_000_000}"
            " megapixels; take it at a lower resolution",
            "photo.too_many_pixels", width=size[0], height=size[1],
            megapixels=MAX_PIXELS // 1_000_000,
        )  # fmt: skip
    if not keep_location:
        data = strip_location(data)
    import cv2  # imported here: only uploads need OpenCV, not every API process start
    import numpy as np

    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise NotAnImage(f"the {kind} picture cannot be decoded (damaged or truncated)",
                         "photo.undecodable", picture=kind)  # fmt: skip
    height, width = int(image.shape[0]), int(image.shape[1])
    scale = min(1.0, THUMBNAIL_PX / max(width, height))
    small = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))),
                       interpolation=cv2.INTER_AREA)  # fmt: skip
    ok, thumb = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 70])
    if not ok:
        raise NotAnImage("no thumbnail could be made of the picture", "photo.no_thumbnail")
    return Picture(kind, data, thumb.tobytes(), width, height, hashlib.sha256(data).hexdigest())


def strip_location(data: bytes) -> bytes:
    """The same picture without its recorded location (see the module's description)."""
    kind = sniff(data)
    if kind == JPEG:
        return _strip_jpeg(data)
    if kind == PNG:
        return _strip_png(data)
    return data


def _next_marker(data: bytes, pos: int) -> int:
    """Where the next marker (0xFF then neither 0x00, 0xFF nor a restart) is, from `pos`."""
    while True:
        pos = data.find(b"\xff", pos)
        if pos < 0 or pos + 1 >= len(data):
            return len(data)
        following = data[pos + 1]
        if following == 0x00 or 0xD0 <= following <= 0xD7:
            pos += 2  # a stuffed 0xFF, or a restart marker: part of the image data
        elif following == 0xFF:
            pos += 1  # fill bytes before a marker
        else:
            return pos


def _jpeg_segments(data: bytes) -> Iterator[tuple[int | None, bytes]]:
    """A JPEG's pieces after SOI, in order: (marker, the whole segment) for each marker segment,
    (None, bytes) for the entropy-coded data after each SOS. Stray bytes between segments are
    skipped; it ends at EOI (yielded), or where a segment runs past the end of the data."""
    pos = 2
    while pos < len(data):
        if data[pos] != 0xFF or pos + 1 >= len(data) or data[pos + 1] in (0x00, 0xFF):
            pos = _next_marker(data, pos + (1 if data[pos] != 0xFF else 0))
            continue
        marker = data[pos + 1]
        if marker == _EOI:
            yield marker, data[pos : pos + 2]
            return
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length
            yield marker, data[pos : pos + 2]
            pos += 2
            continue
        if pos + 4 > len(data):
            return
        (length,) = struct.unpack_from(">H", data, pos + 2)
        end = pos + 2 + length
        if length < 2 or end > len(data):
            return  # truncated: nothing after it can be trusted to be what it says
        yield marker, data[pos:end]
        pos = end
        if marker == _SOS:
            scan_end = _next_marker(data, pos)
            yield None, data[pos:scan_end]
            pos = scan_end


def _strip_jpeg(data: bytes) -> bytes:
    out = bytearray(data[:2])
    for marker, segment in _jpeg_segments(data):
        if marker == 0xE1:
            # Only an Exif segment read cleanly stays (its GPS IFD blanked); XMP, extended XMP
            # and anything else an APP1 may carry go, with any position they record.
            if not segment[4:].startswith(_EXIF):
                continue
            head = 4 + len(_EXIF)
            # One that cannot be read cleanly is dropped whole: it might still hold a position.
            with contextlib.suppress(_Unreadable, struct.error):
                out += segment[:head] + _without_gps(segment[head:])
            continue
        if marker == 0xED:
            # APP13 (Photoshop's IPTC record): its location fields (city, sublocation, country)
            # name where the picture was taken; nothing of a picture needs it.
            continue
        out += segment
    return bytes(out)


def _without_gps(tiff: bytes) -> bytes:
    """A TIFF (Exif) block with its GPS IFD blanked and IFD0's pointer to it removed; its size
    and every other offset unchanged. _Unreadable when any of that cannot be read cleanly."""
    if len(tiff) < 8 or tiff[:4] not in (b"II*\x00", b"MM\x00*"):
        raise _Unreadable("not a TIFF header")
    e = "<" if tiff[:2] == b"II" else ">"
    buf = bytearray(tiff)

    def u16(at: int) -> int:
        return int(struct.unpack_from(e + "H", buf, at)[0])

    def u32(at: int) -> int:
        return int(struct.unpack_from(e + "I", buf, at)[0])

    def ifd(at: int) -> int:
        """The entry count of the IFD at `at`, checked to fit in the block with its next-IFD."""
        if at < 8 or at + 2 > len(buf):
            raise _Unreadable("an IFD outside the block")
        count = u16(at)
        if at + 2 + 12 * count + 4 > len(buf):
            raise _Unreadable("an IFD with more entries than the block holds")
        return count

    ifd0 = u32(4)
    count = ifd(ifd0)
    entries = ifd0 + 2
    gps_at = None
    for n in range(count):
        if u16(entries + 12 * n) == _GPS_IFD:
            if gps_at is not None:
                raise _Unreadable("two GPS IFD pointers")
            gps_at = n
    ifd1 = u32(entries + 12 * count)  # the thumbnail's IFD: a GPS pointer there is unexpected
    if ifd1:
        ifd1_count = ifd(ifd1)
        if any(u16(ifd1 + 2 + 12 * n) == _GPS_IFD for n in range(ifd1_count)):
            raise _Unreadable("a GPS IFD pointer in IFD1")
    if gps_at is None:
        return tiff
    gps = u32(entries + 12 * gps_at + 8)
    gps_count = ifd(gps)
    # Blank the GPS IFD: each entry's out-of-line value, then the entries themselves.
    for n in range(gps_count):
        at = gps + 2 + 12 * n
        kind, items = u16(at + 2), u32(at + 4)
        size = _TYPE_SIZES.get(kind, 1) * items
        if size > 4:
            value = u32(at + 8)
            if value + size > len(buf):
                raise _Unreadable("a GPS value outside the block")
            buf[value : value + size] = bytes(size)
    buf[gps : gps + 2 + 12 * gps_count + 4] = bytes(2 + 12 * gps_count + 4)
    # Take the pointer out of IFD0: the later entries and the next-IFD offset move up one.
    tail_start = entries + 12 * (gps_at + 1)
    tail_end = entries + 12 * count + 4
    buf[entries + 12 * gps_at : tail_end - 12] = buf[tail_start:tail_end]
    buf[tail_end - 12 : tail_end] = bytes(12)
    struct.pack_into(e + "H", buf, ifd0, count - 1)
    return bytes(buf)


def _png_metadata(kind: bytes, body: bytes) -> bool:
    """Whether a PNG chunk may record where the picture was taken (Exif, XMP)."""
    if kind == b"eXIf":
        return True
    keyword = body.split(b"\x00", 1)[0].lower()
    return kind in _PNG_TEXT and keyword in _PNG_META_KEYWORDS


def _strip_png(data: bytes) -> bytes:
    out = bytearray(_PNG_SIGNATURE)
    pos = len(_PNG_SIGNATURE)
    while pos + 12 <= len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        kind = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if end > len(data):
            break  # truncated: dropped with the rest
        if not _png_metadata(kind, data[pos + 8 : pos + 8 + length]):
            out += data[pos:end]
        pos = end
        if kind == b"IEND":
            break  # whatever follows the end is dropped
    return bytes(out)
