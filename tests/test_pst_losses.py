"""A PST readpst reads only in part must not look like a smaller mailbox.

readpst exits 0 when it skips items it cannot parse, and when the file is cut off it reads
what is left: a fuzzer found both losing messages without an error entry. The inputs are
made here from go-pst's ``support.pst`` (17 messages: Drafts 6, Sent Messages 11) the way
the fuzzer made them: one byte changed inside a Drafts item, and the file cut to 935,779 of
its 1,033,216 bytes (two Sent Messages items lost). The losses are found by libpff's count
of each folder (tests/test_pst_census.py); readpst's own skip counts, the fallback without
libpff, are tested at the end.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mailguard.archive import pst
from tests.conftest import ROOT

CORPUS = ROOT.parent / "shared" / "corpus" / "go-pst"
PST = CORPUS / "support.pst"
ANSI = CORPUS / "32-bit.pst"
MESSAGES = 17
CORRUPT_AT, CORRUPT_TO = 0x47A4F, 0x75  # inside a Drafts item: readpst skips that item
CUT_AT = 935_779  # two Sent Messages items lie beyond it
SKIPPED = re.compile(r"^(\d+) of the \d+ message\(s\) the file holds in this folder were not")


def scan(tmp_path: Path, *args: str) -> tuple[int, dict]:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    out = tmp_path / "register.json"
    result = subprocess.run(
        [sys.executable, "-m", "mailguard", "scan", "--no-config", "-q", *args, "-o", str(out)],
        capture_output=True, text=True, timeout=300, env=env, check=False,
    )  # fmt: skip
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(out.read_text())


def corrupt(tmp_path: Path) -> Path:
    data = bytearray(PST.read_bytes())
    assert data[CORRUPT_AT] != CORRUPT_TO
    data[CORRUPT_AT] = CORRUPT_TO
    path = tmp_path / "corrupt.pst"
    path.write_bytes(bytes(data))
    return path


def truncated(tmp_path: Path, source: Path = PST, size: int = CUT_AT) -> Path:
    path = tmp_path / f"cut-{source.name}"
    path.write_bytes(source.read_bytes()[:size])
    return path


def skipped(failed: list[dict]) -> int:
    return sum(int(m.group(1)) for e in failed if (m := SKIPPED.match(e["message"])))


def test_the_intact_pst_has_no_losses(tmp_path: Path) -> None:
    code, data = scan(tmp_path, str(PST))
    assert code == 0
    assert data["failed_sources"] == []
    assert data["summary"]["messages"] == MESSAGES


def test_an_item_readpst_skips_is_an_error_entry_of_its_folder(tmp_path: Path) -> None:
    path = corrupt(tmp_path)
    code, data = scan(tmp_path, str(path), "-f", "json")
    assert code == 2
    [failed] = data["failed_sources"]
    assert failed["source"] == f"{path}:Drafts"
    assert failed["message"].startswith("1 of the 6 message(s) the file holds in this folder")
    assert data["summary"]["messages"] == MESSAGES - 1
    assert data["summary"]["messages"] + skipped(data["failed_sources"]) == MESSAGES


def test_a_truncated_pst_says_so_and_counts_what_readpst_skipped(tmp_path: Path) -> None:
    path = truncated(tmp_path)
    code, data = scan(tmp_path, str(path), "-f", "json")
    assert code == 2
    by_source = {e["source"]: e["message"] for e in data["failed_sources"]}
    assert by_source.pop(str(path)) == (
        f"the file is {CUT_AT} bytes, its header says {PST.stat().st_size}: truncated; "
        "mail stored in the missing part is not in this scan"
    )
    assert list(by_source) == [f"{path}:Sent Messages"]
    assert data["summary"]["messages"] == MESSAGES - 2
    assert data["summary"]["messages"] + skipped(data["failed_sources"]) == MESSAGES


def test_a_folder_not_asked_for_reports_no_loss_but_the_truncation_stays(tmp_path: Path) -> None:
    path = truncated(tmp_path)
    code, data = scan(tmp_path, str(path), "-f", "json", "--pst-folder", "drafts")
    assert code == 2
    assert [e["source"] for e in data["failed_sources"]] == [str(path)]
    assert data["summary"]["messages"] == 6


def test_under_redact_the_loss_names_neither_file_nor_folder(tmp_path: Path) -> None:
    named = tmp_path / "jane.doe@example.org.pst"
    corrupt(tmp_path).rename(named)
    code, data = scan(tmp_path, str(named), "-f", "json", "--redact")
    assert code == 2
    text = json.dumps(data)
    assert "jane.doe" not in text
    assert "Drafts" not in text
    [failed] = data["failed_sources"]
    assert failed["source"].startswith("hmac:")


def test_the_ansi_header_gives_the_size_too() -> None:
    assert pst._truncation(str(ANSI)) == []
    assert pst._truncation(str(PST)) == []


def test_a_cut_ansi_pst_is_a_truncation(tmp_path: Path) -> None:
    path = truncated(tmp_path, ANSI, 40_000)
    [loss] = pst._truncation(str(path))
    assert loss.source == str(path)
    assert loss.message.startswith("the file is 40000 bytes, its header says 65536: truncated")


def test_a_short_or_foreign_file_is_left_to_readpst(tmp_path: Path) -> None:
    short = tmp_path / "short.pst"
    short.write_bytes(PST.read_bytes()[:100])
    other = tmp_path / "other.pst"
    other.write_bytes(b"\0" * 4096)
    assert pst._truncation(str(short)) == []
    assert pst._truncation(str(other)) == []


SUMMARY = b"""Opening PST file and indexes...
Processing Folder "Deleted Items"
Processing Folder "In " - 3 items done"
Processing Folder "Sent"
\t"store" - 3 items done, 15 items skipped.
\t"In " - 3 items done" - 4 items done, 2 items skipped.
\t"Sent" - 11 items done, 0 items skipped.
"""


def test_summary_lines_are_read_whatever_the_folder_is_called() -> None:
    """The store's line (the one no ``Processing Folder`` announced) is excused; a folder
    whose name looks like a summary still counts as itself."""
    losses = pst.skipped("a.pst", SUMMARY)
    assert [(x.source, x.folder) for x in losses] == [
        ('a.pst:In " - 3 items done', 'In " - 3 items done')
    ]
    assert losses[0].message.startswith("2 item(s) readpst skipped")


def test_a_folder_named_like_the_store_is_not_excused() -> None:
    same = SUMMARY.replace(b'"Sent"', b'"store"').replace(b"11 items done, 0", b"9 items done, 2")
    assert [x.message.split()[0] for x in pst.skipped("a.pst", same)] == ["15", "2", "2"]


def test_without_libpff_readpst_skip_counts_stand_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No census (libpff not installed, or its child failed): the corrupt item is still a
    loss, by readpst's own count of what it skipped."""
    monkeypatch.setattr(pst.pst_census, "start", lambda source: None)
    with pst.unpacked(str(corrupt(tmp_path))) as unpacked:
        [loss] = unpacked.losses
    assert loss.folder == "Drafts"
    assert loss.message.startswith("1 item(s) readpst skipped in this folder were not scanned")


def test_a_pst_the_census_finds_no_mail_in_is_read_and_empty(tmp_path: Path) -> None:
    """go-pst's 32-bit.pst holds one calendar item (an appointment) and no mail: readpst
    writes no mail folder, libpff counts no message of a mail class, so the file is listed
    as read with nothing in it, not as a source that failed."""
    status, register = scan(tmp_path, str(ANSI))
    assert status == 0
    assert register["sources"] == [str(ANSI)]
    assert register["summary"]["messages"] == 0
    assert register["errors"] == []
    with pst.unpacked(str(ANSI)) as unpacked:
        assert (unpacked.folders, unpacked.losses, unpacked.mail) == ([], [], 0)


def test_no_mail_folder_without_the_census_is_still_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without a second reader's count, no mail folder may mean readpst read nothing."""
    monkeypatch.setattr(pst.pst_census, "start", lambda source: None)
    with pst.unpacked(str(ANSI)) as unpacked:
        assert unpacked.mail is None
        assert pst.select(str(ANSI), unpacked.folders, [], unpacked.mail) == (
            [], "no folder with mail in it",
        )  # fmt: skip
    # Asked for a folder: a PST without mail has none of that name, census or not.
    assert pst.select(str(ANSI), [], ["Inbox"], 0) == ([], "no folder with mail in it")
    assert pst.select(str(ANSI), [], [], 0) == ([], None)
