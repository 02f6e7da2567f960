"""The notify duty of the ingest leader: route new events, send due deliveries."""

from __future__ import annotations

import importlib
import logging
import time

import psycopg

from ingest.commands import Publish
from notify import links, router, sender
from notify.channels.base import Channel
from notify.channels.console import ConsoleChannel
from notify.channels.webhook import WebhookChannel, WebhookSettings
from notify.settings import NotifySettings

log = logging.getLogger(__name__)
Conn = psycopg.Connection[tuple[object, ...]]
_PRUNE_EVERY_S = 600.0


class NotifyDuty:
    """ingest.leader.Duty: every `interval_s` (and on registry notices), route then send."""

    name = "notify"

    def __init__(self, channels: dict[str, Channel], settings: NotifySettings | None = None):
        self.settings = settings or NotifySettings()
        self.interval_s = self.settings.interval_s
        self.channels = channels
        self._pruned = 0.0

    def run(self, conn: Conn, publish: Publish, changed: frozenset[str]) -> None:
        while router.route(conn, self.channels, self.settings) >= self.settings.batch:
            pass
        while sender.send_due(conn, self.channels, self.settings) >= self.settings.batch:
            router.route(conn, self.channels, self.settings)
        if time.monotonic() - self._pruned > _PRUNE_EVERY_S:
            self._pruned = time.monotonic()
            links.prune(conn, self.settings.retention_days)

    def stop(self) -> None:
        """Nothing is held between rounds: what a round took is leased in the database."""


def configured_channels(production: bool = False) -> dict[str, Channel]:
    """Every enabled channel: the console always, the webhook when enabled, and the providers'
    adapters of notify.channels.configured(). In production an enabled channel whose secret is
    missing is refused (ValueError naming the setting)."""
    found: dict[str, Channel] = {"console": ConsoleChannel()}
    webhook = WebhookSettings()
    if production:
        webhook.check_production()
    if webhook.enabled:
        if webhook.secret is None:
            log.warning("the notify webhook is enabled without GRIDWATCH_NOTIFY_WEBHOOK_SECRET:"
                        " its messages are signed with an empty key")  # fmt: skip
        found["webhook"] = WebhookChannel(webhook)
    package = importlib.import_module("notify.channels")
    providers = getattr(package, "configured", None)  # the providers' adapters (notify-channels)
    if callable(providers):
        for name, channel in providers().items():
            found.setdefault(name, channel)
    log.info("notification channels: %s", ", ".join(sorted(found)))
    return found
