"""The approval benchmark keeps running and keeps checking what it times (figures not judged)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT


def test_approval_benchmark_quick_run_reports_every_figure():
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_approval.py"), "--quick", "--json"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(result.stdout)
    assert len(figures["rows"]) == 8 and all(r["p99"] > 0 for r in figures["rows"])
    assert figures["rows"][0]["method"] == "40 rcpt: check, no approval (baseline)"
    assert len(figures["targets"]) == 1 and "added_p99_ms" in figures
