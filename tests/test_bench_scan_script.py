"""The scan benchmark must keep running and keep checking what it times.

Figures are not judged here (this machine is shared and noisy); what is checked is that every
contender ran over every message, that parallel scans found what the one-job scans found, and
that the memory figures are there.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT

SCANS = ("scan_mbox_jobs1", "scan_mbox_jobsN", "scan_maildir_jobs1", "scan_maildir_jobsN")
LOOPS = ("stdlib_mbox", "stdlib_maildir", "mailparser_mbox")


def test_scan_benchmark_quick_run_reports_every_figure(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_scan.py"), "--quick", "--json",
         "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout)
    assert figures["quick"] is True
    assert figures["jobs_all"] >= 2

    files = figures["files"]
    n = files["messages"]
    assert files["kinds"] == {"small": 450, "cc300": 40, "attachment": 10}
    assert n == 500 == files["maildir_files"]
    assert files["mbox_mb"] > files["message_mb"] > 0

    # The engine in-process is the reference: 300-Cc messages blocked, nothing errored.
    reference = figures["reference"]["verdicts"]
    assert sum(reference.values()) == n
    assert reference["error"] == 0
    assert figures["reference"]["by_kind"]["cc300"] == {"block": 40}

    runs = figures["throughput"]
    assert set(runs) == {*SCANS, *LOOPS}
    for key, run in runs.items():
        assert run["seconds"] > 0, key
        assert run["msg_per_s"] > 0, key
        assert run["mb_per_s"] > 0, key
        assert run["x_vs_mailparser"] > 0, key
    for key in SCANS:
        run = runs[key]
        # Every scan counted every message, with the same verdicts as the engine and with
        # the same verdicts for 1 job and for all cores.
        assert run["verdicts"] == reference, key
        assert run["incidents"] == reference["warn"] + reference["block"], key
        assert run["in_process_seconds"] > 0, key
        assert run["in_process_msg_per_s"] >= run["msg_per_s"], key
        assert run["cpu_seconds"] > 0, key
    assert runs["scan_mbox_jobsN"]["jobs"] == figures["jobs_all"]
    for key in LOOPS:
        run = runs[key]
        assert run["recipients_found"] == run["expected_recipients"] > 0, key
        assert run["errors"] == 0, key
    sampled = runs["mailparser_mbox"]
    assert sampled["extrapolated"] is True
    assert sampled["messages_parsed"] == figures["baseline_sample"] == 100
    assert sum(sampled["sample_kinds"].values()) == 100

    assert figures["startup_seconds"]["jobs1"] > 0
    assert figures["parallel_ceiling"]["before"] > 0

    memory = figures["memory"]["runs"]
    assert [m["scale"] for m in memory] == [1, 2]
    assert [m["messages"] for m in memory] == [n, 2 * n]
    for m in memory:
        assert m["workers_seen"] >= 1
        for key in ("parent_peak_rss_mb", "worker_peak_rss_mb", "tree_peak_rss_mb"):
            assert m[key] > 0, key
        assert m["tree_peak_rss_mb"] >= m["parent_peak_rss_mb"]
        assert m["tree_rss_mb_per_gb"] > 0
    growth = figures["memory"]["growth"]
    for key in ("tree_peak_rss_mb", "tree_peak_anon_mb", "parent_peak_rss_mb",
                "worker_peak_rss_mb", "parent_anon_kb_per_incident"):  # fmt: skip
        assert key in growth, key
    assert growth["tree_peak_rss_mb"] > 0

    targets = figures["targets"]
    assert len(targets) == 16
    assert sum(t["target"].startswith("issue 10:") for t in targets) == 2
    assert all(isinstance(t["met"], bool) for t in targets)
    assert "PASS" in result.stderr or "MISS" in result.stderr
    # Side by side: one table holds the scans and the loops, each with its ratio.
    lines = result.stderr.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("contender"))
    table = lines[head + 2 : head + 2 + len(runs)]
    assert [row.split("  ")[0] for row in table] == [run["label"] for run in runs.values()]
    # The generated files are gone unless --keep.
    assert not any(tmp_path.rglob("*.mbox"))
