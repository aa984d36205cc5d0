"""File names that are not UTF-8 (a Latin-1 export, a stray byte) in every output and
store. Python keeps them as lone surrogates ("\\udcff"), which a strict UTF-8 stream and
sqlite3 refuse: the reports write them as ``\\udcff`` escapes, the state store keeps them
as bytes, and nothing crashes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_terminal_safety import MESSAGE


@pytest.fixture
def undecodable_tree(tmp_path: Path) -> Path:
    """A file name that is not UTF-8 (Latin-1 'é' and a stray byte), and a FIFO like it."""
    root = tmp_path / "tree"
    root.mkdir()
    (Path(os.fsdecode(os.fsencode(root) + b"/r\xe9sum\xe9 \xff.eml"))).write_bytes(MESSAGE)
    os.mkfifo(os.fsencode(root) + b"/\xfe.eml")
    return root


@pytest.mark.parametrize(
    ("command", "formats"),
    [("check", ("text", "json", "sarif")), ("scan", ("text", "json", "csv", "html"))],
)
def test_file_names_that_are_not_utf8_are_written_not_a_crash(
    undecodable_tree: Path, tmp_path: Path, command: str, formats: tuple[str, ...]
) -> None:
    """Python keeps such names as lone surrogates, which a terminal's strict UTF-8 stdout
    (PYTHONIOENCODING=utf-8:strict here, as in an en_US.UTF-8 session) refuses."""
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict"}
    for fmt in formats:
        for out in (None, tmp_path / f"out.{fmt}"):
            args = [sys.executable, "-m", "mailguard", command, "--no-config", "--format", fmt]
            args += [str(undecodable_tree)] + (["-o", str(out)] if out else [])
            done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
            assert "Traceback" not in done.stderr, (fmt, out, done.stderr[-1500:])
            assert done.returncode == 2, (fmt, out, done.stderr[-1500:])  # the FIFO
            written = out.read_text(encoding="utf-8") if out else done.stdout
            assert "r\\udce9sum\\udce9 \\udcff.eml" in written, (fmt, out)
            if (command, fmt) != ("scan", "csv"):  # the CSV register lists incidents only
                assert "\\udcfe.eml" in done.stderr + written, (fmt, out)


def test_the_state_store_keeps_such_names_and_a_rerun_reads_nothing_again(
    undecodable_tree: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state.db"
    args = [sys.executable, "-m", "mailguard", "scan", "--no-config", "--format", "json",
            "--state", str(state), str(undecodable_tree)]  # fmt: skip
    first = subprocess.run(args, capture_output=True, text=True, timeout=120)
    again = subprocess.run(args, capture_output=True, text=True, timeout=120)
    for done in (first, again):
        assert "Traceback" not in done.stderr, done.stderr[-1500:]
        assert done.returncode == 2, done.stderr[-1500:]  # the FIFO
    assert "first scan: 2 message(s) read" in first.stderr
    assert "0 new message(s) read, 2 carried over" in again.stderr
    one, two = json.loads(first.stdout), json.loads(again.stdout)
    assert one["summary"] | {"seconds": 0} == two["summary"] | {"seconds": 0}
    assert [i["source"] for i in one["incidents"]] == [i["source"] for i in two["incidents"]]
    assert one["incidents"][0]["source"].endswith("/r\udce9sum\udce9 \udcff.eml")
