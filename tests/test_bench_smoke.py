"""The benchmark harness (``scripts/bench.py``) still runs end to end.

Its quick mode starts the mock provider and a governed gateway, drives them
with wrk at a fixed rate and in a closed loop, streams a few answers, and
fails on any refused or broken request: a change that breaks the harness (or
the setup it builds) fails here instead of on the next ``make bench``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.processes import ROOT


@pytest.mark.skipif(
    shutil.which("wrk") is None, reason="wrk is not installed (make bench installs it)"
)
def test_the_bench_measures_a_governed_gateway_against_the_mock(tmp_path):
    output = tmp_path / "bench.json"
    finished = subprocess.run(
        [
            sys.executable,
            "scripts/bench.py",
            "--quick",
            "--scenarios",
            "direct,embedded",
            "--rates",
            "200",
            "--state-dir",
            str(tmp_path / "state"),
            "--output",
            str(output),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    report = json.loads(output.read_text())
    governed = report["embedded"]
    assert report["failures"] == []
    assert governed["closed_loop"]["requests"] > 0
    assert governed["closed_loop"]["non2xx"] == 0
    assert governed["fixed_rate"]["200"]["rps"] > 150
    assert governed["ttft"]["p50_ms"] > 0
    assert governed["rss_after_mb"] > 0
    assert set(report["added"]["embedded"]["latency"]) == {"200"}
    assert "Closed loop" in finished.stdout
