"""Prometheus metrics of edge agents, labelled by node (a simulated fleet runs many in one process)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import Counter, Gauge

PUBLISHED = Counter("gridwatch_edge_published_total", "Messages handed to the broker", ["node"])
DELIVERED = Counter(
    "gridwatch_edge_delivered_total", "Messages the broker acknowledged as delivered", ["node"]
)
CONFIRMED = Counter(
    "gridwatch_edge_confirmed_total",
    "Messages the platform's receipts confirmed stored (they leave the outbox)",
    ["node"],
)
RESENT = Counter(
    "gridwatch_edge_resent_total",
    "Messages sent again because no receipt came for them in time",
    ["node"],
)
RETRIED = Counter(
    "gridwatch_edge_retried_total",
    "PUBACKs that asked for a resend (no subscriber yet, broker busy)",
    ["node"],
)
DROPPED = Counter(
    "gridwatch_edge_dropped_total",
    "Messages that left the outbox undelivered: outbox_full, bulk_bytes (clips over the outbox's"
    " byte budget for them), or refused by the broker",
    ["node", "reason"],
)
BACKLOG = Gauge("gridwatch_edge_backlog", "Messages in the outbox awaiting delivery", ["node"])
CONNECTED = Gauge(
    "gridwatch_edge_connected", "1 while the node is connected to the broker", ["node"]
)
READINGS = Counter("gridwatch_edge_readings_total", "Readings reported by drivers", ["node"])
COMMANDS = Counter(
    "gridwatch_edge_commands_total", "Commands answered, by status", ["node", "status"]
)
COMMAND_DUPLICATES = Counter(
    "gridwatch_edge_command_duplicates_total",
    "Commands received again and not re-executed",
    ["node"],
)
COMMAND_INVALID = Counter(
    "gridwatch_edge_commands_invalid_total", "Command payloads that could not be read", ["node"]
)
COMMAND_REFUSED = Counter(
    "gridwatch_edge_commands_refused_total",
    "Commands not executed because they could not be trusted, by reason",
    ["node", "reason"],
)
CONFIGS = Counter(
    "gridwatch_edge_configs_total",
    "Configurations pushed by the platform and answered, by status (applied, refused)",
    ["node", "status"],
)


@dataclass(frozen=True, slots=True)
class NodeMetrics:
    """One node's metric children, looked up once: the send path runs per message."""

    published: Counter
    delivered: Counter
    confirmed: Counter
    resent: Counter
    retried: Counter
    dropped_full: Counter
    dropped_bulk: Counter
    dropped_refused: Counter
    backlog: Gauge
    connected: Gauge
    readings: Counter
    command_invalid: Counter
    command_duplicates: Counter


def for_node(node: str) -> NodeMetrics:
    return NodeMetrics(
        published=PUBLISHED.labels(node), delivered=DELIVERED.labels(node),
        confirmed=CONFIRMED.labels(node), resent=RESENT.labels(node),
        retried=RETRIED.labels(node), dropped_full=DROPPED.labels(node, "outbox_full"),
        dropped_bulk=DROPPED.labels(node, "bulk_bytes"),
        dropped_refused=DROPPED.labels(node, "refused"), backlog=BACKLOG.labels(node),
        connected=CONNECTED.labels(node), readings=READINGS.labels(node),
        command_invalid=COMMAND_INVALID.labels(node),
        command_duplicates=COMMAND_DUPLICATES.labels(node),
    )  # fmt: skip
