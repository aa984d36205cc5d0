"""``-o``: the report file is written whole or not at all, and a report that cannot be
written at the end is not thrown away.

A full disk at the end of a long scan used to leave a cut-off register where the last
complete one was (a reader could take it for complete), and the register itself was
lost. Now the file is written beside itself and renamed over; a write that fails leaves
the old file as it was, no temporary file behind, and the report goes to standard output
with a line that says so. The disk is "full" here by a file-size limit
(``RLIMIT_FSIZE``) on the child process: the kernel refuses the write as it would.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from mailguard.commands import CommandError
from mailguard.commands.common import LOST_OUTPUT, check_writable, write_report
from tests.scan_archive import write_mbox

OLD = b"the last complete register\n"


def _small_disk() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a refused write, not a killed process
    resource.setrlimit(resource.RLIMIT_FSIZE, (len(OLD) + 100, len(OLD) + 100))


@pytest.mark.parametrize("command", ["scan", "check"])
def test_a_report_that_cannot_be_written_keeps_the_old_file_and_goes_to_stdout(
    tmp_path: Path, command: str
) -> None:
    mbox = write_mbox(tmp_path / "one.mbox")
    out = tmp_path / "register.json"
    out.write_bytes(OLD)
    done = subprocess.run(
        [sys.executable, "-m", "mailguard", command, "--no-config", "-q", "-f", "json",
         "-o", str(out), str(mbox)],
        capture_output=True, text=True, timeout=120, preexec_fn=_small_disk,
    )  # fmt: skip
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 2, done.stderr
    assert out.read_bytes() == OLD  # not cut off, not emptied
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.mbox", "register.json"]
    assert f"cannot write {out}: File too large; {LOST_OUTPUT}" in done.stderr
    report = json.loads(done.stdout)  # whole
    assert report["summary"]["messages"] > 0


def test_the_new_file_replaces_the_old_and_keeps_its_mode(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    out.write_bytes(OLD)
    out.chmod(0o640)
    write_report(out, "new")
    assert out.read_text() == "new\n"
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_a_new_file_gets_the_mode_open_would_give(tmp_path: Path) -> None:
    mask = os.umask(0o027)
    try:
        write_report(tmp_path / "r.json", "x")
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "r.json").stat().st_mode) == 0o640


def test_a_symbolic_link_stays_a_link_to_the_new_report(tmp_path: Path) -> None:
    real = tmp_path / "reports" / "latest.json"
    real.parent.mkdir()
    real.write_bytes(OLD)
    link = tmp_path / "r.json"
    link.symlink_to(real)
    write_report(link, "new")
    assert link.is_symlink() and real.read_text() == "new\n"
    assert sorted(p.name for p in real.parent.iterdir()) == ["latest.json"]


def test_what_is_not_a_regular_file_is_written_in_place(tmp_path: Path) -> None:
    """A FIFO (or ``/dev/stdout``): nothing to rename over; its reader gets the report."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    write_report(fifo, "through the pipe")
    reader.join(10)
    assert got == [b"through the pipe\n"]
    assert stat.S_ISFIFO(fifo.stat().st_mode)


def test_an_existing_writable_file_needs_no_writable_folder(tmp_path: Path) -> None:
    """``-o /dev/stdout`` as a user who cannot write ``/dev`` was refused before any mail
    was read."""
    check_writable(Path("/dev/stdout"))
    check_writable(Path("/dev/null"))
    with pytest.raises(CommandError, match="its folder does not exist"):
        check_writable(tmp_path / "no" / "r.json")
    with pytest.raises(CommandError, match="it is a folder"):
        check_writable(tmp_path)
