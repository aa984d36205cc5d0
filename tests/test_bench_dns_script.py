"""The DNS benchmark keeps running and keeps checking what it times (figures not judged)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT


def test_dns_benchmark_quick_run_reports_every_figure():
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_dns.py"), "--quick", "--json"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(result.stdout)
    # The cold runs really asked unbound: every undeliverable domain was found.
    assert figures["undeliverable"] == figures["expected_undeliverable"] == 8
    assert [r["method"] for r in figures["rows"]] == [
        "without DNS (baseline)", "DNS, warm cache", "DNS, cold cache",
    ]  # fmt: skip
    assert len(figures["targets"]) == 2
