"""``scan`` of a folder finds every Maildir in it: a Maildir's own Maildir++ folders
(``.Sent``), a mail server's tree of users' Maildirs (``/var/vmail/domain/user/Maildir``),
Dovecot's ``LAYOUT=fs`` folders.

Why: ``scan ~/Maildir`` read the inbox alone, not the Sent folder beside it, where the
mail a DPO audits is; ``scan /var/vmail`` found no message at all, since Maildir files do
not end in ``.eml``. With ``--state``, a message of a Maildir inside the source is known
by its unique name too, so a flag change there is no "file gone" and no full re-scan.
"""

from __future__ import annotations

import json
from pathlib import Path

from mailguard.archive.incremental import _file_key
from mailguard.archive.maildir import is_maildir, mail_files
from tests.scan_archive import MESSAGES
from tests.test_scan_state import scan, state_lines
from tests.test_scan_state_maildir import path_of, write_maildir

SERVER_FILES = ["dovecot-uidlist", "dovecot.index", "dovecot.index.log", "subscriptions"]
"""What a mail server keeps beside cur/ and new/: never a message, never read."""


def maildir(root: Path, sep: str = ":") -> Path:
    write_maildir(root, sep)
    for name in SERVER_FILES:
        (root / name).write_bytes(b"\x00\x01 not mail")
    return root


def counts(data: dict) -> tuple[int, int, int]:  # type: ignore[type-arg]
    summary = data["summary"]
    return summary["messages"], summary["incidents"], len(data["errors"])


def test_a_maildir_is_scanned_with_its_maildir_plus_plus_folders(tmp_path: Path) -> None:
    home = maildir(tmp_path / "Maildir")
    maildir(home / ".Sent")
    (home / ".Sent" / "maildirfolder").write_bytes(b"")
    maildir(home / ".Archive.2024")
    _, alone, _ = scan(str(home / ".Sent"), str(tmp_path / "sent.json"))
    _, whole, _ = scan(str(home), str(tmp_path / "all.json"))
    messages, incidents, errors = counts(alone)
    assert counts(whole) == (3 * messages, 3 * incidents, 3 * errors)  # no server file read
    assert errors == 1  # MESSAGES' "not-a-message"
    sources = {Path(e["source"]).parent.parent.name for e in whole["errors"]}
    assert sources == {"Maildir", ".Sent", ".Archive.2024"}


def test_a_server_tree_of_users_maildirs_is_scanned(tmp_path: Path) -> None:
    vmail = tmp_path / "vmail"
    users = [vmail / "example.org" / user / "Maildir" for user in ("alice", "bob")]
    for home in users:
        maildir(home)
    maildir(users[1] / "Sent")  # Dovecot LAYOUT=fs: folders as plain subfolders
    (vmail / "example.org" / "exported.eml").write_bytes(MESSAGES[1][1])  # an .eml beside
    (vmail / "example.org" / "notes.txt").write_bytes(b"not mail, not matched")
    code, data, err = scan(str(vmail), str(tmp_path / "r.json"))
    assert code == 2, err  # the unreadable "not-a-message" in each Maildir
    _, one, _ = scan(str(users[0]), str(tmp_path / "one.json"))
    messages, incidents, errors = counts(one)
    assert counts(data) == (3 * messages + 1, 3 * incidents + 1, 3 * errors)


def test_an_empty_tree_still_says_what_it_looked_for(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    code, data, _ = scan(str(tmp_path / "empty"), str(tmp_path / "r.json"))
    assert code == 2
    (error,) = data["errors"]
    assert "no files matching '*.eml' and no Maildir" in error["message"]


def test_an_empty_maildir_is_an_empty_source_not_an_error(tmp_path: Path) -> None:
    for sub in ("cur", "new", "tmp"):
        (tmp_path / "Maildir" / sub).mkdir(parents=True)
    code, data, _ = scan(str(tmp_path / "Maildir"), str(tmp_path / "r.json"))
    assert (code, counts(data)) == (0, (0, 0, 0))


def test_the_walk_lists_each_maildir_once_and_no_server_file(tmp_path: Path) -> None:
    home = maildir(tmp_path / "Maildir")
    maildir(home / ".Sent")
    (home / "cur" / "odd.eml").write_bytes(b"x")  # in cur/: a message like any other
    loose, files, errors = mail_files(home, "*")
    assert errors == [] and loose == []  # nothing outside the Maildirs: no server file
    assert len(files) == len(set(files)) == 2 * len(MESSAGES) + 1
    assert all(f.parent.name in ("cur", "new") for f in files)
    assert all(is_maildir(f.parent.parent) for f in files)


def test_a_nested_maildirs_flag_changes_are_no_new_mail(tmp_path: Path) -> None:
    vmail = tmp_path / "vmail"
    homes = [maildir(vmail / "example.org" / u / "Maildir", sep) for u, sep in
             (("alice", ":"), ("bob", "!"))]  # fmt: skip
    maildir(homes[0] / ".Sent")
    state = tmp_path / "s.state"
    code, first, _ = scan(str(vmail), "--state", str(state), str(tmp_path / "a.json"))
    for home in (*homes, homes[0] / ".Sent"):  # a client reads mail: new/ -> cur/, flags
        for i in range(len(MESSAGES)):
            path = path_of(home, i)
            sep = "!" if "bob" in str(home) else ":"
            base = path.name.split(sep)[0]
            path.rename(home / "cur" / f"{base}{sep}2,RS")
    again_code, again, err = scan(str(vmail), "--state", str(state), str(tmp_path / "b.json"))
    assert code == again_code == 2
    assert state_lines(err) == {
        "vmail": f"incremental: 0 new message(s) read, {3 * len(MESSAGES)} carried over from "
        "the last scan"
    }
    assert comparable_but_paths(first) == comparable_but_paths(again)


def comparable_but_paths(data: dict) -> object:  # type: ignore[type-arg]
    """The register without the file names (renamed) and the run's duration."""
    summary = {k: v for k, v in data["summary"].items() if k != "seconds"}
    incidents = sorted(
        json.dumps({k: v for k, v in i.items() if k != "source"}, sort_keys=True)
        for i in data["incidents"]
    )
    return summary, incidents, len(data["errors"])


def test_keys_of_maildir_messages_and_tree_files_never_meet(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    md = maildir(root / "box")
    (root / "plain" / "cur").mkdir(parents=True)  # a folder named cur, in no Maildir
    tree_file = root / "plain" / "cur" / "x.eml"
    keys = {
        _file_key(root, md / "cur" / "1.M1P1.host:2,S", is_maildir),
        _file_key(root, md / "new" / "1.M1P1.host", is_maildir),
        _file_key(md, md / "cur" / "1.M1P1.host:2,RS", is_maildir),
        _file_key(root, tree_file, is_maildir),
    }
    assert keys == {"box//1.M1P1.host", "1.M1P1.host", "plain/cur/x.eml"}
