"""A second reader's count of what a PST holds, to prove readpst's unpacking complete.

readpst exits 0 after leaving mail out in ways its summary lines do not tell apart:

* its "items skipped" count lumps corrupt items with empty folders (libpst sees a folder
  without contents as an item of no known kind), tasks and sticky notes, so taking it as a
  loss gives false alarms on intact files, and leaving it out would hide real losses;
* it does not descend into a folder libpst does not recognise as one, counting the folder
  as one skipped item however many messages it holds;
* it writes a message found in a folder of another kind (a contact folder, say) nowhere.

libpff (``pypff``, from libyal, fuzzed in OSS-Fuzz) reads the same file independently.
Its count of the mail each folder holds, classified by message class the way libpst
classifies it, is what readpst must have written: a folder whose unpacked mbox holds
fewer is a loss, with the number; an empty folder or a task is nothing.

The census runs as a child process (``python -m mailguard.archive.pst_census FILE``) with
a time and memory limit: a hostile file that crashed or hung the C library would otherwise
take the scan with it. Its answer is one JSON line on stdout; no message content leaves it,
only folder names and counts.
"""

from __future__ import annotations

import importlib.util
import json
import os
import resource
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

MEMORY_LIMIT = 4 * 1024**3
"""Address space of the census process: libpff caches blocks, not the file."""

MAIL = "mail"
"""The kind readpst writes into a folder's mbox (libpst's NOTE, SCHEDULE and REPORT)."""
UNREADABLE = "unreadable"
"""An item libpff lists but cannot open: counted, so that readpst must account for it."""

# libpst's reading of PR_MESSAGE_CLASS (libpst.c, case 0x001A): case-insensitive prefixes,
# in its order. What it maps to NOTE, SCHEDULE or REPORT readpst writes as mail.
_KINDS = (
    ("ipm.note", MAIL),
    ("ipm.contact", "contact"),
    ("report.ipm.note", MAIL),
    ("ipm.activity", "journal entry"),
    ("ipm.appointment", "appointment"),
    ("ipm.schedule.meeting", MAIL),
    ("ipm.stickynote", "sticky note"),
    ("ipm.task", "task"),
)


def kind(message_class: str) -> str:
    """libpst's kind of a message class; ``other`` is what readpst converts to nothing."""
    folded = message_class.casefold()
    if folded == "ipm":
        return MAIL
    for prefix, name in _KINDS:
        if folded.startswith(prefix):
            return name
    return "other"


@dataclass
class FolderCount:
    path: tuple[str, ...]
    """Folder names from the root folder down (the first is the IPM subtree, which readpst
    starts below)."""
    kinds: Counter[str] = field(default_factory=Counter)


def census(path: str) -> list[FolderCount]:
    """Every folder and the kinds of the messages in it. Raises ``OSError`` when libpff
    cannot open the file at all."""
    import pypff  # type: ignore[import-not-found]  # only ever in the child process

    pst = pypff.file()
    pst.open(path)
    try:
        return list(_walk(pst.get_root_folder(), (), _ipm_subtree(pst)))
    finally:
        pst.close()


_PR_IPM_SUBTREE_ENTRYID = 0x35E0
_PR_MESSAGE_CLASS = 0x001A
_ERRORS = (OSError, ValueError, TypeError, AttributeError, MemoryError)
"""What libpff raises on a damaged item (pypff reports its own errors as OSError)."""


def _property(item: Any, entry_type: int) -> Any:
    """The entry of ``item``'s first record set with this property id, or ``None``."""
    if not item.number_of_record_sets:
        return None
    record_set = item.get_record_set(0)
    for j in range(record_set.number_of_entries):
        entry = record_set.get_entry(j)
        if entry.entry_type == entry_type:
            return entry
    return None


def _ipm_subtree(pst: Any) -> int | None:
    """The node id of the folder readpst starts from (the message store's IPM subtree, "Top
    of Personal Folders" in any language): its entry id ends with it (MS-PST 2.4.3.2).
    Beside it under the root lie the search folders, whose contents are other folders'
    messages and would count them twice. ``None`` when the store does not say."""
    try:
        entry = _property(pst.get_message_store(), _PR_IPM_SUBTREE_ENTRYID)
        data = bytes(entry.data or b"") if entry is not None else b""
    except _ERRORS:
        return None
    return int.from_bytes(data[20:24], "little") if len(data) == 24 else None


def _walk(folder: Any, path: tuple[str, ...], only: int | None = None) -> Iterator[FolderCount]:
    """``folder`` and those below it; at the root, ``only`` the IPM subtree if it is one of
    the root's folders (else every folder: better a false alarm than a missed loss)."""
    count = FolderCount(path)
    for i in range(_number(folder, "number_of_sub_messages")):
        try:
            message = folder.get_sub_message(i)
            cls = _message_class(message)
        except _ERRORS:
            count.kinds[UNREADABLE] += 1
            continue
        count.kinds[kind(cls)] += 1
    yield count
    subs = []
    for i in range(_number(folder, "number_of_sub_folders")):
        try:
            sub = folder.get_sub_folder(i)
            subs.append((sub, sub.name or "", sub.identifier))
        except _ERRORS:
            continue  # no name, no messages to count: readpst cannot read it either
    if only is not None and any(nid == only for _, _, nid in subs):
        subs = [s for s in subs if s[2] == only]
    for sub, name, _ in subs:
        yield from _walk(sub, (*path, name))


def _number(folder: Any, attribute: str) -> int:
    try:
        return int(getattr(folder, attribute))
    except _ERRORS:
        return 0


def _message_class(message: Any) -> str:
    """PR_MESSAGE_CLASS of the message; libpst reads a message without one as ``unknown``
    (kind ``other``)."""
    entry = _property(message, _PR_MESSAGE_CLASS)
    value = entry.get_data_as_string() if entry is not None else None
    return str(value) if value else "unknown"


def to_json(folders: list[FolderCount]) -> str:
    return json.dumps([{"path": list(f.path), "kinds": dict(f.kinds)} for f in folders])


def from_json(text: str) -> list[FolderCount]:
    """The child's answer; ``ValueError`` when it is not one (a crash mid-line, say)."""
    out = []
    for item in json.loads(text):
        if not isinstance(item, dict):
            raise ValueError("not a census")
        path = tuple(str(p) for p in item["path"])
        kinds = Counter({str(k): int(v) for k, v in item["kinds"].items()})
        out.append(FolderCount(path, kinds))
    return out


def start(path: str) -> subprocess.Popen[bytes] | None:
    """The census of ``path`` in a child process, running beside readpst; ``None`` when
    libpff is not installed (the scan then falls back to readpst's own counts)."""
    if importlib.util.find_spec("pypff") is None:  # not imported here: see the docstring
        return None
    return subprocess.Popen(
        [sys.executable, "-m", __name__, os.path.abspath(path)],  # noqa: PTH100
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )


def finish(child: subprocess.Popen[bytes], timeout: float) -> list[FolderCount] | None:
    """The census, or ``None`` when the child failed, crashed or ran out of time."""
    try:
        out, _ = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        return None
    if child.returncode != 0:
        return None
    try:
        return from_json(out.decode("utf-8"))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def main(argv: list[str]) -> int:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    try:
        folders = census(argv[0])
    except (OSError, MemoryError, ValueError, TypeError):
        return 1
    sys.stdout.write(to_json(folders) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
