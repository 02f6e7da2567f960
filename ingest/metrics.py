"""Prometheus metrics of the ingest (one set per worker process)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector


class _Received(Collector):
    """gridwatch_ingest_received_total, read from the worker when scraped: the count is kept as a
    plain integer by paho's thread, since a Counter's lock on every message costs the ingest a
    twentieth of its time."""

    def __init__(self) -> None:
        self.read: Callable[[], int] = lambda: 0

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(
            "gridwatch_ingest_received", "MQTT messages received from the broker", self.read()
        )


RECEIVED = _Received()
REGISTRY.register(RECEIVED)
STORED = Counter("gridwatch_ingest_stored_total", "Messages newly stored", ["table"])
DUPLICATES = Counter(
    "gridwatch_ingest_duplicates_total", "Messages whose id was already stored (redeliveries)"
)
REJECTED = Counter("gridwatch_ingest_rejected_total", "Messages refused and recorded", ["reason"])
ACKED = Counter("gridwatch_ingest_acked_total", "Messages acknowledged to the broker after commit")
BATCH_SIZE = Histogram(
    "gridwatch_ingest_batch_size",
    "Messages per committed batch",
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000),
)
COMMIT_SECONDS = Histogram(
    "gridwatch_ingest_commit_seconds",
    "Time to write and commit one batch",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
BACKLOG = Gauge(
    "gridwatch_ingest_backlog", "Messages received but not yet committed and acknowledged"
)
LAST_COMMIT = Gauge(
    "gridwatch_ingest_last_commit_timestamp_seconds",
    "When this worker last committed a batch (Unix time); 0 before the first",
)
DB_ERRORS = Counter("gridwatch_ingest_db_errors_total", "Database errors while writing", ["kind"])
STALE_DEATHS = Counter(
    "gridwatch_ingest_stale_deaths_total", "Node deaths ignored because their bdseq was stale"
)
MQTT_CONNECTED = Gauge(
    "gridwatch_ingest_mqtt_connected", "1 while connected to the broker and subscribed"
)

INCIDENTS_OPENED = Counter("gridwatch_incidents_opened_total", "Incidents opened", ["rule"])
INCIDENTS_RESOLVED = Counter(
    "gridwatch_incidents_resolved_total", "Incidents resolved by a clear signal"
)
TASKS_CREATED = Counter("gridwatch_tasks_created_total", "Grid tasks opened for new incidents")
TIMERS_FIRED = Counter("gridwatch_timers_fired_total", "Durable timers that fired", ["kind"])
TIMER_LATENESS = Histogram(
    "gridwatch_timer_lateness_seconds",
    "How late a timer fired after it was due",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
COMMANDS_SENT = Counter("gridwatch_commands_sent_total", "Platform commands published to nodes")
UNCONSUMED_SLOTS = Gauge(
    "gridwatch_ingest_unconsumed_slots",
    "On the leader: worker slots whose broker session has had no live worker for slot_stale_s",
)
COMMANDS_RETRIED = Counter(
    "gridwatch_commands_retried_total",
    "Attempts after the first of commands that must be delivered",
)
COMMANDS_UNDELIVERED = Counter(
    "gridwatch_commands_undelivered_total",
    "Commands that must be delivered and were not answered in time (an incident each)",
)
LEADER = Gauge("gridwatch_ingest_leader", "1 while this worker leads its ingest group")
DATABASE_LEADER = Gauge(
    "gridwatch_ingest_database_leader",
    "1 while this worker's leader also does the database's work (timers, retention, notifications)",
)
TIMER_FAILURES = Counter("gridwatch_timer_failures_total", "Timers dropped because firing failed")
LATE = Counter(
    "gridwatch_ingest_late_total",
    "State messages older than their device's latest: stored, judged by no rule",
)
RECEIPTS = Counter(
    "gridwatch_ingest_receipts_total", "Receipts published to nodes after a commit (one per node)"
)
RECEIPTS_FAILED = Counter(
    "gridwatch_ingest_receipts_failed_total",
    "Receipts that could not be handed to the broker (the node sends those messages again)",
)
CLOCK_AHEAD = Gauge(
    "gridwatch_ingest_clock_ahead_seconds",
    "How far ahead a node's clock was when its messages were last taken as sent now",
    ["node"],
)
PLATFORM_BROKER_DOWN = Gauge(
    "gridwatch_platform_broker_down",
    "1 while the leader cannot reach the broker for longer than the limit (a platform incident)",
)
RETAINED_CLEARED = Counter(
    "gridwatch_ingest_retained_cleared_total",
    "Retained messages deleted because nodes may retain only their birth",
)
