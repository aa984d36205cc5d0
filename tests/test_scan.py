"""``mailguard scan`` over mbox, Maildir and .eml trees: readers, register, outputs, CLI.

The archive in ``tests/scan_archive.py`` has known answers; each source type and each
``--jobs`` setting must give exactly those counts. IMAP is in ``test_scan_imap.py``.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mailguard.archive.maildir import maildir_files
from mailguard.archive.mbox import iter_mbox, looks_like_mbox, split_ranges
from mailguard.archive.register import Register, Tally
from mailguard.archive.scanner import Scanner, plan
from mailguard.cli import app
from mailguard.config import Config
from tests.conftest import ROOT
from tests.scan_archive import (
    EXPECTED,
    MESSAGES,
    P,
    Q,
    cpu_seconds,
    write_eml_tree,
    write_maildir,
    write_mbox,
)
from tests.support.procs import processes

CORPUS = ROOT.parent / "shared" / "corpus"
runner = CliRunner()


def scan_json(*args: str) -> tuple[int, dict]:
    result = runner.invoke(app, ["scan", "--format", "json", "--no-config", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, json.loads(result.stdout)


def summary_of(data: dict) -> dict:
    keys = EXPECTED.keys()
    return {k: data["summary"][k] for k in keys}


# ---------------------------------------------------------------------------- mbox reader


def test_mbox_reader_unquotes_and_splits_only_on_from_lines(tmp_path: Path) -> None:
    text = (
        b"From alice@example.org Mon Jun  1 09:00:00 2020\n"
        b"Subject: one\n\nFrom Russia with love\n>From the start\n>>From deeper\n\n"
        b"From - Mon Jun  1 09:00:01 2020\n"
        b"Subject: two\n\nbody\n"
    )
    path = tmp_path / "a.mbox"
    path.write_bytes(text)
    items = list(iter_mbox(path))
    assert [i.source for i in items] == [f"{path}@0", f"{path}@{text.index(b'From - ')}"]
    assert items[0].data == (
        b"Subject: one\n\nFrom Russia with love\nFrom the start\n>From deeper\n"
    )
    assert items[1].data == b"Subject: two\n\nbody\n"


def test_mbox_reader_handles_crlf_bom_and_a_cut_off_last_message(tmp_path: Path) -> None:
    path = write_mbox(tmp_path / "crlf.mbox", crlf=True)
    items = list(iter_mbox(path))
    assert len(items) == len(MESSAGES)
    assert all(i.data is not None and not i.data.endswith(b"\r\n\r\n") for i in items)
    assert items[1].data is not None and items[1].data.startswith(b"From: hr@serviceco")
    bom = tmp_path / "bom.mbox"
    bom.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert looks_like_mbox(bom) and len(list(iter_mbox(bom))) == len(MESSAGES)
    cut = tmp_path / "cut.mbox"
    cut.write_bytes(path.read_bytes()[:-40])  # the last From_ line and nothing after it
    items = list(iter_mbox(cut))
    assert [i.data is None for i in items] == [False] * (len(MESSAGES) - 1) + [True]
    assert "message cut off" in (items[-1].error or "")
    cut.write_bytes(path.read_bytes()[:-20])  # inside the last message: judged, marked partial
    items = list(iter_mbox(cut))
    assert [i.data is None for i in items] == [False] * len(MESSAGES)
    assert [bool(i.incomplete) for i in items] == [False] * (len(MESSAGES) - 1) + [True]
    assert "message cut off" in items[-1].incomplete


def test_non_mbox_files_are_not_taken_for_mboxes(tmp_path: Path) -> None:
    eml = tmp_path / "x.eml"
    eml.write_bytes(MESSAGES[0][1])
    assert not looks_like_mbox(eml)
    empty = tmp_path / "empty.mbox"
    empty.write_bytes(b"")
    assert not looks_like_mbox(empty) and list(iter_mbox(empty)) == []


@pytest.mark.parametrize("parts", [1, 2, 3, 5, 50])
def test_byte_ranges_cover_every_message_exactly_once(tmp_path: Path, parts: int) -> None:
    path = tmp_path / "big.mbox"
    path.write_bytes(write_mbox(tmp_path / "one.mbox").read_bytes() * 7)
    whole = [(i.source, i.data) for i in iter_mbox(path)]
    ranges = split_ranges(path, parts)
    assert ranges[0][0] == 0 and ranges[-1][1] == path.stat().st_size
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
    pieces = [(i.source, i.data) for s, e in ranges for i in iter_mbox(path, s, e)]
    assert pieces == whole and len(whole) == 7 * len(MESSAGES)


def test_maildir_lists_cur_and_new_not_tmp(tmp_path: Path) -> None:
    root = write_maildir(tmp_path / "Maildir")
    files, errors = maildir_files(root)
    assert len(files) == len(MESSAGES) and errors == []
    assert {f.parent.name for f in files} == {"cur", "new"}


# ---------------------------------------------------------------------------- register


@pytest.mark.parametrize("kind", ["mbox", "crlf-mbox", "maildir", "eml-tree"])
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_register_counts_are_the_known_answers(tmp_path: Path, kind: str, jobs: str) -> None:
    source = {
        "mbox": lambda: write_mbox(tmp_path / "sent.mbox"),
        "crlf-mbox": lambda: write_mbox(tmp_path / "sent.mbox", crlf=True),
        "maildir": lambda: write_maildir(tmp_path / "Maildir"),
        "eml-tree": lambda: write_eml_tree(tmp_path / "eml"),
    }[kind]()
    code, data = scan_json(str(source), "--jobs", jobs)
    assert summary_of(data) == EXPECTED
    assert code == 2  # one unreadable message: an audit must not look clean
    by_id = {i["message_id"]: i for i in data["incidents"]}
    assert set(by_id) == {
        "<block-40@serviceco.example>", "<warn-12@serviceco.example>",
        "<hiv@positivevoices.example>",
    }  # fmt: skip
    hiv = by_id["<hiv@positivevoices.example>"]
    assert hiv["date"] is None and hiv["sensitive_context"] == ["HIV"]
    assert by_id["<block-40@serviceco.example>"]["date"] == "2020-03-01T09:00:00Z"
    assert by_id["<block-40@serviceco.example>"]["recipients"]["personal"] == 40
    assert [i["message_id"] for i in data["incidents"]][-1] == "<hiv@positivevoices.example>"
    assert data["worst"][0] == hiv["source"]
    assert len(data["errors"]) == 1 and "MG001" not in data["errors"][0]["message"]
    assert "exposed_addresses" not in data  # not asked for


def test_bcc_header_in_a_sent_copy_is_not_an_incident(tmp_path: Path) -> None:
    _, data = scan_json(str(write_mbox(tmp_path / "sent.mbox")), "--jobs", "1")
    assert "<bcc@serviceco.example>" not in {i["message_id"] for i in data["incidents"]}


def test_since_and_until_filter_by_date_and_keep_undated(tmp_path: Path) -> None:
    source = str(write_mbox(tmp_path / "sent.mbox"))
    _, data = scan_json(source, "--since", "2020-03-01", "--until", "2020-04-30")
    ids = {i["message_id"] for i in data["incidents"]}
    assert ids == {"<block-40@serviceco.example>", "<warn-12@serviceco.example>",
                   "<hiv@positivevoices.example>"}  # fmt: skip
    assert data["summary"]["messages"] == 4  # two dated in range, the undated, the junk
    _, data = scan_json(source, "--since", "2020-05-01")
    assert {i["message_id"] for i in data["incidents"]} == {"<hiv@positivevoices.example>"}
    result = runner.invoke(app, ["scan", source, "--since", "May 2020"])
    assert result.exit_code == 2 and "YYYY-MM-DD" in result.output
    result = runner.invoke(app, ["scan", source, "--since", "2021-01-01", "--until", "2020-01-01"])
    assert result.exit_code == 2 and "--since is after --until" in result.output


def test_exit_status(tmp_path: Path) -> None:
    clean = tmp_path / "clean"
    clean.mkdir()
    (clean / "a.eml").write_bytes(MESSAGES[0][1])
    assert runner.invoke(app, ["scan", str(clean), "--no-config"]).exit_code == 0
    risky = tmp_path / "risky"
    risky.mkdir()
    (risky / "a.eml").write_bytes(MESSAGES[3][1])  # warn
    assert runner.invoke(app, ["scan", str(risky), "--no-config"]).exit_code == 1
    assert runner.invoke(app, ["scan", str(risky), "--fail-on", "block"]).exit_code == 0
    result = runner.invoke(app, ["scan", str(tmp_path / "missing.mbox")])
    assert result.exit_code == 2 and "no such file" in result.output.lower()


def test_same_register_from_the_scanner_api(tmp_path: Path) -> None:
    path = write_mbox(tmp_path / "sent.mbox")
    units, errors = plan(str(path), jobs=2)
    assert errors == [] and units
    register = Scanner(Config(), jobs=2).scan([(str(path), units)])
    assert register.summary()["unique_exposed_addresses"] == 52
    assert register.exposed == set(P) | set(Q)


# ---------------------------------------------------------------------------- privacy


def test_redaction_hashes_every_address_and_keeps_counts(tmp_path: Path) -> None:
    source = str(write_mbox(tmp_path / "sent.mbox"))
    for fmt in ("json", "csv", "text", "html"):
        out = tmp_path / f"register.{fmt}"
        result = runner.invoke(
            app, ["scan", source, "--redact", "--format", fmt, "-o", str(out), "--no-config"]
        )
        assert result.exit_code == 2, result.output
        text = out.read_text()
        for raw in [*P, *Q, "hr@serviceco.example", "team@positivevoices.example"]:
            assert raw not in text, (fmt, raw)
        assert "Welcome tracers" not in text and "HIV peer support group" not in text
    data = json.loads((tmp_path / "register.json").read_text())
    assert data["redacted"] is True
    assert len(data["exposed_addresses"]) == 52 == data["summary"]["unique_exposed_addresses"]
    assert all(a.startswith("hmac:") for a in data["exposed_addresses"])
    block = next(i for i in data["incidents"] if i["recipients"]["personal"] == 40)
    assert len(block["exposed_addresses"]) == 40 and block["subject"] == "[redacted]"


def test_text_output_shows_counts_not_addresses(tmp_path: Path) -> None:
    result = runner.invoke(app, ["scan", str(write_mbox(tmp_path / "s.mbox")), "--no-config"])
    assert "@gmail.com" not in result.stdout and "@yahoo.com" not in result.stdout
    assert "52 distinct people exposed" in result.stdout
    shown = runner.invoke(
        app, ["scan", str(tmp_path / "s.mbox"), "--show-addresses", "--no-config"]
    )
    assert "p0@gmail.com" in shown.stdout


def test_csv_is_one_row_per_incident_and_defuses_formulas(tmp_path: Path) -> None:
    raw = MESSAGES[1][1].replace(b"Subject: Welcome tracers", b'Subject: =HYPERLINK("x")')
    (tmp_path / "a.eml").write_bytes(raw)
    result = runner.invoke(app, ["scan", str(tmp_path), "--format", "csv", "--no-config"])
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 1
    assert rows[0]["subject"].startswith("'=")
    assert rows[0]["verdict"] == "block" and rows[0]["personal"] == "40"


# ---------------------------------------------------------------------------- robustness


def test_unreadable_file_and_broken_message_are_error_entries(tmp_path: Path) -> None:
    root = write_maildir(tmp_path / "Maildir")
    (root / "cur" / "1590000999.dangling:2,S").symlink_to(tmp_path / "gone")
    _, data = scan_json(str(root))
    assert data["summary"]["messages"] == EXPECTED["messages"] + 1
    assert data["summary"]["error"] == 2
    assert any("no such file" in e["message"].lower() for e in data["errors"])
    assert data["summary"]["incidents"] == 3  # the rest were still scanned


def test_whole_corpus_packed_as_mbox_and_maildir_scans_without_traceback(tmp_path: Path) -> None:
    files = sorted(
        p for p in CORPUS.rglob("*") if p.is_file() and p.suffix not in (".md", ".txt", ".mbox")
    )
    assert len(files) > 400, "../shared/corpus is missing"
    mbox = bytearray()
    maildir = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    for i, f in enumerate(files):
        raw = f.read_bytes()
        (maildir / "cur" / f"{i}.corpus:2,S").write_bytes(raw)
        body = b"\n".join(
            b">" + line if line.lstrip(b">").startswith(b"From ") else line
            for line in raw.split(b"\n")
        )
        mbox += f"From corpus@example.org Mon Jun  1 09:00:{i % 60:02d} 2020\n".encode()
        mbox += body + (b"" if body.endswith(b"\n") else b"\n") + b"\n"
    (tmp_path / "corpus.mbox").write_bytes(bytes(mbox))
    mboxes = [str(p) for p in CORPUS.rglob("*.mbox")]
    for source in ([str(tmp_path / "corpus.mbox")], [str(maildir)], mboxes):
        result = subprocess.run(
            [sys.executable, "-m", "mailguard", "scan", "--format", "json", "--no-config",
             *source], capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert "Traceback" not in result.stderr, result.stderr[-2000:]
        data = json.loads(result.stdout)
        assert data["summary"]["messages"] >= (len(files) if source != mboxes else 41)
        assert not any("internal error" in e["message"] for e in data["errors"])


def test_ctrl_c_stops_cleanly_and_writes_what_was_found(tmp_path: Path) -> None:
    one = write_mbox(tmp_path / "one.mbox").read_bytes()
    big = tmp_path / "big.mbox"
    with big.open("wb") as f:
        for _ in range(6000):
            f.write(one)
    out = tmp_path / "partial.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailguard", "scan", str(big), "--jobs", "2",
         "--format", "json", "-o", str(out), "--no-config"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    # Interrupt on evidence of progress (both workers have spent CPU judging), not after a
    # fixed sleep: a unit can take seconds on a slow machine, and what the workers judged of
    # their units so far must be in the register, finished or not.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        workers = processes(ppid=proc.pid)
        if len(workers) == 2 and all(cpu_seconds(pid) >= 0.3 for pid in workers):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the scan finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr.decode()[-2000:]
    assert b"Traceback" not in stderr
    data = json.loads(out.read_text())
    assert data["summary"]["interrupted"] is True
    assert 0 < data["summary"]["messages"] < 6000 * len(MESSAGES)
    assert data["summary"]["incidents"] > 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("pymp")]


def test_register_keeps_counts_when_it_drops_address_lists() -> None:
    """Without --show-addresses or --redact the register does not hold every incident's
    recipient list (memory grows with people, not incidents x recipients)."""
    from mailguard import Engine

    engine = Engine(Config())

    def tally() -> Tally:
        t = Tally()
        for _, raw in MESSAGES[:4]:
            t.add_report(engine.check(raw, mode="archived"))
        return t

    lean, full = Register(keep_addresses=False), Register()
    lean.merge(tally())
    full.merge(tally())
    assert lean.summary() == full.summary()
    assert all(i.exposed == [] and i.exposed_count for i in lean.incidents)
    assert [i.exposed_count for i in lean.incidents] == [40, 12]
