from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.packages import ensure_for_modules, missing, needed_by

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "incidents"


@pytest.fixture(scope="session")
def _debian_packages(request) -> tuple[str, set[str]]:
    """Install the Debian packages the collected tests use, once, before any test runs.

    As root (the README's command, .ci/run) missing packages are installed. Otherwise the
    reason and the packages still missing are kept, and every test that needs one of them
    fails with that reason (see tests/support/packages.py); other tests still run. Never a
    skip.
    """
    modules = {item.path.stem for item in request.session.items}
    try:
        ensure_for_modules(modules)
    except RuntimeError as exc:
        return str(exc), set(missing(needed_by(modules)))
    return "", set()


@pytest.fixture(autouse=True)
def _needs_packages(request, _debian_packages):
    reason, absent = _debian_packages
    if absent.intersection(needed_by([request.path.stem])):
        pytest.fail(reason, pytrace=False)


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path, monkeypatch):
    """Run every test from an empty directory so no stray mailguard.toml is discovered."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MAILGUARD_REDACT_KEY", raising=False)


def eml(headers: str, body: str = "hello") -> bytes:
    """Build a CRLF message from a readable header block."""
    lines = headers.strip("\n").split("\n")
    return ("\r\n".join(lines) + "\r\n\r\n" + body + "\r\n").encode("utf-8")
