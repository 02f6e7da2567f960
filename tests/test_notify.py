"""Notifications over a real PostgreSQL and a real local webhook receiver: events written by
triggers, routing by the duty roster and up the tree, paging that stops on acceptance, digests,
retries and fallbacks, two senders, quiet hours. The notify code runs as the ingest's role."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest
from pydantic import SecretStr

from casework import emergency, incidents, tasks
from casework.rules import Raise, Rule, Severity
from gridwatch.local.stack import LocalStack
from ingest import registry
from notify import router, sender
from notify.channels.base import Channel
from notify.channels.console import ConsoleChannel
from notify.channels.webhook import WebhookChannel, WebhookSettings
from notify.duty import NotifyDuty
from notify.policy import PolicyError, parse
from notify.settings import NotifySettings
from tests.support import rows, scalar
from tests.webhook_server import SECRET, WebhookServer, webhook_server

SITE = "v0001"


@pytest.fixture
def hook() -> Iterator[WebhookServer]:
    with webhook_server(timeout_hold_s=2.0) as server:
        yield server


def webhook(url: str, name: str = "webhook") -> WebhookChannel:
    channel = WebhookChannel(
        WebhookSettings(enabled=True, url=url, secret=SecretStr(SECRET), timeout_s=0.5)
    )
    channel.name = name
    return channel


def channels_for(server: WebhookServer) -> dict[str, Channel]:
    return {"console": ConsoleChannel(), "webhook": webhook(server.url)}


def run(stack: LocalStack, channels: dict[str, Channel], settings: NotifySettings) -> None:
    """One round of the leader's notify duty, as the ingest's role."""
    with psycopg.connect(stack.role_dsn("ingest"), autocommit=True) as conn:
        NotifyDuty(channels, settings).run(conn, lambda *a, **k: None, frozenset())  # type: ignore[arg-type, return-value]


def raise_at(dsn: str, subject: str, rule: Rule = Rule.DOOR_FORCED,
             severity: Severity = Severity.RED, site: str = SITE,
             policy: tasks.DeadlinePolicy | None = None) -> int:  # fmt: skip
    """Raise an incident (and its task) the way the rules do; the task id."""
    with psycopg.connect(dsn) as conn:
        venue = registry.load(conn).venues[site]
        signal = Raise(rule, f"{site}-{subject}", severity, venue, datetime.now(UTC))
        return incidents.apply(conn, [signal], policy or tasks.DeadlinePolicy()).tasks[0]


def people_of(dsn: str, site: str = SITE) -> tuple[str, str]:
    grid, community = rows(dsn, "SELECT g.id, g.parent_id FROM venues v JOIN territory g"
                                " ON g.id = v.grid_id WHERE v.id = %s", (site,))[0]  # fmt: skip
    return f"worker-{grid}", f"disp-{community}"


def deliveries(dsn: str, kind: str | None = None) -> set[tuple[str, str, str, str]]:
    return {
        (str(p), str(c), str(s), str(k))
        for p, c, s, k in rows(
            dsn,
            "SELECT person_id, channel, state::text, kind FROM deliveries"
            " WHERE %s::text IS NULL OR kind = %s",
            (kind, kind),
        )
    }


def test_a_forced_door_pages_the_worker_then_the_dispatcher_until_accepted(
    stack: LocalStack, hook: WebhookServer
) -> None:
    channels, settings = channels_for(hook), NotifySettings(burst_per_minute=100)
    worker, dispatcher = people_of(stack.dsn)
    task = raise_at(stack.dsn, "door-1")
    run(stack, channels, settings)
    # The worker on duty, on every channel (red); the operator and the community's dispatcher
    # (the grid has none: up the tree) hear of the red incident.
    assert deliveries(stack.dsn) == {
        (worker, "console", "sent", "task.dispatched"),
        (worker, "webhook", "sent", "task.dispatched"),
        ("operator", "console", "sent", "incident.red"),
        ("operator", "webhook", "sent", "incident.red"),
        (dispatcher, "console", "sent", "incident.red"),
        (dispatcher, "webhook", "sent", "incident.red"),
    }
    assert all(r.genuine for r in hook.received) and len(hook.received) == 3
    paged = next(r.body for r in hook.received if r.body["kind"] == "task.dispatched")
    assert paged["recipient"]["person_id"] == worker and "/t/" in paged["link"]
    assert paged["title"].startswith("新任务")  # the worker's language (zh-CN)

    # Not accepted in time: the leader's timers flag it, then escalate it to the community.
    with psycopg.connect(stack.role_dsn("ingest")) as conn:
        tasks.on_warn(conn, task)
    run(stack, channels, settings)
    assert (worker, "webhook", "sent", "task.deadline") in deliveries(stack.dsn)
    with psycopg.connect(stack.role_dsn("ingest")) as conn:
        tasks.on_deadline(conn, task, tasks.DeadlinePolicy())
    with psycopg.connect(stack.role_dsn("ingest"), autocommit=True) as conn:
        router.route(conn, channels, settings)  # the dispatcher's paging is written ...
    assert (dispatcher, "webhook", "pending", "task.escalated") in deliveries(stack.dsn)
    with psycopg.connect(stack.role_dsn("api")) as conn:  # ... and the worker accepts
        tasks.act(conn, task, tasks.Action.ACCEPT, worker)
    run(stack, channels, settings)
    escalated = deliveries(stack.dsn, "task.escalated")
    assert (dispatcher, "webhook", "cancelled", "task.escalated") in escalated
    assert (dispatcher, "console", "sent", "task.escalated") in escalated
    assert [r.body["kind"] for r in hook.received].count("task.escalated") == 0
    # The acceptance itself pages nobody (no default policy).
    assert deliveries(stack.dsn, "task.accepted") == set()


def test_an_escalation_pages_the_dispatcher_and_calls_the_worker(
    stack: LocalStack, hook: WebhookServer
) -> None:
    worker, dispatcher = people_of(stack.dsn)
    with webhook_server() as calls:  # a voice provider's stand-in: a real receiver named voice
        channels = {**channels_for(hook), "voice": webhook(calls.url, "voice")}
        task = raise_at(stack.dsn, "door-voice")
        run(stack, channels, NotifySettings(burst_per_minute=100))
        assert calls.received == []  # voice only when a policy asks for it
        with psycopg.connect(stack.role_dsn("ingest")) as conn:
            tasks.on_deadline(conn, task, tasks.DeadlinePolicy())
        run(stack, channels, NotifySettings(burst_per_minute=100))
        assert [(r.body["recipient"]["person_id"], r.body["kind"]) for r in calls.ok()] == [
            (worker, "task.escalated")
        ]
    assert any(r.body["recipient"]["person_id"] == dispatcher and r.body["kind"] == "task.escalated"
               for r in hook.ok())  # fmt: skip


def test_paging_raised_before_acceptance_but_routed_after_pages_nobody(
    stack: LocalStack, hook: WebhookServer
) -> None:
    worker, _ = people_of(stack.dsn)
    task = raise_at(stack.dsn, "door-2")
    with psycopg.connect(stack.role_dsn("api")) as conn:
        tasks.act(conn, task, tasks.Action.ACCEPT, worker)
    run(stack, channels_for(hook), NotifySettings())
    assert deliveries(stack.dsn, "task.dispatched") == set()
    assert scalar(stack.dsn, "SELECT count(*) FROM notify_events WHERE routed_at IS NULL") == 0


def test_a_storm_becomes_one_digest_per_person_per_minute(
    stack: LocalStack, hook: WebhookServer
) -> None:
    channels, settings = channels_for(hook), NotifySettings(burst_per_minute=3)
    for i in range(25):
        raise_at(stack.dsn, f"storm-{i}")
    run(stack, channels, settings)
    # Each of the three people got one digest on the webhook, and every item in the console.
    got = [r.body for r in hook.ok()]
    assert sorted(b["recipient"]["person_id"] for b in got) == sorted(
        ["operator", *people_of(stack.dsn)]
    )
    assert {b["kind"] for b in got} == {"digest"}
    assert all(b["title"].startswith("25 ") for b in got)
    assert scalar(stack.dsn, "SELECT count(*) FROM deliveries WHERE state = 'digested'") == 75
    assert scalar(stack.dsn, "SELECT count(*) FROM deliveries WHERE channel = 'console'") == 75
    # More within the minute wait for the next minute's digest.
    for i in range(5):
        raise_at(stack.dsn, f"storm-late-{i}")
    run(stack, channels, settings)
    assert len(hook.received) == 3
    waiting = rows(stack.dsn, "SELECT count(*), min(next_at) > now() + interval '30 s' FROM deliveries"
                              " WHERE state = 'pending' AND channel = 'webhook'")  # fmt: skip
    assert waiting == [(15, True)]


def test_two_senders_send_each_delivery_once(stack: LocalStack, hook: WebhookServer) -> None:
    channels = channels_for(hook)
    settings = NotifySettings(burst_per_minute=10_000, batch=7, concurrency=2)
    for i in range(30):
        raise_at(stack.dsn, f"pair-{i}", severity=Severity.YELLOW, rule=Rule.DOOR_HELD_OPEN)
    for i in range(10):
        raise_at(stack.dsn, f"pair-red-{i}")
    errors: list[Exception] = []

    def sender_worker() -> None:
        try:
            with psycopg.connect(stack.role_dsn("ingest"), autocommit=True) as conn:
                duty = NotifyDuty(channels, settings)
                for _ in range(40):
                    duty.run(conn, lambda *a, **k: None, frozenset())  # type: ignore[arg-type, return-value]
        except Exception as exc:  # noqa: BLE001 (reported by the assertion below)
            errors.append(exc)

    threads = [threading.Thread(target=sender_worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    keys = hook.keys()
    assert len(keys) == len(set(keys))  # nothing sent twice
    sent = scalar(stack.dsn, "SELECT count(*) FROM deliveries WHERE channel = 'webhook'"
                             " AND state = 'sent'")  # fmt: skip
    assert sent == len(keys) and scalar(stack.dsn, "SELECT count(*) FROM deliveries"
                                                   " WHERE state = 'pending'") == 0  # fmt: skip


def test_a_provider_outage_is_retried_then_falls_back_with_nothing_lost_or_doubled(
    stack: LocalStack,
) -> None:
    with webhook_server(timeout_hold_s=1.5) as down, webhook_server() as backup:
        channels: dict[str, Channel] = {
            "console": ConsoleChannel(), "webhook": webhook(down.url), "email": webhook(backup.url, "email"),
        }  # fmt: skip
        settings = NotifySettings(max_attempts=4, backoff_s=0.1, backoff_max_s=0.2)
        worker, _ = people_of(stack.dsn)
        with psycopg.connect(stack.dsn) as conn:
            conn.execute(
                "INSERT INTO notify_prefs (person_id, channels) VALUES (%s, %s)",
                (worker, ["console", "webhook", "email"]),
            )
        down.answers(500, "429:1", "timeout", 503)
        raise_at(stack.dsn, "outage", severity=Severity.YELLOW, rule=Rule.DOOR_HELD_OPEN)
        deadline = datetime.now(UTC).timestamp() + 60
        while datetime.now(UTC).timestamp() < deadline and not backup.ok():
            run(stack, channels, settings)
        failed = rows(stack.dsn, "SELECT attempts, last_error FROM deliveries WHERE person_id = %s"
                                 " AND channel = 'webhook'", (worker,))  # fmt: skip
        assert failed[0][0] == 4 and "gave up after 4 tries" in str(failed[0][1])
        assert [r.answered for r in down.received] == [500, "429:1", "timeout", 503]
        assert len(set(down.keys())) == 1  # the same delivery, retried under its own key
        assert len(backup.ok()) == 1 and backup.ok()[0].body["recipient"]["person_id"] == worker
        assert deliveries(stack.dsn, "task.dispatched") == {
            (worker, "console", "sent", "task.dispatched"),
            (worker, "webhook", "failed", "task.dispatched"),
            (worker, "email", "sent", "task.dispatched"),
        }


def test_a_429_is_retried_after_the_time_it_asks(stack: LocalStack, hook: WebhookServer) -> None:
    hook.answers("429:30")
    raise_at(stack.dsn, "limit", severity=Severity.YELLOW, rule=Rule.DOOR_HELD_OPEN)
    run(stack, channels_for(hook), NotifySettings())
    wait = scalar(stack.dsn, "SELECT extract(epoch FROM next_at - tried_at) FROM deliveries"
                             " WHERE channel = 'webhook'")  # fmt: skip
    assert 29 <= float(str(wait)) <= 31


def test_quiet_hours_hold_all_but_red(stack: LocalStack, hook: WebhookServer) -> None:
    worker, _ = people_of(stack.dsn)
    with psycopg.connect(stack.dsn) as conn:  # quiet all day but the last minute before midnight
        conn.execute(
            "INSERT INTO notify_prefs (person_id, channels, quiet_from, quiet_to, timezone)"
            " VALUES (%s, %s, '00:00', '23:59', 'UTC')",
            (worker, ["console", "webhook"]),
        )
    raise_at(stack.dsn, "quiet-yellow", severity=Severity.YELLOW, rule=Rule.DOOR_HELD_OPEN)
    raise_at(stack.dsn, "quiet-red")
    run(stack, channels_for(hook), NotifySettings())
    states = dict(rows(stack.dsn, "SELECT severity::text, state::text FROM deliveries"
                                  " WHERE person_id = %s AND channel = 'webhook'", (worker,)))  # fmt: skip
    if datetime.now(UTC).strftime("%H:%M") < "23:59":
        assert states == {"red": "sent", "yellow": "pending"}
    console = rows(stack.dsn, "SELECT count(*) FROM deliveries WHERE person_id = %s"
                              " AND channel = 'console' AND state = 'sent'", (worker,))  # fmt: skip
    assert console == [(2,)]  # the inbox is never held


def test_policies_are_data(stack: LocalStack, hook: WebhookServer) -> None:
    with psycopg.connect(stack.dsn) as conn:
        conn.execute(
            "INSERT INTO notify_policies (kind, severity, rules) VALUES ('incident.red', 'red', %s)",
            ('[{"who": "admins", "channels": "all"}]',),
        )
    raise_at(stack.dsn, "policy")
    run(stack, channels_for(hook), NotifySettings())
    assert {p for p, *_ in deliveries(stack.dsn, "incident.red")} == {"admin"}
    with pytest.raises(PolicyError, match=r"incident.red/red: 0.who: Input should be"):
        parse("incident.red", "red", [{"who": "everybody"}])
    # A row that does not read leaves the built-in policy in force (and says so in the log).
    with psycopg.connect(stack.dsn) as conn:
        conn.execute('UPDATE notify_policies SET rules = \'[{"who": "everybody"}]\'')
    raise_at(stack.dsn, "policy-bad")
    run(stack, channels_for(hook), NotifySettings())
    assert "operator" in {p for p, *_ in deliveries(stack.dsn, "incident.red")}


def test_triggers_write_events_for_emergencies_commands_enrolments_and_refusals(
    stack: LocalStack,
) -> None:
    grid = str(scalar(stack.dsn, "SELECT grid_id FROM venues WHERE id = %s", (SITE,)))
    with psycopg.connect(stack.role_dsn("api")) as conn:
        emergency.start(conn, grid, reason="flood", message="go to the shelter", actor="operator",
                        policy=tasks.DeadlinePolicy())  # fmt: skip
        emergency.end(conn, grid, actor="operator")
        conn.execute("UPDATE commands SET state = 'failed', detail = 'jammed'"
                     " WHERE id = (SELECT id FROM commands WHERE superseded_by IS NULL LIMIT 1)")  # fmt: skip
        conn.execute("INSERT INTO audit_log (person_id, action, target) VALUES"
                     " ('node:v0001-edge', 'node.enrol', 'v0001-edge')")  # fmt: skip
    with psycopg.connect(stack.dsn) as conn:
        conn.execute("UPDATE edge_nodes SET disabled = true WHERE id = 'v0002-edge'")
    with psycopg.connect(stack.role_dsn("ingest")) as conn:
        for _ in range(3):  # counted on every read of the broker's log: one event an hour
            conn.execute(
                """INSERT INTO broker_refusals (client, node_id, reason) VALUES
                   ('v0002-edge', 'v0002-edge', 'not authorised')
                   ON CONFLICT (client) DO UPDATE SET count = broker_refusals.count + 1"""
            )
    kinds = [str(k) for (k,) in rows(stack.dsn, "SELECT kind FROM notify_events ORDER BY id")]
    assert kinds.count("emergency.started") == 1 and kinds.count("emergency.ended") == 1
    assert kinds.count("node.enrolled") == 1 and kinds.count("node.refused") == 1
    commands = scalar(stack.dsn, "SELECT count(*) FROM commands")
    assert kinds.count("command.failed") == (1 if commands else 0)
    run(stack, {"console": ConsoleChannel()}, NotifySettings())
    assert ("admin", "console", "sent", "node.refused") in deliveries(stack.dsn)
    assert ("operator", "console", "sent", "emergency.started") in deliveries(stack.dsn)


def test_sender_metrics_and_gauges(stack: LocalStack, hook: WebhookServer) -> None:
    from prometheus_client import REGISTRY

    before = (
        REGISTRY.get_sample_value(
            "gridwatch_notify_deliveries_total", {"channel": "webhook", "outcome": "sent"}
        )
        or 0.0
    )
    raise_at(stack.dsn, "metrics", severity=Severity.YELLOW, rule=Rule.DOOR_HELD_OPEN)
    run(stack, channels_for(hook), NotifySettings())
    after = REGISTRY.get_sample_value(
        "gridwatch_notify_deliveries_total", {"channel": "webhook", "outcome": "sent"}
    )
    assert after == before + 1
    with psycopg.connect(stack.role_dsn("ingest")) as conn:
        sender.update_gauges(conn)
    assert REGISTRY.get_sample_value("gridwatch_notify_queue_depth") == 0


def test_a_channel_limit_holds_the_rest_for_the_next_minute(
    stack: LocalStack, hook: WebhookServer
) -> None:
    limited = WebhookChannel(WebhookSettings(enabled=True, url=hook.url,
                                             secret=SecretStr(SECRET), per_minute=2))  # fmt: skip
    raise_at(stack.dsn, "limit-1")  # three people hear of it: two now, one next minute
    run(stack, {"console": ConsoleChannel(), "webhook": limited}, NotifySettings())
    assert len(hook.received) == 2
    held = rows(stack.dsn, "SELECT count(*), bool_and(next_at > now() + interval '30 s')"
                           " FROM deliveries WHERE channel = 'webhook' AND state = 'pending'")  # fmt: skip
    assert held == [(1, True)]


def test_a_retry_counts_against_the_channel_limit_as_a_request(
    stack: LocalStack, hook: WebhookServer
) -> None:
    """A send that timed out and was tried again is two requests to the provider: the limit
    counts both, so the next incident's messages wait for the next minute."""
    limited = WebhookChannel(WebhookSettings(enabled=True, url=hook.url, secret=SecretStr(SECRET),
                                             per_minute=4, timeout_s=0.5))  # fmt: skip
    channels: dict[str, Channel] = {"console": ConsoleChannel(), "webhook": limited}
    settings = NotifySettings(backoff_s=0.1, backoff_max_s=0.2)
    hook.answers("timeout")
    raise_at(stack.dsn, "retry-1")  # three people hear of it; one send times out, then retried
    deadline = datetime.now(UTC).timestamp() + 30
    while datetime.now(UTC).timestamp() < deadline and len(hook.received) < 4:
        run(stack, channels, settings)
    assert [r.answered for r in hook.received].count("timeout") == 1 and len(hook.received) == 4
    raise_at(stack.dsn, "retry-2")  # four requests this minute already: all three must wait
    run(stack, channels, settings)
    assert len(hook.received) == 4
    held = rows(stack.dsn, "SELECT count(*) FROM deliveries WHERE channel = 'webhook'"
                           " AND state = 'pending' AND next_at > now() + interval '30 s'")  # fmt: skip
    assert held == [(3,)]


def test_the_webhook_signature_and_its_settings() -> None:
    from notify.channels import webhook as wh
    from notify.duty import configured_channels

    now = str(int(datetime.now(UTC).timestamp()))
    body = b'{"kind":"task.dispatched"}'
    signature = wh.sign("s3cret", now, body)
    assert signature.startswith("sha256=") and wh.verify("s3cret", now, body, signature)
    assert not wh.verify("other", now, body, signature)
    assert not wh.verify("s3cret", now, body + b" ", signature)
    assert not wh.verify(
        "s3cret", str(int(now) - 3600), body, wh.sign("s3cret", str(int(now) - 3600), body)
    )
    assert wh.retry_after("7") == 7.0 and wh.retry_after("soon") is None
    assert wh.retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date passed: at once
    with pytest.MonkeyPatch.context() as env:
        env.setenv("GRIDWATCH_NOTIFY_WEBHOOK_ENABLED", "true")
        env.setenv("GRIDWATCH_NOTIFY_WEBHOOK_URL", "https://example.invalid/hook")
        with pytest.raises(ValueError, match="GRIDWATCH_NOTIFY_WEBHOOK_SECRET is not set"):
            configured_channels(production=True)
        env.setenv("GRIDWATCH_NOTIFY_WEBHOOK_SECRET", "s3cret")
        assert "webhook" in configured_channels(production=True)


def test_old_settled_deliveries_are_pruned_and_services_keep_to_their_rights(
    stack: LocalStack, hook: WebhookServer
) -> None:
    from notify import links
    from tests.test_privileges import refused

    raise_at(stack.dsn, "old")
    run(stack, channels_for(hook), NotifySettings())
    with psycopg.connect(stack.dsn) as conn:
        conn.execute("UPDATE deliveries SET created_at = now() - interval '100 days'")
        conn.execute("UPDATE notify_events SET at = now() - interval '100 days'")
    with psycopg.connect(stack.role_dsn("ingest"), autocommit=True) as conn:
        links.prune(conn, retention_days=90)
    assert scalar(stack.dsn, "SELECT count(*) FROM deliveries") == 0
    assert scalar(stack.dsn, "SELECT count(*) FROM notify_events") == 0
    # Events come from triggers only; a person's preferences are theirs (through the API).
    for login in ("ingest", "api", "cli"):
        assert refused(stack.role_dsn(login), "INSERT INTO notify_events (kind) VALUES ('x')")
    assert refused(stack.role_dsn("ingest"), "UPDATE notify_prefs SET channels = '{sms}'")
    assert refused(stack.role_dsn("api"), "UPDATE deliveries SET state = 'sent'")
    assert refused(stack.role_dsn("api"), "SELECT * FROM notify_links WHERE false FOR UPDATE")
