from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "incidents"


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path, monkeypatch):
    """Run every test from an empty directory so no stray mailguard.toml is discovered."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MAILGUARD_REDACT_KEY", raising=False)


def eml(headers: str, body: str = "hello") -> bytes:
    """Build a CRLF message from a readable header block."""
    lines = headers.strip("\n").split("\n")
    return ("\r\n".join(lines) + "\r\n\r\n" + body + "\r\n").encode("utf-8")
