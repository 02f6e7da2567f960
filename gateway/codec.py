"""Encoding and decoding of wire messages, with the reason when a payload is refused."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from gateway import topics
from gateway.messages import (
    DEVICE_EVENT_TYPES,
    Command,
    CommandResult,
    ConfigResult,
    Message,
    NodeBirth,
    NodeConfig,
    NodeDeath,
    Receipt,
)

DEFAULT_MAX_PAYLOAD = 64 * 1024
# A node's configuration lists all its devices with their settings: it may be larger than any
# other message, up to the broker's packet limit (gateway.broker.BrokerOptions.max_packet_size).
CONFIG_MAX_PAYLOAD = 256 * 1024 - 1024

_ADAPTER: TypeAdapter[Message] = TypeAdapter(Message)


class RejectReason(StrEnum):
    """Why a message was refused; stored with it and counted in metrics."""

    OVERSIZED = "oversized"
    BAD_TOPIC = "bad_topic"
    NOT_JSON = "not_json"
    UNKNOWN_TYPE = "unknown_type"
    UNSUPPORTED_VERSION = "unsupported_version"
    SCHEMA = "schema"
    TOPIC_MISMATCH = "topic_mismatch"
    UNKNOWN_NODE = "unknown_node"
    UNKNOWN_DEVICE = "unknown_device"
    DISABLED_DEVICE = "disabled_device"
    FOREIGN_DEVICE = "foreign_device"
    OUTSIDE_GROUP = "outside_group"  # a node another ingest group's broker carries
    CONFLICT = "conflict"  # an id already stored with other content: the first version stands
    UNSTORABLE = "unstorable"
    IMPLAUSIBLE = "implausible"


class DecodeError(ValueError):
    """A payload that cannot be accepted, with a reason code and a human-readable detail."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Inbound:
    """A decoded message with the topic it arrived on."""

    topic: topics.Topic
    message: Message
    ahead_s: float = 0.0  # how far in the future the device dated it, when taken as now


def topic_for(site: str, node: str, message: Message) -> str:
    """The topic `message` travels on for this site and node."""
    match message:
        case NodeBirth():
            return topics.birth(site, node)
        case NodeDeath():
            return topics.death(site, node)
        case CommandResult():
            return topics.command_result(site, node, message.device)
        case Command():
            return topics.command(site, node, message.device)
        case Receipt():
            return topics.receipt(site, node)
        case NodeConfig():
            return topics.config(site, node)
        case ConfigResult():
            return topics.config_result(site, node)
        case _:
            return topics.event(site, node, message.device, message.type)


def encode(message: Message) -> bytes:
    """Serialize a message to its JSON payload."""
    if isinstance(message, Command | NodeConfig):
        return json.dumps(to_wire(message), ensure_ascii=False, separators=(",", ":")).encode()
    # Elsewhere a null field always means the same as a missing one (tests/test_contract.py
    # checks), so pydantic's fast path may leave them out.
    return message.model_dump_json(exclude_none=True).encode()


def to_wire(model: BaseModel) -> dict[str, Any]:
    """A model's JSON object: every field except a null one whose default is null too.

    A null that differs from the default stays: an unlock's `duration_s: null` means "until
    locked", and leaving it out would give the door the default of 10 seconds."""
    data: dict[str, Any] = model.model_dump(mode="json")
    return _pruned(model, data)


def _pruned(model: BaseModel, data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        if value is None and info.default is None:
            continue
        out[name] = _pruned(value, data[name]) if isinstance(value, BaseModel) else data[name]
    return out


def decode(payload: bytes, max_bytes: int = DEFAULT_MAX_PAYLOAD) -> Message:
    """Parse and validate one payload; raise DecodeError with the reason if it is refused."""
    if len(payload) > max_bytes:
        raise DecodeError(RejectReason.OVERSIZED, f"{len(payload)} bytes > limit {max_bytes}")
    try:
        return _ADAPTER.validate_json(payload)
    except ValidationError as exc:
        raise _classify(exc) from None


def _classify(exc: ValidationError) -> DecodeError:
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0]
    kind = first["type"]
    if kind == "json_invalid":
        return DecodeError(RejectReason.NOT_JSON, f"payload is not valid JSON: {first['msg']}")
    if kind == "union_tag_not_found":
        return DecodeError(RejectReason.UNKNOWN_TYPE, "the payload has no 'type' field")
    if kind == "union_tag_invalid":
        tag = (first.get("ctx") or {}).get("tag")
        return DecodeError(RejectReason.UNKNOWN_TYPE, f"unknown message type {tag!r}")
    if any(e["loc"][-1:] == ("v",) and e["type"] == "literal_error" for e in errors):
        return DecodeError(RejectReason.UNSUPPORTED_VERSION, "unsupported contract version")
    detail = "; ".join(
        f"{'.'.join(str(p) for p in e['loc'][1:]) or '(message)'}: {e['msg']}" for e in errors[:5]
    )
    return DecodeError(RejectReason.SCHEMA, detail)


def decode_for_topic(topic: str, payload: bytes, max_bytes: int = DEFAULT_MAX_PAYLOAD) -> Inbound:
    """Decode a payload and check that it is the kind of message its topic says it is."""
    try:
        parsed = topics.parse(topic)
    except ValueError as exc:
        raise DecodeError(RejectReason.BAD_TOPIC, str(exc)) from None
    message = decode(payload, max_bytes)
    _check_matches(parsed, message)
    return Inbound(parsed, message)


def _check_matches(topic: topics.Topic, message: Message) -> None:
    channel = topics.Channel
    ok: bool
    match topic.channel:
        case channel.BIRTH:
            ok = isinstance(message, NodeBirth)
        case channel.DEATH:
            ok = isinstance(message, NodeDeath)
        case channel.EVENT:
            ok = (
                message.type in DEVICE_EVENT_TYPES
                and message.type == topic.message_type
                and getattr(message, "device", None) == topic.device
            )
        case channel.COMMAND:
            ok = isinstance(message, Command) and message.device == topic.device
        case channel.COMMAND_RESULT:
            ok = isinstance(message, CommandResult) and message.device == topic.device
        case channel.RECEIPT:
            ok = isinstance(message, Receipt)
        case channel.CONFIG:
            ok = isinstance(message, NodeConfig) and (message.site, message.node) == (
                topic.site,
                topic.node,
            )
        case channel.CONFIG_RESULT:
            ok = isinstance(message, ConfigResult)
    if not ok:
        raise DecodeError(
            RejectReason.TOPIC_MISMATCH,
            f"a {message.type} message does not belong on {topic}",
        )
