"""Feeding sources to the history learner, reading only what arrived since the last run.

``mailguard learn`` is meant to run every night on the same Sent folders, so each source
remembers (in the store, under a keyed hash of its name) where the last run stopped:

* an **mbox**: the offset of the last message read and a keyed hash of the 4 KB before
  it. The next run starts there (that message is read again: it may have been half
  written); a file that is shorter now, or whose bytes before the offset changed (a client
  compacted or rewrote it), is read again from the start;
* a **Maildir** or a folder of ``.eml`` files: the (hashed) names of the files read;
  Maildir flags after ``:`` are ignored, since a client renames a file when it is read;
* an **IMAP** folder: UIDVALIDITY and the last UID read, as ``scan --state`` keeps them
  (:class:`~mailguard.archive.imap_resume.ImapResume`); a new UIDVALIDITY (the server
  renumbered the folder) or deleted old messages mean reading it all again.

Reading again never counts a message twice: the learner recognises a message it has
already learned by its hashed Message-ID.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailguard.archive.imap import iter_imap, parse_imap_url
from mailguard.archive.imap_resume import ImapResume
from mailguard.archive.imap_url import is_imap_url
from mailguard.archive.maildir import is_maildir, maildir_files, read_files, unique_name
from mailguard.archive.mbox import iter_mbox, looks_like_mbox, stopped_reading
from mailguard.history.extract import observe
from mailguard.history.keys import Hasher
from mailguard.history.learner import Learner
from mailguard.history.store import HistoryStore
from mailguard.sources import MAX_BYTES, Input, find_files, is_folder, read_file

TAIL_BYTES = 4096


@dataclass
class FeedResult:
    """What one source gave, for the command's per-source line (counts only)."""

    kind: str
    read: int = 0
    skipped: int = 0
    """Messages (or for an mbox, bytes) not read because an earlier run had read them."""
    skipped_unit: str = "messages"
    unreadable: int = 0
    note: str = ""
    error: str = ""


def feed(
    source: str,
    learner: Learner,
    *,
    pattern: str = "*.eml",
    password: Callable[[Any], str] | None = None,
) -> FeedResult:
    """Learn the new messages of ``source``; its state is saved once they are written."""
    if is_imap_url(source):
        return _imap(source, learner, password)
    path = Path(source)
    if is_folder(path):
        if is_maildir(path):
            files, unread = maildir_files(path)
            return _files(path, "maildir", files, unread, learner)
        found, unread = find_files(path, pattern)
        return _files(path, "files", found, unread, learner)
    if looks_like_mbox(path):
        return _mbox(path, learner)
    item = read_file(path)
    if item.data is None:
        return FeedResult("file", error=f"cannot read {source}: {item.error}")
    learner.add(observe(item.data))
    return FeedResult("file", read=1)


def _key(store: HistoryStore, kind: str, name: str) -> int:
    return store.hash(Hasher.SOURCE, f"{kind}:{name}")


def _state(store: HistoryStore, source: int) -> dict[str, Any]:
    row = store.db.execute("SELECT state FROM sources WHERE source = ?", (source,)).fetchone()
    if row is None:
        return {}
    try:
        state = json.loads(row[0])
    except ValueError:
        return {}
    return state if isinstance(state, dict) else {}


def _save(learner: Learner, source: int, kind: str, state: dict[str, Any]) -> None:
    learner.flush()  # the messages first: a crash in between reads them again, no harm
    with learner.store.transaction() as db:
        db.execute(
            "INSERT INTO sources VALUES (?, ?, ?) ON CONFLICT (source) DO UPDATE SET "
            "kind = excluded.kind, state = excluded.state",
            (source, kind, json.dumps(state)),
        )


def _mbox(path: Path, learner: Learner) -> FeedResult:
    store = learner.store
    source = _key(store, "mbox", str(path.resolve()))
    state = _state(store, source)
    size = path.stat().st_size
    start = int(state.get("offset", 0))
    result = FeedResult("mbox", skipped_unit="bytes")
    if start and (start > size or state.get("tail") != _tail(store, path, start)):
        result.note = "the mbox was rewritten since the last run: read again from the start"
        start = 0
    result.skipped = start
    # The next run starts at the last message's From_ line and reads it again (the learner
    # knows it by its Message-ID): it may have been half written when this run read it.
    offset = start
    for item in iter_mbox(path, start, size):
        if stopped_reading(item):  # shrank or failed under us: resume before it next time
            result.note = (
                "reading stopped before the end (the mbox shrank or failed while it was "
                "read); the next run reads on from the last message read"
            )
            result.unreadable += 1
            break
        offset = int(item.source.rpartition("@")[2]) if "@" in item.source else offset
        if item.incomplete or (item.data is None and "cut off" in (item.error or "")):
            result.note = "the last message is incomplete; it is read on the next run"
            break
        if item.data is None:
            result.unreadable += 1
            continue
        result.read += 1
        learner.add(observe(item.data))  # reads only the header block
    _save(learner, source, "mbox", {"offset": offset, "tail": _tail(store, path, offset)})
    return result


def _tail(store: HistoryStore, path: Path, offset: int) -> int:
    """A keyed hash of the bytes just before ``offset`` (0 when there are none)."""
    if offset <= 0:
        return 0
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        data = os.pread(fd, min(TAIL_BYTES, offset), max(0, offset - TAIL_BYTES))
    finally:
        os.close(fd)
    return store.hash(Hasher.SOURCE, hashlib.sha256(data).hexdigest())


def _files(
    root: Path, kind: str, files: list[Path], unread: list[Input], learner: Learner
) -> FeedResult:
    store = learner.store
    source = _key(store, kind, str(root.resolve()))
    result = FeedResult(kind, unreadable=len(unread))
    if unread:
        result.note = f"{len(unread)} folder(s) could not be listed"
    seen = {
        r[0] for r in store.db.execute("SELECT name FROM seen_files WHERE source = ?", (source,))
    }
    new: list[int] = []
    renamed: list[int] = []
    todo: list[tuple[str, int]] = []
    for file in files:
        name = unique_name(file.name) if kind == "maildir" else str(file.relative_to(root))
        key = store.hash(Hasher.NAME, name)
        if key in seen:
            result.skipped += 1
        elif kind == "maildir" and _legacy(store, file.name, name) in seen:
            result.skipped += 1  # fed by an older version under its name with its info
            renamed.append(key)
        else:
            todo.append((str(file), key))
    # read_files: a Maildir message the client renamed since the listing is still read
    for (_, key), item in zip(todo, read_files((f for f, _ in todo), MAX_BYTES), strict=True):
        if item.data is None:
            result.unreadable += 1
            continue
        result.read += 1
        learner.add(observe(item.data))
        new.append(key)
    learner.flush()
    with store.transaction() as db:
        db.executemany(
            "INSERT OR IGNORE INTO seen_files VALUES (?, ?)",
            [(source, k) for k in (*new, *renamed)],
        )
    _save(learner, source, kind, {"files": len(seen) + len(new)})
    return result


def _legacy(store: HistoryStore, name: str, unique: str) -> int | None:
    """The key an older version gave a Maildir file: its name cut at ``:`` only, so with
    the info after ``!`` or ``;`` (``uniq!2,S``); None when that is the unique name."""
    old = name.split(":", 1)[0]
    return store.hash(Hasher.NAME, old) if old != unique else None


def _imap(url: str, learner: Learner, password: Callable[[Any], str] | None) -> FeedResult:
    """New UIDs only, as ``scan --state`` reads them (:class:`ImapResume`): the whole folder
    again when its UIDVALIDITY changed or messages read before were deleted."""
    store = learner.store
    target = parse_imap_url(url)
    secret = password(target) if password is not None else ""
    source = _key(store, "imap", target.label())
    state = _state(store, source)
    validity = state.get("uidvalidity")
    resume = ImapResume(
        int(validity) if validity is not None else None,
        int(state.get("last_uid", 0)),
        int(state.get("count", 0)),
    )
    result = FeedResult("imap")
    for item in iter_imap(target, secret, needs_body=lambda headers: False, resume=resume):
        if item.data is None:
            result.unreadable += 1
            continue
        result.read += 1
        learner.add(observe(item.data))
    if resume.full is False:
        result.skipped = resume.count
    elif resume.reason:
        result.note = f"{resume.reason}: read again from the start"
    _save(learner, source, "imap", {
        "uidvalidity": resume.seen_uidvalidity, "last_uid": resume.highest,
        "count": resume.seen_count,
    })  # fmt: skip
    return result
