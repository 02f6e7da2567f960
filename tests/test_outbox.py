"""The store-and-forward outbox and the agent's message building (no services needed)."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest

from edge import config as edge_config
from edge import drivers as d
from edge.agent import hash_credential, to_message
from edge.outbox import Outbox, OutboxError, Priority, Store
from gateway import messages as m


def _open(path: Path, max_messages: int = 100, node: str = "n1") -> Outbox:
    return Outbox(Store(path), node, max_messages=max_messages)


def _add(box: Outbox, n: int, priority: Priority) -> list[int]:
    return [box.add(lambda seq: (f"t/{seq}", b"x"), priority)[0] for _ in range(n)]


def test_sequence_numbers_and_order_survive_a_reopen(tmp_path: Path) -> None:
    box = _open(tmp_path / "o.db", 100)
    assert _add(box, 3, Priority.EVENT) == [1, 2, 3]
    assert box.confirm([(2, 2)]) == 1
    box.store.close()
    again = _open(tmp_path / "o.db", 100)
    assert [e.seq for e in again.pending(0, 10)] == [1, 3]
    assert _add(again, 1, Priority.EVENT) == [4]
    assert len(again) == 3
    assert [e.seq for e in again.pending(1, 10)] == [3, 4]


def test_when_full_the_oldest_telemetry_goes_first(tmp_path: Path) -> None:
    box = _open(tmp_path / "o.db", 10)
    events = _add(box, 4, Priority.EVENT)
    telemetry = _add(box, 6, Priority.TELEMETRY)
    _, dropped = box.add(lambda seq: ("t", b"late"), Priority.TELEMETRY)
    assert dropped == 1
    kept = [e.seq for e in box.pending(0, 100)]
    assert kept == events + telemetry[1:] + [11]
    _add(box, 8, Priority.EVENT)  # the 6 telemetry go first, then the oldest events
    assert len(box) == 10 and box.dropped == 9
    assert [e.seq for e in box.pending(0, 100)] == [3, 4, *range(12, 20)]
    box.store.close()
    assert _open(tmp_path / "o.db", 10).dropped == 9  # counted across restarts


def test_nodes_sharing_a_file_keep_their_own_queues(tmp_path: Path) -> None:
    store = Store(tmp_path / "fleet.db")
    a, b = Outbox(store, "a", max_messages=5), Outbox(store, "b", max_messages=5)
    assert _add(a, 2, Priority.EVENT) == [1, 2]
    assert _add(b, 1, Priority.EVENT) == [1]
    assert b.confirm([(1, 1)]) == 1
    assert [e.seq for e in a.pending(0, 10)] == [1, 2] and len(b) == 0


def test_refused_messages_are_kept_aside(tmp_path: Path) -> None:
    box = _open(tmp_path / "o.db", 10)
    (seq,) = _add(box, 1, Priority.EVENT)
    box.refuse(seq, "Not authorized")
    assert len(box) == 0 and box.refused_count() == 1


def test_a_command_id_is_remembered(tmp_path: Path) -> None:
    box = _open(tmp_path / "o.db", 10)
    assert box.remember_command("c1", b"{}")
    assert not box.remember_command("c1", b"{}")
    assert box.unfinished_commands() == [b"{}"]
    box.command_done("c1", "done")
    assert box.unfinished_commands() == []
    assert box.next_bdseq() == 1 and box.next_bdseq() == 2


def test_a_command_answered_expired_may_come_again_with_a_fresh_deadline(tmp_path: Path) -> None:
    """The platform retries a lock with the same id; one executed is not executed twice."""
    box = _open(tmp_path / "o.db", 10)
    assert box.remember_command("late", b"first")
    box.command_done("late", "expired")
    assert box.remember_command("late", b"retry")
    assert box.unfinished_commands() == [b"retry"]
    box.command_done("late", "done")
    assert not box.remember_command("late", b"third")


def test_raw_credentials_never_leave_the_site() -> None:
    reading = d.AccessSeen("door-1", granted=False, raw_credential="card-12345678",
                           reason=m.DenyReason.EXPIRED)  # fmt: skip
    message = to_message(reading, m.envelope(7), b"site-secret-key")
    payload = json.loads(m.DoorAccess.model_dump_json(message))  # type: ignore[arg-type]
    assert "card-12345678" not in json.dumps(payload)
    expected = hmac.new(b"site-secret-key", b"card-12345678", hashlib.sha256).hexdigest()
    assert payload["credential"] == expected == hash_credential(b"site-secret-key", "card-12345678")
    assert payload["seq"] == 7 and payload["reason"] == "expired"


def _site(tmp_path: Path, **changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "site": "v0001", "node": "v0001-edge",
        "broker": {"host": "127.0.0.1", "port": 1883, "password": "secret"},
        "site_secret": "0123456789abcdef0123",
        "outbox": {"path": str(tmp_path / "o.db")},
        "devices": [{"id": "v0001-door1", "kind": "door", "driver": "simulated"}],
    }  # fmt: skip
    return base | changes


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"node": "bad/node"}, "node"),
        ({"devices": []}, "devices"),
        ({"site_secret": "short"}, "site_secret"),
        ({"broker": {"port": 99999}}, "broker.port"),
        ({"outbox": {}}, "outbox.path"),
        ({"devices": [{"id": "d1", "kind": "toaster", "driver": "simulated"}]}, "devices.0.kind"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_a_wrong_site_file_names_the_field(
    tmp_path: Path, changes: dict[str, object], named: str
) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(json.dumps(_site(tmp_path, **changes)))  # JSON is YAML
    with pytest.raises(edge_config.ConfigError, match=named.replace(".", r"\.")):
        edge_config.load(path)


def test_a_good_site_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(json.dumps(_site(tmp_path)))
    config = edge_config.load(path)
    assert config.devices[0].kind is m.DeviceKind.DOOR


def test_the_example_site_file_is_valid() -> None:
    root = Path(__file__).resolve().parent.parent
    config = edge_config.load(root / "examples" / "site.yaml")
    assert [dev.kind for dev in config.devices] == list(m.DeviceKind)


def test_the_outbox_is_private_to_the_agent(tmp_path: Path) -> None:
    box = _open(tmp_path / "new" / "deeper" / "o.db")
    _add(box, 3, Priority.EVENT)  # the write-ahead log exists now
    folder = tmp_path / "new" / "deeper"
    files = [
        folder / f"o.db{suffix}"
        for suffix in ("", "-wal", "-shm")
        if (folder / f"o.db{suffix}").exists()
    ]
    assert {f.name for f in files} >= {"o.db", "o.db-wal"}
    assert {f.name: f.stat().st_mode & 0o777 for f in files} == {f.name: 0o600 for f in files}
    assert (tmp_path / "new" / "deeper").stat().st_mode & 0o777 == 0o700
    box.store.close()


def test_an_existing_outbox_is_made_private(tmp_path: Path) -> None:
    _open(tmp_path / "o.db").store.close()
    (tmp_path / "o.db").chmod(0o644)
    box = _open(tmp_path / "o.db")
    assert (tmp_path / "o.db").stat().st_mode & 0o777 == 0o600
    box.store.close()


def test_an_outbox_path_that_cannot_be_created_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(
        OutboxError, match=r"outbox .*a-file/o\.db: cannot create it .*outbox\.path"
    ):
        Store(tmp_path / "a-file" / "o.db")


def _load(tmp_path: Path, **changes: object) -> edge_config.SiteConfig:
    path = tmp_path / "site.yaml"
    path.write_text(json.dumps(_site(tmp_path, **changes)))
    return edge_config.load(path)


def test_plaintext_to_a_broker_on_another_machine_is_refused(tmp_path: Path) -> None:
    remote = {"host": "10.20.30.40", "port": 8883, "password": "secret"}
    with pytest.raises(
        edge_config.ConfigError, match=r"broker\.tls_ca is not set but broker\.host 10\.20\.30\.40"
    ):
        _load(tmp_path, broker=remote)
    with pytest.raises(
        edge_config.ConfigError, match=r"broker\.tls_ca: Path does not point to a file"
    ):
        _load(tmp_path, broker={**remote, "tls_ca": str(tmp_path / "missing.pem")})
    (tmp_path / "ca.pem").write_text("a CA bundle")
    assert _load(tmp_path, broker={**remote, "tls_ca": str(tmp_path / "ca.pem")}).broker.tls_ca
    assert _load(tmp_path, broker=remote, development_site=True).development_site
    assert _load(tmp_path, broker={**remote, "host": "localhost"}).broker.tls_ca is None
