"""JPEG over RTP (RFC 2435): a baseline JFIF image cut into RTP payloads, as IP cameras send
Motion JPEG in an RTSP session.

The receiver rebuilds the JPEG headers itself (RFC 2435 section 3.1 and appendix A), so only the
entropy-coded scan is sent, with the image's own quantization tables in the first packet
(Q = 255, section 3.1.8) and the standard Huffman tables of ITU-T T.81 annex K implied. That is
what OpenCV's encoder writes by default (no optimised Huffman tables, no restart markers), and
what FFmpeg's depacketizer (libavformat/rtpdec_jpeg.c) accepts: types 0 and 1 only, no restart
marker header (types 64-127), 8-bit tables.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

PAYLOAD_TYPE = 26  # RFC 3551's static payload type for JPEG
CLOCK_RATE = 90_000  # Hz, RFC 2435 section 3
MAX_PAYLOAD = 1400  # bytes of RTP payload per packet: one loopback or Ethernet datagram
_DYNAMIC_TABLES = 255  # Q 128-255: tables in-band; 255: they may change with every frame

_SOI, _EOI, _SOS, _DQT, _DRI = 0xD8, 0xD9, 0xDA, 0xDB, 0xDD
_SOF_BASELINE = 0xC0
_SOF_OTHER = {0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # markers without a length


class NotRtpJpeg(ValueError):
    """The image cannot be carried by RFC 2435 as FFmpeg receives it."""


@dataclass(frozen=True, slots=True)
class JpegFrame:
    """What RFC 2435 carries of one image."""

    type: int  # 0: 4:2:2 (Y sampled 2x1), 1: 4:2:0 (Y sampled 2x2)
    width: int
    height: int
    qtables: bytes  # 64 bytes per table in zig-zag order, luma first, as in a DQT segment
    scan: bytes  # the entropy-coded data between SOS and EOI


def parse(jpeg: bytes) -> JpegFrame:
    """Take a baseline JFIF image apart; NotRtpJpeg says why one cannot be sent."""
    if jpeg[:2] != b"\xff\xd8":
        raise NotRtpJpeg("not a JPEG image: it does not start with SOI")
    tables: dict[int, bytes] = {}
    size: tuple[int, int] | None = None
    kind: int | None = None
    at = 2
    while at + 4 <= len(jpeg):
        if jpeg[at] != 0xFF:
            raise NotRtpJpeg(f"a JPEG marker was expected at byte {at}")
        marker = jpeg[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in _STANDALONE:
            at += 2
            continue
        (length,) = struct.unpack_from(">H", jpeg, at + 2)
        body = jpeg[at + 4 : at + 2 + length]
        if marker == _DQT:
            tables.update(_dqt(body))
        elif marker in _SOF_OTHER:
            raise NotRtpJpeg("only baseline JPEG (SOF0) can be sent over RTP/JPEG (RFC 2435)")
        elif marker == _SOF_BASELINE:
            size, kind = _sof(body)
        elif marker == _DRI and struct.unpack_from(">H", body)[0] != 0:
            raise NotRtpJpeg("restart markers are not accepted by FFmpeg's RTP/JPEG depacketizer")
        elif marker == _SOS:
            scan = jpeg[at + 2 + length :]
            if scan.endswith(b"\xff\xd9"):
                scan = scan[:-2]  # the receiver appends EOI itself
            if size is None or kind is None:
                raise NotRtpJpeg("the image has no frame header (SOF0) before its scan")
            if sorted(tables) not in ([0], [0, 1]):
                raise NotRtpJpeg("the image needs quantization tables 0 and 1")
            qtables = b"".join(tables[i] for i in sorted(tables))
            return JpegFrame(kind, size[0], size[1], qtables, scan)
        at += 2 + length
    raise NotRtpJpeg("the image has no scan (SOS)")


def _dqt(body: bytes) -> dict[int, bytes]:
    found: dict[int, bytes] = {}
    at = 0
    while at < len(body):
        precision, table = body[at] >> 4, body[at] & 0x0F
        if precision != 0:
            raise NotRtpJpeg("only 8-bit quantization tables are accepted (RFC 2435 3.1.8)")
        found[table] = body[at + 1 : at + 65]
        at += 65
    return found


def _sof(body: bytes) -> tuple[tuple[int, int], int]:
    bits, height, width, count = struct.unpack_from(">BHHB", body)
    if bits != 8 or count != 3:
        raise NotRtpJpeg("RFC 2435 carries 8-bit colour images of three components (YCbCr)")
    if width % 8 or height % 8 or not 0 < width <= 2040 or not 0 < height <= 2040:
        raise NotRtpJpeg(
            f"RFC 2435 carries sizes in 8-pixel units up to 2040: {width}x{height} is not one"
        )
    sampling = [body[6 + 3 * i + 1] for i in range(3)]
    quant = [body[6 + 3 * i + 2] for i in range(3)]
    if sampling[1:] != [0x11, 0x11] or quant != [0, 1, 1] or sampling[0] not in (0x21, 0x22):
        raise NotRtpJpeg("RFC 2435 types 0 and 1 are YCbCr 4:2:2 or 4:2:0 with tables 0, 1, 1")
    return (width, height), 0 if sampling[0] == 0x21 else 1


def payloads(frame: JpegFrame, max_payload: int = MAX_PAYLOAD) -> list[bytes]:
    """The RTP payloads of one frame, in order; the last is sent with the marker bit set."""
    out: list[bytes] = []
    offset = 0
    while offset < len(frame.scan) or not out:
        header = struct.pack(">BBHBBBB", 0, offset >> 16, offset & 0xFFFF, frame.type,
                             _DYNAMIC_TABLES, frame.width // 8, frame.height // 8)  # fmt: skip
        if offset == 0:  # the quantization table header, in the first packet only (3.1.8)
            header += struct.pack(">BBH", 0, 0, len(frame.qtables)) + frame.qtables
        room = max_payload - len(header)
        out.append(header + frame.scan[offset : offset + room])
        offset += room
    return out


def rtp_packet(payload: bytes, *, seq: int, timestamp: int, ssrc: int, marker: bool) -> bytes:
    """An RTP packet (RFC 3550 5.1): version 2, no padding, extension or contributing sources."""
    second = (0x80 if marker else 0) | PAYLOAD_TYPE
    return struct.pack(">BBHII", 0x80, second, seq & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc) + payload
