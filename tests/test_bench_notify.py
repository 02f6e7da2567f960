"""`gridwatch bench notify` at a small size: every red incident reaches the webhook, the storm
becomes digests, and the WeCom robot's limit is never exceeded (no timing is asserted: the
figures are the benchmark's, in docs/benchmarks.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_bench_notify_small_city(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable, "-m", "gridwatch.cli", "--log-level", "WARNING", "bench", "notify",
            "--venues", "20", "--rate", "100", "--warmup", "1", "--incidents", "5",
            "--storm", "30", "--storm-s", "10", "--drain-s", "240", "--workers", "1",
            "--home", str(tmp_path / "home"),
        ],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert done.stdout.strip(), f"no figures; stderr:\n{done.stderr[-3000:]}"
    result = json.loads(done.stdout.strip().splitlines()[-1])
    latency, storm = result["latency"], result["storm"]
    assert latency["incidents"] == latency["heard"] == 5, result
    assert storm["red_incidents"] == 30, result
    assert storm["drained"], result
    assert storm["webhook_refused_signature"] == 0, result
    assert storm["wecom_refused_over_limit"] == 0, result
    assert storm["wecom_max_per_minute"] <= storm["wecom_limit_per_minute"], result
    assert storm["webhook_digests"] > 0, result  # a storm gives digests, not 30 messages each
    assert result["ok"] and done.returncode == 0, result
