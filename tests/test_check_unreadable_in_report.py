"""``check``: every input that could not be read is in the report, not only on stderr.

Why: a pipeline that keeps only ``-o report.json`` (or the SARIF, or the text) must see
each failed input, counted in the summary's ``error``, with its reason, as ``scan`` lists
its errors. A fuzzer found a FIFO, a dangling link, a corrupt or bombed gzip reported only
on stderr while the report said ``"error": 0``.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mailguard.cli import app
from tests.conftest import EXAMPLES, eml

runner = CliRunner()

CAP = 20_000
"""``[limits] max_message_bytes`` for these runs, so a bomb of a few hundred bytes passes it."""
GOOD = ("good-a.eml", "good-b.eml")
UNREAD = ("bomb.eml", "corrupt.eml", "dangling.eml", "pipe.eml")
"""Inputs that cannot be read at all (``evidence.unreadable``)."""
EMPTY = "empty.eml"
"""Read, but not a message: an MG001 ``error`` as it always was."""
FAILED = (*UNREAD, EMPTY)


def build(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / GOOD[0]).write_bytes(eml("From: a@corp.example\nTo: b@corp.example\nSubject: hi"))
    (folder / GOOD[1]).write_bytes((EXAMPLES / "01-contact-tracers-cc.eml").read_bytes())
    os.mkfifo(folder / "pipe.eml")
    (folder / "dangling.eml").symlink_to(folder / "gone.eml")
    (folder / "corrupt.eml").write_bytes(gzip.compress(eml("From: a@example.org"))[:-12])
    (folder / "bomb.eml").write_bytes(gzip.compress(b"\x00" * (CAP * 50), compresslevel=9))
    (folder / EMPTY).write_bytes(b"")
    return folder


@pytest.fixture()
def config(tmp_path: Path) -> Path:
    path = tmp_path / "mailguard.toml"
    path.write_text(f"[limits]\nmax_message_bytes = {CAP}\n")
    return path


def check(config: Path, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["check", "--config", str(config), *args])
    return result.exit_code, result.stdout, result.stderr


def by_name(doc: dict) -> dict[str, dict]:
    return {Path(m["source"]).name: m for m in doc["messages"]}


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_json_report_file_holds_every_failed_input(tmp_path: Path, config: Path, jobs: str) -> None:
    folder = build(tmp_path / "mail")
    out = tmp_path / "report.json"
    status, _, stderr = check(config, str(folder), "-o", str(out), "--jobs", jobs)
    assert status == 2
    doc = json.loads(out.read_text())
    entries = by_name(doc)
    assert set(entries) == {*GOOD, *FAILED}
    assert doc["summary"]["messages"] == len(GOOD) + len(FAILED)
    assert doc["summary"]["error"] == len(FAILED)
    for name in FAILED:
        (finding,) = entries[name]["findings"]
        assert entries[name]["verdict"] == "error" and finding["code"] == "MG001"
        assert finding["message"].startswith("message could not be checked: ")
        assert finding["evidence"].get("unreadable", False) is (name in UNREAD)
    reasons = {n: entries[n]["findings"][0]["message"] for n in UNREAD}
    assert "more than the size cap of 20,000 bytes" in reasons["bomb.eml"]
    assert "cut off" in reasons["corrupt.eml"]
    assert "No such file or directory" in reasons["dangling.eml"]
    assert "not a regular file" in reasons["pipe.eml"]
    for name in GOOD:
        assert entries[name]["verdict"] != "error"
    for name in UNREAD:  # the stderr line stays, for a person watching the run
        assert f"cannot read {folder / name}: " in stderr


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_text_and_sarif_list_them_too(tmp_path: Path, config: Path, jobs: str) -> None:
    folder = build(tmp_path / "mail")
    status, text, _ = check(config, str(folder), "--format", "text", "--jobs", jobs)
    assert status == 2
    for name in FAILED:
        assert f"ERROR  {folder / name}  score 100/100" in text
    assert text.rstrip().endswith(f"{len(FAILED)} error")
    status, sarif, _ = check(config, str(folder), "--format", "sarif", "--jobs", jobs)
    assert status == 2
    run = json.loads(sarif)["runs"][0]
    uris = {Path(r["artifactLocation"]["uri"]).name for r in _locations(run) if r}
    assert set(FAILED) <= uris
    assert run["invocations"][0]["executionSuccessful"] is False
    errors = [r for r in run["results"] if r["ruleId"] == "MG001"]
    assert len(errors) == len(FAILED)


def _locations(run: dict) -> list[dict]:
    return [loc["physicalLocation"] for r in run["results"] for loc in r["locations"]]


def test_jobs_two_reports_what_one_reports(tmp_path: Path, config: Path) -> None:
    folder = build(tmp_path / "mail")
    one = check(config, str(folder), "--format", "json", "--jobs", "1")
    two = check(config, str(folder), "--format", "json", "--jobs", "2")
    assert one == two


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_redact_hides_an_address_in_the_path(tmp_path: Path, config: Path, jobs: str) -> None:
    folder = build(tmp_path / "jane.doe@example.org")
    out = tmp_path / "report.json"
    status, _, stderr = check(config, str(folder), "--redact", "-o", str(out), "--jobs", jobs)
    assert status == 2
    raw = out.read_text()
    doc = json.loads(raw)
    assert doc["summary"]["error"] == len(FAILED)
    status, text, stderr_text = check(config, str(folder), "--redact", "--jobs", jobs)
    assert status == 2
    for shown in (raw, text, stderr, stderr_text):
        assert "jane.doe" not in shown and "example.org" not in shown
        assert "No such file" not in shown and "size cap" not in shown  # reasons withheld
    failed = [m for m in doc["messages"] if m["verdict"] == "error"]
    assert len(failed) == len(FAILED)
    assert all(m["source"].startswith("hmac:") for m in doc["messages"])
    assert sum(m["findings"][0]["evidence"].get("unreadable", False) for m in failed) == 4
    assert text.count("ERROR  hmac:") == len(FAILED)
