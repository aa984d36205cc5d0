"""Maildir folders: one message per file in ``cur/`` and ``new/`` (``tmp/`` is unfinished).

A Maildir is often scanned while it is in use: the mail client moves a message from
``new/`` to ``cur/`` once it is seen, and renames it whenever its flags change (the part
after ``:``, or after ``!`` or ``;`` where ``:`` cannot be used). A message is the same
message under every such name, its *unique name* (:func:`unique_name`), so it is listed
once, and one that moved between the listing and the reading is read under its new name,
rather than reported missing and its exposure lost.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from mailguard.sources import Input, find_names, is_folder, read_file

SUBDIRS = ("cur", "new")
RELISTS = 3
"""Rounds of fresh listings one :func:`read_files` call makes to find renamed messages: a
client that renames every message during a scan costs a few listings, not one per file."""


def is_maildir(path: Path) -> bool:
    return all(is_folder(path / sub) for sub in ("", *SUBDIRS))


_ALT_INFO = re.compile(r"[!;](?:2,[A-Za-z]*|1,[^!;:/]*)\Z")
"""The info part after an alternative separator: ``!`` (Dovecot's
``maildir_info_separator``, Evolution's alternative flag separator, where ``:`` is not
allowed in file names) or ``;`` (mbsync and Apache James on Windows), followed by info as
the Maildir spec defines it: ``2,`` and flags (ASCII letters: Dovecot's keywords are the
lower-case ones), or ``1,`` and experimental info."""


def unique_name(name: str) -> str:
    """What stays of a Maildir file name when the client changes its flags or moves it.

    The spec's separator is ``:``, which a unique name never holds: the name is cut at the
    first one. ``!`` and ``;`` can be part of a unique name, so the name is cut there only
    when what follows is Maildir info and ends the name (``uniq!2,S``, ``uniq;2,FRS``,
    ``uniq!1,x``): ``a!b.eml`` stays whole. A name that is only info is left as it is.
    """
    if ":" in name:
        return name.split(":", 1)[0]
    found = _ALT_INFO.search(name)
    return name[: found.start()] if found is not None and found.start() > 0 else name


def mail_files(root: Path, pattern: str) -> tuple[list[Path], list[Path], list[Input]]:
    """Every message file of a folder a scan was given: the files matching ``pattern``
    outside any Maildir; then the files of each Maildir found (``root`` itself, its
    Maildir++ folders such as ``.Sent``, the users' Maildirs of a mail server's tree) as
    :func:`maildir_files` lists them, whatever their names; and what could not be listed.

    Why: ``scan ~/Maildir`` read the inbox alone, not the Sent folder beside it, and
    ``scan /var/vmail`` found no message at all (Maildir files do not end in ``.eml``).
    """
    maildirs: list[str] = []
    names, errors = find_names(root, pattern, maildirs=maildirs)
    in_maildirs: list[Path] = []
    for folder in sorted(maildirs, key=lambda f: Path(f).parts):  # the source's own first
        found, unread = maildir_files(Path(folder))
        in_maildirs += found
        errors += unread
    return [Path(name) for name in names], in_maildirs, errors


def maildir_files(path: Path) -> tuple[list[Path], list[Input]]:
    """Every delivered message once, ``cur/`` then ``new/``, each sorted by name, and the
    subfolders that could not be listed (as unreadable inputs, so the gap is reported).

    ``new/`` is listed first: a message the client moves to ``cur/`` meanwhile is then in
    one listing or both (and counted once, under its ``cur/`` name), never in neither.
    Names start with the delivery time, so this is roughly chronological; dot files are
    left out (some clients keep their own state there). Anything else that is not a
    folder is listed, so a file that cannot be read becomes an error entry, not a gap.
    """
    listed: dict[str, dict[str, Path]] = {}
    errors: list[Input] = []
    for sub in reversed(SUBDIRS):
        folder = path / sub
        try:
            listed[sub] = _listing(folder)
        except OSError as exc:
            errors.append(Input(str(folder), None, exc.strerror or str(exc), unreadable=True))
    current = listed.get("cur", {})
    fresh = {u: p for u, p in listed.get("new", {}).items() if u not in current}
    files = [p for _, p in sorted(current.items())] + [p for _, p in sorted(fresh.items())]
    return files, errors


def _listing(folder: Path) -> dict[str, Path]:
    """unique name -> file, for the files of one subfolder; the last name seen wins when a
    rename mid-listing shows both."""
    with os.scandir(folder) as entries:
        return {
            unique_name(entry.name): Path(entry.path)
            for entry in sorted(entries, key=lambda e: e.name)
            if not entry.name.startswith(".") and not _is_dir(entry)
        }


def read_files(
    names: Iterable[str], max_bytes: int, read: Callable[[str, int], Input] = read_file
) -> Iterator[Input]:
    """Each file read (by ``read``: :func:`~mailguard.sources.read_head` reads only the
    header block); a Maildir message renamed since it was listed (``new/`` to ``cur/``,
    or new flags) is read under its new name.

    A message not found under its listed name is set aside and looked up, once the others
    are read, in fresh listings of its Maildir: at most :data:`RELISTS` rounds for the
    whole call, however many were renamed, so the cost stays linear. Still not found,
    it was deleted, and its error entry says so.
    """
    missing: list[str] = []
    for name in names:
        item = read(name, max_bytes)
        if item.data is None and _in_a_maildir(name) and not os.path.lexists(name):
            missing.append(name)
        else:
            yield item
    for _ in range(RELISTS):
        if not missing:
            return
        listings: dict[Path, dict[str, Path]] = {}
        still: list[str] = []
        for name in missing:
            path = Path(name)
            root = path.parent.parent
            if root not in listings:
                listings[root] = _listings(root)
            moved = listings[root].get(unique_name(path.name))
            found = read(str(moved), max_bytes) if moved is not None else None
            if found is None or (found.data is None and not os.path.lexists(moved or name)):
                still.append(name)  # renamed again since this listing, or deleted
            else:
                yield found
        missing = still
    for name in missing:
        yield read(name, max_bytes)  # gone for good: the error entry names it


def _in_a_maildir(name: str) -> bool:
    return Path(name).parent.name in SUBDIRS


def _listings(root: Path) -> dict[str, Path]:
    """unique name -> file over ``new/`` then ``cur/`` (a message in both is in cur/)."""
    found: dict[str, Path] = {}
    for sub in reversed(SUBDIRS):
        try:
            found.update(_listing(root / sub))
        except OSError:
            continue
    return found


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False
