"""The readers added in stop 22 cost time in proportion to their input: each doubling test
doubles it, and the time may at most roughly double (tests/support/doubling.py).

Covered: the header-block reader of a ``--state`` re-scan (``read_head``), the test for a
second ``From_`` line in a folder's file (``holds_several_messages``), the unpacking of a
compressed message (``compressed.decompress``), the folder walk that finds Maildirs
(``find_names(maildirs=...)``) and the address lexer's bracket alternative changed for a
stray ``<``.
"""

from __future__ import annotations

import gzip
import itertools
from collections.abc import Callable
from pathlib import Path

import pytest

from mailguard.addresses import parse_address_list
from mailguard.archive.mbox import holds_several_messages
from mailguard.compressed import decompress
from mailguard.sources import find_names, read_head
from tests.support.doubling import assert_doubling_linear

_fresh = itertools.count()


@pytest.fixture
def folder(tmp_path: Path) -> Callable[[], Path]:
    return lambda: tmp_path / f"d{next(_fresh)}"


def test_read_head_of_a_header_block_without_end(folder: Callable[[], Path]) -> None:
    """The worst case: no blank line, so every chunk is searched (and only once)."""

    def prepare(n: int) -> Callable[[], object]:
        path = folder()
        path.write_bytes(b"Subject: x\r\n" + b"X-Filler: yyyyyyyyyyyyyyyyyyyyyyyy\r\n" * n)
        return lambda: read_head(path, 1 << 30)

    assert_doubling_linear(prepare, (40_000, 80_000), what="the header block")


def test_a_second_from_line_is_looked_for_in_linear_time(folder: Callable[[], Path]) -> None:
    """Body lines that start with "From " but are no From_ line: each is looked at once."""

    def prepare(n: int) -> Callable[[], object]:
        path = folder()
        path.write_bytes(
            b"From a@b.example Mon Jun  1 09:00:00 2020\nTo: c@d.example\n\n"
            + b"From Russia with love, line after line\n" * n
        )
        return lambda: holds_several_messages(path)

    assert_doubling_linear(prepare, (40_000, 80_000), what="the mbox body")


def test_unpacking_is_linear(folder: Callable[[], Path]) -> None:
    def prepare(n: int) -> Callable[[], object]:
        data = gzip.compress(b"To: a@b.example\n\n" + b"line of text\n" * n, 1)
        return lambda: decompress(data, 1 << 30)

    assert_doubling_linear(prepare, (200_000, 400_000), what="the gzip stream")


def test_the_maildir_walk_is_linear_in_folders(folder: Callable[[], Path]) -> None:
    def prepare(n: int) -> Callable[[], object]:
        root = folder()
        for i in range(n):
            home = root / f"u{i}"
            for sub in ("cur", "new", "tmp"):
                (home / sub).mkdir(parents=True)
            (home / f"x{i}.eml").write_bytes(b"")
        return lambda: find_names(root, "*.eml", maildirs=[])

    assert_doubling_linear(prepare, (500, 1000), what="the Maildirs")


def test_stray_angles_and_quoted_closers_are_linear() -> None:
    def prepare(n: int) -> Callable[[], object]:
        value = '<, ">" <""@x.example>, ' * n
        return lambda: parse_address_list(value, "to")

    assert_doubling_linear(prepare, (2_000, 4_000), what="the address list")
