"""`gridwatch bench notify`: how fast a red incident reaches people, and what a storm becomes.

A simulated city (fleet, broker, ingest, database) runs with two channels pointed at servers on
loopback: the generic webhook (a receiver here that checks the signature and notes when each
request arrived) and a WeCom group robot (simulators.providers, which checks the key and the
body and answers 45009 past 20 messages a minute, as the real robot does).

1. Latency: doors forced one a second, each a red incident; from the incident's commit (its
   `opened_at`, the transaction's time: a little before the commit, so the figure errs long) to
   the first channel request about it.
2. Storm: `--storm` red incidents in `--storm-s` seconds across the city; then what was sent,
   digested and left, and whether any provider's limit was exceeded.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg

from gridwatch.bench.ingest import _db_now, _scrape_all, _wait_connected, start_fleet
from gridwatch.local.services import free_ports, terminate
from gridwatch.local.stack import LocalStack
from notify.channels.webhook import DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from simulators.devices import SimDoor
from simulators.fleet import Fleet
from simulators.providers import ROBOT_PER_MINUTE, WECOM_PATH, Accounts, Provider, Providers

log = logging.getLogger(__name__)

_WEBHOOK_SECRET = "bench-webhook-secret-0123456789abcdef"  # a throwaway receiver's


@dataclass(frozen=True, slots=True)
class Hit:
    """One webhook request the receiver accepted."""

    at: float  # Unix time it arrived
    key: str
    kind: str


@dataclass
class _Log:
    lock: threading.Lock = field(default_factory=threading.Lock)
    hits: list[Hit] = field(default_factory=list)
    refused: int = 0


class _Hook(BaseHTTPRequestHandler):
    server: _HookServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        at = time.time()
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        ok = verify(
            _WEBHOOK_SECRET,
            self.headers.get(TIMESTAMP_HEADER, ""),
            body,
            self.headers.get(SIGNATURE_HEADER, ""),
        )
        log_ = self.server.log
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if not ok or not isinstance(data, dict):
            with log_.lock:
                log_.refused += 1
            self._answer(401 if not ok else 400)
            return
        key = str(self.headers.get(DELIVERY_HEADER) or data.get("key", ""))
        with log_.lock:
            log_.hits.append(Hit(at, key, str(data.get("kind", ""))))
        self._answer(200)

    def _answer(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()


class _HookServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Hook)
        self.log = _Log()


class WebhookReceiver:
    """A webhook receiver on loopback that verifies gridwatch's signature and times arrivals."""

    def __init__(self) -> None:
        self._server = _HookServer()
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def hits(self) -> list[Hit]:
        with self._server.log.lock:
            return list(self._server.log.hits)

    @property
    def refused(self) -> int:
        return self._server.log.refused


def _max_per_window(times: list[float], window_s: float = 60.0) -> int:
    """The most arrivals in any `window_s` (sliding)."""
    times = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] >= window_s:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _force(doors: list[SimDoor], per_s: float) -> threading.Thread:
    def run() -> None:
        start = time.monotonic()
        for i, door in enumerate(doors):
            door.force()
            pause = start + (i + 1) / per_s - time.monotonic()
            if pause > 0:
                time.sleep(pause)

    thread = threading.Thread(target=run, name="force-doors", daemon=True)
    thread.start()
    return thread


def _red_incidents(dsn: str, since: datetime) -> dict[int, datetime]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT id, opened_at FROM incidents WHERE rule = 'door_forced' AND severity = 'red'"
            " AND opened_at >= %s",
            (since,),
        ).fetchall()
    return {int(r[0]): r[1] for r in rows}


def _incidents_of_keys(dsn: str, keys: set[str]) -> dict[str, set[int]]:
    """The incidents each request was about: its delivery's, or every one its digest holds."""
    ids = [int(k) for k in keys if k.isdigit()]
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT id, incident_id FROM deliveries WHERE id = ANY(%s) AND incident_id IS NOT NULL"
            " UNION ALL SELECT digest_id, incident_id FROM deliveries"
            " WHERE digest_id = ANY(%s) AND incident_id IS NOT NULL",
            (ids, ids),
        ).fetchall()
    found: dict[str, set[int]] = {}
    for key, incident in rows:
        found.setdefault(str(key), set()).add(int(incident))
    return found


def _first_request_delays(
    dsn: str, receiver: WebhookReceiver, incidents: dict[int, datetime]
) -> dict[int, float]:
    """Seconds from each incident's opening to the first webhook request about it."""
    hits = receiver.hits()
    of_key = _incidents_of_keys(dsn, {h.key for h in hits})
    first: dict[int, float] = {}
    for hit in hits:
        for incident in of_key.get(hit.key, ()):
            if incident in incidents:
                first[incident] = min(first.get(incident, hit.at), hit.at)
    return {i: at - incidents[i].timestamp() for i, at in first.items()}


def _wait(check: Any, timeout_s: float, poll_s: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(poll_s)
    return bool(check())


def _deliveries(dsn: str, since: datetime) -> dict[str, dict[str, int]]:
    """Deliveries created since `since` by channel and state (digests counted as kind)."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT channel, CASE WHEN kind = 'digest' THEN 'digest_' ELSE '' END || state::text,"
            " count(*) FROM deliveries WHERE created_at >= %s GROUP BY 1, 2",
            (since,),
        ).fetchall()
    found: dict[str, dict[str, int]] = {}
    for channel, state, n in rows:
        found.setdefault(str(channel), {})[str(state)] = int(n)
    return found


def _sent_times(dsn: str, channel: str, since: datetime) -> list[float]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT extract(epoch FROM sent_at) FROM deliveries"
            " WHERE channel = %s AND state = 'sent' AND sent_at >= %s",
            (channel, since),
        ).fetchall()
    return [float(r[0]) for r in rows]


def _most_per_person_minute(dsn: str, since: datetime) -> dict[str, int]:
    """By channel: the most messages (direct or digest) one person got in any minute."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT channel, person_id, extract(epoch FROM sent_at) FROM deliveries"
            " WHERE state = 'sent' AND sent_at >= %s",
            (since,),
        ).fetchall()
    times: dict[tuple[str, str], list[float]] = {}
    for channel, person, at in rows:
        times.setdefault((str(channel), str(person)), []).append(float(at))
    most: dict[str, int] = {}
    for (channel, _), ts in times.items():
        most[channel] = max(most.get(channel, 0), _max_per_window(ts))
    return most


def _pending(dsn: str, *, due_only: bool) -> int:
    """Deliveries still pending on the channels without a tight limit (the WeCom robot's 20 a
    minute drains a city's storm over many minutes, and is reported apart)."""
    due = " AND next_at <= now()" if due_only else ""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            f"SELECT count(*) FROM deliveries WHERE state = 'pending' AND channel <> 'wecom'{due}"
        ).fetchone()
    return int(str(row[0])) if row else 0


def run(args: argparse.Namespace) -> int:
    """Latency with the city fleet running, then the storm; prints the figures as JSON."""

    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="gridwatch-bench-"))
    stack = LocalStack(home)
    ingest: subprocess.Popen[bytes] | None = None
    fleet: Fleet | None = None
    receiver = WebhookReceiver().start()
    accounts = Accounts()
    providers = Providers(accounts).start()
    try:
        stack.start_database()
        creds = stack.apply_demo(venues=args.venues, devices_per_venue=args.devices_per_venue)
        stack.start_broker()
        env = {
            "GRIDWATCH_NOTIFY_WEBHOOK_ENABLED": "true",
            "GRIDWATCH_NOTIFY_WEBHOOK_URL": receiver.url,
            "GRIDWATCH_NOTIFY_WEBHOOK_SECRET": _WEBHOOK_SECRET,
            "GRIDWATCH_NOTIFY_WECOM_ENABLED": "true",
            "GRIDWATCH_NOTIFY_WECOM_WEBHOOK_URL": providers.url + WECOM_PATH,
            "GRIDWATCH_NOTIFY_WECOM_KEY": accounts.wecom_key,
        }
        metrics_base = free_ports(args.workers)
        ports = [metrics_base + i for i in range(args.workers)]
        ingest = stack.start_ingest(args.workers, metrics_port=metrics_base, env=env)
        _wait_connected(ports, timeout_s=60)
        if not _wait(lambda: _scrape_all(ports).get("gridwatch_ingest_leader", 0) >= 1, 60):
            raise RuntimeError("no ingest worker took the lead (see logs/ingest.log)")

        fleet = start_fleet(stack, creds, home / "fleet", args.rate)
        doors = [d for d in fleet.devices.values() if isinstance(d, SimDoor)]
        random.Random(13).shuffle(doors)
        if len(doors) < args.incidents + args.storm:
            raise RuntimeError(
                f"the city has {len(doors)} doors and the bench forces {args.incidents} +"
                f" {args.storm} distinct ones: use more --venues or fewer --incidents/--storm"
            )
        time.sleep(args.warmup)

        # 1. Latency: one red incident a second while the fleet runs.
        start = _db_now(stack.dsn)
        _force(doors[: args.incidents], 1.0).join()

        def all_heard() -> bool:
            incidents = _red_incidents(stack.dsn, start)
            delays = _first_request_delays(stack.dsn, receiver, incidents)
            return len(incidents) >= args.incidents and len(delays) >= len(incidents)

        _wait(all_heard, 60)
        incidents = _red_incidents(stack.dsn, start)
        delays = list(_first_request_delays(stack.dsn, receiver, incidents).values())
        latency = {
            "incidents": len(incidents),
            "heard": len(delays),
            "first_request_p50_ms": _ms(_quantile(delays, 0.5)),
            "first_request_p99_ms": _ms(_quantile(delays, 0.99)),
            "first_request_max_ms": _ms(max(delays) if delays else None),
        }

        # 2. Storm: many red incidents in a minute across the city.
        _wait(lambda: _pending(stack.dsn, due_only=True) == 0, 120)
        hits_before = len(receiver.hits())
        wecom_before = len(providers.received(Provider.WECOM))
        requests_before = providers.requests
        storm_start = _db_now(stack.dsn)
        _force(
            doors[args.incidents : args.incidents + args.storm], args.storm / args.storm_s
        ).join()
        storm_forced_s = (_db_now(stack.dsn) - storm_start).total_seconds()
        _wait(
            lambda: len(_red_incidents(stack.dsn, storm_start)) >= args.storm, 60
        )  # the fleet's messages committed
        drain_start = time.monotonic()
        drained = _wait(lambda: _pending(stack.dsn, due_only=False) == 0, args.drain_s)
        drain_s = time.monotonic() - drain_start
        time.sleep(2)
        fleet.stop()
        fleet = None
        storm_incidents = _red_incidents(stack.dsn, storm_start)
        hits = receiver.hits()[hits_before:]
        wecom = providers.received(Provider.WECOM)[wecom_before:]
        wecom_requests = providers.requests - requests_before
        by_channel = _deliveries(stack.dsn, storm_start)
        storm = {
            "red_incidents": len(storm_incidents),
            "forced_in_s": round(storm_forced_s, 1),
            "deliveries": by_channel,
            "webhook_requests": len(hits),
            "webhook_digests": sum(1 for h in hits if h.kind == "digest"),
            "webhook_max_per_minute": _max_per_window([h.at for h in hits]),
            "wecom_accepted": len(wecom),
            "wecom_max_per_minute": _max_per_window(_sent_times(stack.dsn, "wecom", storm_start)),
            "wecom_refused_over_limit": wecom_requests - len(wecom),
            "wecom_limit_per_minute": ROBOT_PER_MINUTE,
            "drained": drained,
            "drain_s": round(drain_s, 1),
            "most_per_person_minute": _most_per_person_minute(stack.dsn, storm_start),
            "drain_limit_s": args.drain_s,
            "wecom_pending": by_channel.get("wecom", {}).get("pending", 0),
            "webhook_refused_signature": receiver.refused,
        }
        ok = (
            latency["heard"] == latency["incidents"] == args.incidents
            and storm["wecom_refused_over_limit"] == 0
            and storm["wecom_max_per_minute"] <= ROBOT_PER_MINUTE
            and receiver.refused == 0
        )
        result = {
            "venues": len(creds),
            "fleet_msgs_per_s": args.rate,
            "workers": args.workers,
            "latency": latency,
            "storm": storm,
            "target_p99_ms": 2000,
            "ok": ok,
        }
        print(json.dumps(result, ensure_ascii=False))
        return 0 if ok else 1
    finally:
        if fleet is not None:
            fleet.stop()
        if ingest is not None:
            terminate(ingest)
        stack.stop()
        receiver.stop()
        providers.stop()
        if not args.home:
            shutil.rmtree(home, ignore_errors=True)


def _ms(seconds: float | None) -> float | None:
    return round(seconds * 1000, 1) if seconds is not None else None
