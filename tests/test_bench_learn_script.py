"""The history benchmark and evaluation scripts keep running and keep measuring what they
say (figures not judged: the machines here are shared)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT


def run(script: str) -> dict:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--quick", "--json"],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


def test_bench_learn_quick_run_reports_every_figure():
    figures = run("bench_learn.py")
    assert [r["method"] for r in figures["rows"]] == [
        "mbox split only (baseline)", "stdlib mailbox + header parse", "mailguard learn",
    ]  # fmt: skip
    assert all(r["rate_cpu"] > 0 for r in figures["rows"])
    assert figures["store_bytes"] > 0 and figures["million_mb"] > 0
    assert len(figures["targets"]) == 3


def test_eval_history_quick_run_scores_every_kind():
    figures = run("eval_history.py")
    kinds = [r["kind"] for r in figures["rows"]]
    assert kinds == ["typo", "random (added)", "random (alone)", "another user's contact",
                     "clean messages flagged"]  # fmt: skip
    by_kind = {r["kind"]: r for r in figures["rows"]}
    assert all(r["n"] > 20 for r in figures["rows"])
    # What the rules are for must show even on the small organisation.
    assert by_kind["typo"]["sender only"] > 80
    assert by_kind["random (added)"]["sender only"] > 70
