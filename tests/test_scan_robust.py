"""``scan`` and ``check`` on hostile or broken trees: what cannot be read is said, never
skipped, never a crash, never a hang; a failed source is no message; the register says
how it was made; Ctrl-C keeps what the workers judged.

Unreadable folders are made for real: the scan runs as an unprivileged user (``nobody``)
in a subprocess when the suite runs as root (root reads everything), so the operating
system itself refuses the read.
"""

from __future__ import annotations

import io
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mailguard.archive.register import Register, Tally
from mailguard.archive.scanner import Scanner
from mailguard.cli import app
from mailguard.config import Config
from mailguard.limits import Limits
from mailguard.sources import iter_inputs, read_file
from tests.conftest import ROOT
from tests.scan_archive import (
    EXPECTED,
    MESSAGES,
    cpu_seconds,
    write_eml_tree,
    write_maildir,
    write_mbox,
)

runner = CliRunner()


def scan_json(*args: str) -> tuple[int, dict, str]:
    result = runner.invoke(app, ["scan", "--format", "json", "--no-config", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, json.loads(result.stdout), result.stderr


# ---------------------------------------------------------------------------- as nobody


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A folder an unprivileged user can reach (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="mailguard-scan-"))
    path.chmod(0o755)
    yield path
    for folder, _dirs, _files in os.walk(path):
        Path(folder).chmod(0o755)
    shutil.rmtree(path)


def _unprivileged_prefix() -> list[str]:
    """Run as ``nobody`` when root (root reads everything): ``setpriv`` drops every
    capability, so the kernel's own permission check refuses the read."""
    if os.geteuid() != 0:
        return []  # already unprivileged: mode bits bind us
    nobody = pwd.getpwnam("nobody")
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to drop root for this test"
    return [setpriv, f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups"]


def run_unprivileged(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [*_unprivileged_prefix(), sys.executable, "-m", "mailguard", *args],
        capture_output=True, text=True, timeout=timeout, env=env, cwd="/",
    )  # fmt: skip


def test_unreadable_maildir_cur_is_an_error_entry_not_a_traceback(shared_tmp: Path) -> None:
    root = write_maildir(shared_tmp / "Maildir")
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    (root / "cur").chmod(0o700)  # owned by root: nobody cannot list it
    result = run_unprivileged("scan", "--format", "json", "--no-config", str(root))
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.returncode == 2, result.stderr  # not 1 ("incidents")
    data = json.loads(result.stdout)
    new_count = len(list((root / "new").iterdir()))
    assert data["summary"]["messages"] == new_count  # new/ was still read
    (entry,) = [e for e in data["errors"] if e["kind"] != "message"]
    assert entry == {
        "source": str(root / "cur"),
        "message": "cannot read: Permission denied",
        "kind": "path",
    }
    assert data["summary"]["unreadable_paths"] == 1
    text = run_unprivileged("scan", "--no-config", str(root)).stdout
    assert text.startswith("INCOMPLETE: 1 folder could not be read")
    assert "NOT READ: 0 failed sources, 1 unreadable folder (their" in text


def test_unreadable_subfolder_of_an_eml_tree_is_reported(shared_tmp: Path) -> None:
    root = write_eml_tree(shared_tmp / "eml")
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    (root / "2020").chmod(0o700)
    result = run_unprivileged("scan", "--format", "json", "--no-config", str(root))
    assert result.returncode == 2, result.stderr
    data = json.loads(result.stdout)
    assert data["summary"]["messages"] == len(list((root / "older").iterdir()))
    assert [(e["source"], e["kind"]) for e in data["errors"] if e["kind"] != "message"] == [
        (str(root / "2020"), "path")
    ]
    # check reads the same trees: an input error, exit 2, the OS reason.
    check = run_unprivileged("check", "--no-config", str(root))
    assert check.returncode == 2
    assert f"mailguard: cannot read {root / '2020'}: Permission denied" in check.stderr


def test_unreadable_source_is_a_failed_source(shared_tmp: Path) -> None:
    root = write_eml_tree(shared_tmp / "eml")
    root.chmod(0o700)
    result = run_unprivileged("scan", "--format", "json", "--no-config", str(root))
    data = json.loads(result.stdout)
    assert result.returncode == 2
    assert data["failed_sources"] == [
        {"source": str(root), "message": "cannot read: Permission denied"}
    ]
    assert data["summary"]["messages"] == 0 and data["summary"]["failed_sources"] == 1


# ---------------------------------------------------------------------------- only regular files


def test_device_symlink_and_fifo_are_error_entries_in_bounded_time(tmp_path: Path) -> None:
    root = write_maildir(tmp_path / "Maildir")
    (root / "cur" / "1590000100.zero:2,S").symlink_to("/dev/zero")
    os.mkfifo(root / "cur" / "1590000101.fifo:2,S")
    (tmp_path / "eml").mkdir()
    (tmp_path / "eml" / "zero.eml").symlink_to("/dev/zero")
    os.mkfifo(tmp_path / "eml" / "fifo.eml")
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "mailguard", "scan", "--format", "json", "--no-config",
         "--jobs", "2", str(root), str(tmp_path / "eml"), str(tmp_path / "eml" / "fifo.eml")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert time.monotonic() - started < 60
    assert "Traceback" not in result.stderr and "MemoryError" not in result.stderr
    data = json.loads(result.stdout)
    messages = {e["source"]: e["message"] for e in data["errors"]}
    assert messages[str(root / "cur" / "1590000100.zero:2,S")] == (
        "cannot read: not a regular file (a character device); only regular files are read"
    )
    assert "(a FIFO)" in messages[str(root / "cur" / "1590000101.fifo:2,S")]
    assert "(a character device)" in messages[str(tmp_path / "eml" / "zero.eml")]
    assert "(a FIFO)" in messages[str(tmp_path / "eml" / "fifo.eml")]
    assert data["summary"]["messages"] == EXPECTED["messages"] + 4
    assert data["summary"]["failed_sources"] == 1  # the FIFO named as a source


def test_check_reads_only_regular_files(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo.eml")
    (tmp_path / "zero.eml").symlink_to("/dev/zero")
    items = list(iter_inputs([str(tmp_path / "fifo.eml"), str(tmp_path / "zero.eml")]))
    assert [i.unreadable for i in items] == [True, True]
    assert "FIFO" in (items[0].error or "") and "character device" in (items[1].error or "")


def test_size_cap_is_an_error_entry_naming_the_cap(tmp_path: Path) -> None:
    big = MESSAGES[1][1] + b"x" * 5000
    (tmp_path / "eml").mkdir()
    (tmp_path / "eml" / "big.eml").write_bytes(big)
    (tmp_path / "eml" / "small.eml").write_bytes(MESSAGES[0][1])
    mbox = tmp_path / "big.mbox"
    mbox.write_bytes(
        b"From a@b.example Mon Jun  1 09:00:00 2020\n" + big.replace(b"\r\n", b"\n") + b"\n"
        b"From a@b.example Mon Jun  1 09:00:01 2020\n" + MESSAGES[0][1].replace(b"\r\n", b"\n")
    )
    config = tmp_path / "mailguard.toml"
    config.write_text("[limits]\nmax_message_bytes = 4000\n")
    result = runner.invoke(
        app, ["scan", "--format", "json", "--config", str(config), str(tmp_path / "eml"),
              str(mbox)],
    )  # fmt: skip
    data = json.loads(result.stdout)
    errors = {e["source"]: e["message"] for e in data["errors"]}
    cap = "over the size cap of 4,000 bytes (limits.max_message_bytes)"
    assert cap in errors[str(tmp_path / "eml" / "big.eml")]
    assert cap in errors[f"{mbox}@0"]
    assert data["summary"]["messages"] == 4 and data["summary"]["pass"] == 2
    assert data["provenance"]["limits"]["max_message_bytes"] == 4000
    item = read_file(tmp_path / "eml" / "big.eml", max_bytes=4000)
    assert item.data is None and cap in (item.error or "")
    assert read_file(tmp_path / "eml" / "big.eml").data == big  # the default cap is larger
    assert Limits().max_message_bytes >= 50 * 1024 * 1024


def test_check_size_cap_applies_to_stdin() -> None:
    (over,) = iter_inputs(["-"], stdin=io.BytesIO(b"x" * 101), max_bytes=100)
    assert over.data is None and "size cap of 100 bytes" in (over.error or "")
    (within,) = iter_inputs(["-"], stdin=io.BytesIO(b"x" * 100), max_bytes=100)
    assert within.data == b"x" * 100


# ---------------------------------------------------------------------------- names


def test_extensions_match_in_any_case(tmp_path: Path) -> None:
    (tmp_path / "A.EML").write_bytes(MESSAGES[1][1])
    (tmp_path / "b.Eml").write_bytes(MESSAGES[0][1])
    (tmp_path / "c.txt").write_bytes(MESSAGES[0][1])
    _, data, _ = scan_json(str(tmp_path))
    assert data["summary"]["messages"] == 2 and data["summary"]["block"] == 1
    assert [i.source for i in iter_inputs([str(tmp_path)])] == [
        str(tmp_path / "A.EML"), str(tmp_path / "b.Eml"),
    ]  # fmt: skip


def test_check_of_a_missing_path_is_an_input_error() -> None:
    result = runner.invoke(app, ["check", "--no-config", "missing.eml"])
    assert result.exit_code == 2
    assert result.stderr == "mailguard: cannot read missing.eml: No such file or directory\n"
    # In the report too (a pipeline keeping only the report must see it), never as clean.
    assert "format" not in result.stdout.lower()
    assert result.stdout.startswith("ERROR  missing.eml  score 100/100\n")
    assert "cannot read: No such file or directory" in result.stdout
    assert result.stdout.endswith("1 message checked: 1 error\n")


# ---------------------------------------------------------------------------- failed sources


def test_failed_source_is_named_in_a_banner_and_is_not_a_message(tmp_path: Path) -> None:
    good = write_mbox(tmp_path / "good.mbox")
    missing = tmp_path / "missing.mbox"
    code, data, _ = scan_json(str(good), str(missing))
    assert code == 2
    assert data["summary"]["messages"] == EXPECTED["messages"]  # not + 1
    assert data["summary"]["error"] == EXPECTED["error"]
    assert data["failed_sources"] == [
        {"source": str(missing), "message": "cannot read: No such file or directory"}
    ]
    # Only the failed source: nothing scanned, and the register must not read as clean.
    code, data, _ = scan_json(str(missing))
    assert code == 2 and data["summary"]["messages"] == 0
    text = runner.invoke(app, ["scan", "--no-config", str(missing)]).stdout
    assert text.startswith("INCOMPLETE: 1 source could not be read")
    assert f"  {missing}: cannot read: No such file or directory" in text
    assert text.splitlines().count("0 messages scanned (no dates): 0 incidents (0 block, 0 warn), "
                                   "0 pass, 0 unreadable") == 1  # fmt: skip
    out = tmp_path / "register.html"
    runner.invoke(app, ["scan", "--no-config", "--format", "html", "-o", str(out), str(missing)])
    html = out.read_text()
    banner = html.index("1 source could not be read")
    assert banner < html.index('id="summary"')
    assert "Not everything could be read" in html
    assert '<span class="n">0</span><span class="l">messages scanned' in html


def test_errors_merged_from_failed_sources_do_not_count_as_messages() -> None:
    tally = Tally()
    tally.add_error("imaps://a@h:993/Sent", "login failed", "source")
    tally.add_error("x/cur", "cannot read: Permission denied", "path")
    tally.add_error("x/cur/1", "cannot read: Permission denied")
    register = Register()
    register.merge(tally)
    summary = register.summary()
    assert (summary["messages"], summary["error"]) == (1, 1)
    assert (summary["failed_sources"], summary["unreadable_paths"]) == (1, 1)
    assert register.incomplete


# ---------------------------------------------------------------------------- provenance


def test_register_records_how_it_was_made(tmp_path: Path) -> None:
    config = tmp_path / "mailguard.toml"
    config.write_text(
        'internal_domains = ["serviceco.example"]\n[scoring]\nwarn_at = 25\nblock_at = 60\n'
        "[rules.MG301]\nenabled = false\n"
    )
    source = str(write_mbox(tmp_path / "sent.mbox"))
    args = ["scan", source, "--config", str(config), "--since", "2020-01-01"]
    data = json.loads(runner.invoke(app, [*args, "--format", "json"]).stdout)
    p = data["provenance"]
    assert p["internal_domains"] == ["serviceco.example"]
    assert p["scoring"] == {"warn_at": 25, "block_at": 60}
    assert "MG301" in p["disabled_rules"] and "MG301" not in p["enabled_rules"]
    assert "MG101" in p["enabled_rules"] and p["rules"]["MG101"]["options"]
    assert p["mode"] == "archived" and p["since"] == "2020-01-01" and p["until"] is None
    assert p["mailguard_version"] and p["rule_set"]["digest"].startswith("sha256:")
    assert p["config_file"] == str(config)
    text = runner.invoke(app, args).stdout
    assert "warn at 25, block at 60; internal domains: serviceco.example" in text
    assert "disabled: MG301" in text
    out = tmp_path / "r.html"
    runner.invoke(app, [*args, "--format", "html", "-o", str(out)])
    html = out.read_text()
    section = html[html.index('<section id="provenance">') :]
    assert "How this register was made" in section and "serviceco.example" in section
    assert "warn at score 25, block at 60" in section and p["rule_set"]["digest"] in section


# ---------------------------------------------------------------------------- Ctrl-C


def test_ctrl_c_keeps_what_the_units_in_progress_judged(tmp_path: Path) -> None:
    """Interrupted before any unit completes, the register still holds what was judged.

    One unit per worker, each far longer than the wait: without partial results the
    register would be empty.
    """
    import signal
    import threading

    from mailguard.archive.scanner import Unit

    one = write_mbox(tmp_path / "one.mbox").read_bytes()
    big = tmp_path / "big.mbox"
    big.write_bytes(one * 3000)
    size = big.stat().st_size
    units = [Unit("mbox", path=str(big), start=0, end=size, size=size)]
    judged: list[int] = []

    def progress(messages: int, _bytes: int) -> None:
        judged.append(messages)

    timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    try:
        register = Scanner(Config(), jobs=1).scan([(str(big), units)], progress=progress)
    finally:
        timer.cancel()
    assert register.interrupted
    assert 0 < register.total.messages < 3000 * len(MESSAGES)
    assert register.total.incidents


def test_parallel_ctrl_c_keeps_partial_units(tmp_path: Path) -> None:
    """Two workers, each on a unit far longer than the wait: interrupted once both have
    spent CPU on judging (evidence of progress, not a fixed sleep), the register holds
    their messages."""
    import signal

    from tests.support.procs import processes

    one = write_mbox(tmp_path / "one.mbox").read_bytes()
    big = tmp_path / "big.mbox"
    with big.open("wb") as f:
        for _ in range(12000):
            f.write(one)
    out = tmp_path / "partial.json"
    # One huge unit per worker, whatever the planner would do.
    proc = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; import mailguard.archive.scanner as s, mailguard.archive.mbox as m; "
         "s._mbox_units = lambda path, jobs: [s.Unit('mbox', path=str(path), start=a, end=b, "
         "size=b - a) for a, b in m.split_ranges(path, 2)]; "
         "from mailguard.cli import main; sys.argv[0] = 'mailguard'; main()",
         "scan", str(big), "--jobs", "2", "--format", "json", "-o", str(out), "--no-config"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        workers = processes(ppid=proc.pid)
        if len(workers) == 2 and all(cpu_seconds(pid) > 0.5 for pid in workers):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the scan finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr.decode()[-2000:]
    data = json.loads(out.read_text())
    assert data["summary"]["interrupted"] is True
    assert 0 < data["summary"]["messages"] < 12000 * len(MESSAGES)
    assert data["summary"]["incidents"] > 0


def test_symlinked_folder_is_reported_not_followed(tmp_path: Path) -> None:
    """A link to a folder could lead anywhere (``/``, a loop): it is named, not walked."""
    root = write_eml_tree(tmp_path / "eml")
    (root / "loop").symlink_to(root)
    (root / "everything").symlink_to("/")
    started = time.monotonic()
    _, data, _ = scan_json(str(root))
    assert time.monotonic() - started < 30
    assert data["summary"]["messages"] == EXPECTED["messages"]
    linked = {e["source"]: e["message"] for e in data["errors"] if e["kind"] == "path"}
    assert set(linked) == {str(root / "loop"), str(root / "everything")}
    assert all("symbolic link to a folder, not followed" in m for m in linked.values())


def test_ctrl_c_while_waiting_on_imap_keeps_the_messages_fetched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ctrl-C arrives while the IMAP reader waits on the server with 150 messages fetched:
    all 150 are judged and in the register, none after them is asked for."""
    import signal

    from mailguard.archive import imap
    from mailguard.commands import scan_run as command

    asked = []

    def fake_iter_imap(*args: object, **kwargs: object) -> Iterator[object]:
        for i in range(150):
            yield imap.Input(f"imaps://a@h:993/Sent;UID={i}", MESSAGES[3][1])
        asked.append("more")
        os.kill(os.getpid(), signal.SIGINT)  # the key, pressed while "waiting"
        time.sleep(5)
        asked.append("after the interrupt")
        yield imap.Input("imaps://a@h:993/Sent;UID=999", MESSAGES[3][1])

    monkeypatch.setattr(imap, "iter_imap", fake_iter_imap)
    monkeypatch.setenv("MAILGUARD_IMAP_PASSWORD", "pw")
    for jobs in ("1", "2"):
        asked.clear()
        result = runner.invoke(
            app, ["scan", "--format", "json", "--no-config", "--jobs", jobs,
                  "imaps://a@h.example/Sent"],
        )  # fmt: skip
        assert result.exit_code == command.EXIT_INTERRUPTED, result.output
        data = json.loads(result.stdout)
        assert data["summary"]["interrupted"] is True
        assert data["summary"]["messages"] == 150 == data["summary"]["warn"]
        assert asked == ["more"]
