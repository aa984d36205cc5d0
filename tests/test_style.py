"""ruff and mypy are part of the suite, so "lint clean, typed" holds for every passing commit."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT

TARGETS = ["mailguard", "tests", "benchmarks", "examples", "hatch_build.py"]


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


def test_mypy():
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "mailguard", "--ignore-missing-imports", "--no-incremental"],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
