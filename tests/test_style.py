"""ruff is part of the suite, so "ruff clean" holds for every commit that passes CI."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT

TARGETS = ["mailguard", "tests", "benchmarks", "examples"]


def test_ruff_check():
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", *TARGETS], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format():
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", *TARGETS],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
