"""The device registry as the ingest sees it: which node owns which device, at which site."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import psycopg

from casework.venues import VenueInfo
from gateway.codec import DecodeError, Inbound, RejectReason
from gateway.messages import NodeBirth
from ingest.groups import WHOLE, Scope

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One consistent read of the registry."""

    node_site: dict[str, str]
    device_node: dict[str, str]
    venues: dict[str, VenueInfo] = field(default_factory=dict)
    disabled_devices: frozenset[str] = frozenset()
    # Enabled nodes another ingest group carries (node -> site): not this group's to store.
    elsewhere: dict[str, str] = field(default_factory=dict)


def load(conn: psycopg.Connection[tuple[object, ...]], scope: Scope = WHOLE) -> Snapshot:
    """Read every enabled node, every device and every venue; nodes outside the group's areas
    are kept apart (`elsewhere`)."""
    nodes = conn.execute(
        """SELECT n.id, n.venue_id, COALESCE(t.path <@ %s::ltree[], true)
           FROM edge_nodes n JOIN venues v ON v.id = n.venue_id
           JOIN territory t ON t.id = v.grid_id
           WHERE NOT n.disabled AND NOT v.disabled""",
        (scope.param(),),
    ).fetchall()
    devices = conn.execute("SELECT id, node_id, disabled FROM devices").fetchall()
    venues = conn.execute(
        """SELECT v.id, v.kind::text, v.capacity, v.is_shelter, v.open_24h, v.opening_hours,
                  v.timezone, v.grid_id, t.path::text, v.name
           FROM venues v JOIN territory t ON t.id = v.grid_id"""
    ).fetchall()
    return Snapshot(
        node_site={str(n): str(v) for n, v, ours in nodes if ours},
        elsewhere={str(n): str(v) for n, v, ours in nodes if not ours},
        device_node={str(d): str(n) for d, n, _ in devices},
        venues={str(r[0]): VenueInfo(*r) for r in venues},  # type: ignore[arg-type]
        disabled_devices=frozenset(str(d) for d, _, off in devices if off),
    )


class Registry:
    """A cached registry that re-reads itself periodically, at once when the registry announces
    a change (`changed()`, from a NOTIFY), and, rate-limited, on a miss."""

    def __init__(self, refresh_s: float, miss_reload_s: float = 2.0, scope: Scope = WHOLE) -> None:
        """`scope`: the ingest group's areas; other nodes' messages are refused."""
        self.scope = scope
        self._refresh_s = refresh_s
        self._miss_reload_s = miss_reload_s
        self._snapshot = Snapshot({}, {})
        self._loaded_at = float("-inf")
        self._stale = False
        self._changed = False

    def changed(self) -> None:
        """The registry changed (a device or node disabled, added, moved): read it again at the
        next refresh, so that a disabled device's messages are refused within a second."""
        self._changed = True

    def refresh_if_due(self, conn: psycopg.Connection[tuple[object, ...]]) -> None:
        """Re-read when the refresh period has passed, a change was announced, or (at most every
        `miss_reload_s`) an unknown id was seen."""
        age = time.monotonic() - self._loaded_at
        if (age >= self._refresh_s or self._changed
                or (self._stale and age >= self._miss_reload_s)):  # fmt: skip
            self._changed = False
            self._snapshot = load(conn, self.scope)
            self._loaded_at = time.monotonic()
            self._stale = False
            log.debug(
                "registry loaded nodes=%d devices=%d",
                len(self._snapshot.node_site),
                len(self._snapshot.device_node),
            )

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    def venue_of_node(self, node: str) -> VenueInfo | None:
        site = self._snapshot.node_site.get(node)
        return self._snapshot.venues.get(site) if site is not None else None

    def check(self, inbound: Inbound) -> None:
        """Raise DecodeError unless the message's node and device belong together."""
        topic, message = inbound.topic, inbound.message
        snap = self._snapshot
        site = snap.node_site.get(topic.node)
        if site != topic.site:
            self._stale = True
            if snap.elsewhere.get(topic.node) == topic.site:
                # No receipt either (the node has no site here): it keeps the message, and sends
                # it again once it is connected to the broker that carries it.
                raise DecodeError(
                    RejectReason.OUTSIDE_GROUP,
                    f"node {topic.node!r} at site {topic.site!r} lies outside the areas of ingest"
                    f" group {self.scope.group!r} ({self.scope.describe()}): its messages belong"
                    " on the broker of the group that carries its venue; give the node that"
                    " broker's site file",
                )
            raise DecodeError(
                RejectReason.UNKNOWN_NODE, f"no enabled node {topic.node!r} at site {topic.site!r}"
            )
        if isinstance(message, NodeBirth):
            foreign = [
                d.id
                for d in message.devices
                if snap.device_node.get(d.id, topic.node) != topic.node
            ]
            if foreign:
                raise DecodeError(
                    RejectReason.FOREIGN_DEVICE,
                    f"birth of {topic.node!r} lists devices of other nodes: {foreign[:5]}",
                )
            return
        device = getattr(message, "device", None)
        if device is None:
            return
        owner = snap.device_node.get(device)
        if owner is None:
            self._stale = True
            raise DecodeError(RejectReason.UNKNOWN_DEVICE, f"device {device!r} is not registered")
        if owner != topic.node:
            raise DecodeError(
                RejectReason.FOREIGN_DEVICE,
                f"device {device!r} belongs to node {owner!r}, not {topic.node!r}",
            )
        if device in snap.disabled_devices:
            raise DecodeError(
                RejectReason.DISABLED_DEVICE,
                f"device {device!r} of node {topic.node!r} is disabled in the registry: its"
                " messages are refused until it is enabled again",
            )
