"""Errors that stop ``check`` or ``scan``: under ``--redact`` they name no file, and an
output that cannot be written is refused before any mail is read.

Why: audits keep their files in folders named after the people audited
(``/audits/jane.doe@example.org/``); a config, output or state path printed whole in an
error line put on the terminal, in CI logs and in tickets what ``--redact`` was asked to
hide. And a scan of an archive can run for hours: a typo in ``-o`` found only when the
register was written lost the whole run.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from mailguard.redact import hide_names
from tests.scan_archive import write_mbox

OWNER = "jane.doe@example.org"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "mailguard", *args],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert "Traceback" not in result.stderr, result.stderr
    return result


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    named = tmp_path / OWNER
    named.mkdir()
    return named


def cases(folder: Path) -> list[list[str]]:
    mbox = str(write_mbox(folder / "Sent.mbox"))
    missing = str(folder / "nowhere" / "register.json")
    return [
        ["check", "--config", str(folder / "absent.toml"), mbox],
        ["check", "-o", missing, mbox],
        ["scan", "--no-config", "-o", missing, mbox],
        ["scan", "--no-config", "-o", str(folder), mbox],  # a folder, not a file
        ["scan", "--config", str(folder / "absent.toml"), mbox],
    ]


def test_under_redact_an_error_names_no_file(folder: Path) -> None:
    for args in cases(folder):
        result = run(*args, "--redact")
        assert result.returncode == 2, (args, result.stderr)
        assert "mailguard: error: " in result.stderr
        assert "jane.doe" not in result.stderr and "@" not in result.stderr, result.stderr
        assert "hmac:" in result.stderr, result.stderr  # the file is still told apart


def test_without_redact_the_error_names_the_file_to_fix(folder: Path) -> None:
    for args in cases(folder):
        result = run(*args)
        assert result.returncode == 2, (args, result.stderr)
        named = args[args.index("-o") + 1] if "-o" in args else str(folder / "absent.toml")
        assert named in result.stderr, result.stderr


def test_an_unwritable_output_stops_a_scan_before_it_reads_or_saves(folder: Path) -> None:
    mbox = str(write_mbox(folder / "Sent.mbox"))
    state = folder / "audit.state"
    for output in (folder / "nowhere" / "r.json", folder):
        result = run("scan", "--no-config", "--state", str(state), "-o", str(output), mbox)
        assert result.returncode == 2
        assert "scanned" not in result.stderr and "state:" not in result.stderr, result.stderr
        assert not state.exists()  # nothing read, nothing recorded as read


def test_a_writable_output_in_the_current_folder_is_accepted(tmp_path: Path) -> None:
    mbox = write_mbox(tmp_path / "Sent.mbox")
    result = subprocess.run(
        [sys.executable, "-m", "mailguard", "scan", "--no-config", "-q", "-f", "json",
         "-o", "r.json", str(mbox)],
        capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert "8 messages scanned" in result.stderr, result.stderr
    assert (tmp_path / "r.json").read_text().startswith("{")


def test_hide_names_replaces_given_names_whole_then_words_with_an_at() -> None:
    text = "cannot use /a/jane/state.db as the state; see /a/jane/state.db.key or x@y.org"
    hidden = hide_names(text, ["/a/jane/state.db", None])
    assert "jane" not in hidden and "@" not in hidden
    assert hidden.startswith("cannot use hmac:") and " as the state; see hmac:" in hidden
    assert hide_names("nothing to hide here", ["/elsewhere"]) == "nothing to hide here"


def test_hide_names_is_linear_in_the_text() -> None:
    def cost(size: int) -> float:
        text = ("x" * 999 + " ") * (size // 1000)
        started = time.perf_counter()
        hide_names(text, ["/a/b"])
        return time.perf_counter() - started

    small, large = min(cost(1 << 20) for _ in range(3)), min(cost(2 << 20) for _ in range(3))
    assert large < 3 * small + 0.02, (small, large)
