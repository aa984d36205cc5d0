"""Crafted input costs time in proportion to its size: each test doubles the input.

No fixed timings (machines differ); instead the input is doubled and the best-of-3 time may
at most roughly double (ratio < 3). A quadratic path gives 4x. Sizes start small and grow
until one run takes long enough to dominate timer noise, so the old quadratic code fails
within a second instead of running for minutes. Each test names the figure it replaced.
"""

from __future__ import annotations

import gc
import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import mailguard
from mailguard.archive.mbox import is_from_line, iter_mbox
from mailguard.body import strip_tags
from mailguard.config import Config, from_mapping
from mailguard.domains import DomainSet
from mailguard.headers import decode_words
from mailguard.limits import Limits

T = TypeVar("T")
_fresh = itertools.count()

MIN_SECONDS = 0.02
"""A run at the first size must take this long before the doubling is judged."""
RATIO = 3.0
ATTEMPTS = 3
"""Doublings measured before failing: load from other processes can spoil one, while a
quadratic path gives about 4x every time."""
BATCH = 16
"""Inputs per timed run. Several inputs of moderate size rather than one huge one: a
single 16 MB string outgrows the CPU caches, and crossing that boundary alone makes a
linear pass look superlinear."""


def _best(make: Callable[[int], T], run: Callable[[T], object], n: int, runs: int = 3) -> float:
    best = float("inf")
    for _ in range(runs):
        # Fresh inputs each time: caches must not turn the second run into a lookup.
        items = [make(n) for _ in range(BATCH)]
        gc.collect()
        gc.disable()
        try:
            # CPU time of this thread: on a busy 2-core box, waiting for a core is no work
            # of ours (tests/support/doubling.py says more).
            start = time.thread_time()
            for item in items:
                run(item)
            best = min(best, time.thread_time() - start)
        finally:
            gc.enable()
    return best


def assert_linear(make: Callable[[int], T], run: Callable[[T], object], n: int, max_n: int) -> None:
    """Time ``run(make(n))`` and ``run(make(2n))``; fail if doubling costs ``RATIO`` or more.

    ``n`` doubles (up to ``max_n``) until a run takes ``MIN_SECONDS``, so both a fast
    linear path and a slow quadratic one are measured at a size where timing means
    something. A failed attempt is tried again one size up (while ``4n <= max_n``).
    """
    while 2 * n <= max_n and _best(make, run, n, runs=1) < MIN_SECONDS:
        n *= 2
    seen = []
    for _ in range(ATTEMPTS):
        small = _best(make, run, n)
        large = _best(make, run, 2 * n)
        if large < RATIO * small:
            return
        seen.append(f"{n:,} -> {2 * n:,}: {small:.4f} s -> {large:.4f} s (x{large / small:.1f})")
        # The next attempt one size up: a quadratic path costs 4x at every doubling, but a
        # step in the machine's costs (an allocation that crosses malloc's mmap threshold,
        # a working set that outgrows a CPU cache) shows at one doubling only (seen in CI:
        # 151 KB -> 302 KB of headers, x3.0 to x4.2, where 302 -> 604 KB was x1.8).
        if 4 * n <= max_n:
            n *= 2
    raise AssertionError("doubling the input: " + ", ".join(seen))


# ---------------------------------------------------------------------------- HTML body

BIG_BODY = Config(limits=Limits(body_scan_bytes=64 << 20))
"""Lets the HTML part grow beyond the default 64 KB budget so timing is measurable."""


def _html_message(unit: bytes) -> Callable[[int], bytes]:
    def make(n: int) -> bytes:
        head = f"From: a@ours.example\r\nTo: b{next(_fresh)}@x.example\r\n"
        head += "Content-Type: text/html; charset=utf-8\r\n\r\n"
        return head.encode() + unit * (n // len(unit))

    return make


def _check(config: Config) -> Callable[[bytes], object]:
    return lambda data: mailguard.check(data, config=config)


def test_html_of_unclosed_tags_is_linear() -> None:
    """64 KB of ``<`` took 5 s (``<[^>]*>`` rescanned to the end from every ``<``)."""
    assert_linear(_html_message(b"<"), _check(BIG_BODY), 4_000, 1 << 20)


def test_html_of_unclosed_script_elements_is_linear() -> None:
    """64 KB of ``<script>`` took 14 s (a lazy ``.*?</script>`` from every opening tag)."""
    assert_linear(_html_message(b"<script>"), _check(BIG_BODY), 4_000, 1 << 20)


def test_strip_tags_on_mixed_markup_is_linear() -> None:
    unit = "<style>x<b>y</b><script <i>z</i>&amp; <a href='<'>"
    assert_linear(lambda n: unit * (n // len(unit)), strip_tags, 4_000, 1 << 20)


# ---------------------------------------------------------------------------- domains

INTERNAL = from_mapping({"internal_domains": ["ours.example", "a.b.c.example"]})


def _many_labels(label: str) -> Callable[[int], bytes]:
    def make(n: int) -> bytes:
        domain = f"x{next(_fresh)}." + f"{label}." * n + "example"
        return f"From: a@ours.example\r\nTo: b@{domain}, c@other.example\r\n\r\nhi\r\n".encode()

    return make


def test_domain_of_many_labels_is_linear() -> None:
    """One address at a domain of 200,000 labels took 16-24 s (a slice at every dot)."""
    assert_linear(_many_labels("a"), _check(INTERNAL), 8_000, 1 << 19)


def test_internationalised_domain_of_many_labels_is_linear() -> None:
    """The IDNA and Public Suffix List path for a huge non-ASCII domain."""
    assert_linear(_many_labels("\u00e9"), _check(INTERNAL), 8_000, 1 << 19)


def test_domain_set_membership_is_linear() -> None:
    domains = DomainSet(["ours.example", "x.y.z.example"])
    assert_linear(
        lambda n: f"q{next(_fresh)}." + "a." * n + "example", domains.__contains__, 4_000, 1 << 20
    )


# ---------------------------------------------------------------------------- mbox

LINES = 250


def _mbox(tmp_path: Path) -> Callable[[int], Path]:
    """An mbox with ``LINES`` body lines of ``n / LINES`` bytes: "From 1111...<form feed>"."""

    def make(n: int) -> Path:
        line = b"From " + b"1" * (max(n // LINES, 8) - 7) + b"\f\n"
        path = tmp_path / f"{next(_fresh)}.mbox"
        path.write_bytes(
            b"From a@ours.example Mon Jun  1 09:00:00 2020\nFrom: a@ours.example\n"
            b"To: b@x.example\n\n" + line * LINES
        )
        return path

    return make


def test_mbox_body_lines_like_from_lines_are_linear(tmp_path: Path) -> None:
    """A 1 MB mbox of such lines took 170 s (the From_ regex's nested ``\\S*``).

    Lines are read at most 1,000 bytes long, so the line width doubles up to 960.
    """
    assert_linear(_mbox(tmp_path), lambda p: list(iter_mbox(p)), 16 * LINES, 480 * LINES)


def test_from_line_test_is_linear_in_the_line_length() -> None:
    """Whatever ends the sender word: form feed, vertical tab, CR, or a NUL."""
    for end in (b"\f", b"\v", b"\r\r", b"\x00 x"):
        assert_linear(lambda n, e=end: b"From " + b"1" * n + e, is_from_line, 1_000, 1 << 20)


# ---------------------------------------------------------------------------- headers


def test_encoded_word_decoding_is_linear() -> None:
    """``email.header`` rescanned the line from every ``=?``: a 160 KB Subject took 19 s."""
    for unit in ("=?a?q?x ", "=?utf-8?q?caf=C3=A9?= x =?x?b?YQ==?==?y?q?b?=", "=?"):
        assert_linear(
            lambda n, u=unit: f"{next(_fresh)} " + u * (n // len(u)), decode_words, 4_000, 1 << 20
        )


# ---------------------------------------------------------------------------- MIME parts


def _dashed_parts(unit: bytes) -> Callable[[int], bytes]:
    """A multipart message whose parts are full of near-delimiters: dashes everywhere, the
    boundary's prefix at line starts (what the delimiter search jumps between)."""

    def make(n: int) -> bytes:
        head = f"From: a@ours.example\r\nTo: b{next(_fresh)}@x.example\r\n"
        head += 'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
        part = b"--b1\r\nContent-Type: application/octet-stream\r\n\r\n" + unit * (n // len(unit))
        return head.encode() + part + b"\r\n" + part + b"\r\n--b1--\r\n"

    return make


def test_delimiter_search_over_dashes_is_linear() -> None:
    assert_linear(_dashed_parts(b"-"), _check(Config()), 4_000, 1 << 22)
    assert_linear(_dashed_parts(b"\r\n--b\r\n--b10 x"), _check(Config()), 4_000, 1 << 22)
