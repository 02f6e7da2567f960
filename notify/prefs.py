"""Each person's channels in order, quiet hours and time zone (table notify_prefs)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import psycopg

from notify.channels.base import Recipient

Conn = psycopg.Connection[tuple[object, ...]]
# The order a person without preferences is reached in (voice only when a policy asks for it).
DEFAULT_CHANNELS = ("console", "wecom", "dingtalk", "sms", "email", "webhook")
CHANNEL_NAMES = frozenset({*DEFAULT_CHANNELS, "voice"})


@dataclass(frozen=True, slots=True)
class Prefs:
    channels: tuple[str, ...]
    quiet_from: time | None
    quiet_to: time | None
    timezone: str

    def quiet_until(self, now: datetime) -> datetime | None:
        """The end of the quiet hours `now` falls in, or None when it is not quiet now."""
        if self.quiet_from is None or self.quiet_to is None:
            return None
        local = now.astimezone(ZoneInfo(self.timezone))
        t = local.time()
        start, end = self.quiet_from, self.quiet_to
        inside = start <= t < end if start < end else (t >= start or t < end)
        if not inside:
            return None
        until = local.replace(hour=end.hour, minute=end.minute, second=0, microsecond=0)
        if until <= local:
            until += timedelta(days=1)
        return until


@dataclass(frozen=True, slots=True)
class Person:
    recipient: Recipient
    role: str
    prefs: Prefs


def load(conn: Conn, person_id: str) -> Person | None:
    """An active person with their contact points and preferences, or None."""
    row = conn.execute(
        """SELECT p.id, p.name, p.language, p.phone, p.email, p.wecom_id, p.dingtalk_id,
                  p.role::text, n.channels, n.quiet_from, n.quiet_to, n.timezone
           FROM people p LEFT JOIN notify_prefs n ON n.person_id = p.id
           WHERE p.id = %s AND p.active""",
        (person_id,),
    ).fetchone()
    if row is None:
        return None
    pid, name, language, phone, email, wecom, dingtalk, role, chans, qf, qt, tz = row
    recipient = Recipient(
        person_id=str(pid), name=str(name), language=str(language),
        phone=_opt(phone), email=_opt(email), wecom_id=_opt(wecom), dingtalk_id=_opt(dingtalk),
    )  # fmt: skip
    channels = tuple(str(c) for c in chans) if isinstance(chans, list) else DEFAULT_CHANNELS
    prefs = Prefs(
        channels,
        qf if isinstance(qf, time) else None,
        qt if isinstance(qt, time) else None,
        str(tz) if tz else "Asia/Shanghai",
    )
    return Person(recipient, str(role), prefs)


def _opt(value: object) -> str | None:
    return str(value) if value else None
