"""The benchmark must keep running and keep checking what it times (figures are not judged)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT


def test_benchmark_quick_run_reports_every_figure():
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_check.py"), "--quick", "--repeat", "1",
         "--json"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(result.stdout)
    runs = figures["throughput"]
    assert set(runs) == {"mailguard Engine.check", "stdlib header-only loop", "mail-parser loop"}
    expected = figures["mix"]["expected_recipients"]
    for name, run in runs.items():
        assert run["msg_per_s"] > 0, name
        assert run["recipients_found"] == expected, name
    # The engine really decided: the 300-Cc messages are blocked, nothing errored.
    assert figures["verdicts"]["cc300"] == {"block": 40}
    assert runs["mailguard Engine.check"]["errors"] == 0
    # The whole CLI process over the mix as files, beside mail-parser reading the same files.
    process = figures["process"]
    assert set(process) == {
        "mailguard check (process)",
        "mailguard check --jobs 1",
        "mail-parser loop (files)",
    }
    for name, run in process.items():
        assert run["recipients_found"] == expected and run["errors"] == 0, name
    assert process["mail-parser loop (files)"]["x_vs_mailparser"] == 1.0
    assert any("check --format json" in t["target"] for t in figures["targets"])
    assert "PASS" in result.stderr or "MISS" in result.stderr
    # Side by side: one table holds mailguard and its baselines, with the ratio.
    lines = result.stderr.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("method"))
    assert "x vs mail-parser" in lines[head]
    table = lines[head + 2 : head + 2 + len(runs)]
    assert [row.split("  ")[0] for row in table] == list(runs)
