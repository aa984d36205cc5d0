"""A read-only view of a big file with the ``find`` and slicing of ``bytes``, read by
``pread`` a window at a time instead of through a memory map.

Why not ``mmap``: mail clients and servers rewrite mbox files in place (mutt, Dovecot and
Thunderbird compact a folder by truncating it). A page of a map that lies past the file's
new end raises SIGBUS on access, which kills the Python process outright: no traceback, no
register, no state saved. ``pread`` past the new end returns fewer bytes instead, and the
view turns that into :class:`FileShrank`, which the mbox reader reports as an error entry
naming where reading stopped, so nothing goes unseen silently.

The cost is one copy from the page cache per window (about 0.1 ms per MB), small beside
parsing; a view holds at most one window (:data:`WINDOW` bytes) plus what a caller slices.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import overload

Finder = Callable[[bytes, bytes, int, int], int]
"""``finder(buf, sub, lo, hi)``: what ``buf.find(sub, lo, hi)`` returns, found another way."""

WINDOW = 1 << 20
"""Bytes read at once for a search or a small slice: big enough that a 2 MB attachment is
two reads, small enough that memory stays flat in the file's size."""


class FileShrank(OSError):
    """The file is shorter than when the view was opened: it was truncated or rewritten
    in place while it was read."""

    def __init__(self, size: int, now: int, *, at_least: bool = False) -> None:
        was = f"at least {size:,}" if at_least else f"{size:,}"
        super().__init__(f"the file shrank from {was} to {now:,} bytes while it was read")
        self.size, self.now = size, now


class FileView:
    """Bytes ``[0, size)`` of an open file, ``size`` fixed when the view is made (like a
    map: what is appended later is not seen). The caller keeps the descriptor open."""

    __slots__ = ("_base", "_buf", "_fd", "_size", "_span")

    def __init__(self, fd: int, size: int | None = None, window: int = 0) -> None:
        """``window``: bytes per read instead of :data:`WINDOW` (a caller that jumps
        about the file to read a few KB at each place reads less with a smaller one)."""
        self._fd = fd
        self._size = os.fstat(fd).st_size if size is None else size
        self._base = 0
        self._buf = b""
        self._span = window

    def __len__(self) -> int:
        return self._size

    def _read(self, start: int, stop: int) -> bytes:
        """Exactly ``[start, stop)`` (within the size), or :class:`FileShrank`."""
        want = stop - start
        data = os.pread(self._fd, want, start)
        if len(data) < want:  # a short read: the end of the file, or a read over 2 GB
            parts = [data]
            got = len(data)
            while got < want:
                more = os.pread(self._fd, want - got, start + got)
                if not more:
                    raise FileShrank(self._size, start + got)
                parts.append(more)
                got += len(more)
            data = b"".join(parts)
        return data

    def _load(self, start: int) -> None:
        self._buf = b""  # a failed read leaves no stale window behind
        self._buf = self._read(start, min(self._size, start + (self._span or WINDOW)))
        self._base = start

    def _window(self, start: int, stop: int) -> bytes:
        """``[start, stop)``, from the cached window when it holds it; a request no bigger
        than a window loads the window that starts there (searches move forwards)."""
        stop = min(stop, self._size)
        if start >= stop:
            return b""
        base = self._base
        if base <= start and stop <= base + len(self._buf):
            return self._buf[start - base : stop - base]
        if stop - start > (self._span or WINDOW):
            return self._read(start, stop)  # a whole big message: not kept
        self._load(start)
        return self._buf[: stop - start]

    @overload
    def __getitem__(self, key: int) -> int: ...

    @overload
    def __getitem__(self, key: slice) -> bytes: ...

    def __getitem__(self, key: int | slice) -> int | bytes:
        if isinstance(key, int):
            at = key + self._size if key < 0 else key
            if not 0 <= at < self._size:
                raise IndexError("index out of range")
            return self._window(at, at + 1)[0]
        start, stop, step = key.indices(self._size)
        if step != 1:
            raise ValueError("a file view slices with step 1 only")
        return self._window(start, stop)

    def find(
        self, sub: bytes, start: int = 0, end: int | None = None, finder: Finder | None = None
    ) -> int:
        """``bytes.find`` over the file: in the cached window first, then a window at a
        time, each overlapping the last by ``len(sub) - 1`` bytes so a match across the
        seam is found. The window is searched in place (``find`` with bounds), not sliced.
        ``finder(window, sub, lo, hi)`` replaces ``window.find(sub, lo, hi)``: a search
        that steps through candidates (:func:`~mailguard.search.find_via`) then runs on
        ``bytes``, not through this class a call per candidate (2.5x the whole walk)."""
        end = self._size if end is None else min(end, self._size)
        pos = max(start, 0)
        size = len(sub)
        if not size:
            return pos if pos <= end else -1
        if size > (self._span or WINDOW) // 2:  # no caller looks for so long a string
            return self._read(pos, end).find(sub) + pos if end - pos >= size else -1
        while end - pos >= size:
            if not (self._base <= pos and pos + size <= self._base + len(self._buf)):
                self._load(pos)
            base, buf = self._base, self._buf
            stop = min(end, base + len(buf))
            lo, hi = pos - base, stop - base
            at = buf.find(sub, lo, hi) if finder is None else finder(buf, sub, lo, hi)
            if at >= 0:
                return base + at
            if stop >= end:
                return -1
            pos = stop - size + 1
        return -1
