"""Access to the platform over a real PostgreSQL: the signing key, the sign-in throttle, sign-out,
password changes, disabling people, single-use live tickets and streams that end with their
session, and refusals in the audit log."""

from __future__ import annotations

import logging
import os
import pwd
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import jwt
import psycopg
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import DEV_SECRET, ApiSettings
from gridwatch.demo import DEMO_PASSWORD, NodeCredentials
from gridwatch.local.services import free_port, wait_for_port
from gridwatch.local.stack import LocalStack
from tests.support import rows, scalar, stop_process
from tests.test_api import people_of, sign_in


def _app(stack: LocalStack, **settings: Any) -> TestClient:
    return TestClient(create_app(ApiSettings(database_url=stack.dsn, **settings)))


@pytest.fixture
def client(stack: LocalStack) -> Iterator[TestClient]:
    with _app(stack) as c:
        yield c


def _token(client: TestClient, person: str, password: str = DEMO_PASSWORD) -> httpx.Response:
    return client.post("/api/token", data={"username": person, "password": password})


def _cli(stack: LocalStack, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gridwatch.cli", *args, "--database-url", stack.role_dsn("cli")],
        input=stdin, capture_output=True, text=True, check=False,
    )  # fmt: skip


# --- 9: the signing key -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("secret", "says"),
    [(DEV_SECRET, "public development secret"), ("short-secret", "at least 32 characters")],
)
@pytest.mark.parametrize("environment", ["development", "production"])
def test_a_public_or_short_secret_is_refused_everywhere(
    secret: str, says: str, environment: str
) -> None:
    with pytest.raises(ValueError, match=f"GRIDWATCH_API_SECRET .*{says}"):
        ApiSettings(environment=environment, database_url="postgresql://db/x", api_secret=secret)  # type: ignore[arg-type]


def test_without_a_secret_one_random_key_in_the_database_serves_every_replica(
    stack: LocalStack, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="api.keys"), _app(stack) as one, _app(stack) as two:
        token = _token(one, "admin").json()["access_token"]
        assert two.get("/api/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        forged = jwt.encode(
            {"sub": "admin", "exp": int(time.time()) + 3600, "iat": time.time(),
             "jti": uuid.uuid4().hex, "use": "access"},
            DEV_SECRET, algorithm="HS256",
        )  # fmt: skip
        assert two.get("/api/me", headers={"Authorization": f"Bearer {forged}"}).status_code == 401
    assert "GRIDWATCH_API_SECRET is not set" in caplog.text and "api_signing_key" in caplog.text
    key = str(scalar(stack.dsn, "SELECT secret FROM api_signing_key"))
    assert len(key) >= 32 and key != DEV_SECRET and key not in caplog.text


def test_a_configured_secret_signs_instead(stack: LocalStack) -> None:
    secret = "s" * 40
    with _app(stack, api_secret=secret) as c:
        token = _token(c, "admin").json()["access_token"]
        assert jwt.decode(token, secret, algorithms=["HS256"])["sub"] == "admin"
    assert scalar(stack.dsn, "SELECT count(*) FROM api_signing_key") == 0


# --- 10 and 13: the sign-in throttle and failed sign-ins in the audit log -----------------------


def test_failed_sign_ins_are_audited_and_throttled_per_person(
    client: TestClient, stack: LocalStack
) -> None:
    for _ in range(10):
        assert _token(client, "operator", "wrong-password").status_code == 401
    throttled = _token(client, "operator")  # the right password, too late
    assert throttled.status_code == 429
    assert throttled.json()["error"] == "too_many_requests"
    assert "too many failed sign-ins" in throttled.json()["detail"]
    assert 1 <= int(throttled.headers["Retry-After"]) <= 900
    assert _token(client, "admin").status_code == 200  # someone else, same address
    failed = rows(
        stack.dsn,
        "SELECT person_id, target, detail::text, client FROM audit_log"
        " WHERE action = 'sign_in.failed'",
    )
    assert len(failed) == 10
    assert {f[:2] for f in failed} == {("operator", "operator")}
    assert not any("wrong-password" in f[2] for f in failed)  # never the password
    assert {f[3] for f in failed} == {"testclient"}


def test_a_success_resets_the_count_and_an_address_is_throttled_too(stack: LocalStack) -> None:
    with _app(stack, api_sign_in_failures_per_person=3, api_sign_in_failures_per_address=5) as c:
        for _ in range(2):
            assert _token(c, "operator", "wrong-password").status_code == 401
        assert _token(c, "operator").status_code == 200  # a success starts the count again
        for _ in range(2):
            assert _token(c, "operator", "wrong-password").status_code == 401
        assert _token(c, "operator").status_code == 200
        for name in ("nobody-1",):  # 5 failures from this address now
            assert _token(c, name).status_code == 401
        assert _token(c, "admin").status_code == 429
    unknown = rows(
        stack.dsn, "SELECT detail->>'reason' FROM audit_log WHERE person_id = 'nobody-1'"
    )
    assert unknown == [("unknown person",)]


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_parallel_sign_ins_hash_a_few_at_a_time(stack: LocalStack) -> None:
    """40 sign-ins at once: argon2 takes 64 MiB per hash, so the process's peak memory shows how
    many ran together. And 40 parallel guesses at one person get no more tries than the limit."""
    port = free_port()
    api = stack.start_api(port)
    try:
        assert wait_for_port("127.0.0.1", port, 20), (stack.logs / "api.log").read_text()
        base = f"http://127.0.0.1:{port}"

        def attempt(person: str) -> int:
            data = {"username": person, "password": "wrong-password"}
            return httpx.post(f"{base}/api/token", data=data, timeout=60).status_code

        assert attempt("warm-up") == 401
        before = _peak_rss_mib(api.pid)
        with ThreadPoolExecutor(40) as pool:
            answers = list(pool.map(attempt, [f"nobody-{i}" for i in range(40)]))
        assert answers == [401] * 40
        grown = _peak_rss_mib(api.pid) - before
        assert grown < 160, f"peak memory grew by {grown:.0f} MiB: too many hashes at once"
        with ThreadPoolExecutor(40) as pool:
            guesses = list(pool.map(attempt, ["operator"] * 40))
        # Two slots (the default) may each pass the check before the other's failure lands.
        assert guesses.count(401) <= 10 + 1 and guesses.count(429) >= 40 - 11
        assert set(guesses) == {401, 429}
    finally:
        stop_process(api)


# --- 11: sign-out, password changes, disabling --------------------------------------------------


def test_sign_out_revokes_the_token_on_the_server(client: TestClient, stack: LocalStack) -> None:
    first, second = sign_in(client, "operator"), sign_in(client, "operator")
    assert client.post("/api/sign-out", headers=first).status_code == 204
    assert client.get("/api/me", headers=first).status_code == 401
    assert client.post("/api/live/ticket", headers=first).status_code == 401
    assert client.get("/api/me", headers=second).status_code == 200  # another session stays
    assert scalar(stack.dsn, "SELECT count(*) FROM revoked_tokens") == 1
    assert scalar(stack.dsn, "SELECT count(*) FROM audit_log WHERE action = 'sign_out'") == 1


def test_a_password_change_ends_earlier_tokens(client: TestClient, stack: LocalStack) -> None:
    old = sign_in(client, "operator")
    done = _cli(stack, "person", "add", "operator", "--name", "Command centre", "--role",
                "operator", "--scope", "haicheng", "--as", "admin", "--password-stdin",
                stdin="a-new-password\n")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert client.get("/api/me", headers=old).status_code == 401
    assert _token(client, "operator").status_code == 401
    assert (
        client.get("/api/me", headers=sign_in(client, "operator", "a-new-password")).json()["id"]
        == "operator"
    )


def test_an_admin_disables_and_enables_a_person_in_their_area(
    client: TestClient, stack: LocalStack, nodes: list[NodeCredentials]
) -> None:
    worker, dispatcher = people_of(stack.dsn, nodes[0].site)
    theirs = sign_in(client, worker)
    admin = sign_in(client, "admin")
    off = client.post(f"/api/people/{worker}/disable", headers=admin)
    assert off.status_code == 200 and off.json()["active"] is False
    assert client.get("/api/me", headers=theirs).status_code == 401
    refused = _token(client, worker)
    assert refused.status_code == 401 and "disabled" in refused.json()["detail"]
    assert "disabled" not in _token(client, worker, "wrong-password").json()["detail"]
    listed = client.get("/api/people", params={"include_disabled": True}, headers=admin).json()
    assert {p["id"]: p["active"] for p in listed}[worker] is False
    assert worker not in {p["id"] for p in client.get("/api/people", headers=admin).json()}
    on = client.post(f"/api/people/{worker}/enable", headers=admin)
    assert on.status_code == 200 and on.json()["active"] is True
    assert client.get("/api/me", headers=theirs).status_code == 401  # old tokens stay dead
    assert client.get("/api/me", headers=sign_in(client, worker)).status_code == 200
    boss = sign_in(client, dispatcher)
    no = client.post(f"/api/people/{worker}/disable", headers=boss)
    assert no.status_code == 403 and "cannot disable" in no.json()["detail"]
    myself = client.post("/api/people/admin/disable", headers=admin)
    assert myself.status_code == 409
    assert client.post("/api/people/nobody/disable", headers=admin).status_code == 404
    audited = rows(stack.dsn, "SELECT person_id, action, target FROM audit_log"
                              " WHERE action LIKE 'person.%%' ORDER BY id")  # fmt: skip
    assert audited == [("admin", "person.disable", worker), ("admin", "person.enable", worker)]


def test_person_disable_and_enable_on_the_command_line(
    client: TestClient, stack: LocalStack
) -> None:
    theirs = sign_in(client, "operator")
    off = _cli(stack, "person", "disable", "operator", "--as", "admin")
    assert off.returncode == 0, off.stderr
    assert client.get("/api/me", headers=theirs).status_code == 401
    assert _token(client, "operator").status_code == 401
    on = _cli(stack, "person", "enable", "operator", "--as", "admin")
    assert on.returncode == 0, on.stderr
    assert client.get("/api/me", headers=sign_in(client, "operator")).status_code == 200
    missing = _cli(stack, "person", "disable", "nobody", "--as", "admin")
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert missing.stderr.startswith("gridwatch: no person 'nobody'")
    actions = rows(stack.dsn, "SELECT person_id, action, target, client FROM audit_log"
                              " WHERE action LIKE 'person.%%' ORDER BY id")  # fmt: skip
    client_id = f"cli:{pwd.getpwuid(os.geteuid()).pw_name}"
    assert actions == [("admin", "person.disable", "operator", client_id),
                       ("admin", "person.enable", "operator", client_id)]  # fmt: skip


# --- 11: live tickets and open streams ----------------------------------------------------------


def _read_until_end(response: httpx.Response) -> list[str]:
    """The event names a stream sends until the server ends it."""
    return [line.removeprefix("event: ") for line in response.iter_lines()
            if line.startswith("event: ")]  # fmt: skip


def test_live_streams_end_with_their_session_and_are_capped(
    stack: LocalStack, nodes: list[NodeCredentials], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRIDWATCH_API_LIVE_RECHECK_S", "1")
    monkeypatch.setenv("GRIDWATCH_API_LIVE_STREAMS_PER_PERSON", "2")
    worker, _ = people_of(stack.dsn, nodes[0].site)
    port = free_port()
    api = stack.start_api(port)
    try:
        assert wait_for_port("127.0.0.1", port, 20), (stack.logs / "api.log").read_text()
        base = f"http://127.0.0.1:{port}"
        timeout = httpx.Timeout(20.0)

        def bearer(person: str) -> dict[str, str]:
            r = httpx.post(
                f"{base}/api/token", data={"username": person, "password": DEMO_PASSWORD}
            )
            return {"Authorization": f"Bearer {r.json()['access_token']}"}

        mine, admin = bearer(worker), bearer("admin")
        ticket = httpx.post(f"{base}/api/live/ticket", headers=mine).json()["ticket"]
        with httpx.stream("GET", f"{base}/api/live", params={"ticket": ticket},
                          timeout=timeout) as stream, \
             httpx.stream("GET", f"{base}/api/live", headers=mine, timeout=timeout) as second:  # fmt: skip
            assert stream.status_code == 200 and second.status_code == 200
            third = httpx.get(f"{base}/api/live", headers=mine, timeout=timeout)
            assert third.status_code == 429 and "2 live streams open" in third.json()["detail"]
            r = httpx.post(f"{base}/api/people/{worker}/disable", headers=admin)
            assert r.status_code == 200
            assert _read_until_end(stream) == ["end"]  # the server ended it, within seconds
            assert _read_until_end(second) == ["end"]
        # Its places are free again: a signed-out session's stream ends the same way.
        httpx.post(f"{base}/api/people/{worker}/enable", headers=admin)
        again = bearer(worker)
        with httpx.stream("GET", f"{base}/api/live", headers=again, timeout=timeout) as stream:
            assert stream.status_code == 200
            assert httpx.post(f"{base}/api/sign-out", headers=again).status_code == 204
            assert _read_until_end(stream) == ["end"]
    finally:
        stop_process(api)


# --- 13: refused actions in the audit log -------------------------------------------------------


def test_refused_actions_are_audited_with_who_what_and_why(
    client: TestClient, stack: LocalStack, nodes: list[NodeCredentials]
) -> None:
    from tests.test_api import raise_incident

    raise_incident(stack.dsn, nodes[0].site)
    incident = int(str(scalar(stack.dsn, "SELECT max(id) FROM incidents")))
    worker, _ = people_of(stack.dsn, nodes[0].site)
    theirs = sign_in(client, worker)
    url = f"/api/incidents/{incident}/acknowledge"
    assert client.post(url, json={}, headers=theirs).status_code == 403
    assert client.get(f"/api/incidents/{incident}/events", headers=theirs).status_code in (200, 403)
    client.post("/api/sign-out", headers=theirs)
    assert client.post(url, json={}, headers=theirs).status_code == 401  # a signed-out token
    assert client.post(url, json={}).status_code == 401  # nobody: not worth a row
    refused = rows(stack.dsn, "SELECT person_id, target, detail->>'status', detail->>'reason',"
                              " client FROM audit_log WHERE action = 'refused' ORDER BY id")  # fmt: skip
    assert refused == [
        (worker, url, "403", "a grid_worker cannot change incidents", "testclient"),
        (worker, url, "401", "not signed in, or the session expired", "testclient"),
    ]


def test_a_password_change_through_the_api_ends_every_other_session(
    client: TestClient, stack: LocalStack
) -> None:
    one, two = sign_in(client, "operator"), sign_in(client, "operator")
    url = "/api/me/password"
    wrong = client.post(url, json={"current_password": "not-it-at-all", "new_password": "x" * 12},
                        headers=one)  # fmt: skip
    assert wrong.status_code == 403 and wrong.json()["detail"] == "the current password is wrong"
    short = client.post(url, json={"current_password": DEMO_PASSWORD, "new_password": "short"},
                        headers=one)  # fmt: skip
    assert short.status_code == 422
    done = client.post(url, json={"current_password": DEMO_PASSWORD,
                                  "new_password": "a-new-password"}, headers=one)  # fmt: skip
    assert done.status_code == 200, done.text
    assert client.get("/api/me", headers=one).status_code == 401
    assert client.get("/api/me", headers=two).status_code == 401
    fresh = {"Authorization": f"Bearer {done.json()['access_token']}"}
    assert client.get("/api/me", headers=fresh).status_code == 200
    assert _token(client, "operator").status_code == 401
    assert _token(client, "operator", "a-new-password").status_code == 200
    actions = [r[0] for r in rows(stack.dsn, "SELECT action FROM audit_log ORDER BY id")]
    assert "password.change" in actions and actions.count("sign_in.failed") == 2


def test_a_person_chooses_their_language_and_the_choice_is_kept(
    client: TestClient, stack: LocalStack
) -> None:
    with psycopg.connect(stack.dsn, autocommit=True) as conn:
        conn.execute("UPDATE people SET language_chosen = false WHERE id = 'operator'")
    headers = sign_in(client, "operator")
    me = client.get("/api/me", headers=headers).json()
    assert (me["language"], me["language_chosen"]) == ("zh-CN", False)  # the browser decides
    chosen = client.put("/api/me/language", json={"language": "en"}, headers=headers)
    assert chosen.status_code == 200, chosen.text
    assert (chosen.json()["language"], chosen.json()["language_chosen"]) == ("en", True)
    assert client.get("/api/me", headers=headers).json()["language_chosen"] is True
    assert scalar(stack.dsn, "SELECT count(*) FROM audit_log WHERE action = 'me.language'") == 1
