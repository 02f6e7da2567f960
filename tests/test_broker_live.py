"""The broker's accounts follow the registry while it runs: real Mosquitto with its
dynamic-security plugin, real PostgreSQL, a real ingest whose leader reconciles."""

from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import psycopg
import pytest

from gateway.broker import node_role_name, secret_mark
from gateway.dynsec import Acl, DynSec, DynSecError
from gridwatch.demo import NodeCredentials
from gridwatch.local.stack import LocalStack
from registry.broker_sync import ChangeKind, node_acls, reconcile, refusals
from registry.secrets import issue_secret, load_seal_key
from tests.support import (
    Node,
    metric,
    occupancy,
    rows,
    scalar,
    start_ingest,
    stop_process,
    wait_until,
)

RECONCILE_S = 2.0
T = TypeVar("T")


@pytest.fixture
def leader(stack: LocalStack) -> Iterator[int]:
    """An ingest whose leader reconciles every 2 s; its metrics port. Waits for the first
    full reconcile, so the leader is listening for registry notices."""
    proc, port = start_ingest(stack, env={"GRIDWATCH_BROKER_RECONCILE_S": str(RECONCILE_S)})
    wait_until(lambda: metric(port, "gridwatch_broker_reconcile_seconds_count") >= 1, 30,
               "the leader's first broker reconcile")  # fmt: skip
    yield port
    stop_process(proc)


def _sql(stack: LocalStack, query: str, *params: object) -> None:
    with psycopg.connect(stack.dsn) as conn:
        conn.execute(query, params)  # type: ignore[arg-type]


def _rotate(stack: LocalStack, creds: NodeCredentials) -> NodeCredentials:
    with psycopg.connect(stack.dsn) as conn:
        secret = issue_secret(conn, creds.node)
    return dataclasses.replace(creds, secret=secret)


def _control(stack: LocalStack, act: Callable[[DynSec], T]) -> T:
    """Act as the control account while the leader holds it too: each connect takes the session
    from the other, so a command caught in between is tried again."""
    for attempt in range(5):
        try:
            with DynSec(stack.control_mqtt()) as dynsec:
                return act(dynsec)
        except DynSecError:
            if attempt == 4:
                raise
            time.sleep(0.5)
    raise AssertionError("unreachable")


def _timed(check: Callable[[], bool], what: str) -> float:
    started = time.monotonic()
    wait_until(check, 30, what)
    return time.monotonic() - started


def _refused(stack: LocalStack, creds: NodeCredentials) -> bool:
    """Whether a fresh connect with these credentials is refused (not authorised)."""
    node = Node(stack, creds)
    try:
        wait_until(lambda: node.watch.refusal is not None or node.watch.connected.is_set(), 15,
                   "the broker's answer")  # fmt: skip
        return node.watch.refusal == "Not authorized" and not node.watch.connected.is_set()
    finally:
        node.close()


def test_disabling_a_node_cuts_its_session_and_enabling_lets_it_back(
    stack: LocalStack, nodes: list[NodeCredentials], leader: int
) -> None:
    creds = nodes[0]
    node = Node(stack, creds).wait_connected()
    other = Node(stack, nodes[1]).wait_connected()

    _sql(stack, "UPDATE edge_nodes SET disabled = true WHERE id = %s", creds.node)
    cut_s = _timed(lambda: not node.watch.connected.is_set(), "the disabled node's session cut")
    print(f"disabled node's session cut after {cut_s:.3f} s")  # measured, not asserted
    wait_until(lambda: node.watch.refusal == "Not authorized", 15, "its reconnect refused")
    assert _refused(stack, creds)
    assert other.watch.connected.is_set()  # nobody else is touched
    changes = rows(stack.dsn, "SELECT changes FROM broker_reconciles ORDER BY id")
    assert {"kind": "disabled", "node": creds.node, "detail": ""} in [
        c
        for (r,) in changes
        for c in r["changes"]  # type: ignore[call-overload]
    ]

    _sql(stack, "UPDATE edge_nodes SET disabled = false WHERE id = %s", creds.node)
    node.wait_connected(60)  # paho's own reconnect (backing off meanwhile) gets in again
    node.close()
    other.close()


def test_a_disabled_venues_nodes_are_cut_and_come_back_with_it(
    stack: LocalStack, nodes: list[NodeCredentials], leader: int
) -> None:
    creds = nodes[0]
    node = Node(stack, creds).wait_connected()
    _sql(stack, "UPDATE venues SET disabled = true WHERE id = %s", creds.site)
    _timed(lambda: not node.watch.connected.is_set(), "the disabled venue's node cut")
    wait_until(lambda: node.watch.refusal == "Not authorized", 15, "its reconnect refused")
    assert _refused(stack, creds)
    _sql(stack, "UPDATE venues SET disabled = false WHERE id = %s", creds.site)
    node.wait_connected(60)
    node.close()


def test_a_rotated_secret_cuts_the_old_session_and_only_the_new_one_works(
    stack: LocalStack, nodes: list[NodeCredentials], leader: int
) -> None:
    old = nodes[0]
    node = Node(stack, old).wait_connected()
    new = _rotate(stack, old)
    cut_s = _timed(lambda: not node.watch.connected.is_set(), "the old secret's session cut")
    print(f"old secret's session cut after {cut_s:.3f} s")  # measured, not asserted
    node.close()
    assert _refused(stack, old)
    Node(stack, new).wait_connected(15).close()

    # Rotated again: the broker follows every rotation, not only the first.
    newer = _rotate(stack, new)
    wait_until(lambda: _refused(stack, new), 30, "the second-last secret refused")
    Node(stack, newer).wait_connected(15).close()


def test_a_new_node_gets_its_account_from_the_reconcile(
    stack: LocalStack, nodes: list[NodeCredentials], leader: int
) -> None:
    """A node registered while the broker runs (no secret: no account) can connect within
    moments of being given one; its role is its own subtree."""
    _sql(stack, "INSERT INTO edge_nodes (id, venue_id) VALUES ('late-edge', %s)", nodes[0].site)
    assert _control(stack, lambda ds: ds.get_client("late-edge")) is None
    creds = _rotate(stack, dataclasses.replace(nodes[0], node="late-edge", devices=[]))
    Node(stack, creds).wait_connected(15).close()
    role = _control(stack, lambda ds: ds.get_role(node_role_name("late-edge")))
    client = _control(stack, lambda ds: ds.get_client("late-edge"))
    assert role is not None and role.acls == node_acls(nodes[0].site, "late-edge")
    assert client is not None and client.roles == (node_role_name("late-edge"),)


def test_drift_behind_the_reconciles_back_is_repaired_and_reported(
    stack: LocalStack, nodes: list[NodeCredentials]
) -> None:
    """Called directly against the broker: an account deleted, a role widened, a stranger
    account of the node kind, and a node with no secret given an account, all put right."""
    a = _rotate(stack, nodes[0])  # sealed secrets: the reconcile can recreate these accounts
    b = nodes[1]
    key = load_seal_key(stack.seal_key_file)
    wide = Acl("publishClientSend", "gw/v1/#")
    with psycopg.connect(stack.dsn, autocommit=True) as conn, DynSec(stack.control_mqtt()) as ds:
        first = reconcile(conn, ds, key)
        assert [(c.kind, c.node) for c in first.changes] == [(ChangeKind.SECRET_SET, a.node)]
        conn.execute("INSERT INTO edge_nodes (id, venue_id) VALUES ('nosecret', %s)", (b.site,))
        ds.execute([
            ds.delete_client(a.node),
            ds.add_role_acl(node_role_name(b.node), wide),
            ds.remove_role_acl(node_role_name(b.node), Acl("publishClientSend",
                                                           f"gw/v1/{b.site}/{b.node}/birth")),
            ds.create_role(node_role_name("ghost")),
            ds.create_client("ghost", "ghost-secret", roles=[node_role_name("ghost")]),
            ds.create_role(node_role_name("nosecret")),
            ds.create_client("nosecret", "made-up", roles=[node_role_name("nosecret")]),
            ds.create_client("operator-tool", "x"),  # no node role, not in the registry
        ])  # fmt: skip
        fixed = reconcile(conn, ds, key)
        got = {(c.kind, c.node) for c in fixed.changes}
        assert got == {
            (ChangeKind.CREATED, a.node),
            (ChangeKind.ROLE_FIXED, b.node),
            (ChangeKind.REMOVED, "ghost"),
            (ChangeKind.ROLE_REMOVED, "ghost"),
            (ChangeKind.REMOVED, "nosecret"),
            (ChangeKind.ROLE_REMOVED, "nosecret"),
        }
        role = ds.get_role(node_role_name(b.node))
        assert role is not None and role.acls == node_acls(b.site, b.node)
        client = ds.get_client(a.node)
        assert client is not None and client.textdescription.startswith("secret issued ")
        assert ds.get_client("ghost") is None and ds.get_client("nosecret") is None
        assert ds.get_client("operator-tool") is not None  # not a node's: left alone
        assert {c.username for c in ds.list_clients()} >= {"ingest-0", "gridwatch-control"}
        assert reconcile(conn, ds, key).changes == []  # and now nothing is left to do
    Node(stack, a).wait_connected(15).close()


def test_drift_is_repaired_by_the_leader_on_its_timer(
    stack: LocalStack, nodes: list[NodeCredentials], leader: int
) -> None:
    a = _rotate(stack, nodes[0])
    Node(stack, a).wait_connected(15).close()  # the reconcile gave the broker the new secret
    _control(stack, lambda ds: ds.execute([ds.delete_client(a.node)]))
    wait_until(
        lambda: bool(rows(stack.dsn, "SELECT 1 FROM broker_reconciles WHERE changes @> %s",
                          (json.dumps({"changes": [{"kind": "created", "node": a.node}]}),))),
        30, "the deleted account recreated and reported",
    )  # fmt: skip
    Node(stack, a).wait_connected(15).close()


def test_a_broker_restart_keeps_accounts_and_disabled_nodes(
    stack: LocalStack, nodes: list[NodeCredentials]
) -> None:
    """The local stack writes the plugin's initial state again at every start, from the
    registry: rotated secrets and disabled nodes stay as they are, with nothing to reconcile."""
    a = _rotate(stack, nodes[0])
    _sql(stack, "UPDATE edge_nodes SET disabled = true WHERE id = %s", nodes[1].node)
    assert stack.broker is not None
    stack.broker.stop()
    stack.start_broker()
    state = json.loads((stack.home / "broker" / "dynamic-security.json").read_text())
    by_name = {c["username"]: c for c in state["clients"]}
    assert by_name[nodes[1].node].get("disabled") is True
    issued = scalar(stack.dsn, "SELECT secret_issued_at FROM edge_nodes WHERE id = %s", (a.node,))
    assert by_name[a.node]["textdescription"] == secret_mark(issued)  # type: ignore[arg-type]
    with psycopg.connect(stack.dsn) as conn, DynSec(stack.control_mqtt()) as ds:
        assert reconcile(conn, ds, load_seal_key(stack.seal_key_file)).changes == []
    Node(stack, a).wait_connected(15).close()
    assert _refused(stack, nodes[1])


def test_a_disabled_devices_messages_are_rejected_until_it_is_enabled(
    stack: LocalStack, nodes: list[NodeCredentials], leader: int
) -> None:
    node = Node(stack, nodes[0]).wait_connected()
    first = occupancy(node, count=1)
    node.deliver([node.send(first)])
    wait_until(lambda: scalar(stack.dsn, "SELECT count(*) FROM occupancy") == 1, 30, "stored")

    _sql(stack, "UPDATE devices SET disabled = true WHERE id = %s", first.device)
    node.deliver([node.send(occupancy(node, count=2))])
    wait_until(
        lambda: bool(rows(stack.dsn, "SELECT 1 FROM rejected_messages WHERE reason = %s",
                          ("disabled_device",))),
        30, "the disabled device's message rejected",
    )  # fmt: skip
    detail = scalar(stack.dsn, "SELECT detail FROM rejected_messages WHERE reason = %s",
                    ("disabled_device",))  # fmt: skip
    assert f"device {first.device!r} of node {nodes[0].node!r} is disabled" in str(detail)
    assert scalar(stack.dsn, "SELECT count(*) FROM occupancy") == 1

    _sql(stack, "UPDATE devices SET disabled = false WHERE id = %s", first.device)
    node.deliver([node.send(occupancy(node, count=3))])
    wait_until(lambda: scalar(stack.dsn, "SELECT count(*) FROM occupancy") == 2, 30,
               "the enabled device's message stored")  # fmt: skip
    node.close()


def test_refused_connects_are_counted_for_admins(
    stack: LocalStack, nodes: list[NodeCredentials], leader: int, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = dataclasses.replace(nodes[0], secret="not-the-secret")
    stranger = dataclasses.replace(nodes[0], node="nobody-knows-me")
    with caplog.at_level(logging.ERROR, logger="gateway.client"):
        for creds in (wrong, wrong, stranger):
            assert _refused(stack, creds)
    # What the agent says (edge agents log through the same connection watch).
    said = caplog.text
    assert f"the broker refused the credentials of account {nodes[0].node!r}" in said
    assert f"`gridwatch node show {nodes[0].node}`" in said and "re-enrol" in said

    def counted() -> int:
        with psycopg.connect(stack.dsn) as conn:
            return sum(r.count for r in refusals(conn, None))

    wait_until(lambda: counted() >= 3, 30, "three refused connects counted")
    with psycopg.connect(stack.dsn) as conn:
        (row,) = refusals(conn, None)
        scoped = refusals(conn, "nowhere")
    assert row.client == "127.0.0.1" and "not authorised" in row.reason
    assert scoped == []  # an admin of another area sees none of these
    assert metric(leader, "gridwatch_broker_refused_connects_total") >= 3
    shown = subprocess.run(
        [sys.executable, "-m", "gridwatch.cli", "broker", "refusals", "--database-url",
         stack.dsn],
        capture_output=True, text=True, check=True, env=stack.service_env("cli"),
    )  # fmt: skip
    assert "127.0.0.1" in shown.stdout and "not authorised" in shown.stdout
