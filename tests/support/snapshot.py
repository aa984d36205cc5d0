"""Snapshot files for the output formats, in the manner of ruff's ``message/`` emitter tests.

Each test renders a fixed input and compares it byte for byte with a stored file under
``tests/snapshots/``. A change to an emitter shows up as a diff of the whole document, which
a reviewer reads once; set ``MAILGUARD_UPDATE_SNAPSHOTS=1`` to rewrite the stored files
after checking that the change is the intended one (``git diff tests/snapshots``).
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

SNAPSHOTS = Path(__file__).resolve().parents[1] / "snapshots"
UPDATE_ENV = "MAILGUARD_UPDATE_SNAPSHOTS"
_MAX_DIFF_LINES = 60


def assert_snapshot(name: str, text: str) -> None:
    """``text`` must equal the stored snapshot ``name``; bytes, so line endings count too."""
    path = SNAPSHOTS / name
    data = text.encode("utf-8")
    if os.environ.get(UPDATE_ENV) == "1":
        if not path.exists() or path.read_bytes() != data:
            path.write_bytes(data)
        return
    if not path.exists():
        raise AssertionError(f"no snapshot {path}; run with {UPDATE_ENV}=1 to record it")
    stored = path.read_bytes()
    if stored == data:
        return
    diff = list(
        difflib.unified_diff(
            stored.decode("utf-8").splitlines(keepends=True),
            text.splitlines(keepends=True),
            f"stored/{name}",
            f"rendered/{name}",
        )
    )
    shown = "".join(diff[:_MAX_DIFF_LINES]) or "(only line endings differ)\n"
    more = (
        f"... {len(diff) - _MAX_DIFF_LINES} more diff lines\n"
        if len(diff) > _MAX_DIFF_LINES
        else ""
    )
    raise AssertionError(
        f"{name} differs from its snapshot; if the change is intended, rerun with "
        f"{UPDATE_ENV}=1 and review `git diff tests/snapshots`:\n{shown}{more}"
    )
