"""The attachment benchmark keeps running and keeps checking what it times (figures not judged)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT


def test_attachment_benchmark_quick_run_reports_every_figure():
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_attachments.py"), "--quick", "--json"],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(result.stdout)
    # What was timed found what it should: every row of both files is a person.
    assert figures["people"] == {"XLSX, 300 rows": 300, "CSV, 10,000 rows": 10_000}
    assert len(figures["analysis"]) == 4 and len(figures["engine"]) == 6
    assert [t["threshold"] for t in figures["targets"]] == [20, 100, 2, 1.1]
