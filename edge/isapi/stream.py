"""The ISAPI alert stream: a `multipart/mixed` body that never ends, read as it arrives.

`/ISAPI/Event/notification/alertStream` answers one HTTP response whose body is a series of
parts, each `--boundary`, headers (Content-Type, usually Content-Length), a blank line and the
body: an XML `EventNotificationAlert`, a JSON event (access controllers), or a JPEG picture of
the event. Devices differ in small ways (a missing Content-Length, a bare LF, no CRLF before the
first boundary), and a stream can carry garbage; `MultipartReader.feed` takes bytes as they come
and returns whole parts, never raising: what cannot be read becomes a `Part` with `problem` set,
and reading resumes at the next boundary. `decode` turns an event part into an `Event`.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from edge import xmlsafe

MAX_PART = 2 * 1024 * 1024  # a JPEG of a 4 MP camera is ~500 KB; an event body a few KB
_MAX_HEADERS = 8 * 1024


@dataclass(frozen=True, slots=True)
class Part:
    """One part of the stream; `problem` says why it could not be read (then `body` is what
    was kept of it, possibly nothing)."""

    content_type: str  # the media type, lower case, without parameters ("" when none)
    body: bytes
    problem: str | None = None

    @property
    def is_image(self) -> bool:
        return self.content_type.startswith("image/")


@dataclass(frozen=True, slots=True)
class Event:
    """An event body, XML or JSON, read into one shape: `data` is the body's fields with XML
    namespaces dropped (an element with children is a dict, a repeated one a list, a leaf its
    text; JSON as sent), `type` and `state` as the device names them."""

    type: str
    state: str  # "active" or "inactive" (lower case; "" when the body has none)
    channel: int | None
    time: datetime | None  # the device's dateTime, with its offset; None when absent or unreadable
    data: dict[str, Any] = field(default_factory=dict)


class BadPart(Exception):
    """An event part that cannot be read; `fault` is its lower_snake name."""

    def __init__(self, fault: str, detail: str) -> None:
        super().__init__(detail)
        self.fault = fault


def boundary_of(content_type: str) -> str | None:
    """The boundary parameter of a multipart Content-Type header (None when there is none)."""
    media, _, params = content_type.partition(";")
    if not media.strip().lower().startswith("multipart/"):
        return None
    found = re.search(r'boundary\s*=\s*("([^"]+)"|[^;\s]+)', params, re.IGNORECASE)
    if found is None:
        return None
    value = found.group(2) or found.group(1)
    return value if 0 < len(value) <= 200 else None


class MultipartReader:
    """Reads a multipart stream incrementally: `feed` bytes, get the parts completed so far."""

    def __init__(self, boundary: str, *, max_part: int = MAX_PART) -> None:
        self.delimiter = b"--" + boundary.encode("latin-1")
        self.max_part = max_part
        self._buf = bytearray()
        self._state = "preamble"  # preamble, headers, body, drop
        self._type = ""
        self._length: int | None = None
        self._drop_left = 0  # bytes of an oversized part still to drop
        self.closed = False  # the closing delimiter was seen
        self._quiet = False  # after a resync: what comes before the next boundary is known bad

    def feed(self, data: bytes) -> list[Part]:
        self._buf += data
        parts: list[Part] = []
        while not self.closed:
            step = getattr(self, f"_{self._state}")()
            if step is None:
                break
            if isinstance(step, Part):
                parts.append(step)
        return parts

    # Each state returns None (need more bytes), True (moved on) or a Part (one is done).

    def _preamble(self) -> Part | bool | None:
        at = self._buf.find(self.delimiter)
        if at < 0:
            keep = len(self.delimiter) + 2
            junk = bytes(self._buf[:-keep]) if len(self._buf) > keep else b""
            if junk:
                del self._buf[:-keep]
                if junk.strip() and not self._quiet:
                    self._quiet = True
                    return Part("", b"", problem=f"{len(junk)} bytes outside any part")
            return None
        line_end = self._buf.find(b"\n", at)
        if line_end < 0:
            return None if len(self._buf) - at < 256 else self._resync("a boundary line too long")
        junk = bytes(self._buf[:at])
        after = bytes(self._buf[at + len(self.delimiter) : line_end]).strip()
        del self._buf[: line_end + 1]
        if after.startswith(b"--"):
            self.closed = True
        elif after:
            return self._resync("a boundary line with text after the boundary")
        else:
            self._state = "headers"
        quiet, self._quiet = self._quiet, False
        if junk.strip() and not quiet:
            return Part("", b"", problem=f"{len(junk.strip())} bytes outside any part")
        return True

    def _headers(self) -> Part | bool | None:
        match = re.search(rb"\r?\n\r?\n", self._buf)
        # A part may come with no headers at all: the blank line is then its first line.
        if self._buf.startswith(b"\r\n") or self._buf.startswith(b"\n"):
            end, body_at = 0, 2 if self._buf.startswith(b"\r\n") else 1
        elif match is None:
            return None if len(self._buf) < _MAX_HEADERS else self._resync("headers too long")
        else:
            end, body_at = match.start(), match.end()
        headers: dict[str, str] = {}
        for line in bytes(self._buf[:end]).decode("latin-1").splitlines():
            name, sep, value = line.partition(":")
            if not sep:
                return self._resync(f"a header line without a colon: {line[:60]!r}")
            headers[name.strip().lower()] = value.strip()
        del self._buf[:body_at]
        self._type = headers.get("content-type", "").split(";")[0].strip().lower()
        length = headers.get("content-length")
        self._length = None
        if length is not None:
            if not length.isdigit():
                return self._resync(f"Content-Length {length[:20]!r} is not a number")
            self._length = int(length)
            if self._length > self.max_part:
                self._drop_left, self._state = self._length, "drop"
                return Part(self._type, b"", problem=f"a part of {self._length} bytes is over"
                                                     f" the {self.max_part}-byte limit")  # fmt: skip
        self._state = "body"
        return True

    def _body(self) -> Part | bool | None:
        if self._length is not None:
            if len(self._buf) < self._length:
                return None
            body = bytes(self._buf[: self._length])
            del self._buf[: self._length]
        else:
            at = self._buf.find(self.delimiter)
            if at < 0:
                if len(self._buf) > self.max_part:
                    return self._resync(f"a part over the {self.max_part}-byte limit")
                return None
            body = bytes(self._buf[:at])
            del self._buf[:at]
            body = body.removesuffix(b"\n").removesuffix(b"\r")
        self._state = "preamble"
        return Part(self._type, body)

    def _drop(self) -> bool | None:
        """An oversized part's body, dropped as it comes (never held)."""
        taken = min(self._drop_left, len(self._buf))
        del self._buf[:taken]
        self._drop_left -= taken
        if self._drop_left:
            return None
        self._state = "preamble"
        return True

    def _resync(self, problem: str) -> Part:
        """Drop what cannot be read, up to the next boundary."""
        at = self._buf.find(self.delimiter, 1)
        if at >= 0:
            del self._buf[:at]
        else:
            del self._buf[: max(0, len(self._buf) - len(self.delimiter))]
        self._state, self._quiet = "preamble", True
        return Part(self._type, b"", problem=problem)


def decode(part: Part) -> Event:
    """The event in an XML or JSON part; BadPart (malformed_xml, malformed_json,
    unsupported_part) when there is none to read."""
    kind = part.content_type
    text = part.body.strip()
    if kind.endswith("/json") or (not kind and text.startswith(b"{")):
        return _from_json(text)
    if kind.endswith("/xml") or (not kind and text.startswith(b"<")):
        return _from_xml(text)
    raise BadPart("unsupported_part", f"a part of type {kind or 'unknown'!r} is no event")


def xml_fields(body: bytes, what: str = "an XML body") -> dict[str, Any]:
    """An ISAPI XML document's fields (namespaces dropped, as in `Event.data`); BadPart
    (malformed_xml) when it does not parse."""
    text = body.strip()
    # ISAPI bodies never declare a DTD; the parser refuses one, so no entity is ever expanded.
    try:
        root = xmlsafe.parse(text)
    except xmlsafe.UnsafeXml:
        raise BadPart("malformed_xml", f"{what} with a DTD (refused)") from None
    except ET.ParseError as exc:
        raise BadPart("malformed_xml", f"{what} that does not parse: {exc}") from None
    data = _element(root)
    return data if isinstance(data, dict) else {}


def _from_xml(text: bytes) -> Event:
    return _event(xml_fields(text, "an XML event body"), "xml")


def _from_json(text: bytes) -> Event:
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadPart("malformed_json", f"a JSON event body that does not parse: {exc}") from None
    if not isinstance(data, dict):
        raise BadPart("malformed_json", "a JSON event body that is not an object")
    return _event(data, "json")


def _event(data: dict[str, Any], root: str) -> Event:
    kind = data.get("eventType")
    if not isinstance(kind, str) or not kind.strip():
        raise BadPart(
            "malformed_xml" if root != "json" else "malformed_json",
            f"an event body ({root}) without an eventType",
        )
    state = data.get("eventState")
    channel = data.get("channelID", data.get("dynChannelID"))
    return Event(
        type=kind.strip(),
        state=state.strip().lower() if isinstance(state, str) else "",
        channel=_int(channel),
        time=parse_time(data.get("dateTime")),
        data=data,
    )


def _element(el: ET.Element) -> Any:
    children = list(el)
    if not children:
        return (el.text or "").strip()
    out: dict[str, Any] = {}
    for child in children:
        name, value = _local(child.tag), _element(child)
        if name in out:
            if not isinstance(out[name], list):
                out[name] = [out[name]]
            out[name].append(value)
        else:
            out[name] = value
    return out


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _int(value: object) -> int | None:
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def parse_time(value: object) -> datetime | None:
    """An ISAPI dateTime (ISO 8601 with its offset, e.g. 2026-12-01T21:00:00+08:00)."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    # Some firmware writes a one-digit offset hour ("-8:00"); ISO wants two.
    text = re.sub(r"([+-])(\d):(\d\d)$", r"\g<1>0\2:\3", text)
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
