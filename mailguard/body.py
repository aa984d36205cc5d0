"""Find and decode the first text part of a message, in bounded time and memory.

Content checks only need "the first part of the body" (what a recipient reads first), so
this walks the MIME tree iteratively by byte offsets into the original message: no copies
of attachments, no recursion (the stdlib raises ``RecursionError`` on deep nesting and
mail-parser raises on reused boundaries), and hard limits on depth, siblings and bytes
decoded. Each limit reached is reported, never raised.
"""

from __future__ import annotations

import binascii
import functools
import html
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from mailguard.charsets import decode_base64, decode_bytes
from mailguard.deadline import checkpoint
from mailguard.headers import decode_block, find_header_end, parse_header_block
from mailguard.limits import Limits
from mailguard.search import find_via

_PARAM = re.compile(r';\s*([A-Za-z0-9_.*-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s;]+))', re.DOTALL)
# The start of a script or style element, whose content is not text, and its end tag.
_RAW_OPEN = re.compile(r"<(?:script|style)\b", re.I)
_RAW_CLOSE = re.compile(r"</(?:script|style)\s*>", re.I)
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class BodyText:
    text: str
    """Decoded text (tags stripped from HTML), at most ``limits.body_text_chars`` long."""
    limit_hit: str | None = None
    """Which limit stopped the walk (for the limits finding), if any."""
    problem: str | None = None
    """Why the text is degraded (unknown charset, damaged base64); never the text itself."""


def content_type(value: str | None) -> tuple[str, dict[str, str]]:
    """Split a Content-Type value into lower-case type and parameters (no RFC 2231).

    Short values repeat from message to message (``text/plain; charset="utf-8"``) and are
    answered from a cache: the parameters are then a shared dict, which callers only read.
    """
    if not value:
        return "text/plain", {}
    if len(value) <= 256:
        return _content_type_cached(value)
    return _content_type(value)


@functools.lru_cache(maxsize=1024)
def _content_type_cached(value: str) -> tuple[str, dict[str, str]]:
    return _content_type(value)


def _content_type(value: str) -> tuple[str, dict[str, str]]:
    main, _, _rest = value.partition(";")
    params = {
        m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3))
        for m in _PARAM.finditer(value[len(main) :])
    }
    return main.strip().lower() or "text/plain", params


def _first(headers: dict[str, list[str]], name: str) -> str | None:
    values = headers.get(name)
    return values[0] if values else None


def first_text(
    raw: bytes, body_offset: int, get: Callable[[str], str | None], limits: Limits
) -> BodyText:
    """Return the first text/plain (else text/html) part reachable from the top."""
    ctype, params = content_type(get("content-type"))
    cte = (get("content-transfer-encoding") or "").strip().lower()
    start, end = body_offset, len(raw)
    depth = 0
    while True:
        checkpoint()
        if ctype.startswith("multipart/"):
            depth += 1
            if depth > limits.max_mime_depth:
                return BodyText("", f"MIME nesting deeper than {limits.max_mime_depth} levels")
            boundary = params.get("boundary")
            if not boundary:
                return BodyText("")
            part = _pick_part(raw, start, end, boundary.encode("utf-8", "replace"), limits)
            if part is None:
                return BodyText("")
            start, end, ctype, params, cte, limit_hit = part
            if limit_hit:
                return BodyText("", limit_hit)
            continue
        if ctype.startswith("text/") or ctype == "message/rfc822":
            if ctype == "message/rfc822":
                return _embedded(raw, start, end, limits)
            return _decode_text(raw, start, end, ctype, params, cte, limits)
        return BodyText("")


def _embedded(raw: bytes, start: int, end: int, limits: Limits) -> BodyText:
    """A forwarded message as the first part: read its headers, then its first text."""
    found = find_header_end(raw, start, min(end, start + limits.body_scan_bytes))
    if found is None:
        return BodyText("")
    headers = parse_header_block(raw[start : found[0]], limits, [])
    ctype, params = content_type(_first(headers, "content-type"))
    if ctype.startswith("multipart/") or ctype == "message/rfc822":
        return BodyText("")  # don't nest further: a forwarded multipart is not "first text"
    cte = (_first(headers, "content-transfer-encoding") or "").strip().lower()
    return _decode_text(raw, found[1], end, ctype, params, cte, limits)


def _pick_part(
    raw: bytes, start: int, end: int, boundary: bytes, limits: Limits
) -> tuple[int, int, str, dict[str, str], str, str | None] | None:
    """Choose the part to descend into: text/plain first, then html, then a multipart."""
    best: tuple[int, int, str, dict[str, str], str] | None = None
    best_rank = 99
    seen = 0
    for part_start, part_end, _last in delimited_parts(raw, start, end, boundary):
        seen += 1
        if seen > limits.max_mime_parts:
            return (0, 0, "", {}, "", f"more than {limits.max_mime_parts} parts in a multipart")
        found = find_header_end(raw, part_start, min(part_end, part_start + limits.body_scan_bytes))
        if raw[part_start : part_start + 1] in (b"\r", b"\n"):
            fields: tuple[str | None, str | None, str | None] = (None, None, None)
            body_start = part_start + (2 if raw[part_start : part_start + 2] == b"\r\n" else 1)
        elif found is not None:
            fields = part_fields(raw[part_start : found[0]], limits)
            body_start = found[1]
        else:
            continue
        ctype, params = content_type(fields[0])
        disposition = (fields[1] or "").lower()
        cte = (fields[2] or "").strip().lower()
        rank = 99
        if not disposition.startswith("attachment"):
            if ctype == "text/plain":
                rank = 0
            elif ctype == "text/html":
                rank = 1
            elif ctype.startswith("multipart/"):
                rank = 2
        if rank < best_rank:
            best, best_rank = (body_start, part_end, ctype, params, cte), rank
            if rank == 0:
                break
    if best is None:
        return None
    return (*best, None)


# The three fields a part's choice depends on, found where parse_header_block would find
# them: at a line start (a continuation line starts with a blank, so it never matches),
# the name in any ASCII case, then blanks and a colon, then the value and its continuation
# lines. re.ASCII: under re.IGNORECASE alone, U+017F (long s) would match "s".
_PART_FIELD = re.compile(
    r"^(content-type|content-disposition|content-transfer-encoding)[ \t]*:(.*(?:\n[ \t].*)*)",
    re.MULTILINE | re.IGNORECASE | re.ASCII,
)


def part_fields(block: bytes, limits: Limits) -> tuple[str | None, str | None, str | None]:
    """Content-Type, -Disposition and -Transfer-Encoding of a part's header block.

    The first value of each, exactly as :func:`parse_header_block` would give it, without
    splitting the other fields (tests/test_fast_paths.py compares the two on any block).
    """
    found: dict[str, str] = {}
    for name, value in _PART_FIELD.findall(decode_block(block, [])):
        key = name.lower()
        if key not in found:
            found[key] = value.replace("\n", "").strip()[: limits.max_header_field_bytes]
    return (
        found.get("content-type"),
        found.get("content-disposition"),
        found.get("content-transfer-encoding"),
    )


def delimited_parts(
    raw: bytes, start: int, end: int, boundary: bytes
) -> Iterator[tuple[int, int, bool]]:
    """The parts of the multipart body ``raw[start:end]``: (start, end, last) of each, its
    header block included, up to the closing delimiter. ``last`` is true when no delimiter
    follows (the body ends inside that part: cut short). One walk for the first-text choice
    here and the attachment reader (:mod:`mailguard.attachments.mime`)."""
    delimiter = b"--" + boundary
    pos = _find_delimiter(raw, delimiter, start, end)
    while pos >= 0:
        checkpoint()
        line_end = raw.find(b"\n", pos, end)
        if line_end < 0 or raw.startswith(b"--", pos + len(delimiter)):
            return  # no line after it, or the closing delimiter
        part_start = line_end + 1
        nxt = _find_delimiter(raw, delimiter, part_start, end)
        yield part_start, (nxt if nxt >= 0 else end), nxt < 0
        pos = nxt


def _find_delimiter(raw: bytes, delimiter: bytes, start: int, end: int) -> int:
    """Index of the next real ``--boundary`` line in ``raw[start:end]``, or -1.

    A delimiter starts a line and is followed by ``--`` (closing) or only whitespace
    (RFC 2046 5.1.1). A bare substring search would take ``--b10`` or ``--b1_alt`` (a nested
    part's boundary that starts with this one, as generators number them) for ``--b1``,
    and walk into the wrong part or count a deep nesting as thousands of siblings.
    """
    size = len(delimiter)
    pos = find_dashed(raw, delimiter, start, end)
    while pos >= 0:
        after = pos + size
        if pos == 0 or raw[pos - 1] == 0x0A:  # "\n"
            if raw.startswith(b"--", after, end):
                return pos
            line_end = raw.find(b"\n", after, end)
            if not raw[after : line_end if line_end >= 0 else end].strip():
                return pos
        pos = find_dashed(raw, delimiter, after, end)
    return -1


def find_dashed(raw: bytes, needle: bytes, start: int, end: int) -> int:
    """``raw.find(needle, start, end)`` for a ``--boundary``: by its dashes, which base64
    never holds (see :mod:`mailguard.search`)."""
    return find_via(raw, needle, 0, start, end)


def _decode_text(
    raw: bytes,
    start: int,
    end: int,
    ctype: str,
    params: dict[str, str],
    cte: str,
    limits: Limits,
) -> BodyText:
    # Plain text needs only a few bytes per character kept; HTML spends most bytes on markup.
    budget = limits.body_scan_bytes
    if ctype != "text/html":
        budget = min(budget, 8 * limits.body_text_chars)
    stop = min(end, start + budget)
    chunk = raw[start:stop]
    problem = None
    if cte == "base64":
        chunk, damaged = decode_base64(chunk, partial=stop < end)
        if damaged:
            problem = "the body's base64 encoding is damaged"
    elif cte == "quoted-printable":
        chunk = binascii.a2b_qp(chunk)
    text, bad = decode_bytes(chunk, params.get("charset"))
    if bad:
        problem = problem or f"body: {bad}"
    if ctype == "text/html":  # markup leaves runs of blanks: collapse them to keep content
        text = _SPACE.sub(" ", html.unescape(strip_tags(text)))
    return BodyText(text.strip()[: limits.body_text_chars], problem=problem)


def strip_tags(text: str) -> str:
    """Replace HTML tags, and script and style elements whole, by a space; in linear time.

    The regex ``<[^>]*>`` rescans to the end of the text from every ``<`` that is never
    closed (64 KB of ``<`` took 5 s), and a lazy ``<script>.*?</script>`` does the same
    from every unclosed ``<script>``. Here each search that fails is remembered: once no
    ``>`` (or no end tag) follows a position, none follows any later one either.
    """
    out: list[str] = []
    pos = 0
    no_close_from = len(text) + 1  # no end tag for script/style from here on
    find = text.find
    while True:
        lt = find("<", pos)
        if lt < 0:
            break
        if lt < no_close_from and _RAW_OPEN.match(text, lt):
            close = _RAW_CLOSE.search(text, lt)
            if close is not None:
                out.append(text[pos:lt])
                out.append(" ")
                pos = close.end()
                continue
            no_close_from = lt
        gt = find(">", lt)
        if gt < 0:  # no tag can end any more: the rest is text
            break
        out.append(text[pos:lt])
        out.append(" ")
        pos = gt + 1
    out.append(text[pos:])
    return "".join(out)
