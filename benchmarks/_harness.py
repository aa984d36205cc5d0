"""What the three benchmarks share: options, timing, CPU accounting and the side-by-side table.

Each benchmark measures mailguard next to a baseline (what a user would otherwise write, or
Postfix without the milter) and must print both in one table, with the ratio, so a reader
never compares figures from two runs. Keeping that here means the three print, time and
judge targets the same way. Like ``tests/support/synth.py`` (the messages they measure
on), this module does not import mailguard.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import json
import math
import os
import platform
import re
import resource
import signal
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO, TypeVar

T = TypeVar("T")

DEFAULT_SEED = 1729
"""Fixed seed: the standard mix is byte-for-byte the same on every run and machine."""
MB = 1_000_000
_CLK_TCK = os.sysconf("SC_CLK_TCK")

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # for tests.support (the shared message generator, Postfix)
    sys.path.insert(0, str(REPO))


# ---------------------------------------------------------------------------- options, output


def stop_on_sigterm() -> None:
    """SIGTERM (``kill``, a CI timeout) ends the run as Ctrl-C does: through the ``with``
    blocks, so a private Postfix, milter or proxy started by the benchmark is stopped and its
    folder removed, instead of being left running (as it was, seen after a killed run)."""

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


def common_arguments(ap: argparse.ArgumentParser, quick: str, *, seed: bool = True) -> None:
    """``--quick`` (a smoke run, what the tests run), ``--json`` and, for the mix, ``--seed``."""
    ap.add_argument("--quick", action="store_true", help=quick)
    ap.add_argument(
        "--json", action="store_true", help="figures as JSON on stdout, table to stderr"
    )
    if seed:
        ap.add_argument("--seed", type=int, default=DEFAULT_SEED, help="generator seed")


class Output:
    """The table on stdout, or on stderr when stdout carries the JSON figures."""

    def __init__(self, json_mode: bool) -> None:
        self.json_mode = json_mode
        self.out: TextIO = sys.stderr if json_mode else sys.stdout
        self.started = time.perf_counter()

    def say(self, line: str = "") -> None:
        print(line, file=self.out, flush=True)

    @staticmethod
    def progress(line: str) -> None:
        print(f"  .. {line}", file=sys.stderr, flush=True)

    def finish(self, figures: dict[str, Any]) -> None:
        """The closing line, and the figures as JSON when asked for."""
        elapsed = time.perf_counter() - self.started
        self.say()
        self.say(f"Total benchmark time: {elapsed:.1f} s")
        if self.json_mode:
            figures["elapsed_s"] = round(elapsed, 1)
            print(json.dumps(figures, indent=2))


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine() -> str:
    """Python and platform, for the first line of every benchmark."""
    return (
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs"
    )


# ---------------------------------------------------------------------------- timing


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    """Seconds ``fn`` took (after a collection, so garbage of the last run is not billed)."""
    gc.collect()
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile: the value below which ``pct`` % of the samples fall."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def pin_to_one_core() -> int | None:
    """Pin this process to its first allowed CPU (for per-core targets)."""
    try:
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
    except (AttributeError, OSError):
        return None
    return cpu


# ---------------------------------------------------------------------------- CPU from /proc


def _stat_fields(path: str) -> list[str] | None:
    try:
        raw = Path(path).read_text()
    except OSError:
        return None
    return raw.rsplit(")", 1)[1].split()


def process_cpu(pid: int | None, *, children: bool = False, thread: bool = False) -> float:
    """CPU seconds (user + system) of a process, 0 once gone; ``children``: with its reaped
    children's; ``thread``: of its main thread alone."""
    if pid is None:
        return 0.0
    fields = _stat_fields(f"/proc/{pid}/task/{pid}/stat" if thread else f"/proc/{pid}/stat")
    if fields is None:
        return 0.0
    # After the ")": state is field 3, so utime (14) .. cstime (17) sit at 11..14.
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / _CLK_TCK


def parent_of(pid: int) -> int | None:
    """The parent of a live process (``None`` for a zombie or a gone one)."""
    fields = _stat_fields(f"/proc/{pid}/stat")
    return int(fields[1]) if fields is not None and fields[0] not in "ZX" else None


def machine_cpu() -> tuple[float, float, float]:
    """(busy, total, irq) CPU seconds of the whole machine, summed over all cores.

    Busy includes time stolen by the hypervisor; irq is hard and soft interrupt time
    (mostly loopback networking), charged to no process.
    """
    try:
        line = Path("/proc/stat").read_text().split("\n", 1)[0]
    except OSError:
        return 0.0, 0.0, 0.0
    values = [int(v) for v in line.split()[1:]]
    total = sum(values[:8])  # guest time is already in user
    idle = values[3] + values[4]
    return (total - idle) / _CLK_TCK, total / _CLK_TCK, (values[5] + values[6]) / _CLK_TCK


class Load:
    """What the rest of the machine did during a run: the machines here are shared.

    Machine-wide busy CPU time minus the CPU time of what is measured and of this script,
    per second of wall time: the number of cores other work kept busy, on average. A run
    with ``others`` near 1 on two cores had only about one core to itself.
    """

    def __init__(self) -> None:
        self.busy = machine_cpu()[0]
        self.own = self._own()

    @staticmethod
    def _own() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    def others(self, wall: float, measured_cpu: float = 0.0) -> float:
        """Average cores busy with other work since this object was made."""
        busy = machine_cpu()[0] - self.busy
        own = self._own() - self.own
        return max(0.0, busy - own - measured_cpu) / wall if wall > 0 else 0.0


# ---------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Column:
    """One column of a side-by-side table: ``key`` of each row, shown with ``fmt``."""

    title: str
    key: str
    fmt: str
    """A format spec with the width, e.g. ``>10,.0f``; ``<26`` for the label column."""
    suffix: str = ""


def table(say: Callable[[str], None], columns: Sequence[Column], rows: Iterable[Mapping[str, Any]],
          *, indent: str = "") -> None:  # fmt: skip
    """Contender and baseline in one table: a header, a rule, one line per row. A row
    without a column's key leaves that cell blank (a baseline has no in-process time)."""
    widths = [int(re.match(r"[<>^]?(\d+)", c.fmt).group(1)) + len(c.suffix) for c in columns]
    head = "".join(
        f"{c.title:<{w}}" if c.fmt.startswith("<") else f"{c.title:>{w}}"
        for c, w in zip(columns, widths, strict=True)
    )
    say(indent + head)
    say(indent + "-" * len(head))
    for row in rows:
        cells = []
        for c, w in zip(columns, widths, strict=True):
            value = row.get(c.key)
            cells.append(" " * w if value is None else format(value, c.fmt) + c.suffix)
        say(indent + "".join(cells))


def ratio(value: float, baseline: float) -> float:
    """How many times the baseline (rates: higher is better)."""
    return value / baseline if baseline else 0.0


# ---------------------------------------------------------------------------- targets


def target(name: str, value: float | None, threshold: float, met: bool | None) -> dict[str, Any]:
    return {"target": name, "value": value, "threshold": threshold, "met": met}


def print_targets(
    say: Callable[[str], None], targets: Sequence[Mapping[str, Any]], *, note: str = "",
    heading: str = "Targets (from the issue):", width: int = 55,
) -> None:  # fmt: skip
    """PASS, MISS or n/a (not measured) per target: a measurement, never a failed run."""
    say()
    say(heading + (f"  [{note}]" if note else ""))
    for t in targets:
        mark = "n/a " if t["met"] is None else "PASS" if t["met"] else "MISS"
        shown = "not measured" if t["value"] is None else f"{t['value']:,}"
        say(f"  {mark}  {t['target']:<{width}} measured {shown}")
