"""Paging end to end through the providers' own API shapes (simulators/providers.py: WeCom's
robot, Aliyun SMS and voice, each checking keys and signatures as the real ones do): a forced
door → the worker on duty gets WeCom, SMS and the console → not accepted in time → the
dispatcher is paged and a voice call placed to the worker → the worker accepts → the paging
stops. Real `gridwatch ingest` (its leader routes and sends) and `gridwatch api` processes."""

from __future__ import annotations

import httpx
import psycopg

from casework.tasks import DeadlinePolicy
from gridwatch.demo import DEMO_PASSWORD
from gridwatch.local.services import free_port, wait_for_port
from gridwatch.local.stack import LocalStack
from simulators.providers import SMS_PATH, VOICE_PATH, WECOM_PATH, Provider, Providers
from tests.support import scalar, start_ingest, stop_process, wait_until
from tests.test_notify import people_of, raise_at
from tests.test_notify_api import _events

WORKER_PHONE, DISPATCHER_PHONE = "13900000001", "13900000002"


def _provider_env(p: Providers) -> dict[str, str]:
    a = p.accounts
    aliyun = {"ACCESS_KEY_ID": a.aliyun_key_id, "ACCESS_KEY_SECRET": a.aliyun_key_secret}
    env = {
        "WECOM_ENABLED": "true", "WECOM_WEBHOOK_URL": p.url + WECOM_PATH, "WECOM_KEY": a.wecom_key,
        "SMS_ENABLED": "true", "SMS_ENDPOINT": p.url + SMS_PATH, "SMS_SIGN_NAME": a.sms_sign_name,
        "SMS_TEMPLATE_CODE": "SMS_100001", **{f"SMS_{k}": v for k, v in aliyun.items()},
        "VOICE_ENABLED": "true", "VOICE_ENDPOINT": p.url + VOICE_PATH,
        "VOICE_TTS_CODE": "TTS_200001", **{f"VOICE_{k}": v for k, v in aliyun.items()},
        "BURST_PER_MINUTE": "100",
    }  # fmt: skip
    return {f"GRIDWATCH_NOTIFY_{k}": v for k, v in env.items()}


def _wecom_to(p: Providers, user: str) -> int:
    return sum(f"<@{user}>" in str(r.body) for r in p.received(Provider.WECOM))


def _aliyun_to(p: Providers, provider: Provider, number: str) -> int:
    field = "PhoneNumbers" if provider is Provider.SMS else "CalledNumber"
    return sum(r.query.get(field) == number for r in p.received(provider))


def test_a_forced_door_pages_the_worker_then_the_dispatcher_until_it_is_accepted(
    stack: LocalStack,
) -> None:
    worker, dispatcher = people_of(stack.dsn)
    with psycopg.connect(stack.dsn) as conn:
        for person, phone, wecom in ((worker, WORKER_PHONE, "wangfang"),
                                     (dispatcher, DISPATCHER_PHONE, "lilei")):  # fmt: skip
            conn.execute("UPDATE people SET phone = %s, wecom_id = %s WHERE id = %s",
                         (phone, wecom, person))  # fmt: skip
    port = free_port()
    with Providers() as providers:
        env = _provider_env(providers) | {
            "GRIDWATCH_DEADLINES__RED_ACCEPT_S": "8",
            "GRIDWATCH_NOTIFY_PUBLIC_URL": f"http://127.0.0.1:{port}",
        }
        ingest, _ = start_ingest(stack, env=env)
        api = stack.start_api(port)
        try:
            assert wait_for_port("127.0.0.1", port, 30), (stack.logs / "api.log").read_text()
            base = f"http://127.0.0.1:{port}"
            token = httpx.post(f"{base}/api/token",
                               data={"username": worker, "password": DEMO_PASSWORD}).json()  # fmt: skip
            bearer = {"Authorization": f"Bearer {token['access_token']}"}
            with httpx.stream("GET", f"{base}/api/live", headers=bearer,
                              timeout=httpx.Timeout(60.0)) as live:  # fmt: skip
                task = raise_at(stack.dsn, "paging", policy=DeadlinePolicy(red_accept_s=8))
                got = _events(live, {"notification"}, 1)  # the console, live
            assert got[0]["task_id"] == task
            wait_until(lambda: _wecom_to(providers, "wangfang") >= 1, 60, "the worker's WeCom")
            wait_until(lambda: _aliyun_to(providers, Provider.SMS, WORKER_PHONE) >= 1, 60,
                       "the worker's SMS")  # fmt: skip
            # Not accepted in time: the dispatcher is paged and the worker called.
            wait_until(lambda: _wecom_to(providers, "lilei") >= 1, 90, "the dispatcher's WeCom")
            wait_until(lambda: _aliyun_to(providers, Provider.VOICE, WORKER_PHONE) >= 1, 60,
                       "the voice call to the worker")  # fmt: skip
            act = httpx.post(f"{base}/api/tasks/{task}/actions", json={"action": "accept"},
                             headers=bearer)  # fmt: skip
            assert act.status_code == 200, act.text
            # Accepted: nothing of the task is still to be sent, and nothing more goes out.
            assert scalar(stack.dsn, "SELECT count(*) FROM deliveries WHERE task_id = %s"
                                     " AND state = 'pending'", (task,)) == 0  # fmt: skip
            sent = len(providers.received())
            wait_until(lambda: scalar(stack.dsn, "SELECT count(*) FROM notify_events"
                                                 " WHERE routed_at IS NULL") == 0, 30,
                       "every event routed")  # fmt: skip
            assert len(providers.received()) == sent
        finally:
            stop_process(api)
            stop_process(ingest)
