"""The broker reconcile: make the broker's node accounts and roles match the registry, live.

The ingest leader runs it (a leader Duty wired by gridwatch/, the composition root): in full on
taking the lead and every `GRIDWATCH_BROKER_RECONCILE_S`, and for the named nodes at once when
the registry announces `broker:<id>` (a node enabled, disabled, moved or given a secret), so a
disabled node's session is cut and a rotated secret takes over within a second. It speaks to
Mosquitto's dynamic-security plugin as the control account (gateway/dynsec.py).

For every registry node, the broker should have:
- with a sealed secret: an account `<id>` (password: the unsealed secret, textdescription: which
  secret, see gateway.broker.secret_mark), enabled or disabled as the node, holding only the role
  `node:<id>`, whose ACLs are exactly gateway.broker.node_role for the node's site;
- with only a password hash (given before 013, or written into the broker's initial state): the
  account as the broker has it (it cannot be made from a hash), its role and state kept right;
- with no secret at all: no account.
Accounts of the `node:` kind that the registry does not know are deleted. The ingest and control
accounts are never touched, only checked for.

In a partitioned province each ingest group's leader reconciles its own broker for the nodes of
its group's areas (ingest.groups): a node elsewhere is, for this broker, one it does not know,
so a node moved to another district loses its account here and gains one on the other broker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import psycopg
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from prometheus_client import Counter, Histogram
from psycopg.types.json import Jsonb
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from gateway.broker import (
    CONTROL_ROLE,
    CONTROL_USER,
    INGEST_ROLE,
    NODE_ROLE_PREFIX,
    node_role,
    node_role_name,
    secret_mark,
)
from gateway.client import MqttSettings
from gateway.dynsec import Acl, Client, Command, DynSec, DynSecError, Role
from ingest.groups import WHOLE, Scope, within
from registry.broker_log import Refusal, RefusalLog, refusals
from registry.secrets import SealError, load_seal_key, register_public_key, unseal

log = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]
__all__ = ["BrokerSync", "BrokerSyncSettings", "Refusal", "reconcile", "refusals"]

CHANGES = Counter(
    "gridwatch_broker_reconcile_changes_total",
    "Changes the broker reconcile made to the broker's accounts and roles",
    ["kind"],
)
FAILURES = Counter("gridwatch_broker_reconcile_failures_total", "Broker reconciles that failed")
DURATION = Histogram(
    "gridwatch_broker_reconcile_seconds",
    "How long one broker reconcile took",
    ["scope"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900),
)


class BrokerSyncSettings(BaseSettings):
    """The ingest leader's broker reconcile (GRIDWATCH_ variables, beside IngestSettings)."""

    model_config = SettingsConfigDict(
        env_prefix="GRIDWATCH_", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    broker_control_password: SecretStr | None = Field(
        default=None,
        description="password of the broker's control account (`gridwatch broker config` gets"
        " the same as GRIDWATCH_BROKER_CONTROL_PASSWORD); unset: node accounts are not"
        " reconciled and the leader says so",
    )
    broker_control_user: str = Field(
        default=CONTROL_USER, description="the broker's control account"
    )
    seal_key_file: Path | None = Field(
        default=None,
        description="the private key node secrets are sealed to (`gridwatch keys seal-init`); the"
        " reconcile needs it to give the broker each node's secret",
    )
    broker_reconcile_s: float = Field(
        default=60.0, gt=0, description="how often the leader reconciles every node account"
    )
    broker_log_file: Path | None = Field(
        default=None,
        description="the broker's log file (`log_dest file` of `gridwatch broker config`), read"
        " by the leader to count refused connects; unset: they are not counted",
    )


class ChangeKind(StrEnum):
    CREATED = "created"
    SECRET_SET = "secret_set"
    DISABLED = "disabled"
    ENABLED = "enabled"
    REMOVED = "removed"
    ROLES_FIXED = "roles_fixed"  # the account held other roles than its node's own
    ROLE_CREATED = "role_created"
    ROLE_FIXED = "role_fixed"  # ACLs drifted, or the node moved to another site
    ROLE_REMOVED = "role_removed"


@dataclass(frozen=True, slots=True)
class Change:
    kind: ChangeKind
    node: str
    detail: str = ""

    def as_json(self) -> dict[str, str]:
        return {"kind": self.kind.value, "node": self.node, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class Wanted:
    """A registry node as the broker should know it."""

    node: str
    site: str
    disabled: bool
    sealed: bytes | None
    issued_at: datetime | None
    has_hash: bool

    @property
    def has_account(self) -> bool:
        return self.sealed is not None or self.has_hash


@dataclass(slots=True)
class Report:
    full: bool
    changes: list[Change] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what could not be done, and why
    error: str | None = None
    seconds: float = 0.0


def registry_nodes(
    conn: Conn, only: Collection[str] | None = None, scope: Scope = WHOLE
) -> dict[str, Wanted]:
    """The registry's nodes (those named, or all) that the scope's broker carries."""
    rows = conn.execute(
        f"""SELECT n.id, n.venue_id, n.disabled OR v.disabled, n.secret_sealed,
                  n.secret_issued_at, n.password_hash IS NOT NULL
           FROM edge_nodes n JOIN venues v ON v.id = n.venue_id
           JOIN territory t ON t.id = v.grid_id
           WHERE (%s::text[] IS NULL OR n.id = ANY(%s::text[])) AND {within("t.path")}""",
        (*(list(only) if only is not None else None,) * 2, scope.param()),
    ).fetchall()
    return {
        str(r[0]): Wanted(
            str(r[0]), str(r[1]), bool(r[2]), bytes(r[3]) if r[3] else None, r[4], bool(r[5])
        )
        for r in rows
    }


def _protected(c: Client, control_user: str) -> bool:
    return c.username == control_user or bool({INGEST_ROLE, CONTROL_ROLE} & set(c.roles))


def _node_style(c: Client) -> bool:
    return any(r.startswith(NODE_ROLE_PREFIX) for r in c.roles)


def node_acls(site: str, node: str) -> frozenset[Acl]:
    return frozenset(Acl.of(a) for a in node_role(site, node)["acls"])


class _Plan:
    """The commands that make the broker match the registry, and what each changes."""

    def __init__(self, key: X25519PrivateKey | None, scope: Scope = WHOLE) -> None:
        self.key = key
        self.absent = (
            "not in the registry" if scope.whole
            else f"not in the registry, or not in the areas of ingest group {scope.group}"
        )  # fmt: skip
        self.roles_first: list[Command] = []
        self.clients: list[Command] = []
        self.roles_last: list[Command] = []
        self.changes: list[Change] = []
        self.notes: list[str] = []

    def commands(self) -> list[Command]:
        return self.roles_first + self.clients + self.roles_last

    def node(self, n: str, w: Wanted | None, c: Client | None, r: Role | None) -> None:
        role = node_role_name(n)
        if w is None or not w.has_account:
            why = self.absent if w is None else "the node has no secret"
            if c is not None:
                self.clients.append(DynSec.delete_client(n))
                self.changes.append(Change(ChangeKind.REMOVED, n, why))
            if r is not None:
                self.roles_last.append(DynSec.delete_role(role))
                self.changes.append(Change(ChangeKind.ROLE_REMOVED, n, why))
            return
        want = node_acls(w.site, n)
        if r is None:
            self.roles_first.append(DynSec.create_role(role, sorted(want, key=_acl_key)))
            self.changes.append(Change(ChangeKind.ROLE_CREATED, n, f"site {w.site}"))
        elif r.acls != want:
            extra, missing = r.acls - want, want - r.acls
            self.roles_first += [
                DynSec.remove_role_acl(role, a) for a in sorted(extra, key=_acl_key)
            ]
            self.roles_first += [
                DynSec.add_role_acl(role, a) for a in sorted(missing, key=_acl_key)
            ]
            self.changes.append(Change(ChangeKind.ROLE_FIXED, n,
                                       f"{len(extra)} ACLs removed, {len(missing)} added (site {w.site})"))  # fmt: skip
        mark = secret_mark(w.issued_at)
        if c is None:
            password = self._secret_of(w)
            if password is not None:
                self.clients.append(
                    DynSec.create_client(n, password, roles=[role], textdescription=mark)
                )
                if w.disabled:
                    self.clients.append(DynSec.disable_client(n))
                state = " (disabled)" if w.disabled else ""
                self.changes.append(Change(ChangeKind.CREATED, n, f"{mark or 'secret'}{state}"))
            return
        if w.sealed is not None and c.textdescription != mark:
            password = self._secret_of(w)
            if password is not None:
                # A new secret: one command sets it and the mark, and cuts the old session.
                self.clients.append(
                    DynSec.modify_client(n, password=password, textdescription=mark)
                )
                self.changes.append(Change(ChangeKind.SECRET_SET, n, mark or "secret"))
        if c.roles != (role,):
            if role not in c.roles:
                self.clients.append(DynSec.add_client_role(n, role))
            self.clients += [DynSec.remove_client_role(n, x) for x in c.roles if x != role]
            self.changes.append(Change(ChangeKind.ROLES_FIXED, n, f"had {list(c.roles)}"))
        if w.disabled != c.disabled:
            self.clients.append(DynSec.disable_client(n) if w.disabled else DynSec.enable_client(n))
            self.changes.append(
                Change(ChangeKind.DISABLED if w.disabled else ChangeKind.ENABLED, n)
            )

    def _secret_of(self, w: Wanted) -> str | None:
        """The node's plain secret for the broker, or None (noted) when it cannot be had."""
        if w.sealed is None:
            self.notes.append(
                f"node {w.node} has only a password hash from before sealed secrets, and the"
                " broker has no account for it: issue it a new secret (rotation or enrolment)"
                " so that the broker can be given one"
            )
            return None
        try:
            return self._unseal(w.sealed)
        except SealError as exc:
            self.notes.append(f"node {w.node}: its secret cannot be given to the broker: {exc}")
            return None

    def _unseal(self, sealed: bytes) -> str:
        if self.key is None:
            raise SealError("no seal key (GRIDWATCH_SEAL_KEY_FILE) is configured")
        return unseal(sealed, self.key)


def _acl_key(a: Acl) -> tuple[str, str]:
    return a.acltype, a.topic


def reconcile(
    conn: Conn,
    dynsec: DynSec,
    key: X25519PrivateKey | None,
    only: Collection[str] | None = None,
    *,
    control_user: str = CONTROL_USER,
    scope: Scope = WHOLE,
) -> Report:
    """One reconcile, in full (`only` None) or of the named nodes, for the nodes of the ingest
    group's areas (`scope`); the report says what changed. Raises DynSecError when the broker
    cannot be read or refuses a change."""
    report = Report(full=only is None)
    wanted = registry_nodes(conn, only, scope)
    if only is None:
        clients = {c.username: c for c in dynsec.list_clients()}
        roles = {r.rolename: r for r in dynsec.list_roles()}
        _check_services(clients, control_user, report)
        names = set(wanted)
        names |= {u for u, c in clients.items() if _node_style(c)}
        names |= {r[len(NODE_ROLE_PREFIX) :] for r in roles if r.startswith(NODE_ROLE_PREFIX)}
    else:
        names = set(only)
        clients = dynsec.get_clients(sorted(names))
        roles = dynsec.get_roles([node_role_name(n) for n in sorted(names)])
    plan = _Plan(key, scope)
    for n in sorted(names):
        c = clients.get(n)
        if c is not None and _protected(c, control_user):
            continue  # a service account named like a node: never ours to change
        if c is not None and n not in wanted and not _node_style(c):
            continue  # an account that is not a node's (the operator's own): left alone
        plan.node(n, wanted.get(n), c, roles.get(node_role_name(n)))
    report.notes += plan.notes
    dynsec.execute(plan.commands())
    report.changes = plan.changes
    return report


def _check_services(clients: dict[str, Client], control_user: str, report: Report) -> None:
    if not any(INGEST_ROLE in c.roles for c in clients.values()):
        report.notes.append(
            "the broker has no ingest accounts (role 'ingest'): write the broker configuration"
            " again (`gridwatch broker config`) and restart it"
        )
    if control_user not in clients:
        report.notes.append(f"the broker has no control account {control_user!r}")


def record(conn: Conn, report: Report) -> None:
    """Keep a run that changed something or failed (broker_reconciles) and count it."""
    for ch in report.changes:
        CHANGES.labels(kind=ch.kind.value).inc()
    if report.error is not None:
        FAILURES.inc()
    if report.changes or report.error is not None:
        conn.execute(
            "INSERT INTO broker_reconciles (changes, error) VALUES (%s, %s)",
            (
                Jsonb(
                    {
                        "full": report.full,
                        "changes": [c.as_json() for c in report.changes],
                        "notes": report.notes,
                    }
                ),
                report.error,
            ),
        )


class BrokerSync:
    """The leader Duty: reconcile in full every `interval_s`, and the named nodes on notices;
    also counts the broker's refused connects from its log file, when one is configured."""

    name = "broker_sync"

    def __init__(
        self, settings: BrokerSyncSettings, broker: MqttSettings, scope: Scope = WHOLE
    ) -> None:
        """`broker`: the service listener (the ingest's MQTT settings); the account is replaced
        by the control account. `scope`: the ingest group whose broker it is."""
        self.settings = settings
        self.scope = scope
        self.interval_s = min(settings.broker_reconcile_s, 5.0)  # refusals are read this often
        self._full_every = settings.broker_reconcile_s
        self._last_full = float("-inf")
        self._last_run = float("-inf")
        self._dynsec: DynSec | None = None
        if settings.broker_control_password is None:
            log.error(
                "no GRIDWATCH_BROKER_CONTROL_PASSWORD: the broker's node accounts are not"
                " reconciled with the registry (disabling or rotating a node does not reach it)"
            )
        else:
            self._dynsec = DynSec(
                broker.as_account(
                    settings.broker_control_user,
                    settings.broker_control_password.get_secret_value(),
                )
            )
        self._key: X25519PrivateKey | None = None
        if settings.seal_key_file is not None:
            self._key = load_seal_key(settings.seal_key_file)
        else:
            log.warning("no GRIDWATCH_SEAL_KEY_FILE: the broker reconcile cannot give nodes their"
                        " secrets; only accounts the broker already has are kept right")  # fmt: skip
        self._key_registered = False
        self._noted: set[str] = set()
        self.refusal_log = (
            RefusalLog(settings.broker_log_file) if settings.broker_log_file is not None else None
        )
        if self.refusal_log is None:
            log.warning("no GRIDWATCH_BROKER_LOG_FILE: refused broker connects are not counted")

    def run(self, conn: Conn, publish: object, changed: frozenset[str]) -> None:
        if self._key is not None and not self._key_registered:
            # Whoever issues secrets (API, command line) seals them to the registered half.
            if not register_public_key(conn, self._key):
                log.error(
                    "the node-secret seal key registered in the database is not the one in"
                    " GRIDWATCH_SEAL_KEY_FILE: secrets issued are sealed to the registered key,"
                    " which this ingest cannot open; configure the key that was registered"
                )
            self._key_registered = True
        if self.refusal_log is not None:
            self.refusal_log.read(conn)
        if self._dynsec is None:
            return
        now = time.monotonic()
        if now - self._last_run > 3 * self.interval_s:
            self._last_full = float("-inf")  # the lead was taken (again): reconcile in full
        self._last_run = now
        if now - self._last_full >= self._full_every:
            self._last_full = now
            self.once(conn, None)
            return
        named = sorted(p.split(":", 1)[1] for p in changed if p.startswith("broker:"))
        if named:
            self.once(conn, named)

    def once(self, conn: Conn, only: Iterable[str] | None) -> Report:
        assert self._dynsec is not None
        scope = "full" if only is None else "nodes"
        started = time.perf_counter()
        nodes = list(only) if only is not None else None
        try:
            report = reconcile(conn, self._dynsec, self._key, nodes,
                               control_user=self.settings.broker_control_user,
                               scope=self.scope)  # fmt: skip
        except DynSecError as exc:
            report = Report(full=only is None, error=str(exc))
            self._dynsec.close()
            self._last_full = float("-inf") if only is not None else self._last_full
        report.seconds = time.perf_counter() - started
        DURATION.labels(scope=scope).observe(report.seconds)
        for ch in report.changes:
            log.info("broker account changed node=%s change=%s %s", ch.node, ch.kind, ch.detail)
        for note in report.notes:
            if note not in self._noted:  # each reported once per leadership, not every minute
                self._noted.add(note)
                log.warning("broker reconcile: %s", note)
        if report.error is not None:
            log.error("broker reconcile failed (%s, %.2f s): %s", scope, report.seconds,
                      report.error)  # fmt: skip
        elif report.changes or report.full:
            log.info("broker reconciled scope=%s nodes=%s changes=%d seconds=%.3f", scope,
                     "all" if nodes is None else ",".join(nodes), len(report.changes),
                     report.seconds)  # fmt: skip
        record(conn, report)
        return report

    def stop(self) -> None:
        """The lead is lost: close the control connection (only the leader may hold it)."""
        if self._dynsec is not None:
            self._dynsec.close()
