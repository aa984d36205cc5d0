"""The compiled-build benchmark keeps running and keeps checking what it times."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT


def test_compiled_benchmark_smoke_run_compares_three_trees():
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_compiled.py"), "--quick", "--json",
         "--scale", "100", "--repeat", "1", "--baseline-ref", "HEAD",
         "--modules", "mailguard/charsets.py"],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(result.stdout)
    # Every tree decided the same messages the same way (else the run says BROKEN, exit 1).
    assert sum(figures["verdicts"].values()) == 50
    assert set(figures["trees"]) == {"baseline", "pure", "compiled"}
    assert figures["trees"]["baseline"]["x_baseline"] == 1.0
    assert figures["compiled_alone"] > 0 and len(figures["targets"]) == 1
