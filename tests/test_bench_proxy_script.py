"""The proxy benchmark must keep running and keep checking what it times.

Figures are not judged here (the machine is shared and noisy); what is checked is that both
sides ran, every message reached the sink (the script exits 1 otherwise) and the split
delivered every copy. Needs root and Postfix like the other Postfix tests.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT
from tests.support.postfix import ensure_postfix_installed


def test_proxy_benchmark_quick_run_reports_every_figure():
    ensure_postfix_installed()
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_proxy.py"), "--quick", "--json"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout)
    assert figures["quick"] is True and figures["sessions"] == 10
    assert len(figures["direct_msg_per_s"]) == len(figures["proxy_msg_per_s"]) == 1
    assert min(figures["direct_msg_per_s"] + figures["proxy_msg_per_s"]) > 0
    assert (
        figures["ratio_median"] > 0
        and figures["ratio_best"] > 0
        and figures["proxy_cpu_ms_per_msg"] > 0
    )
    assert figures["split_recipients"] == 300 and all(s > 0 for s in figures["split_s"])
    assert [t["met"] in (True, False) for t in figures["targets"]] == [True, True]
    assert "x direct" in result.stderr  # the side-by-side table
