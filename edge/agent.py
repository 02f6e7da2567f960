"""The edge agent: one per venue. Drivers' readings go through the outbox to the broker, in order
and at a bounded rate; commands from the platform are executed once each and answered.

Threads: paho's network thread runs the MQTT callbacks; a command thread executes commands and
applies configurations pushed by the platform (a driver call may block; one after the other, so
no command meets a driver being replaced); `pump()` sends from the outbox and is called by
`run()` every few milliseconds, or for many agents at once by a simulated fleet.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from edge import drivers as d
from edge import metrics, reconfig, trust
from edge.config import ConfigError, DeviceConfig, SiteConfig
from edge.outbox import Outbox, Priority, Store
from gateway import codec, topics
from gateway import messages as m
from gateway.client import (
    QOS_AT_LEAST_ONCE,
    PublishOutcome,
    connect_async,
    new_client,
    publish_outcome,
)
from gateway.codec import DecodeError
from gateway.signing import Verifier

log = logging.getLogger(__name__)

SOFTWARE = "gridwatch-edge 0.1"
PUMP_INTERVAL_S = 0.02
_RETRY_PAUSE_S = 1.0
_RECEIPT_WAIT_MAX_S = 3600.0
_COMMAND_MEMORY = timedelta(days=7)
# The broker gave this node's session to a newer connection with the same client id (the node
# id): another agent runs as this node. Reconnecting would only take it back, for ever.
_SESSION_TAKEN_OVER = ReasonCode(PacketTypes.DISCONNECT, "Session taken over")
# Mosquitto 2.0.11 closes the older connection without sending that reason: the sign is then a
# connection the broker closes soon after accepting it, several times in a row (the two agents
# take turns, one reconnect delay apart). The agent that was displaced first gives way.
_TAKEOVER_WINDOW_S = 10.0
_TAKEOVERS_TO_STOP = 3
# Dropped first when the outbox is full: states that the next report repeats, and pictures
# (their alerts stay).
_TELEMETRY = (
    d.OccupancySeen, d.DoorStateSeen, d.SpeakerStatusSeen, d.CameraStatusSeen,
    d.CameraSnapshotSeen,
)  # fmt: skip
# Dropped before anything else: a clip is large and only illustrates its alert, so it must never
# push an alarm or a reading out of a full outbox.
_BULK = (d.CameraClipSeen,)
_BULK_IN_FLIGHT = 2  # bulk messages awaiting PUBACK at most (~110 kB of clip parts)


def hash_credential(key: bytes, raw: str) -> str:
    """What leaves the site instead of a card or code number: HMAC-SHA256 with the site key."""
    return hmac.new(key, raw.encode(), hashlib.sha256).hexdigest()


def to_message(reading: d.Reading, env: m.EnvelopeFields, key: bytes) -> m.DeviceEvent:
    """The wire message for a driver's reading."""
    if reading.ts is not None:
        env = {**env, "ts": reading.ts}
    dev = reading.device
    match reading:
        case d.AccessSeen():
            return m.DoorAccess(
                **env, device=dev,
                result=m.AccessResult.GRANTED if reading.granted else m.AccessResult.DENIED,
                credential=hash_credential(key, reading.raw_credential),
                direction=reading.direction, reason=None if reading.granted else reading.reason,
            )  # fmt: skip
        case d.ForcedSeen():
            return m.DoorForced(**env, device=dev)
        case d.HeldOpenSeen():
            return m.DoorHeldOpen(**env, device=dev, open_s=reading.open_s)
        case d.DoorStateSeen():
            return m.DoorState(
                **env, device=dev, open=reading.open, locked=reading.locked, mode=reading.mode
            )
        case d.OccupancySeen():
            return m.Occupancy(
                **env, device=dev, zone=reading.zone, count=reading.count,
                entered=reading.entered, exited=reading.exited,
            )  # fmt: skip
        case d.CameraAlertSeen():
            return m.CameraAlert(
                **env, device=dev, alert_id=reading.alert_id, phase=reading.phase,
                kind=reading.kind, zone=reading.zone, score=reading.score,
                objects=reading.objects, snapshot=reading.snapshot,
            )  # fmt: skip
        case d.CameraSnapshotSeen():
            named = m.envelope(env["seq"], id=reading.message_id, ts=env["ts"])
            return m.CameraSnapshot(
                **named, device=dev, alert_id=reading.alert_id,
                width=reading.width, height=reading.height,
                jpeg=base64.b64encode(reading.jpeg).decode(),
            )  # fmt: skip
        case d.CameraClipSeen():
            return m.CameraClip(
                **env, device=dev, clip_id=reading.clip_id, alert_id=reading.alert_id,
                part=reading.part, parts=reading.parts, mime="video/webm",
                width=reading.width, height=reading.height, fps=reading.fps,
                start=reading.start, end=reading.end, size=reading.size, sha256=reading.sha256,
                data=base64.b64encode(reading.data).decode(),
            )  # fmt: skip
        case d.CameraStatusSeen():
            return m.CameraStatus(
                **env, device=dev, online=reading.online, fps=round(reading.fps, 2),
                detail=reading.detail,
            )  # fmt: skip
        case d.SpeakerStatusSeen():
            return m.SpeakerStatus(
                **env, device=dev, online=reading.online, volume=reading.volume,
                playing=reading.playing, clip=reading.clip, fault=reading.fault,
            )  # fmt: skip
        case d.DeviceHealthSeen():
            return m.DeviceHealth(
                **env, device=dev, online=reading.online, condition=reading.condition,
                detail=None if reading.detail is None else reading.detail[:200],
                faults=dict(reading.faults),
                clock_offset_s=None if reading.clock_offset_s is None
                else round(reading.clock_offset_s, 1),
            )  # fmt: skip
    raise TypeError(f"no message for reading {type(reading).__name__}")


@dataclass(frozen=True, slots=True)
class _Pushed:
    """A configuration received, waiting for the command thread."""

    config: m.NodeConfig
    payload: bytes


class EdgeAgent:
    """One venue's edge node."""

    def __init__(
        self,
        config: SiteConfig,
        devices: list[d.Device],
        store: Store | None = None,
        *,
        drivers: reconfig.DriverFactory | None = None,
    ) -> None:
        """`store`: an outbox file shared with other agents (a simulated fleet); by default the
        agent opens its own at `config.outbox.path` and closes it when it stops. `drivers`
        builds the driver of a device a pushed configuration adds or changes; without it only
        a configuration that changes no driver can be applied."""
        configured = {c.id: c.kind for c in config.devices}
        given = {dev.id: dev.kind for dev in devices}
        if configured != given:
            raise ValueError(f"drivers {given} do not match the configured devices {configured}")
        self.config = config
        self.site, self.node = config.site, config.node
        self._metrics = metrics.for_node(self.node)
        self.devices = {dev.id: dev for dev in devices}
        self._own_store = store is None
        store = store or Store(config.outbox.path, config.outbox.durability)
        self.outbox = Outbox(store, config.node, max_messages=config.outbox.max_messages,
                             max_bulk_bytes=config.outbox.max_bulk_bytes)  # fmt: skip
        self._key = config.site_secret.get_secret_value().encode()
        self._verifier = Verifier(config.command_key) if config.command_key else None
        broker = config.broker
        if broker.username is None:
            broker = broker.as_account(config.node)
        if config.broker_ca is not None:
            broker = broker.model_copy(update={"tls_ca": _write_ca(config)})
        self._broker = broker
        self._drivers = drivers
        self._device_configs: dict[str, DeviceConfig] = {c.id: c for c in config.devices}
        self.config_version = config.config_version
        self._kept = reconfig.Kept(config.outbox.path, config.node)
        self._config_topic = topics.config(self.site, self.node)
        self.client, self.watch = new_client(config.node, broker, max_inflight=config.outbox.window)
        self.client.on_pre_connect = self._on_pre_connect
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self._lock = threading.Lock()
        self._acks: deque[tuple[int, int, ReasonCode]] = deque()  # (connection, mid, reason)
        self._connection = 0  # +1 on every successful connect (paho's thread)
        self._pumped_connection = 0  # the connection the sending state below belongs to
        self._inflight: dict[int, int] = {}  # paho mid -> outbox seq, for this connection
        self._probing = True  # one in flight until the broker has taken one (see pump)
        self._cursor = 0  # highest seq handed to paho on this connection (all but bulk)
        self._bulk_cursor = 0  # the same for the bulk lane (clips), sent when nothing else waits
        self._bulk_mids: set[int] = set()  # the bulk messages in flight
        self._resume_at = 0.0  # after a "send again later" PUBACK
        self._tokens = float(config.outbox.window)
        self._last_pump = time.monotonic()
        self._receipts: deque[m.Receipt] = deque()  # from paho's thread, settled by pump()
        self._last_progress = time.monotonic()  # the last receipt that confirmed something
        self._receipt_wait_s = config.outbox.receipt_timeout_s
        self._bdseq = 0
        self._commands: queue.Queue[m.Command | _Pushed | None] = queue.Queue()
        self._command_thread = threading.Thread(
            target=self._command_loop, name=f"commands-{self.node}", daemon=True
        )
        self._stopped = threading.Event()
        self.executed_commands = 0
        self.readings = 0
        self._stopping = False
        self.fatal: str | None = None  # why the agent gave up (see _fail); None while it runs
        self.failed = threading.Event()
        self._birth_mid: int | None = None
        self._subscribe_mid: int | None = None
        self._online_since = 0.0  # monotonic time of the last CONNACK; 0 while offline
        self._short_drops = 0  # connections in a row the broker closed soon after accepting
        self._metrics.backlog.set(len(self.outbox))
        self._metrics.connected.set(0)

    # --- life ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the drivers, the command thread and the connection (reconnects by itself)."""
        self.outbox.forget_commands_before(time.time() - _COMMAND_MEMORY.total_seconds())
        for payload in self.outbox.unfinished_commands():
            command = codec.decode(payload)
            if isinstance(command, m.Command):
                self._commands.put(command)
        self._command_thread.start()
        for dev in self.devices.values():
            dev.start(self.submit)
        connect_async(self.client, self._broker, clean_start=True)
        if self._verifier is None:
            log.error(
                "no command_key in the site file of node=%s: every command will be refused;"
                " add the platform's public key (`gridwatch keys init` prints it)",
                self.node,
            )
        log.info(
            "edge agent started node=%s site=%s devices=%d backlog=%d",
            self.node, self.site, len(self.devices), len(self.outbox),
        )  # fmt: skip

    def run(self, stop: threading.Event) -> None:
        """Pump the outbox until `stop` is set or the agent fails (see `fatal`)."""
        while not stop.wait(PUMP_INTERVAL_S) and not self.failed.is_set():
            self.pump()

    def stop(self) -> None:
        """Stop the drivers, give what is in flight a moment to be confirmed (what is not stays
        in the outbox for the next start), and leave with a death message."""
        if self._stopped.is_set():
            return
        self._stopping = True
        for dev in self.devices.values():
            dev.stop()
        deadline = time.monotonic() + 2.0
        while self.watch.connected.is_set() and len(self.outbox) and time.monotonic() < deadline:
            self.pump()
            time.sleep(PUMP_INTERVAL_S)
        # MQTT v5 lets a client leave with its will published: the platform sees the node go.
        self.client.disconnect(
            reasoncode=ReasonCode(PacketTypes.DISCONNECT, "Disconnect with will message")
        )
        self.client.loop_stop()
        with self._lock:
            self._settle(time.monotonic())  # PUBACKs that came in after the last pump
        self._commands.put(None)
        self._command_thread.join(5)
        self._stopped.set()
        self._metrics.connected.set(0)
        if self._own_store:
            self.outbox.store.close()
        log.info("edge agent stopped node=%s", self.node)

    def cut_link(self) -> None:
        """Drop the broker connection abruptly (no will sent by us; the broker sends it)."""
        sock = self.client.socket()
        if sock is not None:
            sock.close()

    # --- outgoing -----------------------------------------------------------------------------

    def submit(self, reading: d.Reading) -> bool:
        """Put a driver's reading into the outbox (called from any thread); False when the agent
        has stopped and the reading is not kept."""
        if self._stopped.is_set():
            return False
        group = None
        if isinstance(reading, _BULK):
            priority, group = Priority.BULK, str(reading.clip_id)  # a clip's parts go together
        elif isinstance(reading, _TELEMETRY):
            priority = Priority.TELEMETRY
        else:
            priority = Priority.EVENT
        self._store(lambda env: to_message(reading, env, self._key), priority, group)
        self.readings += 1
        self._metrics.readings.inc()
        return True

    def _store(self, make: Any, priority: Priority, group: str | None = None) -> None:
        def build(seq: int) -> tuple[str, bytes]:
            message = make(m.envelope(seq))
            return codec.topic_for(self.site, self.node, message), codec.encode(message)

        _, dropped = self.outbox.add(build, priority, group=group)
        if dropped:
            (self._metrics.dropped_bulk if group else self._metrics.dropped_full).inc(dropped)
        self._metrics.backlog.set(len(self.outbox))

    def pump(self) -> int:
        """Settle the broker's answers, then hand the next messages to paho; how many were sent.

        Only this method touches the sending state, so paho's callbacks never wait for a lock
        of ours while holding one of paho's (publishing from here takes paho's locks).
        """
        now = time.monotonic()
        cfg = self.config.outbox
        with self._lock:
            self._settle(now)  # answers of the previous connection still count
            self._take_receipts(now)
            if self._connection != self._pumped_connection:
                self._pumped_connection = self._connection
                self._inflight.clear()
                self._bulk_mids.clear()
                # Start again from the oldest message not yet confirmed stored: whatever the
                # broker acknowledged before may have died with it.
                self._cursor = self._bulk_cursor = 0
                self._resume_at = 0.0
                self._probing = True
                self._last_progress = now
            elif self._unconfirmed_too_long(now):
                self._cursor = self._bulk_cursor = 0  # send what is unconfirmed again, in order
            self._tokens = min(
                float(cfg.window), self._tokens + (now - self._last_pump) * cfg.replay_rate
            )
            self._last_pump = now
            if not self.watch.connected.is_set() or now < self._resume_at:
                return 0
            # While probing, one message at a time: if the broker has no taker yet (0x10), a
            # message behind it must not be delivered first, or the order would break.
            window = 1 if self._probing else cfg.window
            room = min(int(self._tokens), window - len(self._inflight))
            last = self.outbox.last_seq  # read first: every message up to it is on disk
            bulk_waits = self._bulk_cursor < min(last, self.outbox.last_bulk_seq)
            if room <= 0 or (self._cursor >= last and not bulk_waits):
                return 0
            sent = 0
            entries = self.outbox.pending(self._cursor, room) if self._cursor < last else []
            # Clips only when nothing else waits, and few at a time: an alarm raised meanwhile
            # waits behind at most _BULK_IN_FLIGHT parts, never behind a backlog of video.
            bulk_room = min(room - len(entries), _BULK_IN_FLIGHT - len(self._bulk_mids))
            bulk = []
            if bulk_room > 0 and bulk_waits:
                bulk = self.outbox.pending(self._bulk_cursor, bulk_room, bulk=True)
            bulk_seqs = {e.seq for e in bulk}
            for entry in [*entries, *bulk]:
                info = self.client.publish(
                    entry.topic, entry.payload, qos=QOS_AT_LEAST_ONCE, retain=entry.retain
                )
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    break  # the connection just dropped; the next connection starts over
                self._inflight[info.mid] = entry.seq
                if entry.seq in bulk_seqs:
                    self._bulk_mids.add(info.mid)
                    self._bulk_cursor = entry.seq
                else:
                    self._cursor = entry.seq
                self._tokens -= 1
                sent += 1
            else:
                # A lane that gave less than asked has nothing more up to `last`: its cursor
                # skips the other lane's messages, so an idle pump costs no query.
                if len(entries) < room:
                    self._cursor = max(self._cursor, last)
                if bulk_room > 0 and len(bulk) < bulk_room:
                    self._bulk_cursor = max(self._bulk_cursor, last)
        self._metrics.published.inc(sent)
        return sent

    def _settle(self, now: float) -> None:
        """Act on the PUBACKs received since the last pump."""
        delivered = refused = 0
        while self._acks:
            connection, mid, reason = self._acks.popleft()
            seq = self._inflight.pop(mid, None) if connection == self._pumped_connection else None
            if seq is None:
                continue  # a birth, or a message of an earlier connection
            was_bulk = mid in self._bulk_mids
            self._bulk_mids.discard(mid)
            match publish_outcome(reason):
                case PublishOutcome.DELIVERED:
                    # The broker has it; the outbox keeps it until a receipt says it is stored.
                    delivered += 1
                    self._probing = False
                case PublishOutcome.RETRY:
                    # Not taken (no subscriber yet, broker busy): send again from here after a
                    # pause, so the order of what follows is kept.
                    if was_bulk:
                        self._bulk_cursor = min(self._bulk_cursor, seq - 1)
                    else:
                        self._cursor = min(self._cursor, seq - 1)
                    self._resume_at = now + _RETRY_PAUSE_S
                    self._probing = True
                    self._metrics.retried.inc()
                case PublishOutcome.REFUSED:
                    self.outbox.refuse(seq, str(reason))
                    refused += 1
                    log.error(
                        "broker refused message node=%s seq=%d reason=%s", self.node, seq, reason
                    )
        if delivered or refused:
            self._metrics.delivered.inc(delivered)
            self._metrics.dropped_refused.inc(refused)
            self._metrics.backlog.set(len(self.outbox))

    def _take_receipts(self, now: float) -> None:
        """Forget the messages the platform confirmed stored."""
        confirmed = 0
        while self._receipts:
            confirmed += self.outbox.confirm(self._receipts.popleft().seqs)
        if confirmed:
            self._last_progress = now
            self._receipt_wait_s = self.config.outbox.receipt_timeout_s
            self._metrics.confirmed.inc(confirmed)
            self._metrics.backlog.set(len(self.outbox))

    def _unconfirmed_too_long(self, now: float) -> bool:
        """Whether everything sent has been waiting for a receipt longer than the timeout: then
        it is sent again (the wait doubles each time, up to an hour, so a platform that is down
        for long is not flooded with copies)."""
        waited = now - self._last_progress > self._receipt_wait_s
        if not (len(self.outbox) and not self._inflight and waited):
            return False
        if self.outbox.pending(self._cursor, 1) or self.outbox.pending(
            self._bulk_cursor, 1, bulk=True
        ):
            return False  # still sending what came after: not a wait for receipts yet
        log.warning(
            "no receipt for %.0f s node=%s: sending the %d unconfirmed messages again",
            now - self._last_progress, self.node, len(self.outbox),
        )  # fmt: skip
        self._metrics.resent.inc(len(self.outbox))
        self._last_progress = now
        self._receipt_wait_s = min(self._receipt_wait_s * 2, _RECEIPT_WAIT_MAX_S)
        return True

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason: ReasonCode, props: Any
    ) -> None:
        if mid == self._birth_mid:
            self._birth_mid = None
            if reason.is_failure:
                self._fail(client, self._not_this_site(reason))
            return
        self._acks.append((self._connection, mid, reason))

    # --- connection ---------------------------------------------------------------------------

    def _on_pre_connect(self, client: mqtt.Client, userdata: Any) -> None:
        # Each connection gets its own birth/death sequence; the will carries it, so a death
        # from an older connection arriving late is recognised as stale.
        self._bdseq = self.outbox.next_bdseq()
        death = m.NodeDeath(**m.envelope(self.outbox.last_seq), bdseq=self._bdseq)
        client.will_set(topics.death(self.site, self.node), codec.encode(death), QOS_AT_LEAST_ONCE)
        # paho would send its unacknowledged messages of the last connection again after the
        # CONNACK, ahead of the new birth and outside the window and rate. The outbox is what
        # counts and pump() sends it again in order, so paho's copies are dropped (paho 2.2 has
        # no public call for this).
        with client._out_message_mutex:
            client._out_messages.clear()
            client._inflight_messages = 0

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Any,
    ) -> None:
        if reason.is_failure:
            self.watch.on_connect(client, userdata, flags, reason, properties)
            return
        self._connection += 1  # the next pump starts this connection's sending afresh
        # Both answers are checked (_on_publish, _on_subscribe): the broker refuses them when the
        # node is registered at another site than the site file says.
        self._publish_birth(client)
        _, self._subscribe_mid = client.subscribe(
            [(f, QOS_AT_LEAST_ONCE) for f in topics.node_subscriptions(self.site, self.node)]
        )
        self.watch.on_connect(client, userdata, flags, reason, properties)  # now pump may send
        log.info(
            "node online node=%s bdseq=%d backlog=%d (sent at up to %g/s)",
            self.node, self._bdseq, len(self.outbox), self.config.outbox.replay_rate,
        )  # fmt: skip
        self._metrics.connected.set(1)
        self._online_since = time.monotonic()

    def _publish_birth(self, client: mqtt.Client) -> None:
        """The retained birth: this connection's bdseq, the devices and the configuration version
        running now (sent again, with the same bdseq, when a pushed configuration is applied)."""
        birth = m.NodeBirth(
            **m.envelope(self.outbox.last_seq),
            bdseq=self._bdseq,
            devices=tuple(dev.info() for dev in self.devices.values()),
            software=SOFTWARE,
            config_version=self.config_version,
        )
        self._birth_mid = client.publish(
            topics.birth(self.site, self.node), codec.encode(birth), QOS_AT_LEAST_ONCE, retain=True
        ).mid

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Any,
    ) -> None:
        self.watch.on_disconnect(client, userdata, flags, reason, properties)
        self._metrics.connected.set(0)
        if not self._stopping:
            self._check_taken_over(client, reason)
        if self._stopping or self.failed.is_set():
            return
        log.warning(
            "node offline node=%s reason=%s backlog=%d, storing until reconnected",
            self.node, reason, len(self.outbox),
        )  # fmt: skip

    # --- fatal conditions: trying again cannot help ----------------------------------------

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        properties: Any,
    ) -> None:
        refused = next((r for r in reasons if r.is_failure), None)
        if mid == self._subscribe_mid and refused is not None:
            self._fail(client, self._not_this_site(refused))

    def _check_taken_over(self, client: mqtt.Client, reason: ReasonCode) -> None:
        """Give way to another agent running as this node, rather than fight it for ever."""
        lasted = time.monotonic() - self._online_since if self._online_since else None
        self._online_since = 0.0
        if reason == _SESSION_TAKEN_OVER:
            why = "the broker gave the node's session to it: Session taken over"
        elif reason.is_failure and lasted is not None and lasted < _TAKEOVER_WINDOW_S:
            self._short_drops += 1
            if self._short_drops < _TAKEOVERS_TO_STOP:
                return
            why = (
                f"the broker closed this agent's connection right after accepting it"
                f" {self._short_drops} times in a row ({reason}), as it does when a second agent"
                " logs in as the same node"
            )
        else:
            if lasted is not None:
                self._short_drops = 0  # a connection that lasted: whatever it was has passed
            return
        self._fail(
            client,
            f"another agent is running as node {self.node} ({why}); stop one of them, each"
            " node id belongs to one agent",
        )

    def _not_this_site(self, reason: ReasonCode) -> str:
        return (
            f"the broker refused node {self.node}'s birth or command subscription under site"
            f" {self.site} ({reason}): the node is registered at another venue; set site: in the"
            f" site file to the venue the platform registered node {self.node} at"
        )

    def _fail(self, client: mqtt.Client, why: str) -> None:
        """Give up for good (paho's thread): stop reconnecting, and let the owner stop us."""
        if self.fatal is None:
            self.fatal = why
            log.error("edge agent giving up node=%s: %s", self.node, why)
        self.failed.set()
        self._stopping = True
        client.disconnect()  # paho's network loop then ends instead of reconnecting

    # --- commands -----------------------------------------------------------------------------

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == self._config_topic:  # retained on purpose: the node's configuration
            self._on_config(bytes(msg.payload))
            return
        if msg.retain:  # a command is for now, never for whoever subscribes next
            self._refused(None, trust.Refused(trust.Refusal.RETAINED, "retained"), msg.topic)
            return
        try:
            inbound = codec.decode_for_topic(msg.topic, bytes(msg.payload))
        except DecodeError as exc:
            self._metrics.command_invalid.inc()
            log.warning("unreadable command node=%s topic=%s: %s", self.node, msg.topic, exc)
            return
        command = inbound.message
        if isinstance(command, m.Receipt):
            self._receipts.append(command)
            return
        if not isinstance(command, m.Command):
            return
        refused = trust.check(command, bytes(msg.payload), self._verifier, m.now())
        if refused is not None:
            self._refused(command, refused, msg.topic)
            return
        # Recorded before paho acknowledges it (when this callback returns), so a crash between
        # the two leaves it to be executed after the restart rather than lost.
        if not self.outbox.remember_command(str(command.id), bytes(msg.payload)):
            self._metrics.command_duplicates.inc()
            log.info("duplicate command ignored node=%s id=%s", self.node, command.id)
            return
        self._commands.put(command)

    def _refused(self, command: m.Command | None, why: trust.Refused, topic: str) -> None:
        """Count and log a command that is not trusted; answer it `rejected` with the reason
        (not a retained one: it is ignored)."""
        metrics.COMMAND_REFUSED.labels(self.node, why.reason.value).inc()
        log.warning("command refused node=%s topic=%s reason=%s: %s",
                    self.node, topic, why.reason.value, why.detail)  # fmt: skip
        if command is None:
            return
        self._store(
            lambda env: m.CommandResult(
                **env, device=command.device, command_id=command.id,
                status=m.CommandStatus.REJECTED, detail=why.detail[:500],
            ),
            Priority.EVENT,
        )  # fmt: skip
        metrics.COMMANDS.labels(self.node, m.CommandStatus.REJECTED.value).inc()

    def _command_loop(self) -> None:
        while (command := self._commands.get()) is not None:
            if isinstance(command, _Pushed):
                try:
                    self._apply_config(command)
                except Exception as exc:  # a driver failing to stop or start: say so, go on
                    log.exception("configuration failed while applying node=%s version=%d",
                                  self.node, command.config.version)  # fmt: skip
                    self._answer_config(command.config.version, f"failed while applying: {exc}")
                continue
            status, detail = self._execute(command)
            self._store(
                lambda env, c=command, s=status, t=detail: m.CommandResult(
                    **env, device=c.device, command_id=c.id, status=s, detail=t
                ),
                Priority.EVENT,
            )
            self.outbox.command_done(str(command.id), status.value)
            metrics.COMMANDS.labels(self.node, status.value).inc()
            log.info(
                "command %s node=%s device=%s action=%s id=%s%s",
                status.value, self.node, command.device, command.action.action, command.id,
                f" detail={detail}" if detail else "",
            )  # fmt: skip

    def _execute(self, command: m.Command) -> tuple[m.CommandStatus, str | None]:
        if m.now() > command.deadline:
            return m.CommandStatus.EXPIRED, f"deadline {command.deadline.isoformat()} passed"
        device = self.devices.get(command.device)
        if device is None:
            return m.CommandStatus.REJECTED, f"no device {command.device!r} at this node"
        action = command.action
        try:
            match action, device:
                case m.DoorUnlock(), d.DoorController():
                    device.unlock(action.duration_s)
                case m.DoorLock(), d.DoorController():
                    device.lock()
                case m.DoorLockdown(), d.DoorController():
                    device.lockdown(action.active)
                case m.SpeakerPlay(), d.Speaker():
                    device.play(
                        text=action.text, clip=action.clip,
                        priority=action.priority, repeat=action.repeat,
                        language=action.language or m.SpeechLanguage.ZH_CN,
                    )  # fmt: skip
                case m.SpeakerStop(), d.Speaker():
                    device.stop_playing()
                case m.SpeakerVolume(), d.Speaker():
                    device.set_volume(action.level)
                case _:
                    return m.CommandStatus.REJECTED, f"a {device.kind} cannot {action.action}"
        except d.CommandFailed as exc:
            return m.CommandStatus.FAILED, str(exc)[:500]
        self.executed_commands += 1
        return m.CommandStatus.DONE, None

    # --- configuration pushed by the platform -------------------------------------------------

    def _on_config(self, payload: bytes) -> None:
        """A configuration arrived (paho's thread): read it, and leave it to the command thread."""
        if not payload:
            return  # the retained configuration was deleted: nothing to apply
        try:
            inbound = codec.decode_for_topic(self._config_topic, payload, codec.CONFIG_MAX_PAYLOAD)
        except DecodeError as exc:
            version = _version_in(payload)
            log.warning("unreadable configuration node=%s version=%s: %s",
                        self.node, version, exc)  # fmt: skip
            if version is not None and version > self.config_version:
                self._answer_config(version, f"unreadable: {exc}")
            return
        config = inbound.message
        assert isinstance(config, m.NodeConfig)
        self._commands.put(_Pushed(config, payload))

    def _apply_config(self, pushed: _Pushed) -> None:
        """Check a pushed configuration and apply it: drivers of new devices start, of removed
        ones stop, of changed ones restart, the others keep running. Answered either way."""
        config = pushed.config
        if config.version == self.config_version:
            log.debug("configuration version %d already running node=%s", config.version,
                      self.node)  # fmt: skip
            return
        log.info("configuration received node=%s version=%d devices=%d (running version %d)",
                 self.node, config.version, len(config.devices), self.config_version)  # fmt: skip
        why = reconfig.refusal(config, pushed.payload, self._verifier, self.site, self.node)
        if why is None and config.version < self.config_version:
            why = f"older than the version this node runs ({self.config_version})"
        if why is not None:
            self._answer_config(config.version, why)
            return
        try:
            wanted = reconfig.devices_of(config)
            plan = reconfig.plan(self._device_configs, wanted, self._drivers)
        except (ConfigError, ValueError) as exc:
            self._answer_config(config.version, str(exc))
            return
        devices = self._switch_drivers(plan)
        self.devices = {c.id: devices[c.id] for c in wanted}  # one assignment: births see either
        self._device_configs = {c.id: c for c in wanted}
        self.config = self.config.model_copy(
            update={"devices": wanted, "config_version": config.version}
        )
        self.config_version = config.version
        self._kept.save(pushed.payload)
        log.info("configuration applied node=%s version=%d %s",
                 self.node, config.version, plan.summary())  # fmt: skip
        self._answer_config(config.version, None)
        if (plan.start or plan.stop) and self.watch.connected.is_set():
            self._publish_birth(self.client)  # the platform sees the new devices and version

    def _switch_drivers(self, plan: reconfig.Plan) -> dict[str, d.Device]:
        """Start the plan's new drivers, restart its changed ones and stop its removed ones, so
        that a failure leaves what ran running: new devices start first (all stopped again if
        one fails); a changed one whose new driver fails to start gets its old driver back;
        removed ones stop last. Raises the first failure after undoing; the running set then."""
        devices = dict(self.devices)
        fresh = [i for i in plan.start if i not in devices]
        started: list[str] = []
        try:
            for device_id in fresh:
                plan.start[device_id].start(self.submit)
                started.append(device_id)
            for device_id in plan.restarted:
                devices[device_id].stop()
                try:
                    plan.start[device_id].start(self.submit)
                except Exception:
                    old = self._rebuild(device_id)
                    if old is not None:
                        old.start(self.submit)
                        devices[device_id] = old
                    else:
                        devices.pop(device_id)
                    self.devices = devices
                    raise
                devices[device_id] = plan.start[device_id]
                log.info("driver restarted node=%s device=%s", self.node, device_id)
        except Exception:
            for device_id in started:
                plan.start[device_id].stop()
            raise
        for device_id in started:
            devices[device_id] = plan.start[device_id]
            log.info("driver started node=%s device=%s", self.node, device_id)
        for device_id in (i for i in plan.stop if i not in plan.start):
            devices.pop(device_id).stop()
            log.info("driver stopped node=%s device=%s", self.node, device_id)
        return devices

    def _rebuild(self, device_id: str) -> d.Device | None:
        """A fresh driver for a device as it ran before (to put back after a failed change)."""
        config = self._device_configs.get(device_id)
        if config is None or self._drivers is None:
            return None
        try:
            return self._drivers(config)
        except ConfigError:
            return None

    def _answer_config(self, version: int, refused: str | None) -> None:
        """Tell the platform a configuration was applied or refused (and why). Not through the
        outbox: if the node is offline, the retained configuration comes again on reconnect and
        is judged again, and the birth says which version runs."""
        status = m.ConfigStatus.APPLIED if refused is None else m.ConfigStatus.REFUSED
        metrics.CONFIGS.labels(self.node, status.value).inc()
        if refused is not None:
            log.warning("configuration refused node=%s version=%d, version %d keeps running: %s",
                        self.node, version, self.config_version, refused)  # fmt: skip
        result = m.ConfigResult(
            **m.envelope(self.outbox.last_seq), version=version, status=status,
            reason=None if refused is None else refused[:2000],
        )  # fmt: skip
        info = self.client.publish(
            topics.config_result(self.site, self.node), codec.encode(result), QOS_AT_LEAST_ONCE
        )
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            log.warning("configuration answer not sent node=%s version=%d (offline): the next"
                        " connection's birth reports the version", self.node, version)  # fmt: skip


def _version_in(payload: bytes) -> int | None:
    """The version an unreadable configuration claims, to answer it."""
    try:
        version = json.loads(payload).get("version")
    except (ValueError, AttributeError):
        return None
    return version if isinstance(version, int) and not isinstance(version, bool) else None


def _write_ca(config: SiteConfig) -> Path:
    """The site file's inline broker CA as a file beside the outbox (paho wants a path)."""
    assert config.broker_ca is not None
    path = config.outbox.path.parent / f"{config.node}.broker-ca.pem"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(config.broker_ca)
    return path
