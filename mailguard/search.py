"""Substring search that jumps between occurrences of one rare byte of the needle.

Why: the separators mailguard looks for across whole messages and archives (a MIME
``--boundary``, an mbox ``\\nFrom `` line) are searched for over megabytes of base64, and
``bytes.find`` of such a needle advances about a byte at a time there: its skip table is
defeated by needles that share letters with base64 (~370 us per 2 MB). A one-byte search
runs as ``memchr`` (~55 us per 2 MB). Base64 holds neither ``-`` nor a space, so jumping
from one such byte to the next and comparing the needle there skips an attachment in one
call. Text full of that byte would turn this into a Python loop per byte, so after a few
misses in a row the plain search takes over: never slower than it by more than those few
steps. tests/test_fast_paths.py compares it with ``bytes.find``.
"""

from __future__ import annotations

from mailguard.file_view import FileView

MISSES = 16
"""Misses in a row after which the plain search finishes the job."""


def find_via(haystack: bytes | FileView, needle: bytes, pivot: int, start: int, end: int) -> int:
    """``haystack.find(needle, start, end)`` (``start``/``end`` non-negative), found by
    jumping to each occurrence of ``needle[pivot]``."""
    if isinstance(haystack, FileView):  # a window of bytes at a time
        return haystack.find(needle, start, end, lambda b, n, lo, hi: find_via(b, n, pivot, lo, hi))
    size = len(needle)
    end = min(end, len(haystack))
    if not 0 <= pivot < size or end - start < size:
        return haystack.find(needle, start, end)
    rare = needle[pivot : pivot + 1]
    last = end - size + pivot + 1  # the pivot byte of a match lies before this
    at = haystack.find(rare, start + pivot, last)
    misses = 0
    while at >= 0:
        begin = at - pivot
        if haystack[begin : begin + size] == needle:
            return begin
        misses += 1
        if misses > MISSES:
            return haystack.find(needle, begin + 1, end)
        at = haystack.find(rare, at + 1, last)
    return -1
