"""Who hears about what, on which channels: built-in defaults, overridable as data
(table notify_policies: kind, severity or NULL for any, rules as JSON)."""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Literal

import psycopg
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

Conn = psycopg.Connection[tuple[object, ...]]
log = logging.getLogger(__name__)


class Who(StrEnum):
    ASSIGNEE = "assignee"  # the task's assignee (else the level's dispatchers)
    ON_DUTY = "on_duty"  # on duty in the grid now (else the dispatchers above)
    DISPATCHERS = "dispatchers"  # the dispatchers of the event's level on duty, up the tree
    OPERATORS = "operators"  # operators whose area covers the event's
    ADMINS = "admins"  # admins whose area covers the event's
    ISSUER = "issuer"  # the person who issued the command


class Rule(BaseModel):
    """One line of a policy: these people, on these channels."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    who: Who = Field(description="who hears")
    channels: Literal["first", "all"] | list[str] = Field(
        default="first",
        description="first: the console and the person's first channel (the others as"
        ' fallbacks); all: every channel they have; or channels by name (e.g. ["voice"])',
    )


Rules = list[Rule]
_RULES = TypeAdapter(Rules)
Channels = Literal["first", "all"] | list[str]


def _r(who: Who, channels: Channels = "first") -> Rule:
    return Rule(who=who, channels=channels)


# (kind, severity or None for any) -> rules. More specific (with a severity) wins.
DEFAULTS: dict[tuple[str, str | None], Rules] = {
    ("task.dispatched", "red"): [_r(Who.ASSIGNEE, "all")],
    ("task.dispatched", None): [_r(Who.ASSIGNEE)],
    ("task.deadline", "red"): [_r(Who.ASSIGNEE, "all")],
    ("task.deadline", None): [_r(Who.ASSIGNEE)],
    ("task.escalated", "red"): [_r(Who.DISPATCHERS, "all"), _r(Who.ASSIGNEE, ["voice"])],
    ("task.escalated", None): [_r(Who.DISPATCHERS), _r(Who.ASSIGNEE, ["voice"])],
    ("task.accepted", None): [],
    ("incident.red", None): [_r(Who.OPERATORS), _r(Who.DISPATCHERS)],
    ("node.offline", None): [_r(Who.ON_DUTY), _r(Who.OPERATORS)],
    ("emergency.started", None): [_r(Who.OPERATORS, "all"), _r(Who.DISPATCHERS, "all")],
    ("emergency.ended", None): [_r(Who.OPERATORS), _r(Who.DISPATCHERS)],
    ("command.failed", None): [_r(Who.ISSUER), _r(Who.OPERATORS)],
    ("node.enrolled", None): [_r(Who.ADMINS)],
    ("node.refused", None): [_r(Who.ADMINS)],
}


class PolicyError(ValueError):
    """A policy row that does not read; the message says which and why."""


def parse(kind: str, severity: str | None, rules: object) -> Rules:
    """A policy's rules from JSON, or PolicyError naming the policy and the mistake."""
    try:
        return _RULES.validate_python(rules)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise PolicyError(
            f"notify policy {kind}/{severity or 'any'}: {where or 'rules'}: {first['msg']}"
        ) from None


class Policies:
    """The defaults with the database's overrides; read once per routing round."""

    def __init__(self, overrides: dict[tuple[str, str | None], Rules] | None = None) -> None:
        self.overrides = overrides or {}

    @classmethod
    def load(cls, conn: Conn) -> Policies:
        found: dict[tuple[str, str | None], Rules] = {}
        for kind, severity, rules in conn.execute(
            "SELECT kind, severity::text, rules FROM notify_policies"
        ).fetchall():
            key = (str(kind), str(severity) if severity is not None else None)
            try:
                found[key] = parse(key[0], key[1], rules)
            except PolicyError as exc:  # one bad row must not silence every notification
                log.error("%s; the built-in policy applies until it is fixed", exc)
        return cls(found)

    def rules(self, kind: str, severity: str | None) -> Rules:
        for table in (self.overrides, DEFAULTS):
            for key in ((kind, severity), (kind, None)):
                if key in table:
                    return table[key]
        return []
