"""One ingest worker: consume MQTT, store in batches, acknowledge only what is committed.

paho's network thread appends each message to an in-memory inbox (bounded by the MQTT v5
Receive Maximum we announce, so the broker stops sending when we fall behind). The worker
thread takes a batch, writes it in one transaction and, only after the commit, acknowledges
every message of the batch in the order they arrived. A crash before the commit means the
broker still holds those messages and sends them again; the ids make that harmless.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateway import topics
from gateway.client import QOS_AT_LEAST_ONCE, connect_async, connect_properties, new_client
from gateway.signing import Signer
from ingest import metrics
from ingest.commands import CommandPolicy
from ingest.leader import Leader
from ingest.registry import Registry
from ingest.rules import RuleBook
from ingest.settings import IngestSettings
from ingest.writer import BatchOutcome, BatchWriter, Received

log = logging.getLogger(__name__)

_RETRY_MAX_S = 10.0


class IngestWorker:
    """Consumes the broker into the database until `stop()` is called."""

    def __init__(self, settings: IngestSettings) -> None:
        self.settings = settings
        self.registry = Registry(settings.registry_refresh_s)
        self.book = RuleBook(settings.registry_refresh_s)
        self.writer = BatchWriter(
            self.registry,
            max_payload=settings.max_payload_bytes,
            payload_cap=settings.rejected_payload_cap,
            book=self.book,
            policy=settings.deadlines,
        )
        self._inbox: deque[Received] = deque()
        self._connection_no = 0
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None
        self.client, self.watch = new_client(settings.client_id, settings.mqtt, manual_ack=True)
        self.client.on_message = self._on_message
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.leader = Leader(
            settings.database_url.get_secret_value(),
            self.registry,
            RuleBook(settings.registry_refresh_s),  # its own: the leader runs in another thread
            settings.deadlines,
            lambda topic, payload: self.client.publish(topic, payload, qos=QOS_AT_LEAST_ONCE),
            self._stopping,
            settings.client_id,
            signer=Signer.from_file(settings.command_key_file)
            if settings.command_key_file
            else None,
            command_policy=CommandPolicy(alarm_after_s=settings.command_alarm_s),
        )
        if settings.command_key_file is None:
            log.warning("no GRIDWATCH_COMMAND_KEY_FILE: commands go unsigned and edges refuse them")

    # --- MQTT side (paho's network thread) ---------------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Any,
    ) -> None:
        self.watch.on_connect(client, userdata, flags, reason, properties)
        if reason.is_failure:
            return
        self._connection_no += 1
        shared = topics.ingest_filters(self.settings.share_group)
        # Births and deaths go to every worker (not shared): presence must be applied in the
        # order the broker saw it, and one worker's queue keeps that order. Retained births
        # are sent only when the subscription is new.
        presence = [f for f in topics.ingest_filters(None) if not f.endswith("#")]
        subs = [(f, SubscribeOptions(qos=QOS_AT_LEAST_ONCE)) for f in shared if f.endswith("#")]
        subs += [(f, SubscribeOptions(qos=QOS_AT_LEAST_ONCE, retainHandling=1)) for f in presence]
        client.subscribe(subs)

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        properties: Any,
    ) -> None:
        refused = [str(r) for r in reasons if r.is_failure]
        if refused:
            log.error(
                "subscription refused client_id=%s reasons=%s", self.settings.client_id, refused
            )
            return
        metrics.MQTT_CONNECTED.set(1)
        log.info("subscribed client_id=%s filters=%d", self.settings.client_id, len(reasons))

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Any,
    ) -> None:
        metrics.MQTT_CONNECTED.set(0)
        self.watch.on_disconnect(client, userdata, flags, reason, properties)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if self._stopping.is_set():
            return  # not taken, not acknowledged: the broker keeps it for the next start
        self._inbox.append(
            Received(msg.topic, bytes(msg.payload), msg.mid, msg.qos, self._connection_no)
        )
        metrics.RECEIVED.inc()
        if len(self._inbox) >= self.settings.batch_max:
            self._wake.set()

    # --- Worker side -------------------------------------------------------------------------

    def run(self, until_idle_s: float | None = None) -> None:
        """Connect and consume until stopped; then flush, commit and acknowledge what is left.

        With `until_idle_s`, stop by itself once connected and idle that long: this drains the
        session of a worker slot being retired (a shared subscription queues a share for it).
        """
        s = self.settings
        props = connect_properties(
            session_expiry_s=s.session_expiry_s, receive_maximum=s.receive_maximum
        )
        log.info(
            "ingest worker starting client_id=%s broker=%s:%s group=%s",
            s.client_id, s.mqtt.host, s.mqtt.port, s.share_group,
        )  # fmt: skip
        connect_async(self.client, s.mqtt, clean_start=False, properties=props)
        if s.leader:
            self.leader.start()
        idle_since = time.monotonic()
        try:
            while not self._stopping.is_set():
                if len(self._inbox) < s.batch_max:
                    self._wake.wait(s.batch_wait_ms / 1000)
                    self._wake.clear()
                busy = bool(self._inbox)
                self._drain_once()
                if busy or not self.watch.connected.is_set():
                    idle_since = time.monotonic()
                elif until_idle_s is not None and time.monotonic() - idle_since >= until_idle_s:
                    log.info("session drained, stopping client_id=%s", s.client_id)
                    break
            while self._inbox:  # final flush of everything received before the stop
                if not self._drain_once():
                    break
        finally:
            self._stopping.set()
            if self.leader.thread.is_alive():
                self.leader.thread.join(10)
            self.client.disconnect()
            self.client.loop_stop()
            if self._conn is not None:
                self._conn.close()
            metrics.MQTT_CONNECTED.set(0)
            log.info("ingest worker stopped client_id=%s", s.client_id)

    def stop(self) -> None:
        """Ask the worker to finish its current batch, flush and disconnect."""
        self._stopping.set()
        self._wake.set()

    def _drain_once(self) -> bool:
        """Store and acknowledge one batch; False if the database could not be reached."""
        n = min(len(self._inbox), self.settings.batch_max)
        metrics.BACKLOG.set(len(self._inbox))
        if n == 0:
            self._touch_registry()
            return True
        batch = [self._inbox[i] for i in range(n)]
        outcome = self._store(batch)
        if outcome is None:
            return False
        for _ in range(n):
            self._inbox.popleft()
        for item in batch:
            # A message of an earlier connection is redelivered on this one under another id;
            # acknowledging its old id here could acknowledge a different, uncommitted message.
            if item.connection == self._connection_no:
                self.client.ack(item.mid, item.qos)
        metrics.ACKED.inc(n)
        metrics.BACKLOG.set(len(self._inbox))
        return True

    def _touch_registry(self) -> None:
        try:
            self.registry.refresh_if_due(self._connection())
        except psycopg.Error as exc:
            log.warning("registry refresh failed: %s", exc)
            self._reset_connection()

    def _connection(self) -> psycopg.Connection[tuple[object, ...]]:
        if self._conn is None or self._conn.closed:
            # Autocommit, so that `transaction()` below is always a real BEGIN ... COMMIT and
            # never a savepoint inside an implicit transaction left open by a read.
            self._conn = psycopg.connect(
                self.settings.database_url.get_secret_value(),
                autocommit=True,
                application_name=f"gridwatch-{self.settings.client_id}",
            )
            self.writer.prepare(self._conn)
        return self._conn

    def _reset_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None

    def _store(self, batch: list[Received]) -> BatchOutcome | None:
        """Write one batch, retrying until it is committed; None if stopped while it cannot be."""
        delay = 0.2
        isolate = False
        while True:
            started = time.perf_counter()
            try:
                conn = self._connection()
                self.registry.refresh_if_due(conn)
                self.book.refresh_if_due(conn)
                accepted, rejected = self.writer.classify(batch)
                with conn.transaction():
                    if isolate:
                        outcome = self.writer.write_isolating(conn, accepted, rejected)
                    else:
                        outcome = self.writer.write(conn, accepted, rejected)
            except (psycopg.DataError, psycopg.IntegrityError) as exc:
                if isolate:  # even message by message it fails: a database problem, retry later
                    metrics.DB_ERRORS.labels(kind=type(exc).__name__).inc()
                    log.error("isolated write failed, retrying in %.1fs: %s", delay, exc)
                    if self._stopping.wait(delay):
                        return None
                    delay = min(delay * 2, _RETRY_MAX_S)
                    continue
                # Something in this batch is refused by the database: find it message by message.
                metrics.DB_ERRORS.labels(kind=type(exc).__name__).inc()
                log.warning(
                    "batch refused, isolating bad messages size=%d error=%s", len(batch), exc
                )
                isolate = True
                continue
            except psycopg.Error as exc:
                metrics.DB_ERRORS.labels(kind=type(exc).__name__).inc()
                log.error(
                    "batch not stored, will retry in %.1fs size=%d error=%s: %s",
                    delay, len(batch), type(exc).__name__, str(exc).strip(),
                )  # fmt: skip
                self._reset_connection()
                if self._stopping.is_set():
                    log.error(
                        "stopping with %d messages unacknowledged; the broker keeps them",
                        len(batch),
                    )
                    return None
                self._stopping.wait(delay)
                delay = min(delay * 2, _RETRY_MAX_S)
                continue
            metrics.COMMIT_SECONDS.observe(time.perf_counter() - started)
            metrics.BATCH_SIZE.observe(len(batch))
            self._count(outcome)
            return outcome

    @staticmethod
    def _count(outcome: BatchOutcome) -> None:
        for table, n in outcome.stored.items():
            metrics.STORED.labels(table=table).inc(n)
        metrics.DUPLICATES.inc(outcome.duplicates)
        metrics.STALE_DEATHS.inc(outcome.stale_deaths)
        for rule in outcome.reactions.opened:
            metrics.INCIDENTS_OPENED.labels(rule=rule).inc()
        metrics.INCIDENTS_RESOLVED.inc(outcome.reactions.resolved)
        metrics.TASKS_CREATED.inc(len(outcome.reactions.tasks))
        for r in outcome.rejected:
            metrics.REJECTED.labels(reason=r.reason.value).inc()
            log.info(
                "message rejected topic=%s reason=%s detail=%s", r.topic, r.reason, r.detail[:200]
            )
