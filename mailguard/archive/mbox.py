"""Streaming mbox reading: split on ``From_`` lines in a file view, in byte ranges.

The standard library's ``mailbox.mbox`` builds a table of contents, then parses every
message into an ``email.message.Message`` (~9x slower than a split, per
``../shared/notes/parsing.md``), and it needs the whole file's index before the first
message. Here the file is read a window at a time (:class:`~mailguard.file_view.FileView`)
and cut with ``bytes.find``: memory stays flat in the archive's size, and the scanner can hand
different byte ranges of one 5 GB mbox to different processes, each starting at a
``From_`` line found by :func:`split_ranges`.

Quirks handled:

* ``From_`` lines are recognised only at a line start and only when they look like one
  (``From sender date`` with a time of day), so an unquoted "From here on..." in a body
  does not split a message.
* mboxo and mboxrd quoting (``>From`` / ``>>From``): one ``>`` is removed from such lines
  when one appears in the first 256 KB of a message (all that rules read of a body).
  Both formats agree on that for the common case; the only difference (mboxo's original
  ``>From`` lines) is body text no rule depends on.
* CRLF files: the separator line ends with ``\\r\\n`` and is removed with it.
* A file that shrinks while it is read (a mail client compacting the folder in place) is
  an error entry at the offset where reading stopped, not a crash: a memory map would
  have raised SIGBUS there and killed the process.
* A file cut off in the middle of its last message (no final newline) may be one still
  being written, or one whose writer left out the newline: the message is judged as it is,
  with ``incomplete`` saying so (a finding of the input-limits rule), because its header
  block, and with it any exposure, is usually all there. Only a ``From_`` line with
  nothing after it is an error entry.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from mailguard.file_view import FileShrank, FileView
from mailguard.search import find_via
from mailguard.sources import BOM as _BOM
from mailguard.sources import MAX_BYTES, Input, not_regular, too_large

_FROM = b"From "
_NL_FROM = b"\n" + _FROM
Buffer = bytes | FileView
"""What the splitter walks: a file's view, or an mbox already read (stdin)."""
_SENDER = re.compile(rb"[^ \t\n\r\f\v]*")  # the word after "From " (a run of non-blanks)
_SENDER_ID = re.compile(rb"[@\d]")
_TIME_OF_DAY = re.compile(rb"\d:\d\d")
_QUOTED = re.compile(rb"^>(>*From )", re.MULTILINE)
_LINE_MAX = 1000
# Quoting is undone when a quoted line appears this early: rules read the headers and the
# first text part only, and a 2 MB attachment need not be searched a second time.
_UNQUOTE_WITHIN = 256 * 1024


def looks_like_mbox(path: Path) -> bool:
    """A regular file whose first line (after a byte-order mark) is a ``From_`` line."""
    try:
        with _open_regular(path) as f:
            head = f.read(_LINE_MAX)
    except OSError:
        return False
    return starts_like_mbox(head)


def holds_several_messages(path: Path) -> bool:
    """Whether a file that starts like an mbox has a second ``From_`` line: an mbox of its
    own, not one message saved with its envelope line (as many ``.eml`` exports are).
    One search, which stops at the second ``From_`` line."""
    if not looks_like_mbox(path):
        return False
    try:
        with _open_regular(path) as f:
            view = FileView(f.fileno())
            first = view.find(b"\n")
            return first >= 0 and _next_from_line(view, first + 1, len(view)) < len(view)
    except (OSError, ValueError):  # emptied or shrunk since: judged as a file, said there
        return False


def starts_like_mbox(data: bytes) -> bool:
    """Whether ``data`` starts (after a byte-order mark) with a ``From_`` line."""
    head = data[: _LINE_MAX + len(_BOM)].removeprefix(_BOM)
    return head.startswith(b"From ") and is_from_line(head.split(b"\n", 1)[0])


def is_from_line(line: bytes) -> bool:
    """Whether a line (without its LF) is a ``From_`` separator: ``From sender date``.

    The sender is "-" (Thunderbird), an address, or a numeric id (Gmail Takeout: "From
    1844347792267117879@xxx"); otherwise the line needs a time of day. "From Russia with
    love" at the start of a body line is none of these. Written as one scan of the sender
    word rather than the regex ``From (?:-|\\S*[@\\d]\\S*)(?:[ \\t].*)?\\r?$``, whose
    nested ``\\S*`` backtracked quadratically over a long word that ends in a form feed,
    vertical tab or CR (a 1 MB mbox of such body lines took 170 s).
    """
    if not line.startswith(_FROM):
        return False
    word = _SENDER.match(line, len(_FROM))
    assert word is not None  # the pattern matches the empty string
    sender, rest = word.group(), line[word.end() :]
    blank_next = rest[:1] in (b" ", b"\t")
    if (sender == b"-" or _SENDER_ID.search(sender)) and (blank_next or rest in (b"", b"\r")):
        return True
    return bool(sender) and blank_next and _TIME_OF_DAY.search(rest) is not None


def _is_from_line(mm: Buffer, start: int) -> bool:
    end = mm.find(b"\n", start, start + _LINE_MAX)
    return is_from_line(mm[start : end if end >= 0 else min(len(mm), start + _LINE_MAX)])


def split_ranges(path: Path, parts: int, begin: int = 0) -> list[tuple[int, int]]:
    """Up to ``parts`` byte ranges ``[start, end)`` that each begin at a ``From_`` line,
    covering ``[begin, end of file)`` (``begin`` is itself at a ``From_`` line)."""
    size = path.stat().st_size
    if parts <= 1 or size <= begin:
        return split_at(path, [], begin)
    return split_at(path, [begin + (size - begin) * i // parts for i in range(1, parts)], begin)


def split_at(path: Path, targets: list[int], begin: int = 0) -> list[tuple[int, int]]:
    """Byte ranges ``[start, end)`` covering ``[begin, end of file)``, each beginning at the
    first ``From_`` line at or after one of the ascending offsets ``targets`` (ranges that
    would be empty are left out)."""
    size = path.stat().st_size
    if size <= begin:
        return []
    if not targets:
        return [(begin, size)]
    with path.open("rb") as f:
        # A window at a time: planning a 5 GB mbox does not grow the parent by what the
        # searches skimmed, and a file shrinking meanwhile is an OSError, not SIGBUS.
        view = FileView(f.fileno(), size)
        starts = [begin]
        for at in targets:
            if at >= size:
                break
            try:
                cut = _next_from_line(view, max(at, starts[-1] + 1), size)
            except OSError:  # it shrank: the unit past the end says so when it is read
                break
            if cut >= size:
                break
            if cut > starts[-1]:
                starts.append(cut)
    ends = [*starts[1:], size]
    return list(zip(starts, ends, strict=True))


def _next_from_line(mm: Buffer, pos: int, size: int) -> int:
    """Offset of the first ``From_`` line starting at or after ``pos``; ``size`` if none."""
    while True:
        # By the space of "\nFrom ": base64 has none, so an attachment is one memchr.
        nl = find_via(mm, _NL_FROM, _NL_FROM.index(b" "), pos - 1 if pos else 0, size)
        if nl < 0:
            return size
        start = nl + 1
        if _is_from_line(mm, start):
            return start
        pos = start + 1


def iter_mbox(
    path: Path, start: int = 0, end: int | None = None, max_bytes: int = MAX_BYTES,
    label: str = "",
) -> Iterator[Input]:  # fmt: skip
    """The messages whose ``From_`` line lies in ``[start, end)``, as ``Input``.

    ``source`` is ``path@offset`` (the byte offset of the ``From_`` line), so a finding can
    be located in a multi-gigabyte file and the label does not depend on how it was split;
    ``label`` replaces ``path`` in it (a PST folder unpacked into a temporary file). A
    message longer than ``max_bytes`` is an error entry naming the cap, never copied.
    """
    name = label or str(path)
    try:
        f = _open_regular(path)
    except OSError as exc:
        yield Input(name, None, exc.strerror or str(exc), unreadable=True)
        return
    with f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return
        stop = size if end is None else min(end, size)
        yield from _messages(FileView(f.fileno(), size), name, start, stop, max_bytes)
        if end is not None and end > size:
            # Planned on a longer file (a scan's unit): it shrank since. Said, not dropped.
            at = max(start, size)
            shrank = FileShrank(end, size, at_least=True)
            yield Input(f"{name}@{at}", None, _stopped(shrank, at), unreadable=True)


def messages_of(item: Input, max_bytes: int = MAX_BYTES) -> Iterator[Input]:
    """The messages of one file as read: the file itself, or each message when what it
    holds is an mbox of several (a gzipped mbox, unpacked as it was read, or one whose
    first bytes the planning did not see). Judged as one message, all but the first
    message of such a file went unseen."""
    if item.data is None or not starts_like_mbox(item.data):
        yield item
        return
    messages = iter_mbox_bytes(item.data, item.source, max_bytes)
    first, second = next(messages, None), next(messages, None)
    if second is None:
        yield item  # one message with its envelope line: the file, under its own name
        return
    yield from (m for m in (first, second, *messages) if m is not None)


def iter_mbox_bytes(data: bytes, name: str, max_bytes: int = MAX_BYTES) -> Iterator[Input]:
    """The messages of an mbox already in memory (``check -`` reading a batch on stdin),
    named and cut exactly as :func:`iter_mbox` names and cuts a file."""
    if data:
        yield from _messages(data, name, 0, len(data), max_bytes)


def _messages(mm: Buffer, name: str, start: int, stop: int, max_bytes: int) -> Iterator[Input]:
    """One walk for a file and for bytes: both have ``find`` and slicing, so the two
    readers cannot drift apart in how they split, unquote or report a cut-off. A read that
    fails (the file shrank, an I/O error) ends the walk with an error entry at the offset
    where it stopped: the messages before it were judged, the rest are named as unread."""
    size = len(mm)
    pos = start
    try:
        if start == 0 and mm[:3] == _BOM:
            pos = 3
        if start == 0 and not _is_from_line(mm, pos):  # (after a byte-order mark too)
            yield Input(name, None, "not an mbox file: it does not start with 'From '")
            return
    except OSError as exc:
        yield Input(name, None, _stopped(exc, pos), unreadable=True)
        return
    while pos < stop:
        try:
            item, nxt = _message_at(mm, name, pos, size, max_bytes)
        except OSError as exc:
            yield Input(f"{name}@{pos}", None, _stopped(exc, pos), unreadable=True)
            return
        yield item
        if nxt < 0:
            return
        pos = nxt


def _message_at(mm: Buffer, name: str, pos: int, size: int, max_bytes: int) -> tuple[Input, int]:
    """The message whose ``From_`` line starts at ``pos``, and where the next one starts
    (-1: this one ends the file)."""
    line_end = mm.find(b"\n", pos)
    if line_end < 0:  # a From_ line and nothing else: cut off
        return Input(f"{name}@{pos}", None, _cut_off(size - pos)), -1
    nxt = _next_from_line(mm, line_end + 1, size)
    body_end = nxt
    truncated = nxt == size and mm[size - 1 : size] != b"\n"
    # The blank line before the next From_ belongs to the separator.
    if mm[body_end - 2 : body_end] == b"\n\n":
        body_end -= 1
    elif mm[body_end - 4 : body_end] == b"\r\n\r\n":
        body_end -= 2
    if body_end - line_end - 1 > max_bytes:
        return Input(
            f"{name}@{pos}", None, too_large(body_end - line_end - 1, max_bytes),
            unreadable=True,
        ), nxt  # fmt: skip
    data = mm[line_end + 1 : body_end]
    blank = not data or data.isspace()  # no copy, unlike strip()
    if nxt == size and blank:
        return Input(f"{name}@{pos}", None, _cut_off(size - pos)), -1
    if truncated:
        return Input(f"{name}@{pos}", _unquoted(data), incomplete=_cut_off(size - pos)), -1
    if blank:
        return Input(f"{name}@{pos}", None, "empty message: a From_ line and nothing else"), nxt
    return Input(f"{name}@{pos}", _unquoted(data)), nxt


_STOPPED = "reading stopped at byte "


def _stopped(exc: OSError, pos: int) -> str:
    why = exc.strerror or str(exc)
    if isinstance(exc, FileShrank):
        why += " (a mail client or server rewrote it in place): the rest was not read, scan again"
    return f"{_STOPPED}{pos:,}: {why}"


def stopped_reading(item: Input) -> bool:
    """Whether ``item`` is the entry that ends a walk whose file failed or shrank under
    it: what lay past its offset was not read (a resumable reader starts again before)."""
    return item.data is None and (item.error or "").startswith(_STOPPED)


def _unquoted(data: bytes) -> bytes:
    if data.find(b">From ", 0, _UNQUOTE_WITHIN) >= 0:
        return _QUOTED.sub(rb"\1", data)
    return data


def _open_regular(path: Path) -> BinaryIO:
    """Open for reading only if it is a regular file: a FIFO would block the read (the open
    is non-blocking, the type checked on the descriptor) and a device never ends."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, not_regular(mode))
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _cut_off(size: int) -> str:
    return (
        f"message cut off: the mbox ends inside it, with no final newline ({size:,} bytes "
        "from its From_ line); the file was truncated or is still being written"
    )
