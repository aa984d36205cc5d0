"""Ctrl-C once every message has been judged: the result is complete, so the first Ctrl-C
is noted and the command finishes; a second one stops it.

Before, a Ctrl-C while the report was rendered threw a whole scan's work away (status 130,
no register), and one that landed after the report was written still made the status 130
and said "interrupted" after a JSON register that says ``"interrupted": false`` (seen in
CI). The Ctrl-Cs here are real SIGINTs, sent by the process to itself at a chosen moment
(``os.kill`` delivers it before the next line runs), in a child process so that pytest's
own handling is not involved.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mailguard.cli import app
from mailguard.commands import common
from tests.scan_archive import write_mbox

NOTE = "the report is complete and being written"


def _run(
    tmp_path: Path, module: str, name: str, kills: int, *args: str
) -> subprocess.CompletedProcess[str]:
    """The ``mailguard`` script, with ``kills`` SIGINTs sent as ``module.name`` starts."""
    script = tmp_path / "entry.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, signal, sys
            import {module} as target
            real = target.{name}
            def late(*args, **kwargs):
                for _ in range({kills}):
                    os.kill(os.getpid(), signal.SIGINT)
                return real(*args, **kwargs)
            target.{name} = late
            from mailguard.__main__ import main
            sys.argv[0] = 'mailguard'
            sys.exit(main())
            """
        )
    )
    return subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(("name", "to_file"), [("render_register", False), ("write_report", True)])
def test_one_ctrl_c_after_a_scan_judged_everything_changes_nothing(
    tmp_path: Path, name: str, to_file: bool
) -> None:
    mbox = write_mbox(tmp_path / "one.mbox")
    output = tmp_path / "register.json"
    args = ["scan", "--no-config", "--format", "json", *(["-o", str(output)] if to_file else [])]
    quiet = _run(tmp_path, "mailguard.commands.scan_run", "render_register", 0, *args, str(mbox))
    done = _run(tmp_path, "mailguard.commands.scan_run", name, 1, *args, str(mbox))
    assert done.returncode == quiet.returncode != 130, done.stderr
    assert "Traceback" not in done.stderr
    assert NOTE in done.stderr
    assert "mailguard: interrupted" not in done.stderr
    register = json.loads(output.read_text() if to_file else done.stdout)
    assert register["summary"]["interrupted"] is False
    assert register["summary"]["messages"] > 0


def test_one_ctrl_c_while_check_renders_changes_nothing(tmp_path: Path) -> None:
    (tmp_path / "a.eml").write_bytes(b"From: a@b.example\r\nTo: c@d.example\r\n\r\nhi\r\n")
    args = ["check", "--no-config", "--format", "json", str(tmp_path / "a.eml")]
    done = _run(tmp_path, "mailguard.commands.check", "render", 1, *args)
    assert done.returncode == 0, done.stderr
    assert NOTE in done.stderr
    assert [r["verdict"] for r in json.loads(done.stdout)["messages"]] == ["pass"]


def test_a_second_ctrl_c_stops_it(tmp_path: Path) -> None:
    """A write that blocks (a pipe nobody reads) can still be abandoned."""
    mbox = write_mbox(tmp_path / "one.mbox")
    args = ["scan", "--no-config", "--format", "json", str(mbox)]
    done = _run(tmp_path, "mailguard.commands.scan_run", "render_register", 2, *args)
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().endswith("mailguard: interrupted")


def test_in_process_the_callers_ctrl_c_handler_comes_back(tmp_path: Path) -> None:
    """A script or a test that runs a command in-process gets its own Ctrl-C back."""
    mbox = write_mbox(tmp_path / "one.mbox")
    before = signal.getsignal(signal.SIGINT)
    result = CliRunner().invoke(app, ["scan", "--no-config", "--format", "json", str(mbox)])
    assert result.exit_code != 130, result.output
    assert signal.getsignal(signal.SIGINT) is before
    assert not common._holding


def test_hold_then_release_restores_what_was_there() -> None:
    before = signal.getsignal(signal.SIGINT)
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        common.hold_interrupts()
        common.hold_interrupts()  # twice: still the first handler comes back
        assert signal.getsignal(signal.SIGINT) is common._late_interrupt
        common.release_interrupts()
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
        common.release_interrupts()  # nothing held: nothing changes
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)
