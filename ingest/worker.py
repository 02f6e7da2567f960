"""One ingest worker: consume MQTT, store in batches, acknowledge only what is committed.

paho's network thread appends each message to an in-memory inbox (bounded by the MQTT v5
Receive Maximum we announce, so the broker stops sending when we fall behind). The worker
thread takes a batch, writes it in one transaction and, only after the commit, acknowledges
every message of the batch in the order they arrived. A crash before the commit means the
broker still holds those messages and sends them again; the ids make that harmless.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from casework.rules import RuleBook
from gateway import codec, topics
from gateway import messages as m
from gateway.client import QOS_AT_LEAST_ONCE, connect_async, connect_properties, new_client
from gateway.signing import Signer
from gateway.topics import Channel
from ingest import heartbeat, metrics
from ingest.commands import CommandPolicy
from ingest.groups import Scope
from ingest.leader import REGISTRY_CHANNEL, Duty, Leader
from ingest.platform import BrokerWatch
from ingest.registry import Registry
from ingest.settings import IngestSettings
from ingest.writer import BatchOutcome, BatchWriter, Received

log = logging.getLogger(__name__)

_RETRY_MAX_S = 10.0
_RECEIPT_RANGES = 1_000  # at most ~25 bytes each: well inside the edge's 64 KiB payload limit


def _end_session() -> Properties:
    """DISCONNECT properties that end our session: a retired slot's share stops being queued."""
    props = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 0
    return props


_END_SESSION = _end_session()


def _at(unix: float | None) -> datetime | None:
    return datetime.fromtimestamp(unix, UTC) if unix is not None else None


class IngestWorker:
    """Consumes the broker into the database until `stop()` is called."""

    def __init__(
        self,
        settings: IngestSettings,
        duties: Sequence[Duty] = (),
        *,
        scope: Scope | None = None,
        database_duties: Sequence[Duty] = (),
    ) -> None:
        """`duties`: leader work the composition root adds (ingest.leader.Duty), done by the
        group's leader for the group's nodes; `database_duties`: done by one leader of all the
        groups. `scope`: the group's areas as claimed (ingest.groups.claim); needed when
        GRIDWATCH_INGEST_AREAS is set, else the group carries the whole territory."""
        if scope is None:
            if settings.ingest_areas:
                raise ValueError(
                    "an ingest worker with GRIDWATCH_INGEST_AREAS needs its group's claimed"
                    " scope (ingest.groups.claim)"
                )
            scope = Scope(settings.ingest_group)
        self.settings = settings
        self.scope = scope
        self.registry = Registry(settings.registry_refresh_s, scope=scope)
        self.book = RuleBook(settings.registry_refresh_s)
        self.writer = BatchWriter(
            self.registry,
            max_payload=settings.max_payload_bytes,
            payload_cap=settings.rejected_payload_cap,
            rejected_per_node=settings.rejected_per_node,
            clip_max_bytes=settings.clip_max_bytes,
            clip_max_incomplete=settings.clip_max_incomplete,
            book=self.book,
            policy=settings.deadlines,
        )
        self._inbox: deque[Received] = deque()
        self._received = 0  # messages taken off the wire, counted by paho's thread alone
        metrics.RECEIVED.read = lambda: self._received
        # Read when scraped, so it grows while a batch cannot be committed (a database outage),
        # instead of showing the size the inbox had when that batch began.
        metrics.BACKLOG.set_function(lambda: len(self._inbox))
        self._connection_no = 0
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None
        self._started_at = datetime.now(UTC)
        self._last_receive: float | None = None  # Unix time, set by paho's thread
        self._last_commit: float | None = None
        self._next_beat = 0.0
        # Each worker slot has its own broker account, named like its client id.
        broker = settings.mqtt.as_account(settings.client_id)
        self.client, self.watch = new_client(settings.client_id, broker, manual_ack=True)
        self.client.on_message = self._on_message
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.leader = Leader(
            settings.database_url.get_secret_value(),
            self.registry,
            RuleBook(settings.registry_refresh_s),  # its own: the leader runs in another thread
            settings.deadlines,
            self._publish,
            self._stopping,
            settings.client_id,
            BrokerWatch(
                self.watch.connected.is_set,
                settings.broker_down_after_s,
                group=scope.group,
                live_s=settings.slot_stale_s,
            ),
            rejected_retention_days=settings.rejected_retention_days,
            slot_stale_s=settings.slot_stale_s,
            session_expiry_s=settings.session_expiry_s,
            signer=Signer.from_file(settings.command_key_file)
            if settings.command_key_file
            else None,
            command_policy=CommandPolicy(alarm_after_s=settings.command_alarm_s),
            duties=duties,
            scope=scope,
            database_duties=database_duties,
        )
        if settings.command_key_file is None:
            log.warning("no GRIDWATCH_COMMAND_KEY_FILE: commands go unsigned and edges refuse them")

    def _publish(self, topic: str, payload: bytes, *, retain: bool = False) -> mqtt.MQTTMessageInfo:
        return self.client.publish(topic, payload, qos=QOS_AT_LEAST_ONCE, retain=retain)

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
        # Births and deaths go to every worker (not shared): presence must be applied in the
        # order the broker saw it, and one worker's queue keeps that order. Retained births
        # are sent only when the subscription is new.
        shared, presence = topics.ingest_subscriptions(self.settings.share_group)
        # Retain-as-published: the ingest sees which messages a node left retained, and deletes
        # those where none belongs (only the birth may be retained; the broker cannot say so).
        subs = [
            (f, SubscribeOptions(qos=QOS_AT_LEAST_ONCE, retainAsPublished=True)) for f in shared
        ]
        subs += [
            (f, SubscribeOptions(qos=QOS_AT_LEAST_ONCE, retainHandling=1, retainAsPublished=True))
            for f in presence
        ]
        client.subscribe(subs)

    def _shared_filters(self) -> list[str]:
        return topics.ingest_subscriptions(self.settings.share_group)[0]

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
        item = Received(
            msg.topic, bytes(msg.payload), msg.mid, msg.qos, self._connection_no, bool(msg.retain)
        )
        self._inbox.append(item)
        self._received += 1
        self._last_receive = time.time()
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
            "ingest worker starting client_id=%s broker=%s:%s share_group=%s ingest_group=%s"
            " areas=%s",
            s.client_id, s.mqtt.host, s.mqtt.port, s.share_group, self.scope.group,
            self.scope.describe(),
        )  # fmt: skip
        connect_async(self.client, s.mqtt.as_account(s.client_id), clean_start=False,
                      properties=props)  # fmt: skip
        if s.leader:
            self.leader.start()
        idle_since = time.monotonic()
        retire = left_group = False
        try:
            while not self._stopping.is_set():
                self._beat_if_due()
                if len(self._inbox) < s.batch_max:
                    self._wake.wait(s.batch_wait_ms / 1000)
                    self._wake.clear()
                busy = bool(self._inbox)
                self._drain_once()
                if busy or not self.watch.connected.is_set():
                    idle_since = time.monotonic()
                elif until_idle_s is not None and time.monotonic() - idle_since >= until_idle_s:
                    if not left_group:
                        # Leave the shared subscription first, so that nothing more is queued
                        # for this slot, and take what was already on its way; then end the
                        # session, or the broker would queue this slot's share for days.
                        self.client.unsubscribe(self._shared_filters())
                        left_group, idle_since = True, time.monotonic()
                        continue
                    log.info("session drained, ending it client_id=%s", s.client_id)
                    retire = True
                    break
            while self._inbox:  # final flush of everything received before the stop
                if not self._drain_once():
                    break
        finally:
            self._stopping.set()
            if self.leader.thread.is_alive():
                self.leader.thread.join(10)
                if self.leader.thread.is_alive():  # a daemon thread: it does not hold the exit
                    log.warning("leader thread still busy after 10 s client_id=%s; stopping "
                                "without it", s.client_id)  # fmt: skip
            self.client.disconnect(properties=_END_SESSION if retire else None)
            self.client.loop_stop()
            if retire:
                self._retire()
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
        if n == 0:
            self._touch_registry()
            return True
        batch = [self._inbox[i] for i in range(n)]
        outcome = self._store(batch)
        if outcome is None:
            return False
        # Committed: tell each node what it may forget, then let the broker forget the batch.
        self._send_receipts(outcome)
        self._clear_retained(batch)
        for _ in range(n):
            self._inbox.popleft()
        for item in batch:
            # A message of an earlier connection is redelivered on this one under another id;
            # acknowledging its old id here could acknowledge a different, uncommitted message.
            if item.connection == self._connection_no:
                self.client.ack(item.mid, item.qos)
        metrics.ACKED.inc(n)
        return True

    def _send_receipts(self, outcome: BatchOutcome) -> None:
        """Receipts go out QoS 1 after the commit. One that is lost (the node is offline, the
        broker crashed) costs only a resend by the node, which the ids make harmless."""
        now = m.now()
        for (site, node), seqs in outcome.receipts.items():
            ranges = m.seq_ranges(seqs)
            # One node's messages are spread over the workers, so its ranges may be many: in
            # parts small enough for the node's payload limit.
            for i in range(0, len(ranges), _RECEIPT_RANGES):
                part = ranges[i : i + _RECEIPT_RANGES]
                receipt = m.Receipt(v=m.CONTRACT_VERSION, ts=now, seqs=part)
                info = self.client.publish(
                    topics.receipt(site, node), codec.encode(receipt), qos=QOS_AT_LEAST_ONCE
                )
                if info.rc == mqtt.MQTT_ERR_SUCCESS:
                    metrics.RECEIPTS.inc()
                else:
                    metrics.RECEIPTS_FAILED.inc()
                    log.warning(
                        "receipt not sent node=%s ranges=%d rc=%s", node, len(part), info.rc
                    )

    def _clear_retained(self, batch: list[Received]) -> None:
        """Delete retained messages left where none belongs (anywhere but a birth topic): a
        node must not fill the broker with retained junk. The message itself was judged and
        stored (or refused) like any other."""
        for item in batch:
            if not item.retained or not item.payload or item.topic.endswith(f"/{Channel.BIRTH}"):
                continue
            self.client.publish(item.topic, b"", qos=QOS_AT_LEAST_ONCE, retain=True)
            metrics.RETAINED_CLEARED.inc()
            log.warning("retained message cleared topic=%s", item.topic[:200])

    def _beat_if_due(self) -> None:
        """Record this worker's heartbeat every `heartbeat_s` (the leader watches for gaps)."""
        now = time.monotonic()
        if now < self._next_beat:
            return
        self._next_beat = now + self.settings.heartbeat_s
        s = self.settings
        beat = heartbeat.Beat(
            s.client_id, s.worker_slot, socket.gethostname(), os.getpid(), self._started_at,
            _at(self._last_receive), _at(self._last_commit), self.scope.group,
        )  # fmt: skip
        try:
            heartbeat.beat(self._connection(), beat)
        except psycopg.Error as exc:
            log.warning("heartbeat not recorded client_id=%s: %s", s.client_id, exc)
            self._reset_connection()

    def _retire(self) -> None:
        try:
            heartbeat.retire(self._connection(), self.settings.client_id, self.scope.group)
        except psycopg.Error as exc:
            log.error(
                "slot drained but its heartbeat row is left client_id=%s: %s",
                self.settings.client_id, exc,
            )  # fmt: skip

    def _registry_notices(self, conn: psycopg.Connection[tuple[object, ...]]) -> None:
        """A registry change announced (a device disabled, a node moved): read it again now,
        not at the next periodic refresh. The notices wait in the connection, unread."""
        for notice in conn.notifies(timeout=0):
            if notice.channel == REGISTRY_CHANNEL:
                self.registry.changed()

    def _touch_registry(self) -> None:
        try:
            conn = self._connection()
            self._registry_notices(conn)
            self.registry.refresh_if_due(conn)
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
            self._conn.execute(f"LISTEN {REGISTRY_CHANNEL}")
            self.registry.changed()  # what changed while not listening is read now
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
                self._registry_notices(conn)
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
            self._last_commit = time.time()
            metrics.LAST_COMMIT.set(self._last_commit)
            metrics.BATCH_SIZE.observe(len(batch))
            self._count(outcome)
            return outcome

    @staticmethod
    def _count(outcome: BatchOutcome) -> None:
        for table, n in outcome.stored.items():
            metrics.STORED.labels(table=table).inc(n)
        metrics.DUPLICATES.inc(outcome.duplicates)
        metrics.STALE_DEATHS.inc(outcome.stale_deaths)
        metrics.LATE.inc(outcome.late)
        for node, ahead in outcome.clock_ahead.items():
            metrics.CLOCK_AHEAD.labels(node=node).set(ahead)
        for rule in outcome.reactions.opened:
            metrics.INCIDENTS_OPENED.labels(rule=rule).inc()
        metrics.INCIDENTS_RESOLVED.inc(outcome.reactions.resolved)
        metrics.TASKS_CREATED.inc(len(outcome.reactions.tasks))
        for r in outcome.rejected:
            metrics.REJECTED.labels(reason=r.reason.value).inc()
            log.info(
                "message rejected topic=%s reason=%s detail=%s", r.topic, r.reason, r.detail[:200]
            )
