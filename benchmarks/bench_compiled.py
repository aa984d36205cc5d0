"""The compiled build against the pure one: the in-process engine on the standard mix.

Why this exists: ``MAILGUARD_COMPILE=1`` (README, "Compiled build") compiles the hot modules
with mypyc, and the issue asks that the engine with it reaches >= 2x *today's* pure engine.
So three trees are timed side by side, in one run, each in its own fresh interpreter:

* ``baseline``: a reference commit (``--baseline-ref``, default ``main``), pure Python:
  "today";
* ``pure``: this checkout as it is;
* ``compiled``: this checkout compiled exactly as the wheel build does
  (:func:`hatch_build.compile_modules`, in a temporary directory: nothing is left in the
  work tree).

Each interpreter builds the mix (``tests/support/synth.py``, fixed seed), warms the engine
up, then times ``Engine.check`` over every message in CPU time (``time.process_time``: on a
shared machine, time spent waiting for a core is not the engine's); the best of
``--repeat`` passes counts,
per kind of message too, so a change that slows small messages shows even when big ones
hide it. The rounds alternate the trees (A B C, C B A, ...) so that drift on a shared
machine hits all alike. Verdict counts must agree between the trees, or the run is
invalid: a compiled build that decides differently is broken, not fast.

Run from the repository root::

    python benchmarks/bench_compiled.py            # full mix, 3 rounds (~3 min with compiling)
    python benchmarks/bench_compiled.py --quick    # 1/10 of the mix, 1 round
    python benchmarks/bench_compiled.py --modules mailguard/engine.py   # compile only some

Exit status 0 whether or not the target is met; 1 when the run is invalid (verdicts differ,
the compiled tree did not load its extension modules); 2 when compiling is impossible here.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
from collections.abc import Sequence
from io import BytesIO
from pathlib import Path
from typing import Any

import _harness as h  # the benchmarks' shared harness (same directory)

sys.path.insert(0, str(h.REPO))
import hatch_build  # the build hook: the same compile as the wheel's

TARGET = 2.0
"""Compiled engine / baseline pure engine, messages per second (issue 10)."""

_WORKER = r"""
import json, sys, time
tree, repo = sys.argv[1:3]
seed, scale, repeat = (int(a) for a in sys.argv[3:6])
sys.path[:0] = [tree, repo]  # the tree's mailguard first; the repo for tests.support.synth
import importlib, mailguard
from tests.support.synth import build_mix
files = {m: importlib.import_module(m).__file__ for m in sys.argv[6:]}
mix = build_mix(seed, scale)
engine = mailguard.Engine()
for s in mix[:50]:
    engine.check(s.data)
kinds = sorted({s.kind for s in mix})
best = {k: float("inf") for k in ["all", *kinds]}
verdicts = {}
clock = time.process_time  # CPU time: other work on a shared box does not count
for _ in range(repeat):
    spent = dict.fromkeys(kinds, 0.0)
    counts = {}
    start = clock()
    for s in mix:
        t = clock()
        verdict = engine.check(s.data).verdict
        spent[s.kind] += clock() - t
        counts[verdict] = counts.get(verdict, 0) + 1
    best["all"] = min(best["all"], clock() - start)
    for k in kinds:
        best[k] = min(best[k], spent[k])
    verdicts = counts
print(json.dumps({
    "files": files,
    "messages": len(mix),
    "per_kind": {k: sum(1 for s in mix if s.kind == k) for k in kinds},
    "seconds": best,
    "verdicts": verdicts,
}))
"""


def baseline_tree(ref: str, into: Path) -> Path:
    """``mailguard/`` and ``rules/`` of ``ref`` (a git commit or branch) under ``into``."""
    archive = subprocess.run(
        ["git", "-C", str(h.REPO), "archive", "--format=tar", ref, "mailguard", "rules"],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def compiled_tree(into: Path, modules: Sequence[str]) -> Path:
    """This checkout's package with the extension modules beside the sources."""
    if modules:
        os.environ[hatch_build.ENV_MODULES] = ",".join(modules)
    hatch_build.compile_modules(h.REPO, into)
    src = into / "src"
    (src / "rules").symlink_to(h.REPO / "rules")
    return src


def measure(tree: Path, seed: int, scale: int, repeat: int, modules: list[str]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", _WORKER, str(tree), str(h.REPO), str(seed), str(scale),
         str(repeat), *modules],
        check=True, capture_output=True, text=True, cwd=tempfile.gettempdir(),
    )  # fmt: skip
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    h.common_arguments(ap, "1/10 of the mix, 1 round: a smoke run")
    ap.add_argument("--rounds", type=int, help="alternating rounds (default 3; --quick 1)")
    ap.add_argument("--repeat", type=int, default=3, help="passes per tree per round (best)")
    ap.add_argument("--baseline-ref", default="main", help="git ref of 'today' (default main)")
    ap.add_argument("--scale", type=int, help="divide the mix by this (default 1; --quick 10)")
    ap.add_argument(
        "--modules", nargs="*", default=[], help="compile only these (default: all of COMPILED)"
    )
    args = ap.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 3)
    scale = args.scale or (10 if args.quick else 1)
    out = h.Output(args.json)
    work = Path(tempfile.mkdtemp(prefix="mailguard-bench-compiled-"))
    try:
        out.progress(f"compiling ({len(args.modules) or len(hatch_build.COMPILED)} modules)")
        try:
            trees = {
                "baseline": baseline_tree(args.baseline_ref, work / "baseline"),
                "pure": h.REPO,
                "compiled": compiled_tree(work / "compiled", args.modules),
            }
        except hatch_build.CompileError as exc:
            print(f"cannot compile here: {exc}", file=sys.stderr)
            return 2
        compiled = [m.removesuffix(".py").replace("/", ".")
                    for m in args.modules or hatch_build.COMPILED]  # fmt: skip
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
        order = list(trees)
        for r in range(rounds):
            for name in order if r % 2 == 0 else order[::-1]:
                out.progress(f"round {r + 1}/{rounds}: {name}")
                runs[name].append(measure(trees[name], args.seed, scale, args.repeat, compiled))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report(out, runs, quick=args.quick or scale > 1, ref=args.baseline_ref)


def report(out: h.Output, runs: dict[str, list[dict[str, Any]]], *, quick: bool, ref: str) -> int:
    say = out.say
    first = {name: r[0] for name, r in runs.items()}
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    pure = {m: f for m, f in first["compiled"]["files"].items() if not f.endswith(suffix)}
    if pure:
        print(f"BROKEN BENCHMARK: the compiled tree loaded sources: {pure}", file=sys.stderr)
        return 1
    verdicts = {name: r["verdicts"] for name, r in first.items()}
    if verdicts["pure"] != verdicts["compiled"]:
        print(f"BROKEN BENCHMARK: verdicts differ: {verdicts}", file=sys.stderr)
        return 1
    best = {name: min(r["seconds"]["all"] for r in rs) for name, rs in runs.items()}
    n = first["pure"]["messages"]
    kinds = sorted(first["pure"]["per_kind"])
    say(f"In-process engine on the standard mix{' (QUICK: 1/10)' if quick else ''}: {n:,} "
        f"messages, best of {len(runs['pure'])} rounds; baseline = {ref}, pure Python")  # fmt: skip
    say("  CPU time; msg/s = messages per CPU second; us = CPU microseconds per message")
    say(f"  {'':<10}{'msg/s':>9}{'x base':>8}" + "".join(f"{k + ' us':>14}" for k in kinds))
    figures: dict[str, Any] = {"verdicts": verdicts["pure"], "trees": {}}
    for name, rs in runs.items():
        per_kind = {
            k: min(r["seconds"][k] for r in rs) / first[name]["per_kind"][k] * 1e6 for k in kinds
        }
        rate = n / best[name]
        ratio = best["baseline"] / best[name]
        say(
            f"  {name:<10}{rate:>9,.0f}{ratio:>7.2f}x"
            + "".join(f"{per_kind[k]:>14,.1f}" for k in kinds)
        )
        figures["trees"][name] = {
            "msg_per_s": round(rate),
            "x_baseline": round(ratio, 3),
            "us_per_message": {k: round(v, 1) for k, v in per_kind.items()},
        }
    alone = best["pure"] / best["compiled"]
    say(f"  compiled alone (same tree, compiled / pure): {alone:.2f}x")
    total = best["baseline"] / best["compiled"]
    targets = [h.target(f"compiled engine >= {TARGET:g}x the baseline's pure engine",
                        round(total, 3), TARGET, total >= TARGET)]  # fmt: skip
    h.print_targets(say, targets, note="quick run: small samples" if quick else "")
    figures.update(compiled_alone=round(alone, 3), targets=targets)
    out.finish(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
