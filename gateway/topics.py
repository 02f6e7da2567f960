"""MQTT topic names: the only place where a gridwatch topic string is built or parsed.

Layout, namespaced by site and edge node so that a broker ACL can confine a node to its subtree:

    gw/v1/{site}/{node}/birth                      node birth (retained)
    gw/v1/{site}/{node}/death                      node death (last will)
    gw/v1/{site}/{node}/evt/{device}/{type}         device telemetry and events
    gw/v1/{site}/{node}/cmd/{device}                commands flowing down to the node
    gw/v1/{site}/{node}/cmdres/{device}             command results flowing back up
    gw/v1/{site}/{node}/ack                         receipts: which of the node's messages are stored
    gw/v1/{site}/{node}/cfg                         the node's configuration (retained, signed)
    gw/v1/{site}/{node}/cfgres                      the node's answer: applied, or refused and why
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

ROOT = "gw/v1"
INGEST_SHARE_GROUP = "ingest"

# Site, node and device ids become topic levels, so they must not contain MQTT
# separators or wildcards; keeping them to this alphabet also keeps ACL files and
# ltree labels safe.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
_ID_RE = re.compile(ID_PATTERN)


class Channel(StrEnum):
    """The fourth level of a topic: what kind of traffic it carries."""

    BIRTH = "birth"
    DEATH = "death"
    EVENT = "evt"
    COMMAND = "cmd"
    COMMAND_RESULT = "cmdres"
    RECEIPT = "ack"
    CONFIG = "cfg"
    CONFIG_RESULT = "cfgres"


def check_id(value: str, what: str = "id") -> str:
    """Return `value` if it is a valid site, node or device id, else raise ValueError."""
    if not _ID_RE.match(value):
        raise ValueError(f"invalid {what} {value!r}: use 1-64 of A-Z a-z 0-9 _ - (not first)")
    return value


@dataclass(frozen=True, slots=True)
class Topic:
    """A parsed gridwatch topic."""

    site: str
    node: str
    channel: Channel
    device: str | None = None
    message_type: str | None = None

    def __str__(self) -> str:
        parts = [ROOT, self.site, self.node, self.channel.value]
        if self.device is not None:
            parts.append(self.device)
        if self.message_type is not None:
            parts.append(self.message_type)
        return "/".join(parts)


def node_prefix(site: str, node: str) -> str:
    """The subtree a node owns: every topic it publishes or receives starts with this."""
    return f"{ROOT}/{check_id(site, 'site')}/{check_id(node, 'node')}"


def birth(site: str, node: str) -> str:
    return f"{node_prefix(site, node)}/{Channel.BIRTH}"


def death(site: str, node: str) -> str:
    return f"{node_prefix(site, node)}/{Channel.DEATH}"


def event(site: str, node: str, device: str, message_type: str) -> str:
    return f"{node_prefix(site, node)}/{Channel.EVENT}/{check_id(device, 'device')}/{message_type}"


def command(site: str, node: str, device: str) -> str:
    return f"{node_prefix(site, node)}/{Channel.COMMAND}/{check_id(device, 'device')}"


def command_result(site: str, node: str, device: str) -> str:
    return f"{node_prefix(site, node)}/{Channel.COMMAND_RESULT}/{check_id(device, 'device')}"


def receipt(site: str, node: str) -> str:
    return f"{node_prefix(site, node)}/{Channel.RECEIPT}"


def config(site: str, node: str) -> str:
    return f"{node_prefix(site, node)}/{Channel.CONFIG}"


def config_result(site: str, node: str) -> str:
    return f"{node_prefix(site, node)}/{Channel.CONFIG_RESULT}"


def node_commands_filter(site: str, node: str) -> str:
    """The filter of a node's own commands."""
    return f"{node_prefix(site, node)}/{Channel.COMMAND}/#"


def node_subscriptions(site: str, node: str) -> list[str]:
    """Everything an edge node subscribes to (and all the broker lets it): its own commands,
    the receipts for its own messages and its configuration."""
    return [node_commands_filter(site, node), receipt(site, node), config(site, node)]


def ingest_filters(shared_group: str | None = INGEST_SHARE_GROUP) -> list[str]:
    """What the ingest consumes; with a group, an MQTT v5 shared subscription."""
    filters = [f"{ROOT}/+/+/{channel}/#" for channel in (Channel.EVENT, Channel.COMMAND_RESULT)]
    filters += [
        f"{ROOT}/+/+/{channel}" for channel in (Channel.CONFIG_RESULT, Channel.BIRTH, Channel.DEATH)
    ]
    if shared_group:
        return [f"$share/{check_id(shared_group, 'share group')}/{f}" for f in filters]
    return filters


_PRESENCE = (Channel.BIRTH, Channel.DEATH)


def ingest_subscriptions(shared_group: str) -> tuple[list[str], list[str]]:
    """What an ingest worker subscribes to: (data filters shared by all workers of the group,
    presence filters every worker takes whole). Presence is not shared so that every worker
    applies births and deaths in the order the broker saw them. A node's answers to its
    configuration are shared: one worker records each (a newer answer never loses to an older
    one, whichever worker has it, see ingest.writer)."""

    def presence(f: str) -> bool:
        return f.rsplit("/", 1)[-1] in _PRESENCE

    shared = [f for f in ingest_filters(shared_group) if not presence(f)]
    whole = [f for f in ingest_filters(None) if presence(f)]
    return shared, whole


def parse(topic: str) -> Topic:
    """Parse a gridwatch topic; raise ValueError if it is not one."""
    parts = topic.split("/")
    if len(parts) < 5 or "/".join(parts[:2]) != ROOT:
        raise ValueError(f"not a gridwatch topic: {topic!r}")
    site, node, channel_name, *rest = parts[2:]
    try:
        channel = Channel(channel_name)
    except ValueError:
        raise ValueError(f"unknown channel {channel_name!r} in topic {topic!r}") from None
    check_id(site, "site")
    check_id(node, "node")
    expected_rest = {
        Channel.BIRTH: 0,
        Channel.DEATH: 0,
        Channel.EVENT: 2,
        Channel.COMMAND: 1,
        Channel.COMMAND_RESULT: 1,
        Channel.RECEIPT: 0,
        Channel.CONFIG: 0,
        Channel.CONFIG_RESULT: 0,
    }[channel]
    if len(rest) != expected_rest:
        raise ValueError(f"topic {topic!r} has the wrong number of levels for {channel}")
    device = check_id(rest[0], "device") if rest else None
    message_type = rest[1] if len(rest) == 2 else None
    return Topic(site, node, channel, device, message_type)
