"""Incidents of an earlier scan read back: the header block of a stored message, and no
more of it (:mod:`mailguard.archive.incremental` rebuilds each stored incident from its
record and the From, Sender, Subject and Message-ID read here, without judging it again).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from mailguard.archive.mbox import is_from_line, iter_mbox
from mailguard.file_view import FileView
from mailguard.sources import Input


def offset_of(position: str) -> int:
    return int(position.rsplit("@", 1)[1])


_BLANK_LINE = re.compile(rb"\n\r?\n")
"""The end of a header block, LF or CRLF. Its literal first byte lets the regex engine skip
ahead (10 us on a 15 KB block; ``\\r?\\n\\r?\\n`` costs 190). Not
:func:`~mailguard.headers.find_header_end`: that one is compiled for ``bytes``, and this
searches a file's view too."""
_STEP = 16 * 1024
"""Bytes of a file searched at once for the blank line: a header block is rarely longer."""
_WINDOW = 64 * 1024
"""Bytes read at each stored message: a re-scan jumps from incident to incident, and
needs the header block alone at each (the 1 MB default would read 16 times as much)."""


def _header_end(buf: bytes | FileView, start: int, stop: int) -> int:
    """Where the header block from ``start`` ends (before its last line end), or ``stop``."""
    if isinstance(buf, bytes):
        blank = _BLANK_LINE.search(buf, start, stop)
        end = stop if blank is None else blank.start()
    else:
        end = _view_blank_line(buf, start, stop)
    if end == stop:
        return stop
    return end - 1 if end > start and buf[end - 1] == 13 else end


def _view_blank_line(view: FileView, start: int, stop: int) -> int:
    """Where the first blank line in ``[start, stop)`` of a file starts, or ``stop``: the
    regex over a step at a time, each step overlapping the next by two bytes (a match is
    at most three) so none is lost at a seam."""
    pos = start
    while pos < stop:
        top = min(stop, pos + _STEP + 2)
        blank = _BLANK_LINE.search(view[pos:top])
        if blank is not None:
            return pos + blank.start()
        if top >= stop:
            break
        pos = top - 2
    return stop


class MboxHeaders:
    """Messages of one mbox by offset, from one file view for the whole re-scan: a header
    block ends at the first blank line, found by one search that stops there.

    Why: two ``find`` calls, one for a CRLF blank line, found none in an mbox with LF line
    ends and read on to the size limit (tens of MB) for every stored incident; and one map
    per incident paid a ``munmap`` each (a re-scan of 2,000 incidents: 81 s, most of it
    here; now 0.5 s).
    """

    def __init__(self, path: Path, label: str, max_bytes: int) -> None:
        self.path, self.label, self.max_bytes = path, label, max_bytes
        self._fd = -1
        self._mm: FileView | None = None

    def __call__(self, position: str, whole: bool) -> Input | None:
        at = offset_of(position)
        if whole:
            return next(iter_mbox(self.path, at, at + 1, self.max_bytes, self.label), None)
        name = f"{self.label or self.path}@{at}"
        try:
            if self._mm is None:
                self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
                self._mm = FileView(self._fd, window=_WINDOW)
            mm = self._mm
            start = mm.find(b"\n", at, at + 1000) + 1
            if start <= 0 or not is_from_line(mm[at : start - 1]):
                return None
            stop = start + self.max_bytes  # a message without a blank line: bounded
            return Input(name, mm[start : _header_end(mm, start, stop)])
        except (OSError, ValueError):
            return None

    def close(self) -> None:
        self._mm = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


_FIELDS = re.compile(
    rb"^(?:from|sender|subject|message-id)[ \t]*:[^\n]*(?:\n[ \t][^\n]*)*",
    re.IGNORECASE | re.MULTILINE,
)


def header_fields(data: bytes) -> bytes:
    """Only the header fields an incident's record lacks (From, Sender, Subject,
    Message-ID), with their continuation lines: a 300-address Cc is not parsed again."""
    block = data[: _header_end(data, 0, len(data))]
    out = [m.group() for m in _FIELDS.finditer(block)]
    return b"\n".join(out) + b"\n\n" if out else b"X-Mailguard-None: 1\n\n"


def from_line_at(path: Path, offset: int) -> bool:
    with path.open("rb") as f:
        mm = FileView(f.fileno(), window=_WINDOW)
        end = mm.find(b"\n", offset, offset + 1000)
        return is_from_line(mm[offset : end if end >= 0 else offset + 1000])
