"""``scan --state``: one scan at a time per state file, and a save that fails loses nothing.

Two scans with the same state used to both read it, both scan, and the later save
overwrote the earlier one's. Now a scan holds the store from open to exit; a second one
waits about two seconds, then exits 75 (EX_TEMPFAIL) with one line that names no path.
The processes here are real ``mailguard scan`` runs; the one holding the store is frozen
(SIGSTOP) mid-scan, so which one comes first does not depend on the machine's speed.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.scan_archive import MESSAGES, from_line, write_mbox
from tests.support.synth import mbox_entry
from tests.test_scan_state import append_messages, comparable, scan, state_lines

BUSY = "mailguard: state: another scan is using this state file; try again when it ends\n"


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "mailguard", "scan", "--no-config", "-q", "-f", "json", *args]


def held(state: Path) -> bool:
    """Whether another process holds the store (even reading it is refused)."""
    db = sqlite3.connect(state, timeout=0)
    try:
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.OperationalError as exc:
        return exc.sqlite_errorcode == sqlite3.SQLITE_BUSY
    finally:
        db.close()
    return False


def intact(state: Path) -> None:
    db = sqlite3.connect(state)
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        db.close()


def test_a_second_scan_of_a_state_in_use_exits_75_and_the_first_one_saves(
    tmp_path: Path,
) -> None:
    # A folder named like an address: under --redact nothing that may hold one is printed.
    home = tmp_path / "jane.doe@example.org"
    home.mkdir()
    mbox, state = write_mbox(home / "archive.mbox"), home / "scan.state"
    scan(str(mbox), "--state", str(state), str(tmp_path / "0.json"))
    append_messages(mbox, 6000)  # a few seconds of judging: time to freeze it mid-scan

    first = subprocess.Popen(
        command(str(mbox), "-j", "1", "--state", str(state), "-o", str(tmp_path / "1.json")),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not held(state):
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the first scan never took the store"
            time.sleep(0.02)
        os.kill(first.pid, signal.SIGSTOP)  # it has read the store and is scanning
        assert held(state)

        started = time.monotonic()
        second = subprocess.run(
            command(str(mbox), "--state", str(state), "--redact", "-o", str(tmp_path / "2.j")),
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        took = time.monotonic() - started
        assert second.returncode == 75, second.stderr
        assert second.stderr == BUSY  # one line, no traceback, no path
        assert "jane.doe" not in second.stderr and str(tmp_path) not in second.stderr
        assert second.stdout == ""
        assert not (tmp_path / "2.j").exists()  # it read nothing, so it wrote no register
        assert 2.0 <= took < 5.0, took  # it waited for the lock about two seconds, no more
        assert first.poll() is None  # the first scan held the store all that time
    finally:
        os.kill(first.pid, signal.SIGCONT)
    _, err = first.communicate(timeout=300)
    assert "Traceback" not in err, err
    assert first.returncode == 2  # the archive has an unreadable message: the usual status
    assert state_lines(err) == {
        "archive.mbox": "incremental: 6,000 new message(s) read, 8 carried over from the last scan"
    }
    intact(state)

    # The first scan's save is whole: the next run carries all of it and reads only new mail.
    append_messages(mbox, 3)
    _, again, err = scan(str(mbox), "--state", str(state), str(tmp_path / "3.json"))
    assert state_lines(err) == {
        "archive.mbox": "incremental: 3 new message(s) read, 6,008 carried over from the last scan"
    }
    _, full, _ = scan(str(mbox), str(tmp_path / "full.json"))
    assert comparable(again) == comparable(full)
    intact(state)


def write_clean_mbox(path: Path, count: int, start: int = 0) -> Path:
    """Without the unreadable message: a scan's status says what it found (1), not 2."""
    with path.open("ab") as f:
        for i in range(start, start + count):
            raw = MESSAGES[i % 7][1].replace(b"\r\n", b"\n")
            f.write(mbox_entry(from_line(i), raw)[0])
    return path


def no_bigger_files() -> None:
    # Any write that would make a file (not a pipe) larger than 4 KB fails with EFBIG, as
    # a full disk fails it; root is no exception. SQLite's journal is always bigger.
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))


def test_a_save_that_fails_still_writes_the_register_and_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILGUARD_REDACT_KEY", "one key, so two registers can be compared")
    home = tmp_path / "jane.doe@example.org"
    home.mkdir()
    mbox, state = write_clean_mbox(home / "sent.mbox", 14), home / "scan.state"
    code, _, _ = scan(str(mbox), "--state", str(state), str(tmp_path / "0.json"))
    assert code == 1
    write_clean_mbox(mbox, 7, start=14)

    failed = subprocess.run(
        command(str(mbox), "--state", str(state), "--redact"),  # the register on stdout
        capture_output=True, text=True, timeout=120, check=False, preexec_fn=no_bigger_files,
    )  # fmt: skip
    assert "Traceback" not in failed.stderr, failed.stderr
    assert failed.returncode == 2, failed.stderr  # not 1: the state was not updated
    lines = failed.stderr.splitlines()
    assert lines[-1].startswith("mailguard: state: not updated ("), failed.stderr
    assert lines[-1].endswith(
        "; the register is complete, and the next scan with this state reads this run's mail again"
    )
    assert "jane.doe" not in failed.stderr and str(tmp_path) not in failed.stderr
    # The register is the one a full scan writes: no finding was lost with the save.
    _, full, _ = scan(str(mbox), "--redact", str(tmp_path / "full.json"))
    assert comparable(json.loads(failed.stdout)) == comparable(full)
    assert full["summary"]["messages"] == 21 and full["summary"]["incidents"] > 0

    # The store is as the last good save left it: the next run reads the same mail again.
    intact(state)
    code, again, err = scan(str(mbox), "--state", str(state), str(tmp_path / "2.json"))
    assert code == 1
    assert state_lines(err) == {
        "sent.mbox": "incremental: 7 new message(s) read, 14 carried over from the last scan"
    }
    _, plain, _ = scan(str(mbox), str(tmp_path / "plain.json"))
    assert comparable(again) == comparable(plain)


def test_the_store_is_refused_to_a_second_opener_without_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mailguard.archive import state as state_module
    from mailguard.archive.state import StateBusy, StateStore

    monkeypatch.setattr(state_module, "LOCK_WAIT", 0.2)
    path = tmp_path / "jane.doe@example.org.state"
    StateStore(path).close()  # an existing store: opening it writes nothing
    store = StateStore(path)
    try:
        with pytest.raises(StateBusy) as busy:
            StateStore(path)
        assert "jane.doe" not in str(busy.value)
        assert held(path)
        store.save("f", [], [])
        assert held(path)  # a save keeps the lock until the store is closed
    finally:
        store.close()
    assert not held(path)
    StateStore(path).close()


def test_a_failed_save_raises_a_state_error_naming_no_path(tmp_path: Path) -> None:
    from mailguard.archive.state import Record, StateError, StateStore

    path = tmp_path / "jane.doe@example.org.state"
    record = Record("jane.doe@example.org/Maildir", "files", seen={"1"})
    store = StateStore(path)
    store.db.close()  # the connection gone under it
    with pytest.raises(StateError) as closed:
        store.save("f", [record], [])
    assert "jane.doe" not in str(closed.value)

    store = StateStore(path)
    path.rename(tmp_path / "moved")  # replaced while the scan ran: the save would be lost
    path.touch()
    try:
        with pytest.raises(StateError, match="removed or replaced") as replaced:
            store.save("f", [record], [])
        assert "jane.doe" not in str(replaced.value)
    finally:
        store.close()


def test_a_state_in_use_stops_a_cluster_scan_before_the_cluster_is_contacted(
    tmp_path: Path,
) -> None:
    """The state is taken first: a second scan costs nothing, a cluster's connection and
    workers included. The scheduler named here does not exist; contacting it first made the
    scan fail on it (status 2) instead of saying the state is in use."""
    import socket

    from mailguard.archive.state import StateStore

    mbox = write_mbox(tmp_path / "one.mbox")
    state = tmp_path / "s.state"
    with socket.socket() as sock:  # a free loopback port with no scheduler behind it
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = StateStore(state)
    try:
        started = time.monotonic()
        done = subprocess.run(
            command("--scheduler", f"tcp://127.0.0.1:{port}", "--state", str(state), str(mbox)),
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        store.close()
    assert done.returncode == 75, done.stderr
    assert done.stderr == BUSY
    assert done.stdout == ""
    assert time.monotonic() - started < 30
