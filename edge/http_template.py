"""HTTP requests described in a site file: method, path, query, headers and a body with
`{placeholder}`s, filled with a command's values and escaped for where each lands.

A value is never formatted into a template with `str.format`: each `{name}` is replaced by the
value escaped for its place (percent-encoded in the path, XML-escaped in an XML body, a JSON
string inside a JSON body, form-encoded in a form; query and form values are encoded by httpx),
so a broadcast text cannot change the request's shape. `{{` and `}}` are literal braces. An
answer is read the same way: a JSON or XML field by its path, compared with the values that mean
success, and the device's own words from another field when it refuses.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any, Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

from edge import xmlsafe

NAMES = frozenset({"text", "clip", "volume", "priority", "repeat", "language", "seconds"})
_TYPED = frozenset({"volume", "repeat", "seconds"})  # numbers where a JSON value is just `{x}`
_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_HEADER_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")
MAX_ANSWER = 1_000_000  # bytes of an answer read at most


class BodyType(StrEnum):
    NONE = "none"
    JSON = "json"  # `body`: any JSON; its strings are filled, then it is serialised
    FORM = "form"  # `body`: a mapping of field to template, application/x-www-form-urlencoded
    XML = "xml"  # `body`: an XML template; values XML-escaped
    TEXT = "text"  # `body`: a plain-text template
    AUDIO = "audio"  # the audio file itself is the body (play_audio only)
    MULTIPART = "multipart"  # the audio file as `file_field`, `body`'s fields beside it


AUDIO_BODIES = (BodyType.AUDIO, BodyType.MULTIPART)


def placeholders(template: str) -> set[str]:
    """The placeholder names in a template."""
    return {m.group(1) for m in _TOKEN.finditer(template) if m.group(1)}


def fill(template: str, values: Mapping[str, object], escape: Callable[[str], str]) -> str:
    """`template` with each `{name}` replaced by `escape(str(value))`."""

    def one(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "{{":
            return "{"
        if token == "}}":
            return "}"
        return escape(str(values[match.group(1)]))

    return _TOKEN.sub(one, template)


def _raw(value: str) -> str:
    return value


def xml_escape(value: str) -> str:
    """Text safe inside an XML element or attribute (characters XML 1.0 forbids dropped)."""
    value = _XML_INVALID.sub("", value)
    return (
        value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        .replace('"', "&quot;").replace("'", "&apos;")
    )  # fmt: skip


def path_escape(value: str) -> str:
    """One path segment: every reserved character percent-encoded, `/` included."""
    return quote(value, safe="")


def header_safe(value: str) -> str:
    """A header value: control characters (a CR or LF could start a new header) become spaces."""
    return _HEADER_UNSAFE.sub(" ", value)


def _fill_json(body: JsonValue, values: Mapping[str, object]) -> JsonValue:
    if isinstance(body, str):
        whole = _TOKEN.fullmatch(body)
        if whole and whole.group(1) in _TYPED:
            return values[whole.group(1)]  # type: ignore[return-value]
        return fill(body, values, _raw)
    if isinstance(body, list):
        return [_fill_json(item, values) for item in body]
    if isinstance(body, dict):
        return {key: _fill_json(item, values) for key, item in body.items()}
    return body


def _strings(body: JsonValue) -> list[str]:
    if isinstance(body, str):
        return [body]
    if isinstance(body, list):
        return [s for item in body for s in _strings(item)]
    if isinstance(body, dict):
        return [s for item in body.values() for s in _strings(item)]
    return []


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class Answer(_Settings):
    """How the device says whether it did it, beyond the HTTP status."""

    format: Literal["json", "xml"] = Field(description="the answer's format")
    field: str = Field(min_length=1, description="path of the result: `a.b` (JSON) or `a/b` (XML)")
    ok: list[str] = Field(min_length=1, description="the result values that mean done")
    message: str | None = Field(default=None, description="path of the device's words on failure")


class RequestTemplate(_Settings):
    """One request to the device."""

    method: Literal["GET", "POST", "PUT"] = Field(default="POST", description="HTTP method")
    path: str = Field(pattern=r"^/", max_length=500, description="URL path, placeholders allowed")
    query: dict[str, str] = Field(default_factory=dict, description="query parameters")
    headers: dict[str, str] = Field(default_factory=dict, description="extra request headers")
    body_type: BodyType = Field(default=BodyType.NONE, description="what the body is")
    body: JsonValue = Field(default=None, description="the body template (see body_type)")
    file_field: str = Field(default="file", min_length=1, description="multipart: the file's field")
    answer: Answer | None = Field(default=None, description="overrides the speaker's `answer`")

    @model_validator(mode="after")
    def _shape(self) -> RequestTemplate:
        if self.body_type in (BodyType.FORM, BodyType.MULTIPART):
            if self.body is not None and not (
                isinstance(self.body, dict) and all(isinstance(v, str) for v in self.body.values())
            ):
                raise ValueError(f"a {self.body_type} body is a mapping of field names to text")
        elif self.body_type in (BodyType.XML, BodyType.TEXT):
            if not isinstance(self.body, str):
                raise ValueError(f"an {self.body_type} body is a text template")
        elif self.body_type in (BodyType.NONE, BodyType.AUDIO) and self.body is not None:
            raise ValueError(f"a request with body_type {self.body_type} has no body")
        if self.method == "GET" and self.body_type is not BodyType.NONE:
            raise ValueError("a GET request has no body: use query parameters")
        unknown = self.names() - NAMES
        if unknown:
            raise ValueError(f"unknown placeholder {{{sorted(unknown)[0]}}}; known: "
                             + ", ".join(f"{{{n}}}" for n in sorted(NAMES)))  # fmt: skip
        return self

    def names(self) -> set[str]:
        """Every placeholder the request uses."""
        texts = [self.path, *self.query.values(), *self.headers.values(), *_strings(self.body)]
        return {name for t in texts for name in placeholders(t)}

    def build(
        self,
        values: Mapping[str, object],
        audio: bytes | None = None,
        audio_type: str = "audio/wav",
    ) -> dict[str, Any]:
        """The keyword arguments of `httpx.Client.request` for these values."""
        kw: dict[str, Any] = {
            "method": self.method,
            "url": fill(self.path, values, path_escape),
            "params": {k: fill(v, values, _raw) for k, v in self.query.items()},
            "headers": {k: fill(v, values, header_safe) for k, v in self.headers.items()},
        }
        match self.body_type:
            case BodyType.JSON:
                kw["json"] = _fill_json(self.body, values)
            case BodyType.FORM:
                kw["data"] = {k: fill(str(v), values, _raw) for k, v in _fields(self.body).items()}
            case BodyType.XML:
                kw["content"] = fill(str(self.body), values, xml_escape).encode()
                kw["headers"].setdefault("Content-Type", "application/xml; charset=utf-8")
            case BodyType.TEXT:
                kw["content"] = fill(str(self.body), values, _raw).encode()
                kw["headers"].setdefault("Content-Type", "text/plain; charset=utf-8")
            case BodyType.AUDIO:
                kw["content"] = audio or b""
                kw["headers"].setdefault("Content-Type", audio_type)
            case BodyType.MULTIPART:
                kw["data"] = {k: fill(str(v), values, _raw) for k, v in _fields(self.body).items()}
                kw["files"] = {self.file_field: ("speech.wav", audio or b"", audio_type)}
        return kw


def _fields(body: JsonValue) -> dict[str, JsonValue]:
    return body if isinstance(body, dict) else {}


class Unreadable(Exception):
    """An answer that is not the JSON or XML it should be."""


def parse(data: bytes, fmt: Literal["json", "xml"]) -> Any:
    """The answer as JSON data or an XML element; Unreadable when it is neither."""
    if len(data) > MAX_ANSWER:
        raise Unreadable(f"an answer of {len(data)} bytes (more than {MAX_ANSWER})")
    try:
        if fmt == "json":
            return json.loads(data)
        return xmlsafe.parse(data)
    except xmlsafe.UnsafeXml:
        raise Unreadable("an XML answer with a DTD (refused)") from None
    except (ValueError, ET.ParseError) as exc:
        raise Unreadable(f"not {fmt.upper()}: {exc}") from None


def field(document: Any, path: str) -> object | None:
    """A field of a parsed answer by its path (`a.b.0` in JSON, `A/b` in XML, namespaces
    ignored); None when it is not there."""
    if isinstance(document, ET.Element):
        node: ET.Element | None = document
        parts = path.split("/")
        if parts and _local(document.tag) == parts[0]:
            parts = parts[1:]  # the root's own name may lead the path
        for part in parts:
            assert node is not None
            node = next((c for c in node if _local(c.tag) == part), None)
            if node is None:
                return None
        return None if node is None else (node.text or "").strip()
    value: object = document
    for part in path.split("."):
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def as_text(value: object) -> str:
    """A JSON or XML value as the text `ok` lists compare with (true → "true")."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def truthy(value: object) -> bool:
    """A status field that means yes: true, 1, "on", "playing", "online"…"""
    return as_text(value).strip().lower() in {"true", "1", "yes", "on", "playing", "online"}
