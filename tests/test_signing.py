"""Command signing: the key pair, canonical bytes, and what the edge accepts (no services)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from edge import trust
from edge.config import ConfigError, load
from gateway import codec
from gateway import messages as m
from gateway.signing import Signer, SigningError, Verifier, init_key


@pytest.fixture
def signer(tmp_path: Path) -> Signer:
    init_key(tmp_path / "key.pem")
    return Signer.from_file(tmp_path / "key.pem")


def _command(valid_s: float = 30, *, ahead_s: float = 0) -> m.Command:
    ts = m.now() + timedelta(seconds=ahead_s)
    return m.Command(
        v=1, id=uuid.uuid4(), ts=ts, device="v0001-door1",
        deadline=ts + timedelta(seconds=valid_s), action=m.DoorUnlock(duration_s=None),
    )  # fmt: skip


def test_the_key_is_private_to_its_owner_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "command.pem"
    public = init_key(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert init_key(path) == public, "a second init keeps the key"
    assert len(public) == 44


def test_the_edge_verifies_the_json_it_received_whatever_its_layout(signer: Signer) -> None:
    obj = signer.sign(codec.to_wire(_command()))
    verifier = Verifier(signer.public_key())
    spaced = json.dumps(dict(reversed(list(obj.items()))), indent=2).encode()
    verifier.verify(spaced)  # another key order and spacing: the same canonical bytes
    obj["action"]["duration_s"] = 5
    with pytest.raises(SigningError, match="bad signature"):
        verifier.verify(json.dumps(obj).encode())


@pytest.mark.parametrize(
    ("made", "reason"),
    [
        ({"valid_s": 301}, trust.Refusal.TOO_LONG),
        ({"ahead_s": 300}, trust.Refusal.FROM_FUTURE),
        ({}, None),
    ],
)
def test_validity_window(
    signer: Signer, made: dict[str, float], reason: trust.Refusal | None
) -> None:
    command = _command(**made)  # made now: "ahead" is ahead of the clock when it is checked
    payload = json.dumps(signer.sign(codec.to_wire(command))).encode()
    parsed = codec.decode(payload)
    assert isinstance(parsed, m.Command)
    refused = trust.check(parsed, payload, Verifier(signer.public_key()), m.now())
    assert (refused.reason if refused else None) is reason


def test_a_site_file_with_a_bad_command_key_is_refused_with_its_field(tmp_path: Path) -> None:
    site = {
        "site": "v0001", "node": "v0001-edge", "broker": {"password": "x" * 20},
        "site_secret": "s" * 20, "command_key": "not-a-key",
        "outbox": {"path": str(tmp_path / "o.db")},
        "devices": [{"id": "v0001-door1", "kind": "door", "driver": "simulated"}],
    }  # fmt: skip
    path = tmp_path / "site.yaml"
    path.write_text(json.dumps(site))
    with pytest.raises(ConfigError, match="command_key is not an Ed25519 public key"):
        load(path)


def test_keys_init_prints_the_public_key(tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    out = subprocess.run(
        [sys.executable, "-m", "gridwatch.cli", "keys", "init", "--key", str(key)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert out.stdout.strip() == Signer.from_file(key).public_key()
    key.write_text("garbage")
    bad = subprocess.run(
        [sys.executable, "-m", "gridwatch.cli", "keys", "init", "--key", str(key)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert bad.returncode == 1
    assert "not a PEM private key" in bad.stderr and "Traceback" not in bad.stderr


def test_the_ingest_needs_a_usable_command_key_in_production(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from ingest.settings import IngestSettings

    prod = {"environment": "production", "database_url": "postgresql://db/x",
            "mqtt": {"password": "p" * 20}, "share_group": "ingest_5f0c2a"}  # fmt: skip
    with pytest.raises(ValidationError, match="GRIDWATCH_COMMAND_KEY_FILE must be set"):
        IngestSettings.model_validate(prod)
    (tmp_path / "bad.pem").write_text("not a key")
    with pytest.raises(ValidationError, match="not a PEM private key"):
        IngestSettings.model_validate(prod | {"command_key_file": tmp_path / "bad.pem"})
    init_key(tmp_path / "good.pem")
    IngestSettings.model_validate(prod | {"command_key_file": tmp_path / "good.pem"})


def test_a_command_valid_longer_than_the_edge_accepts_is_not_queued() -> None:
    from casework import emergency

    with pytest.raises(ValueError, match="within 300 s"):
        emergency.queue_command(None, "d1", m.DoorLock(), issued_by="x",  # type: ignore[arg-type]
                                deadline=timedelta(hours=1))  # fmt: skip
