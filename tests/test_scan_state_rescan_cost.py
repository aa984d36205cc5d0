"""A re-scan with ``--state`` reads each stored incident's header block, not the mail
after it.

Why: re-reading an unchanged archive is what ``--state`` is for. The header lookup used to
search for a CRLF blank line in an mbox with LF line ends; finding none, it read on to the
message-size limit for every stored incident, so a re-scan of 2,000 incidents that a full
scan judges in 0.8 s took 81 s. The cost of one lookup must not depend on the size limit
nor on what follows the header block; and what it returns must be the header block,
whatever the line ends.
"""

from __future__ import annotations

import time
from pathlib import Path

from mailguard.archive.stored_headers import MboxHeaders
from tests.test_scan_state import comparable, scan

FILLER = b"All quiet here, nothing to see.\n" * 8_192  # 256 KB of body per message


def entry(i: int, eol: bytes = b"\n", body: bytes = FILLER) -> bytes:
    head = [
        b"From: Alice <alice@corp.example>",
        b"To: " + b", ".join(b"p%d.%d@gmail.com" % (j, i) for j in range(12)),
        b"Subject: note %d" % i,
        b"Message-ID: <m%d@corp.example>" % i,
        b"Date: Mon, 1 Jan 2024 00:00:00 +0000",
    ]
    return (
        b"From alice@corp.example Mon Jan  1 00:00:00 2024\n"
        + eol.join(head) + eol + eol + body.replace(b"\n", eol) + b"\n"
    )  # fmt: skip


def write(path: Path, count: int, eol: bytes = b"\n") -> list[int]:
    offsets = []
    with path.open("wb") as f:
        for i in range(count):
            offsets.append(f.tell())
            f.write(entry(i, eol))
    return offsets


def lookups(path: Path, offsets: list[int], max_bytes: int) -> float:
    """Best of three: seconds to read every header block once."""
    best = float("inf")
    for _ in range(3):
        reader = MboxHeaders(path, "", max_bytes)
        started = time.perf_counter()
        for at in offsets:
            item = reader(f"x@{at}", False)
            assert item is not None and item.data is not None
        best = min(best, time.perf_counter() - started)
        reader.close()
    return best


def test_a_header_lookup_costs_the_same_whatever_the_size_limit(tmp_path: Path) -> None:
    # 160 messages of 256 KB (40 MB). Reading on to the limit costs ~1 MB per lookup at a
    # 1 MB limit and ~20 MB (to the end of the file) at 64 MB: 20x. Reading to the blank
    # line costs the same at both.
    mbox = tmp_path / "big.mbox"
    offsets = write(mbox, 160)
    small = lookups(mbox, offsets, 1 << 20)
    large = lookups(mbox, offsets, 64 << 20)
    assert large < 3 * small + 0.05, (small, large)


def test_the_header_block_ends_at_the_first_blank_line_of_either_kind(tmp_path: Path) -> None:
    for eol in (b"\n", b"\r\n"):
        mbox = tmp_path / "m.mbox"
        offsets = write(mbox, 3, eol)
        reader = MboxHeaders(mbox, "lbl", 1 << 20)
        for i, at in enumerate(offsets):
            item = reader(f"x@{at}", False)
            assert item is not None and item.source == f"lbl@{at}"
            assert item.data is not None
            assert item.data.endswith(b"+0000") and b"All quiet" not in item.data
            assert item.data.count(b"Subject: note %d" % i) == 1
        assert reader(f"x@{offsets[1] + 1}", False) is None  # not at a From_ line
        reader.close()


def test_a_message_without_a_blank_line_is_read_only_to_the_limit(tmp_path: Path) -> None:
    mbox = tmp_path / "m.mbox"
    mbox.write_bytes(b"From a@b Mon Jan  1 00:00:00 2024\nSubject: x\n" + b"Y: z\n" * 50_000)
    item = MboxHeaders(mbox, "", 4096)("x@0", False)
    assert item is not None and item.data is not None and len(item.data) == 4096


def test_a_crlf_mbox_rescans_to_the_same_register(tmp_path: Path) -> None:
    mbox = tmp_path / "crlf.mbox"
    with mbox.open("wb") as f:
        for i in range(40):
            f.write(entry(i, b"\r\n", b"Short body.\n") if i % 2 else entry(i, b"\n", b"B.\n"))
    state = tmp_path / "s.state"
    code, first, _ = scan(str(mbox), "--state", str(state), str(tmp_path / "a.json"))
    again_code, again, err = scan(str(mbox), "--state", str(state), str(tmp_path / "b.json"))
    assert code == again_code == 1
    assert first["summary"]["incidents"] == 40
    assert "0 new message(s) read, 40 carried over" in err
    assert comparable(first) == comparable(again)
