"""Under ``--redact``, a scan that cannot start names no file: not the state, not its key
file, not a source.

Why: the state usually lives beside the audit's other files, in folders named after the
people whose mail is audited (``/audits/jane.doe@example.org/state.db``). The register
hashes those names; an error line that printed them whole put on the terminal, in CI logs
and in tickets what ``--redact`` was asked to hide. Without ``--redact`` the path is named:
the user needs to know which file to fix.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.scan_archive import write_mbox

OWNER = "jane.doe@example.org"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "mailguard", "scan", "--no-config", "-q", "-f", "json", *args],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert "Traceback" not in result.stderr, result.stderr
    return result


def unusable_state(kind: str, folder: Path) -> Path:
    """A state file the scan must refuse, each for another reason."""
    state = folder / "state.db"
    if kind == "a folder":
        state.mkdir()
    elif kind == "another schema":
        with sqlite3.connect(state) as db:
            db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            db.execute("INSERT INTO meta VALUES ('schema', '99')")
    elif kind == "a key file others can read":
        key = folder / "state.db.key"
        key.write_text("00" * 32 + "\n")
        key.chmod(0o644)
    elif kind == "a malformed key file":
        key = folder / "state.db.key"
        key.write_text("not a key\n")
        key.chmod(0o600)
    return state


KINDS = ["a folder", "another schema", "a key file others can read", "a malformed key file"]


def scan_with(
    kind: str, tmp_path: Path, *extra: str
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """A scan of an mbox in a folder named like its owner, with an unusable state there."""
    folder = tmp_path / OWNER
    folder.mkdir()
    mbox = write_mbox(folder / "Sent.mbox")
    state = unusable_state(kind, folder)
    return state, run(str(mbox), "--state", str(state), *extra, "-o", str(tmp_path / "r.json"))


@pytest.mark.parametrize("kind", KINDS)
def test_a_state_that_cannot_be_used_is_not_named_under_redact(tmp_path: Path, kind: str) -> None:
    _, result = scan_with(kind, tmp_path, "--redact")
    assert result.returncode == 2
    assert "mailguard: error: " in result.stderr
    assert "jane.doe" not in result.stderr and "@" not in result.stderr, result.stderr
    assert "hmac:" in result.stderr  # the file is still told apart, by its hash


@pytest.mark.parametrize("kind", KINDS)
def test_without_redact_the_error_names_the_file_to_fix(tmp_path: Path, kind: str) -> None:
    state, result = scan_with(kind, tmp_path)
    assert result.returncode == 2
    assert str(state) in result.stderr, result.stderr
