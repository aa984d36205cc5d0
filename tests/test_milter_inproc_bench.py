"""The in-process milter benchmark (benchmarks/bench_milter_inproc.py) keeps running and
keeps replaying what Postfix sends: figures are not judged here (shared, noisy machine),
but the replies must be the real decisions and every figure must be there."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT


def test_inproc_benchmark_quick_run_decides_both_messages_and_reports_every_figure() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_milter_inproc.py"), "--quick", "--json"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout)
    # Passed at its end (its body read), and refused with a 550 reply: the milter really
    # decided.
    assert figures["clean_reply"] == "c"
    assert figures["cc300_reply"] == "y"
    # With the default rules (the attachment rules read every body) both are decided at
    # their end, their bodies read: end-of-headers was negotiated away.
    assert figures["at_headers"] == {"clean": False, "cc300": False}
    us = figures["us_per_msg"]
    for kind in ("clean", "cc300"):
        assert us[f"{kind}_engine"] > 0 and us[f"{kind}_milter"] > 0
        assert figures["milter_adds_us"][kind] == round(
            us[f"{kind}_milter"] - us[f"{kind}_engine"], 1
        )
    assert us["cc300_engine"] > us["clean_engine"]  # 300 addresses cost more than one
    assert "milter adds" in result.stderr
