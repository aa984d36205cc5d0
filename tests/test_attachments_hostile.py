"""Hostile attachments finish in bounded time and memory, and say what was skipped.

Each file is checked in a child process under an address-space limit (``RLIMIT_AS``): an
allocation outside Python (calamine's Rust side) is not seen by tracemalloc, and a
spreadsheet reader that asks for 17 billion cells aborts the whole process, which a test
in this process could not survive. The child also reports tracemalloc's peak while
checking (the input excluded). Time is asserted by doubling the input: the cost must not
grow faster than the input, and for capped inputs not at all.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import pytest

from mailguard import Engine
from mailguard.config import from_mapping
from tests.support import attachments as fx
from tests.test_linear_time import assert_linear

MB = 1 << 20
ADDRESS_SPACE = 1536 * MB
"""What the child may map beyond what it holds once the input is built."""
PEAK = 64 * MB
"""Python allocations while checking one hostile message (input excluded)."""

CHILD = textwrap.dedent(
    """
    import json, resource, sys, time, tracemalloc
    sys.path.insert(0, ".")
    from mailguard import Engine
    from tests.support import attachments as fx
    case, size = sys.argv[1], int(sys.argv[2])
    data = fx.hostile_message(case, size)
    engine = Engine()
    engine.check(fx.message([("w.csv", "text/csv", b"email\\r\\na@b.example\\r\\n")]))  # warm
    with open("/proc/self/status") as status:
        vm = next(int(l.split()[1]) * 1024 for l in status if l.startswith("VmSize"))
    limit = vm + int(sys.argv[3])
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    tracemalloc.start()
    start = time.perf_counter()
    report = engine.check(data)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(json.dumps({"verdict": report.verdict, "seconds": seconds, "peak": peak,
                      "findings": {f.code: f.message for f in report.findings}}))
    """
)


def run_child(case: str, size: int) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, case, str(size), str(ADDRESS_SPACE)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["peak"] < PEAK, result
    assert result["verdict"] in ("pass", "warn", "block"), result
    return result


@pytest.mark.parametrize(
    ("case", "size", "expect"),
    [
        ("zip_bomb", 256 * MB, "claims"),  # more than the byte cap, declared
        ("zip_bomb_ratio", 16 * MB, "zip bomb"),  # under the cap, but 1000:1
        ("xlsx_bomb", 16 * MB, "zip bomb"),
        ("billion_laughs", 0, "DOCTYPE"),
        ("claims_2gb", 2 << 30, "claims"),
        ("lies_small", 20 * MB, "corrupt ZIP entry"),
        ("far_cell", 0, "cells"),
        ("ods_repeat", 0, "cells"),
    ],
)
def test_hostile_container_is_refused_unopened_in_bounded_memory(case, size, expect):
    result = run_child(case, size)
    findings = result["findings"]
    assert "MG603" in findings and expect in findings["MG603"], findings
    assert "MG001" not in findings


def test_a_million_row_csv_stops_at_a_cap():
    """At the row cap (100,000), or at the time cap first on a busy machine: either way
    the limits finding says where reading stopped, and what was read still counts."""
    result = run_child("csv_rows", 1_000_000)
    findings = result["findings"]
    assert "attachment 1 (CSV): stopped after" in findings["MG002"], findings
    assert "distinct people" in findings["MG601"], findings
    assert result["verdict"] == "block"


def _best(engine: Engine, data: bytes, runs: int = 3) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        engine.check(data)
        best = min(best, time.perf_counter() - start)
    return best


@pytest.mark.parametrize(
    ("case", "size"), [("csv_rows", 200_000), ("zip_bomb", 64 * MB), ("lies_small", 8 * MB)]
)
def test_capped_inputs_cost_no_more_when_doubled(case, size):
    """Past a cap, twice the input costs about the same (each input built once: a batch of
    100 MB messages would take minutes to build)."""
    engine = Engine(from_mapping({"limits": {"max_attachment_rows": 10_000}}))
    small, large = fx.hostile_message(case, size), fx.hostile_message(case, 2 * size)
    seen = []
    for _ in range(3):
        ratio = _best(engine, large) / _best(engine, small)
        if ratio < 3:
            return
        seen.append(round(ratio, 2))
    raise AssertionError(f"doubling {case} from {size:,}: ratios {seen}")


@pytest.mark.parametrize(
    ("name", "ctype", "make", "n", "max_n"),
    [
        ("people.csv", "text/csv", fx.csv_rows, 500, 40_000),
        ("v.vcf", "text/vcard", fx.vcards, 500, 40_000),
        ("notes.txt", "text/plain",
         lambda n: b"".join(b"NHS number 943 476 5919 ann%d@example.org\r\n" % i
                            for i in range(n)), 500, 40_000),
        ("p.xlsx", fx.XLSX_TYPE, lambda n: fx.xlsx(fx.patient_rows(n)), 200, 8_000),
        ("p.ods", "application/vnd.oasis.opendocument.spreadsheet",
         lambda n: fx.ods(fx.patient_rows(n)), 200, 8_000),
    ],
)  # fmt: skip
def test_reading_grows_linearly(name, ctype, make, n, max_n):
    engine = Engine()
    cache: dict[int, bytes] = {}

    def build(size: int) -> bytes:
        if size not in cache:
            cache[size] = make(size)
        return fx.message([(name, ctype, cache[size])])

    assert_linear(build, engine.check, n, max_n)


def test_many_attachments_stop_at_the_cap():
    files = [(f"f{i}.csv", "text/csv", b"email\r\na@b.example\r\n") for i in range(100)]
    report = Engine().check(fx.message(files))
    (limits,) = [f.message for f in report.findings if f.code == "MG002"]
    assert "attachments after the first 64 not read" in limits
