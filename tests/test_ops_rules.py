"""The operators' alerting rules and dashboard (deploy/): promtool from Debian's prometheus
package validates the rules and runs their unit tests, the dashboard's queries parse, and every
metric either names is one that a running gridwatch (a real ingest, a real API) exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from gridwatch.local.services import free_port
from gridwatch.local.stack import LocalStack
from tests.support import start_ingest, stop_process, wait_until

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "prometheus" / "gridwatch-rules.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "gridwatch-rules.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "gridwatch.json"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"

_NAME = re.compile(r"\bgridwatch_[a-z0-9_]+\b")
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
}


def _promtool(*args: str, cwd: Path | None = None) -> str:
    assert Path(PROMTOOL).exists(), (
        "promtool is missing: scripts/setup installs prometheus with apt"
    )
    done = subprocess.run(
        [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"promtool {' '.join(args)} failed:\n{done.stdout}{done.stderr}"
    return done.stdout


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def _dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]


def _names(exprs: list[str]) -> set[str]:
    return {name for expr in exprs for name in _NAME.findall(expr)}


def _exported(text: str) -> set[str]:
    """Every sample name a /metrics page can hold: a labelled family with no child yet has no
    samples, but its HELP and TYPE lines say what it will export."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def test_rules_are_valid_and_every_alert_is_documented() -> None:
    out = _promtool("check", "rules", str(RULES))
    assert "SUCCESS" in out
    for rule in _rules():
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert {"summary", "description", "runbook"} <= set(rule["annotations"]), rule["alert"]
        doc, _, anchor = rule["annotations"]["runbook"].partition("#")
        page = (ROOT / doc).read_text()
        if anchor:
            headings = {
                re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
                for line in page.splitlines()
                if line.startswith("#")
            }
            assert anchor in headings, f"{rule['alert']}: {doc} has no heading #{anchor}"


def test_rules_unit_tests_pass() -> None:
    """deploy/prometheus/gridwatch-rules.test.yml: input series and the alerts they must raise."""
    out = _promtool("test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert "SUCCESS" in out
    tested = set(re.findall(r"alertname: (\w+)", RULE_TESTS.read_text()))
    main = {
        "GridwatchIngestBacklogGrowing", "GridwatchIngestNotCommitting",
        "GridwatchIngestDatabaseErrors", "GridwatchIngestMqttDisconnected", "GridwatchNoLeader",
        "GridwatchSeveralLeaders", "GridwatchUnconsumedSlots", "GridwatchRejectedMessagesRising",
        "GridwatchBrokerReconcileFailing", "GridwatchApiErrors", "GridwatchApiSlow",
        "GridwatchNotifyDeliveriesFailing", "GridwatchNotifyQueueStuck",
    }  # fmt: skip
    assert main <= tested, f"untested: {sorted(main - tested)}"
    assert tested <= {r["alert"] for r in _rules()}


def test_dashboard_queries_parse(tmp_path: Path) -> None:
    """Grafana's queries are PromQL: as recording rules promtool parses every one of them."""
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and dash["title"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    exprs = [e.replace("$__rate_interval", "5m") for e in _dashboard_exprs()]
    assert exprs
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query{i}", "expr": e} for i, e in enumerate(exprs)
    ]}]}  # fmt: skip
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump(rules))
    _promtool("check", "rules", str(path))


def test_every_metric_named_is_exported(stack: LocalStack) -> None:
    """Scrape a real ingest worker (the leader, with its duties) and a real API; the edge
    agent's metrics come from its definitions (edge.metrics), as an agent on a site serves them."""
    proc, port = start_ingest(stack)
    api_port = free_port()
    api = stack.start_api(api_port)
    try:
        wait_until(
            lambda: "gridwatch_ingest_leader 1.0" in _get(f"http://127.0.0.1:{port}/metrics"),
            what="the ingest to take the lead",
        )

        def api_up() -> bool:
            try:
                return _get(f"http://127.0.0.1:{api_port}/readyz") != ""
            except OSError:
                return False

        wait_until(api_up, timeout_s=60, what="the API to answer")
        exported = _exported(_get(f"http://127.0.0.1:{port}/metrics"))
        exported |= _exported(_get(f"http://127.0.0.1:{api_port}/metrics"))
    finally:
        stop_process(api)
        stop_process(proc)

    from prometheus_client import generate_latest

    import edge.metrics  # noqa: F401  (registers the edge agent's metrics)

    exported |= {n for n in _exported(generate_latest().decode()) if n.startswith("gridwatch_edge")}
    rules = _names([r["expr"] for r in _rules()])
    dashboard = _names(_dashboard_exprs())
    assert not rules - exported, f"rules name metrics nobody exports: {sorted(rules - exported)}"
    assert not dashboard - exported, (
        f"the dashboard names metrics nobody exports: {sorted(dashboard - exported)}"
    )
    assert "gridwatch_api_requests_total" in exported  # the API's own request metrics
