"""What the mail or a file name holds is shown on the terminal, never obeyed by it.

File names, Message-IDs and attachment names are written by whoever sent the mail or named
the file. A newline in one could forge a line of the report (a "PASS" for a message that
was never read); ESC starts sequences that clear the screen or rewrite what was printed;
bidirectional controls make text read differently from how it is stored. The text outputs
and the messages on stderr show such characters as escapes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailguard.outputs.words import printable

HOSTILE = "a\nPASS   forged.eml  score 0/100\x1b[2J\x1b]0;title\x07\r\u202ecod.exe\u2028\x85"


def test_control_characters_are_shown_as_escapes() -> None:
    shown = printable(HOSTILE)
    assert shown == (
        "a\\nPASS   forged.eml  score 0/100\\x1b[2J\\x1b]0;title\\x07\\r\\u202ecod.exe\\u2028\\x85"
    )
    assert printable("line one\nline two\x1b", lines=True) == "line one\nline two\\x1b"


@given(st.text())
def test_nothing_unprintable_survives_and_plain_text_is_untouched(text: str) -> None:
    shown = printable(text)
    assert not any(
        ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or c in "\u2028\u2029\u202e\u2066\u061c"
        for c in shown
    )
    if text.isprintable():
        assert shown == text


def test_plain_text_costs_one_search() -> None:
    text = "x" * 100_000
    assert printable(text) is text


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


MESSAGE = (
    "From: hr@org.example\r\nTo: a@org.example\r\nCc: "
    + ", ".join(f"p{i}@gmail.com" for i in range(30))
    + "\r\nMessage-ID: <id\x1b[2J@org.example>\r\nSubject: s\r\n\r\nbody\r\n"
).encode()


@pytest.fixture
def hostile_tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    root.mkdir()
    _write(root / "a\nPASS   forged.eml  score 0\x1b[2J.eml", MESSAGE)
    os.mkfifo(root / "b\n\x1b[31mERROR.eml")
    return root


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailguard", *args, "--no-config"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def _assert_shown_not_obeyed(text: str) -> None:
    assert "\x1b" not in text
    assert "\\x1b" in text
    assert not any(line.startswith("PASS   forged") for line in text.splitlines())


def test_check_text_and_its_errors(hostile_tree: Path) -> None:
    done = _run("check", str(hostile_tree))
    _assert_shown_not_obeyed(done.stdout)
    _assert_shown_not_obeyed(done.stderr)
    assert "b\\n\\x1b[31mERROR.eml: not a regular file" in done.stderr
    assert done.stdout.count("\n") == len(done.stdout.splitlines())  # no stray CR


def test_scan_text_register(hostile_tree: Path) -> None:
    done = _run("scan", str(hostile_tree))
    _assert_shown_not_obeyed(done.stdout)
    assert "<id\\x1b[2J@org.example>" in done.stdout  # the Message-ID, shown
    assert "ERROR  " + str(hostile_tree / "b\\n\\x1b[31mERROR.eml") in done.stdout


def test_errors_on_stderr() -> None:
    """typer strips CSI sequences (ESC [) when stderr is no terminal, but not an OSC one
    (ESC ], which retitles the window) nor BEL."""
    done = _run("check", "--format", "json", "-o", "/nonexistent\x1b]0;pwned\x07/y.json", "-")
    assert done.returncode == 2
    assert "\x1b" not in done.stderr and "\x07" not in done.stderr
    assert "/nonexistent\\x1b]0;pwned\\x07/y.json" in done.stderr


def test_html_register_shows_bidi_overrides_and_controls(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    root.mkdir()
    raw = MESSAGE.replace(b"Subject: s", "Subject: invoice\u202efdp.exe\x1b[2J".encode())
    _write(root / "pay\u202etxt.exe.eml", raw)
    out = tmp_path / "register.html"
    done = _run("scan", "--format", "html", "-o", str(out), str(root))
    assert done.returncode == 1, done.stderr
    page = out.read_text(encoding="utf-8")
    assert "\u202e" not in page and "\x1b" not in page
    assert "invoice\\u202efdp.exe\\x1b[2J" in page
    assert "pay\\u202etxt.exe.eml" in page
