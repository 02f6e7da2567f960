"""Prometheus metrics of notifications (in the ingest worker that leads)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS = Counter("gridwatch_notify_events_total", "Notification events routed", ["kind"])
DELIVERIES = Counter(
    "gridwatch_notify_deliveries_total",
    "Delivery outcomes by channel: sent, failed, retried, digested, cancelled, fallback",
    ["channel", "outcome"],
)
QUEUE = Gauge("gridwatch_notify_queue_depth", "Deliveries waiting (pending), due or not")
OLDEST_DUE = Gauge(
    "gridwatch_notify_oldest_due_seconds", "How long the oldest due delivery has waited (0: none)"
)
SEND_SECONDS = Histogram(
    "gridwatch_notify_send_seconds",
    "Time one send to a channel took",
    ["channel"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
