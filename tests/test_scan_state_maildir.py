"""``scan --state`` on a Maildir: a message is known by its unique name, whatever its info.

The info (flags) follows ``:`` as the Maildir spec has it, or ``!`` (Dovecot's
``maildir_info_separator``, Evolution) or ``;`` (mbsync, Apache James) where a file name
cannot hold ``:``. A flag change or the move from ``new/`` to ``cur/``, between two runs or
during one, is no new mail and loses no stored incident; a store written by an older
mailguard (names with their info, full paths) is still used incrementally.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from mailguard.archive.maildir import unique_name
from tests.scan_archive import MESSAGES
from tests.test_scan_state import comparable, scan, state_lines

INCIDENT = 1
"""MESSAGES[1] (``block-40``) is an incident: its Cc exposes 40 addresses."""


def write_maildir(root: Path, sep: str) -> Path:
    """tests.scan_archive.write_maildir's messages, the info after ``sep`` in cur/."""
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i, (_, raw) in enumerate(MESSAGES):
        name = f"{1590000000 + i}.M{i}P1.host"
        if i % 2:
            (root / "cur" / f"{name}{sep}2,S").write_bytes(raw)
        else:
            (root / "new" / name).write_bytes(raw)
    return root


def path_of(maildir: Path, i: int) -> Path:
    """The file of MESSAGES[i] now, wherever it is and whatever its info."""
    unique = f"{1590000000 + i}.M{i}P1.host"
    found = [p for sub in ("cur", "new") for p in (maildir / sub).iterdir()]
    (path,) = [p for p in found if unique_name(p.name) == unique]
    return path


def stored(state: Path, table: str) -> list[str]:
    column = "name" if table == "seen" else "position"
    with closing(sqlite3.connect(state)) as db:
        return sorted(r[0] for r in db.execute(f"SELECT {column} FROM {table}"))


MOVING = """
import json, os, sys
from pathlib import Path
from mailguard.archive.incremental import Incremental
from mailguard.cli import main

planned = Incremental.plan_files

def plan_files(self, *args, **kwargs):
    units = planned(self, *args, **kwargs)
    for old, new in json.loads(os.environ["MOVES"]):  # after the listing, before the reading
        Path(old).rename(new)
    return units

Incremental.plan_files = plan_files
sys.argv[0] = "mailguard"
main()
"""


def scan_moving(moves: list[tuple[Path, Path]], *args: str) -> tuple[int, dict, str]:
    """:func:`scan`, with these files renamed once the source is planned: a client that
    moves or flags messages while the scan runs, at a set moment."""
    out = Path(args[-1])
    env = {**os.environ, "MOVES": json.dumps([[str(a), str(b)] for a, b in moves])}
    result = subprocess.run(
        [sys.executable, "-c", MOVING, "scan", "--no-config", "-q", "-f", "json",
         *args[:-1], "-o", str(out)],
        capture_output=True, text=True, timeout=300, check=False, env=env,
    )  # fmt: skip
    assert "Traceback" not in result.stderr, result.stderr
    assert not json.loads(env["MOVES"]) or not Path(moves[0][0]).exists()
    return result.returncode, json.loads(out.read_text()), result.stderr


@pytest.mark.parametrize(
    ("name", "unique"),
    [
        ("1590000001.M1P1.host:2,S", "1590000001.M1P1.host"),
        ("1590000001.M1P1.host!2,S", "1590000001.M1P1.host"),
        ("1590000001.M1P1.host;2,RS", "1590000001.M1P1.host"),
        ("1590000001.M1P1.host!2,", "1590000001.M1P1.host"),
        ("1590000001.M1P1.host,S=1234,W=1260!2,Sab", "1590000001.M1P1.host,S=1234,W=1260"),
        ("1590000001.M1P1.host!1,experimental", "1590000001.M1P1.host"),
        # Not Maildir info: a unique name may hold "!" or ";".
        ("a!b.eml", "a!b.eml"),
        ("a;b", "a;b"),
        ("report!2,S.eml", "report!2,S.eml"),
        ("x!3,S", "x!3,S"),
        ("!2,S", "!2,S"),
        ("1590000001.M1P1.host", "1590000001.M1P1.host"),
    ],
)
def test_the_unique_name_is_cut_only_at_maildir_info(name: str, unique: str) -> None:
    assert unique_name(name) == unique


@pytest.mark.parametrize("sep", [":", "!", ";"])
def test_moved_to_cur_and_reflagged_between_runs_is_carried_not_new(
    tmp_path: Path, sep: str
) -> None:
    maildir = write_maildir(tmp_path / "Maildir", sep)
    state = tmp_path / "scan.state"
    _, _, err = scan(str(maildir), "--state", str(state), str(tmp_path / "1.json"))
    assert state_lines(err) == {"Maildir": "first scan: 8 message(s) read"}
    assert stored(state, "seen") == sorted(f"{1590000000 + i}.M{i}P1.host" for i in range(8))
    # The client reads every message in new/ (gone from new/, in cur/ with flags) and
    # changes the flags of every one in cur/, the incident's among them.
    for i in range(len(MESSAGES)):
        old = path_of(maildir, i)
        unique = unique_name(old.name)
        old.rename(maildir / "cur" / f"{unique}{sep}2,{'RS' if i % 2 else 'S'}")
    assert not list((maildir / "new").iterdir())

    code, again, err = scan(str(maildir), "--state", str(state), str(tmp_path / "2.json"))
    assert state_lines(err) == {
        "Maildir": "incremental: 0 new message(s) read, 8 carried over from the last scan"
    }
    full_code, full, _ = scan(str(maildir), str(tmp_path / "full.json"))
    assert (code, comparable(again)) == (full_code, comparable(full))
    assert any(i["source"] == str(path_of(maildir, INCIDENT)) for i in again["incidents"])


def test_names_with_an_exclamation_mark_but_no_info_stay_apart(tmp_path: Path) -> None:
    """``a!b`` and ``a!c`` are two messages (a cut at every ``!`` would make them one),
    and a second run finds both again."""
    maildir = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    (maildir / "new" / "msg!b.eml").write_bytes(MESSAGES[INCIDENT][1])
    (maildir / "new" / "msg!c.eml").write_bytes(MESSAGES[0][1])
    (maildir / "new" / "msg!2,S.eml").write_bytes(MESSAGES[2][1])
    state = tmp_path / "scan.state"
    _, first, err = scan(str(maildir), "--state", str(state), str(tmp_path / "1.json"))
    assert state_lines(err) == {"Maildir": "first scan: 3 message(s) read"}
    assert stored(state, "seen") == ["msg!2,S.eml", "msg!b.eml", "msg!c.eml"]
    _, again, err = scan(str(maildir), "--state", str(state), str(tmp_path / "2.json"))
    assert state_lines(err)["Maildir"].startswith("incremental: 0 new message(s) read, 3")
    assert comparable(again) == comparable(first)


@pytest.mark.parametrize("sep", [":", "!"])
def test_renamed_during_the_first_scan_is_stored_by_its_unique_name(
    tmp_path: Path, sep: str
) -> None:
    """Listed as new/X, read as cur/X:2,S: its incident is stored as X, not as the path
    read, so the next run carries it (no 'not found again', no full re-scan)."""
    maildir = write_maildir(tmp_path / "Maildir", sep)
    incident = maildir / "new" / "1590000009.M9P1.host"
    incident.write_bytes(MESSAGES[INCIDENT][1])  # an incident in new/
    state = tmp_path / "scan.state"
    moves = [(incident, maildir / "cur" / f"{incident.name}{sep}2,S")]
    scan_moving(moves, str(maildir), "--state", str(state), str(tmp_path / "1.json"))
    uniques = sorted(unique_name(p.name) for p in (maildir / "cur").iterdir())
    positions = stored(state, "found")
    assert positions and set(positions) <= set(uniques), positions
    assert "1590000009.M9P1.host" in positions

    code, again, err = scan(str(maildir), "--state", str(state), str(tmp_path / "2.json"))
    assert state_lines(err) == {
        "Maildir": "incremental: 0 new message(s) read, 9 carried over from the last scan"
    }
    full_code, full, _ = scan(str(maildir), str(tmp_path / "full.json"))
    assert (code, comparable(again)) == (full_code, comparable(full))


@pytest.mark.parametrize("addresses", [(), ("--show-addresses",)])
@pytest.mark.parametrize("sep", [":", ";"])
def test_an_incident_reflagged_during_an_incremental_scan_is_carried(
    tmp_path: Path, sep: str, addresses: tuple[str, ...]
) -> None:
    """The stored incident's message is renamed after the listing, before it is read again
    (rebuilt from its header block, or judged again for --show-addresses). A new message
    makes the run write the store, with the incident still under its unique name."""
    maildir = write_maildir(tmp_path / "Maildir", sep)
    state = tmp_path / "scan.state"
    scan(str(maildir), "--state", str(state), *addresses, str(tmp_path / "1.json"))
    (maildir / "new" / "1590000009.M9P1.host").write_bytes(MESSAGES[0][1])
    incident = path_of(maildir, INCIDENT)
    moves = [(incident, incident.with_name(f"{unique_name(incident.name)}{sep}2,FS"))]
    code, again, err = scan_moving(
        moves, str(maildir), "--state", str(state), *addresses, str(tmp_path / "2.json")
    )
    assert state_lines(err) == {
        "Maildir": "incremental: 1 new message(s) read, 8 carried over from the last scan"
    }
    full_code, full, _ = scan(str(maildir), *addresses, str(tmp_path / "full.json"))
    assert (code, comparable(again)) == (full_code, comparable(full))
    assert unique_name(incident.name) in stored(state, "found")
    assert all("/" not in p for p in stored(state, "found"))
    # and the run after it carries it again
    _, third, err = scan(str(maildir), "--state", str(state), *addresses, str(tmp_path / "3.j"))
    assert state_lines(err)["Maildir"].startswith("incremental: 0 new message(s) read, 9")
    assert comparable(third) == comparable(full)


def test_a_store_written_by_the_older_keying_is_migrated(tmp_path: Path) -> None:
    """Names kept with their ``!`` info, and the full path of a message renamed during
    that scan: the next scan, after more flag changes, is incremental and keeps every
    incident."""
    maildir = write_maildir(tmp_path / "Maildir", "!")
    state = tmp_path / "scan.state"
    scan(str(maildir), "--state", str(state), str(tmp_path / "1.json"))
    # What an older mailguard wrote for this Maildir:
    with closing(sqlite3.connect(state)) as db, db:
        for sub in ("cur", "new"):
            for path in (maildir / sub).iterdir():
                old = unique_name(path.name)
                db.execute("UPDATE seen SET name = ? WHERE name = ?", (path.name, old))
                position = str(path) if path == path_of(maildir, INCIDENT) else path.name
                db.execute("UPDATE found SET position = ? WHERE position = ?", (position, old))
    positions = stored(state, "found")
    assert str(path_of(maildir, INCIDENT)) in positions and any("!2,S" in p for p in positions)
    for i in (0, 3):  # read since (new/ -> cur/), and flagged
        old = path_of(maildir, i)
        old.rename(maildir / "cur" / f"{unique_name(old.name)}!2,FS")

    code, again, err = scan(str(maildir), "--state", str(state), str(tmp_path / "2.json"))
    assert state_lines(err) == {
        "Maildir": "incremental: 0 new message(s) read, 8 carried over from the last scan"
    }
    full_code, full, _ = scan(str(maildir), str(tmp_path / "full.json"))
    assert (code, comparable(again)) == (full_code, comparable(full))


def test_a_message_an_older_store_counted_under_two_names_means_a_full_rescan(
    tmp_path: Path,
) -> None:
    """An older scan that listed new/X and, renamed meanwhile, cur/X!2,S read X twice: its
    counts are one too many, so the store is not carried over."""
    maildir = write_maildir(tmp_path / "Maildir", "!")
    state = tmp_path / "scan.state"
    scan(str(maildir), "--state", str(state), str(tmp_path / "1.json"))
    twice = path_of(maildir, 3)
    with closing(sqlite3.connect(state)) as db, db:
        db.execute("INSERT INTO seen SELECT label, ? FROM seen LIMIT 1", (twice.name,))
    _, again, err = scan(str(maildir), "--state", str(state), str(tmp_path / "2.json"))
    assert state_lines(err) == {
        "Maildir": "full re-scan: 1 message(s) were read twice by the last scan, under two "
        "names (an older mailguard's Maildir names): 8 message(s) read"
    }
    _, full, _ = scan(str(maildir), str(tmp_path / "full.json"))
    assert comparable(again) == comparable(full)


@pytest.mark.parametrize("older", [False, True])
def test_learn_skips_a_maildir_message_reflagged_after_the_info_separator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, older: bool
) -> None:
    """``learn`` keys Maildir messages by the same unique name: a flag change after ``!``
    is no new mail; a store fed by an older version (names kept with their ``!`` info) is
    still skipped, not read again."""
    from mailguard.archive import learn_feed
    from tests.test_history import REGULAR, cli

    box = tmp_path / "Sent"
    for sub in ("cur", "new", "tmp"):
        (box / sub).mkdir(parents=True)
    for i in range(5):
        (box / "cur" / f"17000000{i}.M1P1.host!2,S").write_text(REGULAR[i])
    store = tmp_path / "h.db"
    if older:
        monkeypatch.setattr(learn_feed, "unique_name", lambda name: name.split(":", 1)[0])
    code, output = cli("learn", "--no-config", "--store", str(store), str(box))
    assert code == 0 and "(maildir): 5 messages read, 0 messages skipped" in output
    monkeypatch.undo()
    code, output = cli("learn", "--no-config", "--store", str(store), str(box))
    assert "(maildir): 0 messages read, 5 messages skipped" in output
    (box / "cur" / "170000000.M1P1.host!2,S").rename(box / "cur" / "170000000.M1P1.host!2,RS")
    code, output = cli("learn", "--no-config", "--store", str(store), str(box))
    assert "(maildir): 0 messages read, 5 messages skipped" in output
