"""An mbox rewritten in place while it is read: mutt, Dovecot and Thunderbird compact a
folder by truncating it. The scan must say where reading stopped, keep what it judged
before, and never die.

Why these tests exist: the mbox reader used to walk a memory map, and touching a mapped page
past a file's new end raises SIGBUS, which kills the Python process with no traceback and
no register (exit status -7). The reader now reads a window at a time with ``pread``
(:class:`~mailguard.file_view.FileView`), where the same event is a short read. The
end-to-end tests run in a subprocess so that the old failure shows as a signal, not as the
death of the test session.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailguard import file_view
from mailguard.archive import mbox as mbox_module
from mailguard.archive import stored_headers
from mailguard.archive.mbox import iter_mbox, split_at
from mailguard.archive.stored_headers import MboxHeaders
from mailguard.file_view import FileShrank, FileView
from mailguard.search import find_via
from tests.conftest import ROOT
from tests.support.doubling import assert_doubling_linear


def _message(i: int, cc: int = 3, body: int = 40) -> bytes:
    cc_list = ", ".join(f"person{i}-{k}@example.org" for k in range(cc))
    return (
        f"From sender@example.com Mon Jan  1 00:00:00 2024\n"
        f"From: Clinic <sender@example.com>\nTo: a{i}@example.org\nCc: {cc_list}\n"
        f"Subject: message {i}\nMessage-ID: <m{i}@example.com>\n\n"
        + "Text of the message.\n" * body
        + "\n"
    ).encode()


def _write_mbox(path: Path, count: int, **kw: int) -> list[int]:
    """The mbox, and the offset of each message's From_ line."""
    offsets, chunks, at = [], [], 0
    for i in range(count):
        data = _message(i, **kw)
        offsets.append(at)
        chunks.append(data)
        at += len(data)
    path.write_bytes(b"".join(chunks))
    return offsets


# ---------------------------------------------------------------------------- FileView


@pytest.fixture
def small_window(monkeypatch: pytest.MonkeyPatch) -> int:
    """A 64-byte window, so that every search and slice crosses window seams."""
    monkeypatch.setattr(file_view, "WINDOW", 64)
    return 64


def _view_of(tmp_path: Path, data: bytes) -> tuple[FileView, int]:
    path = tmp_path / "view.bin"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    return FileView(fd), fd


_DATA = st.binary(max_size=600).map(lambda b: b.replace(b"\x00", b"\n"))
_NEEDLES = st.sampled_from([b"\n", b"\nFrom ", b"From", b"\n\n", b"ab", b"x" * 40, b"\r\n\r\n"])


@settings(max_examples=300, deadline=None)
@given(data=_DATA, needle=_NEEDLES, start=st.integers(0, 700), end=st.integers(0, 700))
def test_find_equals_bytes_find(tmp_path_factory, data, needle, start, end):
    # (monkeypatch is function-scoped, which Hypothesis refuses: set and restore by hand)
    old = file_view.WINDOW
    file_view.WINDOW = 64
    try:
        tmp = tmp_path_factory.mktemp("fv")
        view, fd = _view_of(tmp, data + b"\nFrom x" + data[:50] + b"ab")
        whole = data + b"\nFrom x" + data[:50] + b"ab"
        try:
            assert view.find(needle, start, end) == whole.find(needle, start, end)
            assert view.find(needle, start) == whole.find(needle, start)
            # the jumping search, handed a window at a time
            for pivot in {0, len(needle) // 2, len(needle) - 1}:
                got = find_via(view, needle, pivot, start, end)
                assert got == whole.find(needle, start, end)
            # twice in a row: the cached window must not change the answer
            assert view.find(needle, start, end) == whole.find(needle, start, end)
            assert view[start:end] == whole[start:end]
            if whole:
                at = start % len(whole)
                assert view[at] == whole[at]
                assert view[-1] == whole[-1]
        finally:
            os.close(fd)
    finally:
        file_view.WINDOW = old


def test_find_across_a_seam_and_longer_than_a_window(tmp_path, small_window):
    data = b"y" * 61 + b"\nFrom z" + b"q" * 200 + b"N" * 100 + b"tail"
    view, fd = _view_of(tmp_path, data)
    try:
        assert view.find(b"\nFrom ") == 61  # straddles bytes 63/64
        assert view.find(b"N" * 100) == data.find(b"N" * 100)  # longer than a window
        assert view.find(b"N" * 101) == -1
        assert view[10:300] == data[10:300]  # a slice bigger than a window
        with pytest.raises(IndexError):
            view[len(data)]
        with pytest.raises(ValueError):
            view[::2]
    finally:
        os.close(fd)


def test_a_read_past_the_new_end_raises_file_shrank(tmp_path, small_window):
    path = tmp_path / "f"
    path.write_bytes(b"a" * 1000)
    fd = os.open(path, os.O_RDONLY)
    try:
        view = FileView(fd)
        assert view[0:10] == b"a" * 10
        os.truncate(path, 500)
        assert view[100:200] == b"a" * 100  # still there
        with pytest.raises(FileShrank) as caught:
            view[450:550]
        assert "1,000 to 500 bytes" in str(caught.value)
        with pytest.raises(FileShrank):
            view.find(b"b")
        assert isinstance(caught.value, OSError)
    finally:
        os.close(fd)


def test_find_is_linear_in_the_file(tmp_path):
    """No window is read twice in a search: twice the file, about twice the time."""

    def prepare(n: int):
        path = tmp_path / f"lin{n}"
        path.write_bytes(b"\n".join([b"From- not a separator " * 3] * n) + b"\nFrom end")
        fd = os.open(path, os.O_RDONLY)
        view = FileView(fd)
        return lambda: view.find(b"\nFrom e")

    assert_doubling_linear(prepare, [40_000, 80_000, 160_000], what="the file")


# ---------------------------------------------------------------------------- the reader


def test_iter_mbox_reports_where_reading_stopped(tmp_path):
    path = tmp_path / "box.mbox"
    offsets = _write_mbox(path, 400, cc=20, body=200)
    half = offsets[200] + 100  # in the middle of message 200
    messages = iter_mbox(path)
    first = next(messages)
    assert first.data is not None and first.source == f"{path}@0"
    os.truncate(path, half)
    rest = list(messages)
    judged = [m for m in rest if m.data is not None]
    errors = [m for m in rest if m.data is None]
    # What the reader had read before the cut (a window ahead, up to 1 MB) was whole when
    # read and is judged; the first message it had not read is where it says it stopped.
    assert len(errors) == 1, [e.error for e in errors]
    error = errors[0]
    assert error.unreadable
    assert "shrank" in error.error and "reading stopped at byte" in error.error
    assert "scan again" in error.error
    stopped_at = int(error.source.rpartition("@")[2])
    assert stopped_at in offsets and offsets[150] < stopped_at < offsets[-1]
    before = offsets[1 : offsets.index(stopped_at)]
    assert [m.source for m in judged] == [f"{path}@{o}" for o in before]


def test_a_unit_planned_on_a_longer_file_says_it_shrank(tmp_path):
    path = tmp_path / "box.mbox"
    offsets = _write_mbox(path, 50)
    size = path.stat().st_size
    units = split_at(path, [offsets[10], offsets[30]])
    assert [u[0] for u in units] == [0, offsets[10], offsets[30]]
    os.truncate(path, offsets[20])
    # the unit that lay wholly past the new end is an error, not zero messages
    last = list(iter_mbox(path, units[2][0], units[2][1]))
    assert len(last) == 1 and last[0].data is None and last[0].unreadable
    assert f"at least {size:,} to {offsets[20]:,} bytes" in last[0].error
    assert last[0].source == f"{path}@{offsets[30]}"
    # the unit the cut fell in: its messages up to the cut, then the error
    middle = list(iter_mbox(path, units[1][0], units[1][1]))
    assert [m.source for m in middle[:-1]] == [f"{path}@{o}" for o in offsets[10:20]]
    assert all(m.data is not None for m in middle[:-1])
    assert middle[-1].data is None and f"byte {offsets[20]:,}" in middle[-1].error
    # a unit before the cut is untouched
    first = list(iter_mbox(path, units[0][0], units[0][1]))
    assert len(first) == 10 and all(m.data is not None for m in first)


def test_planning_stops_cutting_when_the_file_shrinks(tmp_path, monkeypatch):
    path = tmp_path / "box.mbox"
    offsets = _write_mbox(path, 60)
    real = mbox_module._next_from_line
    calls = []

    def shrink_after_first(view, pos, size):
        calls.append(pos)
        if len(calls) == 2:
            os.truncate(path, offsets[5])
        return real(view, pos, size)

    monkeypatch.setattr(mbox_module, "_next_from_line", shrink_after_first)
    monkeypatch.setattr(file_view, "WINDOW", 256)
    units = split_at(path, [offsets[2], offsets[40], offsets[50]])
    assert units[0][0] == 0 and units[-1][1] == offsets[-1] + len(_message(59))
    assert len(units) == 2  # the second search met the new end and stopped the cutting


# ---------------------------------------------------------------------------- stored headers


def test_header_end_finds_a_blank_line_across_a_step(monkeypatch, tmp_path):
    monkeypatch.setattr(stored_headers, "_STEP", 16)
    for crlf in (False, True):
        for shift in range(20):
            head = b"X: " + b"h" * shift + (b"\r\n" if crlf else b"\n")
            data = head * 3 + (b"\r\n" if crlf else b"\n") + b"body\n"
            view, fd = _view_of(tmp_path, data)
            try:
                got = stored_headers._header_end(view, 0, len(data))
                assert got == stored_headers._header_end(data, 0, len(data))
                assert got == len(head * 3) - (2 if crlf else 1)
            finally:
                os.close(fd)
    view, fd = _view_of(tmp_path, b"X: no blank line\n" * 10)
    try:
        assert stored_headers._header_end(view, 0, 170) == 170
    finally:
        os.close(fd)


def test_stored_headers_of_a_shrunk_file(tmp_path):
    path = tmp_path / "box.mbox"
    offsets = _write_mbox(path, 700, cc=20, body=200)  # 3.4 MB: past the first window
    headers = MboxHeaders(path, "", 10 << 20)
    try:
        item = headers(f"{path}@{offsets[3]}", False)
        assert item is not None and item.data is not None and b"message 3" in item.data
        os.truncate(path, offsets[100])
        assert headers(f"{path}@{offsets[600]}", False) is None
        whole = headers(f"{path}@{offsets[699]}", True)  # the whole message: said
        assert whole is not None and whole.data is None and "shrank" in (whole.error or "")
    finally:
        headers.close()


# ---------------------------------------------------------------------------- end to end

_SHRINK_WHILE_READING = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from mailguard.archive.mbox import iter_mbox
    path = Path(sys.argv[1])
    items = iter_mbox(path)
    next(items)
    os.truncate(path, int(sys.argv[2]))
    rest = list(items)
    print(sum(i.data is not None for i in rest), sum(i.data is None for i in rest))
    """
)


def test_a_process_reading_a_shrinking_mbox_survives(tmp_path):
    """The old memory-mapped reader died here with SIGBUS (-7)."""
    path = tmp_path / "box.mbox"
    offsets = _write_mbox(path, 2000, cc=10, body=100)  # about 5 MB: several windows
    proc = subprocess.run(
        [sys.executable, "-c", _SHRINK_WHILE_READING, str(path), str(offsets[1000] + 7)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    judged, errors = map(int, proc.stdout.split())
    assert errors == 1 and 500 < judged < 1000


def test_scan_of_an_mbox_that_shrinks_mid_scan(tmp_path):
    """The whole CLI, two workers, a folder compacted while they read it: exit status 0
    or 1 with a register on stdout that names where reading stopped; never a signal."""
    path = tmp_path / "big.mbox"
    offsets = _write_mbox(path, 30000, cc=10, body=60)  # ~ 45 MB
    cut = offsets[len(offsets) // 3] + 11
    script = textwrap.dedent(
        f"""
        import os, subprocess, sys, time
        proc = subprocess.Popen(
            [sys.executable, "-m", "mailguard", "scan", "--no-config", "--format", "json",
             "--jobs", "2", {str(path)!r}],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        # Wait until a worker (a process other than the scan's own) has the file open,
        # so that planning saw it whole; then cut it.
        def worker_reads():
            for pid in filter(str.isdigit, os.listdir("/proc")):
                if int(pid) in (proc.pid, os.getpid()):
                    continue
                try:
                    for fd in os.listdir(f"/proc/{{pid}}/fd"):
                        if os.readlink(f"/proc/{{pid}}/fd/{{fd}}") == {str(path)!r}:
                            return True
                except OSError:
                    continue
            return False
        deadline = time.monotonic() + 120
        while not worker_reads() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        os.truncate({str(path)!r}, {cut})
        out, err = proc.communicate(timeout=600)
        sys.stdout.buffer.write(out)
        sys.stderr.buffer.write(err)
        sys.exit(proc.returncode if proc.returncode >= 0 else 100 - proc.returncode)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=700,
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert proc.returncode in (0, 1, 2), (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    text = json.dumps(report)
    assert "shrank" in text, json.dumps(report.get("errors", report))[:2000]
