"""libpff's count of a PST against what readpst unpacked (mailguard/archive/pst_census.py).

What must hold: mail readpst leaves out is an error entry with its count, wherever the
cause (a folder named "Deleted Items", a corrupt item, a folder libpst does not see as
one); an empty folder, a task or a sticky note is none; a census that fails, crashes or
hangs costs the scan nothing but the fallback to readpst's counts.

Real files: go-pst's ``support.pst``, and a copy in which the folder names "Sent Messages"
and "Deleted Items" (13 characters each) trade places, so that its 11 sent messages lie in
"Deleted Items", a folder readpst leaves out unless told (``-D``). The file is stored with
compressible encryption (a byte substitution), so the names are swapped by finding their
encoded forms: the substitution keeps which bytes of a name are equal, and that pattern,
with the bytes the first name gives away, picks out both names.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from mailguard.archive import pst, pst_census
from mailguard.archive.pst_census import FolderCount
from tests.conftest import ROOT

PST = ROOT.parent / "shared" / "corpus" / "go-pst" / "support.pst"
TOP = "Top of Personal Folders"


def _encoded(data: bytes, name: str, known: dict[int, int]) -> tuple[list[int], dict[int, int]]:
    """Where ``name`` (UTF-16LE) lies in ``data`` under a byte substitution, and the
    substitution it reveals."""
    plain = name.encode("utf-16-le")
    first: dict[int, int] = {}
    parts = []
    for i, byte in enumerate(plain):
        if byte in first:
            parts.append(b"(?P=g%d)" % first[byte])
            continue
        first[byte] = i
        what = re.escape(bytes([known[byte]])) if byte in known else b"."
        parts.append(b"(?P<g%d>%s)" % (i, what))
    positions, found = [], dict(known)
    for match in re.finditer(b"".join(parts), data, re.DOTALL):
        mapping = {b: match.group(f"g{i}")[0] for b, i in first.items()}
        if len(set(mapping.values())) == len(mapping):
            positions.append(match.start())
            found.update(mapping)
    return positions, found


@pytest.fixture(scope="module")
def deleted_items_pst(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = PST.read_bytes()
    sent, known = _encoded(data, "Sent Messages", {})
    deleted, known = _encoded(data, "Deleted Items", known)
    assert len(sent) == 4 and len(deleted) == 3  # the folder's records, and its table rows

    def encode(name: str) -> bytes:
        return bytes(known[b] for b in name.encode("utf-16-le"))

    out = bytearray(data)
    for at in sent:
        out[at : at + 26] = encode("Deleted Items")
    for at in deleted:
        out[at : at + 26] = encode("Sent Messages")
    path = tmp_path_factory.mktemp("pst") / "deleted-items.pst"
    path.write_bytes(bytes(out))
    return path


def scan(tmp_path: Path, *args: str) -> tuple[int, dict]:
    out = tmp_path / "register.json"
    result = subprocess.run(
        [sys.executable, "-m", "mailguard", "scan", "--no-config", "-q", *args, "-o", str(out)],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )  # fmt: skip
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(out.read_text())


def test_the_census_of_a_real_pst() -> None:
    counted = pst_census.census(str(PST))
    mail = {"/".join(f.path): f.kinds for f in counted if f.kinds}
    assert mail == {f"{TOP}/Drafts": {"mail": 6}, f"{TOP}/Sent Messages": {"mail": 11}}
    empty = {f.path[-1] for f in counted if f.path and not f.kinds}
    # The 15 items readpst reports skipped in the store are these empty folders.
    assert {"Posta in arrivo", "Attività", "Note", "Deleted Items"} <= empty


def test_only_the_ipm_subtree_is_counted_where_the_store_names_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The search folders beside "Top of Personal Folders" list other folders' messages:
    counted, they would double the mail expected. Where the store does not name its IPM
    subtree, every folder is counted (a false alarm rather than a missed loss)."""
    roots = {f.path[0] for f in pst_census.census(str(PST)) if f.path}
    assert roots == {TOP}
    monkeypatch.setattr(pst_census, "_ipm_subtree", lambda pst: None)
    roots = {f.path[0] for f in pst_census.census(str(PST)) if f.path}
    assert roots == {TOP, "SPAM Search Folder 2", "Search Root"}


def test_mail_in_deleted_items_is_scanned(tmp_path: Path, deleted_items_pst: Path) -> None:
    counted = pst_census.census(str(deleted_items_pst))
    assert {f.path[-1]: f.kinds["mail"] for f in counted if f.kinds} == {
        "Drafts": 6,
        "Deleted Items": 11,
    }
    code, data = scan(tmp_path, str(deleted_items_pst), "-f", "json")
    assert data["failed_sources"] == []
    assert data["summary"]["messages"] == 17
    assert f"{deleted_items_pst}:Deleted Items" in data["sources"]
    assert code == 0


def test_what_readpst_leaves_out_is_a_loss_of_its_folder(deleted_items_pst: Path) -> None:
    """Without ``-D``, readpst leaves "Deleted Items" out and says nothing of it (its
    summary has no line for the folder): the census is what tells."""
    counted = pst_census.census(str(deleted_items_pst))
    [loss] = pst.shortfall("x.pst", counted, Counter({"Drafts": 6}))
    assert loss.source == "x.pst:Deleted Items"
    assert loss.folder == "Deleted Items"
    assert loss.message.startswith("11 of the 11 message(s) the file holds in this folder")


def folder(*path: str, **kinds: int) -> FolderCount:
    return FolderCount((TOP, *path), Counter(kinds))


def test_empty_folders_tasks_and_notes_are_no_loss() -> None:
    counted = [
        FolderCount(()),
        folder(),
        folder("Inbox", mail=3),
        folder("Inbox", "Empty"),
        folder("Tasks", task=4),
        folder("Notes", **{"sticky note": 2}),
        folder("Calendar", appointment=5),
        folder("Posts", other=1),
    ]
    assert pst.shortfall("x.pst", counted, Counter({"Inbox": 3})) == []


def test_an_unreadable_item_counts_as_mail_readpst_must_have_written() -> None:
    counted = [folder("Inbox", mail=3, unreadable=1)]
    assert pst.shortfall("x.pst", counted, Counter({"Inbox": 4})) == []
    [loss] = pst.shortfall("x.pst", counted, Counter({"Inbox": 3}))
    assert loss.message.startswith("1 of the 4 message(s)")


def test_a_nested_folder_and_readpst_directory_names() -> None:
    """readpst turns / \\ : in a name into _; mail at the top of the file (above every
    folder) has the empty path."""
    counted = [folder("a/b:c", "d\\e", mail=2), folder(mail=1)]
    assert pst.shortfall("x.pst", counted, Counter({"a_b_c/d_e": 2, "": 1})) == []
    losses = pst.shortfall("x.pst", counted, Counter({"a_b_c/d_e": 1}))
    assert [(x.source, x.folder) for x in losses] == [
        ("x.pst:(top of the file)", None),
        ("x.pst:a_b_c/d_e", "d_e"),
    ]


def test_names_read_differently_neither_raise_nor_hide_a_loss() -> None:
    """An ANSI file's folder name may decode differently in the two readers: equal totals
    are no loss, and a short total names every short folder."""
    counted = [folder("Café", mail=5), folder("Inbox", mail=2)]
    assert pst.shortfall("x.pst", counted, Counter({"Caf\x82": 5, "Inbox": 2})) == []
    losses = pst.shortfall("x.pst", counted, Counter({"Caf\x82": 5, "Inbox": 1}))
    assert {x.folder: x.message.split()[0] for x in losses} == {"Café": "5", "Inbox": "1"}


@pytest.mark.parametrize(
    ("message_class", "kind"),
    [
        ("IPM.Note", "mail"),
        ("ipm.note.SMIME.MultipartSigned", "mail"),
        ("IPM", "mail"),
        ("REPORT.IPM.Note.NDR", "mail"),
        ("IPM.Schedule.Meeting.Request", "mail"),
        ("IPM.Task", "task"),
        ("IPM.StickyNote", "sticky note"),
        ("IPM.Contact", "contact"),
        ("IPM.Activity", "journal entry"),
        ("IPM.Appointment", "appointment"),
        ("IPM.Post", "other"),
        ("IPMX", "other"),
        ("unknown", "other"),
    ],
)
def test_message_classes_are_read_as_libpst_reads_them(message_class: str, kind: str) -> None:
    assert pst_census.kind(message_class) == kind


def _child(code: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )


def test_a_census_that_fails_crashes_or_hangs_is_none() -> None:
    assert pst_census.finish(_child("print('[{\"path\": 1')"), 30) is None
    assert pst_census.finish(_child("import os; os.abort()"), 30) is None
    assert pst_census.finish(_child("import sys; sys.exit(1)"), 30) is None
    hung = _child("import time; time.sleep(60)")
    start = time.monotonic()
    assert pst_census.finish(hung, 0.5) is None
    assert time.monotonic() - start < 10
    assert hung.returncode is not None  # killed, not left behind


def test_a_file_libpff_cannot_open_is_no_census(tmp_path: Path) -> None:
    other = tmp_path / "other.pst"
    other.write_bytes(b"!BDN" + b"\0" * 4092)
    child = pst_census.start(str(other))
    assert child is not None
    assert pst_census.finish(child, 60) is None


def test_the_census_round_trips_through_its_json() -> None:
    counted = [folder("Inbox", mail=2, other=1), FolderCount(())]
    again = pst_census.from_json(pst_census.to_json(counted))
    assert again == counted


def test_when_readpst_fails_the_census_child_is_not_left_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[subprocess.Popen[bytes]] = []

    def start(source: str) -> subprocess.Popen[bytes]:
        child = _child("import time; time.sleep(60)")  # a census that would run on
        started.append(child)
        return child

    monkeypatch.setattr(pst_census, "start", start)
    broken = tmp_path / "broken.pst"
    broken.write_bytes(b"!BDN" + b"\0" * 4092)
    with pytest.raises(pst.PstError), pst.unpacked(str(broken)):
        pass
    [child] = started
    assert child.returncode is not None


def test_the_counts_cost_linear_time(tmp_path: Path) -> None:
    """Matching the census against what readpst wrote, and counting (and steadying) an
    unpacked mbox: twice the folders or messages, about twice the time."""
    from tests.support.doubling import assert_doubling_linear

    def prepare(n: int) -> Callable[[], object]:
        counted = [folder(f"f{i}", mail=3) for i in range(n)]
        found = Counter({f"f{i}": 3 for i in range(n - 1)})
        mbox = tmp_path / f"mbox-{n}"
        one = (b"From \"x\" Mon Jan  6 09:00:00 2020\nSubject: s\nContent-Type: multipart/mixed;"
               b" boundary=\"--LibPST-iamunique-123456_-_-\"\n\nFrom here on\n\n")  # fmt: skip
        data = one * n

        def work() -> object:
            mbox.write_bytes(data)
            assert pst._steady_boundaries(mbox) == n
            return pst.shortfall("x.pst", counted, found)

        return work

    assert_doubling_linear(prepare, (4000, 8000), what="the folders and messages")
