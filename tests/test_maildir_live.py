"""A Maildir in use: the mail client moves messages from new/ to cur/ and renames them when
their flags change, while the scan runs. Every message is still read once, and none is
reported missing (an exposure lost to a rename)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mailguard.archive import maildir
from mailguard.archive.maildir import maildir_files, read_files


def _message(i: int) -> bytes:
    cc = ", ".join(f"p{i}.{k}@gmail.com" for k in range(12))
    return (
        f"From: hr@org.example\r\nTo: team@org.example\r\nCc: {cc}\r\n"
        f"Subject: list {i}\r\nMessage-ID: <m{i}@org.example>\r\n\r\nHello\r\n"
    ).encode()


def _maildir(root: Path, n: int, where: str = "new") -> Path:
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        name = f"17000{i:05d}.M{i}P1.host" + (":2," if where == "cur" else "")
        (root / where / name).write_bytes(_message(i))
    return root


def test_a_message_seen_in_both_new_and_cur_is_listed_once_under_cur(tmp_path: Path) -> None:
    root = _maildir(tmp_path / "md", 3)
    moved = root / "new" / "1700000001.M1P1.host"
    (root / "cur" / (moved.name + ":2,S")).write_bytes(moved.read_bytes())  # a listing mid-move
    files, errors = maildir_files(root)
    assert not errors
    assert [p.parent.name + "/" + p.name for p in files] == [
        "cur/1700000001.M1P1.host:2,S",
        "new/1700000000.M0P1.host",
        "new/1700000002.M2P1.host",
    ]


def test_moved_or_reflagged_after_listing_is_read_under_its_new_name(tmp_path: Path) -> None:
    root = _maildir(tmp_path / "md", 4)
    (root / "cur" / "1700000003.M3P1.host:2,").write_bytes(
        (root / "new" / "1700000003.M3P1.host").read_bytes()
    )
    (root / "new" / "1700000003.M3P1.host").unlink()
    files, _ = maildir_files(root)
    # The client, after the listing: reads message 0 (new -> cur), flags message 3 in cur,
    # deletes message 1.
    (root / "new" / "1700000000.M0P1.host").rename(root / "cur" / "1700000000.M0P1.host:2,S")
    (root / "cur" / "1700000003.M3P1.host:2,").rename(root / "cur" / "1700000003.M3P1.host:2,RS")
    (root / "new" / "1700000001.M1P1.host").unlink()
    items = list(read_files([str(f) for f in files], 1 << 20))
    read = {i.source.rsplit("/", 2)[-2] + "/" + i.source.rsplit("/", 1)[-1]: i for i in items}
    assert read["cur/1700000000.M0P1.host:2,S"].data == _message(0)
    assert read["cur/1700000003.M3P1.host:2,RS"].data == _message(3)
    assert read["new/1700000002.M2P1.host"].data == _message(2)
    gone = read["new/1700000001.M1P1.host"]
    assert gone.data is None and gone.unreadable  # deleted: an error entry, not a gap
    assert len(items) == 4


def test_renamed_files_cost_a_bounded_number_of_listings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every file deleted after the listing: a few new listings, not one per file."""
    root = _maildir(tmp_path / "md", 400)
    files, _ = maildir_files(root)
    for f in files:
        f.unlink()
    listings = []
    real = maildir._listing
    monkeypatch.setattr(maildir, "_listing", lambda folder: listings.append(folder) or real(folder))
    items = list(read_files([str(f) for f in files], 1 << 20))
    assert all(i.data is None and i.unreadable for i in items) and len(items) == 400
    assert len(listings) == maildir.RELISTS * len(maildir.SUBDIRS)


def test_scan_of_a_maildir_the_client_works_on_loses_nothing(tmp_path: Path) -> None:
    """A real scan process while a 'client' reads every message (new/ -> cur/) and then
    flags it, one at a time, for as long as the scan runs."""
    n = 2000
    root = _maildir(tmp_path / "md", n)
    scan = subprocess.Popen(
        [sys.executable, "-m", "mailguard", "scan", "--no-config", "--format", "json",
         "--jobs", "2", str(root)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    moves = 0

    def client() -> None:
        nonlocal moves
        names = sorted(p.name for p in (root / "new").iterdir())
        renames = [(root / "new" / m, root / "cur" / f"{m}:2,S") for m in names]
        renames += [(root / "cur" / f"{m}:2,S", root / "cur" / f"{m}:2,RS") for m in names]
        for old, new in renames:
            if scan.poll() is not None:
                return
            old.rename(new)
            moves += 1
            time.sleep(0.0005)

    worker = threading.Thread(target=client)
    worker.start()
    out, err = scan.communicate(timeout=300)
    worker.join()
    assert moves > 100, moves  # the scan ran while messages moved
    data = json.loads(out)
    assert data["errors"] == [], (moves, data["errors"][:3])
    assert data["summary"]["messages"] == n, err[-2000:]
    assert data["summary"]["incidents"] == n
    assert data["summary"]["unique_exposed_addresses"] == 12 * n
