"""Ctrl-C at any moment of a command: exit status 130, a line saying so, never a traceback.

Once a scan judges mail, Ctrl-C writes the partial register (``tests/test_scan*.py``). These
tests cover the moments before that: while mailguard itself loads (the package import is
lazy and the entry point catches it), while typer builds its parser, while the command
reads its settings, and while a scan still lists its sources (it then writes an empty
register marked interrupted, and a ``--state`` store is left as it was).
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
from mailguard.commands import scan_run
from tests.scan_archive import write_eml_tree, write_mbox

runner = CliRunner()


def _interrupted(*args: object, **kwargs: object) -> None:
    raise KeyboardInterrupt


def test_ctrl_c_while_a_scan_lists_its_sources_writes_an_empty_interrupted_register(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = write_eml_tree(tmp_path / "tree")
    mbox = write_mbox(tmp_path / "one.mbox")
    listed: list[str] = []

    def plan(source: str, jobs: int, pattern: str) -> object:
        listed.append(source)
        if len(listed) == 2:  # the second source: the first was listed already
            raise KeyboardInterrupt
        return real_plan(source, jobs, pattern)

    real_plan = scan_run.plan
    monkeypatch.setattr(scan_run, "plan", plan)
    result = runner.invoke(
        app, ["scan", "--format", "json", "--no-config", str(mbox), str(tree), str(mbox)]
    )
    assert result.exit_code == 130, result.output
    assert listed == [str(mbox), str(tree)]  # nothing listed after the Ctrl-C
    data = json.loads(result.stdout)
    assert data["summary"]["interrupted"] is True
    assert data["summary"]["messages"] == 0  # listed, not judged
    assert "interrupted" in result.stderr


def test_ctrl_c_while_listing_leaves_the_state_store_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mbox = write_mbox(tmp_path / "one.mbox")
    state = tmp_path / "state.db"
    args = ["scan", "--format", "json", "--no-config", "--state", str(state), str(mbox)]
    first = runner.invoke(app, args)
    assert first.exit_code in (0, 1, 2), first.output  # 2: the fixture holds a non-message
    before = state.read_bytes()
    monkeypatch.setattr(scan_run, "plan", _interrupted)
    result = runner.invoke(app, args)
    assert result.exit_code == 130, result.output
    assert "state: not updated" in result.stderr
    assert state.read_bytes() == before


def test_ctrl_c_in_check_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mailguard.commands import check

    monkeypatch.setattr(check, "run_check", _interrupted)
    (tmp_path / "a.eml").write_bytes(b"From: a@b.example\r\nTo: c@d.example\r\n\r\nhi\r\n")
    result = runner.invoke(app, ["check", "--no-config", str(tmp_path / "a.eml")])
    assert result.exit_code == 130
    assert result.stderr.strip() == "mailguard: interrupted"


def _entry_point(tmp_path: Path, prelude: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The ``mailguard`` console script's own code, after ``prelude``."""
    script = tmp_path / "entry.py"
    script.write_text(
        textwrap.dedent(prelude)
        + "\nimport sys\nfrom mailguard.__main__ import main\nsys.argv[0] = 'mailguard'\n"
        + "sys.exit(main())\n"
    )
    return subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("module", ["typer", "mailguard.engine", "mailguard.commands.scan"])
def test_ctrl_c_while_mailguard_loads_is_no_traceback(tmp_path: Path, module: str) -> None:
    """Ctrl-C arrives as KeyboardInterrupt out of whatever import is running: here, raised
    by an import hook exactly when ``module`` is imported."""
    prelude = f"""
        import sys
        class Interrupt:
            def find_spec(self, name, path=None, target=None):
                if name == {module!r}:
                    raise KeyboardInterrupt
                return None
        sys.meta_path.insert(0, Interrupt())
    """
    tree = write_eml_tree(tmp_path / "tree")
    done = _entry_point(tmp_path, prelude, "scan", "--no-config", str(tree))
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr
    if module != "mailguard.commands.scan":  # a command's own import: typer's silent 130
        assert done.stderr.strip().endswith("mailguard: interrupted")


def test_ctrl_c_while_typer_builds_its_parser_is_no_traceback(tmp_path: Path) -> None:
    prelude = """
        import typer.main
        def build(*args, **kwargs):
            raise KeyboardInterrupt
        typer.main.get_command = build
    """
    done = _entry_point(tmp_path, prelude, "--help")
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr


def test_importing_the_package_loads_nothing_heavy() -> None:
    """The entry point's guard can only catch what happens after the package is imported:
    that import must not load the engine (it did, eagerly, before)."""
    code = (
        "import sys, mailguard, mailguard.__main__; "
        "print(sorted(m for m in sys.modules if m.startswith('mailguard')))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert loaded.stdout.strip() == "['mailguard', 'mailguard.__main__']", loaded.stderr
    check = subprocess.run(
        [sys.executable, "-c", "import mailguard; print(mailguard.check(b'To: a@b.example\\n\\n'"
         ").verdict, sorted(set(mailguard.__all__) - set(dir(mailguard))))"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert check.stdout.split() == ["pass", "[]"], check.stderr


def test_real_ctrl_c_at_any_moment_of_a_scan_start(tmp_path: Path) -> None:
    """The real signal, at moments spread over start-up, planning and judging."""
    mbox = write_mbox(tmp_path / "one.mbox")
    big = tmp_path / "big.mbox"
    big.write_bytes(mbox.read_bytes() * 400)
    for delay in (0.15, 0.25, 0.35, 0.5, 0.7, 1.0):
        proc = subprocess.Popen(
            [sys.executable, "-m", "mailguard", "scan", "--no-config", "--format", "json",
             str(big)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )  # fmt: skip
        try:
            proc.communicate(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert "Traceback" not in err, (delay, err[-2000:])
        assert proc.returncode in (0, 1, 2, 130), (delay, proc.returncode, err[-2000:])
        if proc.returncode == 2:  # finished first: the mbox holds one unreadable message
            assert json.loads(out)["summary"]["interrupted"] is False, (delay, err[-2000:])
        if proc.returncode == 130:
            assert "interrupted" in err, (delay, proc.returncode, err[-2000:], out[-300:])
            if out:
                assert json.loads(out)["summary"]["interrupted"] is True


class _InterruptingImport:
    """A Ctrl-C while ``scan`` imports its command module: after typer took the command
    line, before :func:`mailguard.cli_options.run` took over."""

    def find_spec(self, name: str, *args: object) -> None:
        if name == "mailguard.commands.scan":
            raise KeyboardInterrupt


def test_ctrl_c_before_the_command_runs_still_says_interrupted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """typer's own Ctrl-C exit is status 130 with nothing said; the user, or a script's
    log, then cannot tell it from any other failure."""
    from mailguard import cli

    monkeypatch.delitem(sys.modules, "mailguard.commands.scan", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_InterruptingImport(), *sys.meta_path])
    monkeypatch.setattr(sys, "argv", ["mailguard", "scan", "--no-config", str(tmp_path)])
    with pytest.raises(SystemExit) as stopped:
        cli.main()
    assert stopped.value.code == 130
    assert capsys.readouterr().err == "mailguard: interrupted\n"


def test_a_command_that_says_interrupted_itself_is_not_said_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from mailguard import cli

    mbox = write_mbox(tmp_path / "one.mbox")
    monkeypatch.setattr(scan_run, "plan", _interrupted)
    monkeypatch.setattr(sys, "argv", ["mailguard", "scan", "--no-config", "-q", str(mbox)])
    with pytest.raises(SystemExit) as stopped:
        cli.main()
    assert stopped.value.code == 130
    assert capsys.readouterr().err.count("interrupted") == 1


def test_a_ctrl_c_after_the_command_ended_changes_nothing() -> None:
    """A Ctrl-C once the report is written and the status decided landed in the
    interpreter's shutdown and killed the process (status -2, 5 of 120 Ctrl-Cs sent
    around the end of a scan). Here it comes from an exit handler, as late as it can."""
    script = textwrap.dedent(
        """
        import atexit, os, signal, sys, time

        def late():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)

        atexit.register(late)
        sys.argv = ["mailguard", "--version"]
        from mailguard.__main__ import main
        main()
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith("mailguard ")
