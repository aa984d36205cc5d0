"""The scale benchmark must keep running and keep checking what it times.

Figures are not judged here (the machine is shared and noisy); what is checked is that
both halves ran on the whole quick mix: the cluster's register was the pool's (else the
script exits 1), and the re-scan read nothing and gave the same register.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT


def test_scale_benchmark_quick_run_reports_every_figure(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_scale.py"), "--quick", "--json",
         "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout)
    assert figures["quick"] is True
    assert figures["messages"] == 500
    cluster, rescan = figures["cluster"], figures["rescan"]
    assert cluster["pool_msg_s"] > 0 and cluster["dask_msg_s"] > 0
    # The share is of the unrounded rates: equal to the printed ones' to within rounding.
    share = cluster["dask_msg_s"] / cluster["pool_msg_s"]
    assert abs(cluster["dask_share"] - share) <= 0.01 * share
    assert rescan["rescan_s"] > 0 and rescan["startup_s"] > 0
    assert [t["target"] for t in figures["targets"]] == [
        "Dask cluster >= 85 % of the pool's throughput",
        "unchanged re-scan < 0.5 s beyond start-up",
    ]
    assert "local Dask cluster, 2 workers x 1 thread" in result.stderr
    assert not list(tmp_path.iterdir())  # its files are gone
