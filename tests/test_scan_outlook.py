"""Outlook and Exchange exports: ``.pst``/``.ost`` via readpst, ``.msg`` via msgconvert.

Real files from the shared corpus: go-pst's ``support.pst`` (a Sent Messages and a Drafts
folder) and mail-parser's ``mail_outlook_1`` (a .msg saved from Outlook). mail-parser's
own .msg reading is the cross-check: both go through msgconvert, and must agree.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import mailparser

from tests.conftest import ROOT
from tests.scan_archive import cpu_seconds, write_mbox
from tests.support.procs import processes

CORPUS = ROOT.parent / "shared" / "corpus"
PST = CORPUS / "go-pst" / "support.pst"
MSG = CORPUS / "mail-parser" / "mails" / "mail_outlook_1"


def run(*args: str, tmp: Path, path: str | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI with its own TMPDIR, so what it leaves behind there can be seen."""
    env = {**os.environ, "TMPDIR": str(tmp)}
    if path is not None:
        env["PATH"] = path
    result = subprocess.run(
        [sys.executable, "-m", "mailguard", *args], capture_output=True, text=True,
        timeout=300, env=env, check=False,
    )  # fmt: skip
    assert "Traceback" not in result.stderr, result.stderr
    return result


def scan_json(tmp_path: Path, *args: str, path: str | None = None) -> tuple[int, dict, str]:
    temp = tmp_path / "tmp"
    temp.mkdir(exist_ok=True)
    out = tmp_path / "register.json"
    result = run("scan", "--no-config", "-q", *args, "-o", str(out), tmp=temp, path=path)
    assert not list(temp.iterdir()), "the unpacked PST was left behind"
    return result.returncode, json.loads(out.read_text()), result.stderr


def test_pst_folders_are_sources_and_listed_in_the_register(tmp_path: Path) -> None:
    code, data, _ = scan_json(tmp_path, str(PST))
    assert code == 0
    assert data["sources"] == [f"{PST}:Drafts", f"{PST}:Sent Messages"]
    assert data["summary"]["messages"] == 17
    assert data["summary"]["first_date"] == "2013-12-09T14:06:48Z"
    assert data["summary"]["last_date"] == "2015-03-06T16:21:42Z"

    code, sent, _ = scan_json(tmp_path, str(PST), "--pst-folder", "sent messages")
    assert sent["sources"] == [f"{PST}:Sent Messages"]
    assert sent["summary"]["messages"] == 11


def test_a_folder_the_pst_does_not_have_is_an_error_naming_its_folders(tmp_path: Path) -> None:
    code, data, _ = scan_json(tmp_path, str(PST), "--pst-folder", "Sent Items")
    assert code == 2
    [failed] = data["failed_sources"]
    assert failed["source"] == str(PST)
    assert "no folder named Sent Items (its folders: Drafts, Sent Messages)" in failed["message"]


def test_a_truncated_pst_is_an_error_entry_and_the_rest_is_scanned(tmp_path: Path) -> None:
    broken = tmp_path / "broken.pst"
    broken.write_bytes(PST.read_bytes()[:300_000])
    mbox = write_mbox(tmp_path / "archive.mbox")
    code, data, _ = scan_json(tmp_path, str(broken), str(mbox), "-f", "json")
    assert code == 2
    [failed] = data["failed_sources"]
    assert failed["source"] == str(broken)
    assert "not a readable PST/OST file (readpst:" in failed["message"]
    assert data["summary"]["messages"] == 8  # the mbox, all of it
    assert data["summary"]["incidents"] == 3


def test_readpst_missing_names_the_package(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    result = run("scan", "--no-config", "-q", str(PST), tmp=tmp_path, path=str(empty))
    assert result.returncode == 2
    assert "needs readpst: install the Debian package pst-utils" in result.stderr


def test_an_unchanged_pst_is_not_read_again_with_state(tmp_path: Path) -> None:
    copy = tmp_path / "mail.pst"
    shutil.copy(PST, copy)
    state = tmp_path / "state.db"
    _, first, err = scan_json(tmp_path, str(copy), "--state", str(state), "-f", "json")
    assert f"{copy}:Sent Messages: first scan: 11 message(s) read" in err
    _, again, err = scan_json(tmp_path, str(copy), "--state", str(state), "-f", "json")
    assert f"{copy}:Sent Messages: incremental: 0 new message(s) read, 11 carried" in err
    assert {k: v for k, v in again["summary"].items() if k != "seconds"} == {
        k: v for k, v in first["summary"].items() if k != "seconds"
    }


def test_msg_is_checked_like_the_message_inside_it(tmp_path: Path) -> None:
    result = run("check", "--no-config", "-f", "json", "--show-addresses", str(MSG), tmp=tmp_path)
    assert result.returncode == 0, result.stderr
    [report] = json.loads(result.stdout)["messages"]
    parsed = mailparser.parse_from_file_msg(str(MSG))
    assert report["message_id"] == parsed.message_id
    visible = [entry["address"] for entry in report["addresses"] if entry["header"] == "to"]
    assert visible == [address.lower() for _, address in parsed.to]


def test_msg_files_in_a_folder_are_scanned(tmp_path: Path) -> None:
    folder = tmp_path / "exported"
    folder.mkdir()
    shutil.copy(MSG, folder / "newsletter.MSG")
    (folder / "broken.msg").write_bytes(MSG.read_bytes()[:3000])
    code, data, _ = scan_json(tmp_path, str(folder), "-f", "json")
    assert data["summary"]["messages"] == 2
    assert data["summary"]["pass"] == 1
    [error] = data["errors"]
    assert error["source"].endswith("broken.msg")
    assert "not a readable Outlook .msg file (msgconvert:" in error["message"]
    assert code == 2


def test_msgconvert_missing_names_the_package(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    result = run("check", "--no-config", str(MSG), tmp=tmp_path, path=str(empty))
    assert result.returncode == 2
    assert "install the Debian package libemail-outlook-message-perl" in result.stderr


def test_ctrl_c_removes_the_unpacked_pst(tmp_path: Path) -> None:
    """The PST's private folder lives while the scan does; Ctrl-C still removes it."""
    one = write_mbox(tmp_path / "one.mbox").read_bytes()
    big = tmp_path / "big.mbox"
    big.write_bytes(one * 4000)
    temp = tmp_path / "tmp"
    temp.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailguard", "scan", "--no-config", "-q", str(PST), str(big),
         "--jobs", "2", "-f", "json", "-o", str(tmp_path / "partial.json")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "TMPDIR": str(temp)},
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        unpacked = [p for p in temp.iterdir() if p.name.startswith("mailguard-pst-")]
        # Both pool workers judging: before the pool, the one child is the PST's unpacker
        # (and a Ctrl-C while planning ends the scan with nothing to write).
        workers = processes(ppid=proc.pid)
        if unpacked and len(workers) >= 2 and all(cpu_seconds(pid) >= 0.3 for pid in workers):
            break
        time.sleep(0.05)
    assert unpacked and proc.poll() is None, "the scan ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr.decode()[-2000:]
    assert not [p for p in temp.iterdir() if p.name.startswith("mailguard-pst-")]
    assert json.loads((tmp_path / "partial.json").read_text())["summary"]["interrupted"] is True


def test_pst_folder_without_a_pst_is_a_usage_error(tmp_path: Path) -> None:
    mbox = write_mbox(tmp_path / "archive.mbox")
    result = run("scan", "--no-config", "-q", str(mbox), "--pst-folder", "Sent", tmp=tmp_path)
    assert result.returncode == 2
    assert "--pst-folder names folders of .pst/.ost files, and no source is one" in result.stderr
