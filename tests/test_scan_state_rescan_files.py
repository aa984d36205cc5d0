"""A ``--state`` re-scan of a Maildir or an ``.eml`` tree reads each stored incident's
header block, not the whole file.

Why: an unchanged re-scan rebuilds every stored incident from its record and four header
fields. It used to read each incident's whole file for them: a re-scan of 30 incidents
with a 2 MB attachment each read 60 MB to use a few KB (the mbox path stopped at the
blank line already, ``tests/test_scan_state_rescan_cost.py``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailguard.archive.stored_headers import header_fields
from mailguard.sources import read_file, read_head
from tests.test_scan_state import comparable
from tests.test_scan_state_rescan_cost import entry

BIG = b"x" * 76 + b"\n"
BIG_BODY = BIG * (2 * 1024 * 1024 // len(BIG))  # 2 MB after the header block


def _message(i: int, eol: bytes = b"\n", body: bytes = BIG_BODY) -> bytes:
    return entry(i, eol, body).split(b"\n", 1)[1]  # without the mbox From_ line


def _scan_reading(tmp_path: Path, *args: str) -> tuple[int, dict[str, object], str, int]:
    """A scan in a child process: status, register, stderr and the bytes it read
    (``rchar`` of ``/proc/self/io``, written at exit)."""
    out, io = tmp_path / f"r{len(list(tmp_path.glob('r*.json')))}.json", tmp_path / "io"
    script = textwrap.dedent(
        f"""
        import atexit, sys
        def io():
            fields = dict(l.split(": ") for l in open("/proc/self/io").read().splitlines())
            open({str(io)!r}, "w").write(fields["rchar"])
        atexit.register(io)
        sys.argv = ["mailguard", "scan", "--no-config", "-q", "-f", "json", "-o", {str(out)!r},
                    *{list(args)!r}]
        from mailguard.__main__ import main
        main()
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert "Traceback" not in done.stderr, done.stderr
    import json

    return done.returncode, json.loads(out.read_text()), done.stderr, int(io.read_text())


@pytest.mark.parametrize("maildir", [True, False])
def test_an_unchanged_rescan_reads_header_blocks_only(tmp_path: Path, maildir: bool) -> None:
    root = tmp_path / "mail"
    folder = root / "cur" if maildir else root
    folder.mkdir(parents=True)
    if maildir:
        (root / "new").mkdir()
        (root / "tmp").mkdir()
    for i in range(30):
        name = f"17000000{i:02d}.M1P1.host:2,S" if maildir else f"m{i:02d}.eml"
        (folder / name).write_bytes(_message(i))
    state = tmp_path / "s.state"
    code, first, _, read_first = _scan_reading(tmp_path, "--state", str(state), str(root))
    again_code, again, err, read_again = _scan_reading(tmp_path, "--state", str(state), str(root))
    assert code == again_code == 1
    assert first["summary"]["incidents"] == 30  # type: ignore[index]
    assert "0 new message(s) read, 30 carried over" in err
    assert comparable(first) == comparable(again)
    assert read_first > 60_000_000
    # The interpreter and the package's own files are a few MB; 30 whole files were 63 MB.
    assert read_again < read_first / 4, (read_first, read_again)


@pytest.mark.parametrize("eol", [b"\n", b"\r\n"])
def test_the_head_ends_at_the_first_blank_line(tmp_path: Path, eol: bytes) -> None:
    path = tmp_path / "m.eml"
    path.write_bytes(_message(3, eol))
    item = read_head(path, 100 << 20)
    assert item.data is not None and item.source == str(path)
    assert item.data.endswith(b"+0000" + eol + eol) and b"xxxx" not in item.data
    assert header_fields(item.data) == header_fields(read_file(path).data or b"")


def test_a_blank_line_split_between_two_reads_is_found(tmp_path: Path) -> None:
    for cut in range(-3, 3):  # the 64 KB chunk boundary falls inside the CRLF CRLF
        head = b"Subject: s\r\nX-Pad: " + b"p" * (64 * 1024 - 20 + cut) + b"\r\n"
        path = tmp_path / "m.eml"
        path.write_bytes(head + b"\r\n" + BIG_BODY)
        item = read_head(path, 100 << 20)
        assert item.data == head + b"\r\n", cut


def test_no_blank_line_is_the_whole_file(tmp_path: Path) -> None:
    """All header block (a file over the size cap is refused before any read)."""
    path = tmp_path / "m.eml"
    path.write_bytes(b"Subject: x\n" + b"Y: z\n" * 50_000)
    assert read_head(path, 1 << 20).data == path.read_bytes()


def test_what_read_head_cannot_read_is_read_files_answer(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dir").mkdir()
    (tmp_path / "big.eml").write_bytes(b"Subject: x\n\n" + b"y" * 5000)
    for name, cap in [("fifo", 100), ("dir", 100), ("missing", 100), ("big.eml", 1000)]:
        assert read_head(tmp_path / name, cap) == read_file(tmp_path / name, cap), name


def test_an_outlook_msg_is_converted_whole(tmp_path: Path) -> None:
    """A ``.msg`` has no header block to stop at: the answer is read_file's, the same
    conversion or the same error."""
    path = tmp_path / "m.msg"
    path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 5000)
    assert read_head(path) == read_file(path)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from([b"\n", b"\r\n", b"\r", b"\n\n", b"\r\n\r\n", b"a", b":", b" "]),
             max_size=60),
    st.integers(min_value=1, max_value=400),
)  # fmt: skip
def test_the_head_holds_the_same_header_fields_as_the_whole_file(
    tmp_path_factory: pytest.TempPathFactory, pieces: list[bytes], cap: int
) -> None:
    """Whatever the bytes: what a rebuild reads from the head is what it would read from
    the whole file (within the size cap)."""
    path = tmp_path_factory.mktemp("h") / "m.eml"
    data = b"From: a@b.example\n" + b"".join(pieces) + b"\nSubject: late\n\nbody"
    path.write_bytes(data)
    head, whole = read_head(path, cap + len(data)), read_file(path, cap + len(data))
    assert whole.data is not None and head.data is not None
    assert whole.data.startswith(head.data)
    assert header_fields(head.data) == header_fields(whole.data)
