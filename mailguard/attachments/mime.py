"""Find a message's attachments and decode them in bounded chunks.

Walks the MIME tree iteratively by byte offsets into the original message, as the body
reader does (:mod:`mailguard.body`): no copies of what is not an attachment, no recursion,
the same depth and sibling limits. An attachment is decoded chunk by chunk, so a table
can be read row by row and stop at its row cap without ever holding the whole file.
"""

from __future__ import annotations

import binascii
import re
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from mailguard.body import content_type, delimited_parts
from mailguard.charsets import decode_base64
from mailguard.deadline import checkpoint
from mailguard.headers import decode_rfc2047, find_header_end, parse_header_block
from mailguard.limits import Limits

CHUNK = 1 << 20
"""Encoded bytes decoded at a time."""
_B64_ALPHABET = re.compile(rb"[^A-Za-z0-9+/]")
_INLINE_TEXT = ("text/plain", "text/html", "text/enriched", "text/richtext")
_NOT_ATTACHED = ("multipart/", "message/")
_FORWARDED = ("message/rfc822", "message/global")
UUENCODE = ("x-uuencode", "uuencode", "x-uue", "uue")
"""Content-Transfer-Encoding values of a uuencoded part (never standard, still sent)."""
_UU_BEGIN = re.compile(rb"begin [0-7]{3,4} ([^\r\n]{1,255})\r?\n")
_UU_CHARS = bytes(range(32, 97))


@dataclass(frozen=True, slots=True)
class Part:
    """One attached file: where its encoded bytes are and how they are encoded."""

    raw: bytes
    start: int
    end: int
    cte: str
    filename: str
    ctype: str
    cut: bool = False
    """The message ends inside this part (no closing delimiter): a mail server that keeps
    only the first megabyte of a body (the milter's ``max_body_bytes``) cuts files short."""

    @property
    def encoded_size(self) -> int:
        return self.end - self.start

    def chunks(self, cap: int) -> Iterator[bytes]:
        """Decoded bytes, at most ``cap`` of them, a chunk at a time."""
        left = cap
        for chunk in _decode(self.raw, self.start, self.end, self.cte):
            if left <= 0:
                return
            if len(chunk) > left:
                chunk = chunk[:left]
            left -= len(chunk)
            yield chunk

    def head(self, n: int = 8) -> bytes:
        """The first ``n`` decoded bytes, decoding only a few encoded ones (what a file is
        is told by its first bytes: a 2 MB PDF is not decoded to learn it is a PDF)."""
        stop = min(self.end, self.start + 4 * n + 256)  # room for line breaks and padding
        return b"".join(_decode(self.raw, self.start, stop, self.cte))[:n]

    def read(self, cap: int) -> tuple[bytes, bool]:
        """``(data, complete)``: up to ``cap`` decoded bytes, and whether that is all."""
        data = b"".join(self.chunks(cap + 1))
        return data[:cap], len(data) <= cap


def _decode(raw: bytes, start: int, end: int, cte: str) -> Iterator[bytes]:
    if cte == "base64":
        carry = b""
        for pos in range(start, end, CHUNK):
            checkpoint()
            clean = carry + _B64_ALPHABET.sub(b"", raw[pos : min(end, pos + CHUNK)])
            usable = len(clean) - len(clean) % 4
            carry = clean[usable:]
            if usable:
                yield decode_base64(clean[:usable], partial=True)[0]
        if carry:
            yield decode_base64(carry)[0]
    elif cte == "quoted-printable":
        pos = start
        while pos < end:
            checkpoint()
            stop = raw.find(b"\n", min(end, pos + CHUNK), end)
            stop = end if stop < 0 else stop + 1
            yield binascii.a2b_qp(raw[pos:stop])
            pos = stop
    elif cte in UUENCODE:
        yield from _uudecode(raw, start, end)
    else:
        for pos in range(start, end, CHUNK):
            checkpoint()
            yield raw[pos : min(end, pos + CHUNK)]


def _uudecode(raw: bytes, start: int, end: int) -> Iterator[bytes]:
    """The file between a ``begin`` line and the ``end`` line, a chunk of lines at a time
    (``binascii.a2b_uu`` line by line: the ``uu`` module is deprecated). Lines with
    trailing garbage are read as far as their length character says, as ``uu`` did; a
    line that still fails ends the file (what came before is read)."""
    pos = raw.find(b"begin ", start, end)
    if pos < 0:
        return
    pos = raw.find(b"\n", pos, end) + 1
    while 0 < pos < end:
        checkpoint()
        stop = raw.find(b"\n", min(end, pos + CHUNK), end)
        stop = end if stop < 0 else stop + 1
        out: list[bytes] = []
        for line in raw[pos:stop].splitlines():
            if line.startswith(b"end") or not line.strip():
                yield b"".join(out)
                return
            try:
                out.append(binascii.a2b_uu(line))
            except binascii.Error:
                length = ((line[0] - 32) & 63) * 4 + 5
                try:
                    out.append(binascii.a2b_uu(line[: length // 3]))
                except binascii.Error:
                    yield b"".join(out)
                    return
        yield b"".join(out)
        pos = stop


def uuencoded(raw: bytes, start: int, end: int | None = None) -> bool:
    """Whether text holds a line that starts ``begin `` (a uuencoded file, perhaps): one
    ``find``, so a plain text message pays a scan at memchr speed and nothing else."""
    stop = len(raw) if end is None else end
    return raw.startswith(b"begin ", start) or raw.find(b"\nbegin ", start, stop) >= 0


def might_attach(ctype_value: str | None) -> bool:
    """Whether a message with this top-level Content-Type can carry a file at all: the
    test that lets a plain text message skip the attachment analysis (and the milter keep
    it on its fast path)."""
    if not ctype_value:
        return False
    ctype = ctype_value.partition(";")[0].strip().lower()
    return ctype not in _INLINE_TEXT and ctype != "multipart/alternative"


def attachments(
    raw: bytes, body_offset: int, get: Callable[[str], str | None], limits: Limits
) -> tuple[list[Part], list[str]]:
    """Every attached file of the message, and the MIME limits reached on the way."""
    found: list[Part] = []
    reached: list[str] = []
    top = _Headers(get("content-type"), get("content-disposition"),
                   get("content-transfer-encoding"))  # fmt: skip
    stack = [(body_offset, len(raw), top, 0)]
    while stack:
        checkpoint()
        start, end, headers, depth = stack.pop()
        ctype, params = content_type(headers.ctype)
        if ctype.startswith("multipart/"):
            if depth >= limits.max_mime_depth:
                reached.append(f"attachments below MIME depth {limits.max_mime_depth} not read")
                continue
            boundary = params.get("boundary")
            if boundary:
                children = _children(raw, start, end, boundary.encode("utf-8", "replace"),
                                     limits, reached)  # fmt: skip
                stack.extend((s, e, h, depth + 1) for s, e, h in reversed(children))
            continue
        if ctype in _FORWARDED:
            if depth >= limits.max_mime_depth:
                reached.append(f"attachments below MIME depth {limits.max_mime_depth} not read")
                continue
            inner = _forwarded(raw, start, end, headers, limits, reached)
            if inner is not None:
                stack.append((*inner, depth + 1))
            continue
        part = _attached(raw, start, end, headers, ctype, params)
        if part is not None:
            found.append(part)
        elif ctype in _INLINE_TEXT and (headers.cte or "").strip().lower() not in (
            "base64",
            "quoted-printable",
        ):
            found += _uu_files(raw, start, end, limits, reached)
    return found, reached


def _forwarded(
    raw: bytes, start: int, end: int, headers: _Headers, limits: Limits, reached: list[str]
) -> tuple[int, int, _Headers] | None:
    """The body of a forwarded message (a ``message/rfc822`` part) as one more part of the
    walk, with its own Content-Type: its files are the files of this message (forwarding
    a list exposes it as much as attaching it). A forwarded message that is itself
    base64- or quoted-printable-encoded (against RFC 2046, but sent) is said, not read."""
    cte = (headers.cte or "").strip().lower()
    if cte in ("base64", "quoted-printable"):
        reached.append(f"a forwarded message encoded as {cte}: its attachments not read")
        return None
    stop = min(end, start + limits.body_scan_bytes)
    found = find_header_end(raw, start, stop)
    if found is None:
        if end - start > limits.body_scan_bytes:
            reached.append("a forwarded message with a header block too long: not read")
        return None
    h = parse_header_block(raw[start : found[0]], limits, [])
    first = {k: v[0] for k, v in h.items() if v}
    return found[1], end, _Headers(
        first.get("content-type"), first.get("content-disposition"),
        first.get("content-transfer-encoding"), headers.cut,
    )  # fmt: skip


def _uu_line(raw: bytes, pos: int, end: int) -> bool:
    """Whether the line at ``pos`` is a uuencoded line: characters 32 to 96 only, as many
    as its length character announces (so prose after "begin 644 ..." is not a file)."""
    stop = raw.find(b"\n", pos, min(end, pos + 100))
    line = raw[pos : stop if stop >= 0 else min(end, pos + 100)].rstrip(b"\r")
    if not line or line.translate(None, _UU_CHARS):
        return False
    n = (line[0] - 32) & 63
    return n > 0 and len(line) >= (n + 2) // 3 * 4 + 1


def _uu_files(raw: bytes, start: int, end: int, limits: Limits, reached: list[str]) -> list[Part]:
    """Files uuencoded in the text of a message (``begin 644 list.csv`` ... ``end``), as
    old clients and scripts (``uuencode file name | mail``) still send them."""
    found: list[Part] = []
    pos = start
    while True:  # one find per candidate line
        if raw.startswith(b"begin ", pos, end):
            at = pos
        else:
            at = raw.find(b"\nbegin ", pos, end) + 1
            if at == 0:
                break
        match = _UU_BEGIN.match(raw, at, end)
        if match is None or not _uu_line(raw, match.end(), end):
            pos = at + 1
            continue
        if len(found) >= limits.max_mime_parts:
            reached.append(f"uuencoded files after {limits.max_mime_parts} not read")
            break
        stop = raw.find(b"\nend", match.end(), end)
        part_end = end if stop < 0 else stop + 1
        name = decode_rfc2047(match.group(1).decode("utf-8", "replace").strip())[:255]
        found.append(Part(raw, at, part_end, "x-uuencode", name, "application/octet-stream",
                          cut=stop < 0))  # fmt: skip
        pos = max(part_end, at + 1)
    return found


@dataclass(frozen=True, slots=True)
class _Headers:
    ctype: str | None
    disposition: str | None
    cte: str | None
    cut: bool = False


def _children(
    raw: bytes, start: int, end: int, boundary: bytes, limits: Limits, reached: list[str]
) -> list[tuple[int, int, _Headers]]:
    parts: list[tuple[int, int, _Headers]] = []
    for part_start, part_end, last in delimited_parts(raw, start, end, boundary):
        if len(parts) >= limits.max_mime_parts:
            reached.append(f"attachments after {limits.max_mime_parts} parts not read")
            break
        if raw[part_start : part_start + 1] in (b"\r", b"\n"):
            body = part_start + (2 if raw[part_start : part_start + 2] == b"\r\n" else 1)
            parts.append((body, part_end, _Headers(None, None, None, last)))
        else:
            stop = min(part_end, part_start + limits.body_scan_bytes)
            found = find_header_end(raw, part_start, stop)
            if found is not None:
                h = parse_header_block(raw[part_start : found[0]], limits, [])
                first = {k: v[0] for k, v in h.items() if v}
                parts.append((found[1], part_end, _Headers(
                    first.get("content-type"), first.get("content-disposition"),
                    first.get("content-transfer-encoding"), last,
                )))  # fmt: skip
    return parts


def _attached(
    raw: bytes, start: int, end: int, headers: _Headers, ctype: str, params: dict[str, str]
) -> Part | None:
    disposition, dparams = content_type(headers.disposition) if headers.disposition else ("", {})
    filename = _filename(dparams) or _filename(params)
    if ctype.startswith(_NOT_ATTACHED):
        return None
    if ctype in _INLINE_TEXT and disposition != "attachment" and not filename:
        return None  # the text of the message, not a file
    if end > start and raw[end - 1 : end] == b"\n":  # the line break before the delimiter
        end -= 2 if raw[end - 2 : end] == b"\r\n" else 1
    cte = (headers.cte or "").strip().lower()
    if not filename and cte in UUENCODE:  # the name is on the begin line
        match = _UU_BEGIN.search(raw, start, min(end, start + 4096))
        filename = match.group(1).decode("utf-8", "replace").strip() if match else ""
    return Part(raw, start, end, cte, filename, ctype, headers.cut)


def _filename(params: dict[str, str]) -> str:
    for key in ("filename", "name"):
        if key in params:
            return decode_rfc2047(params[key])[:255]
        star = params.get(key + "*")
        if star is not None:
            _charset, _, rest = star.partition("'")
            _lang, _, value = rest.partition("'")
            return urllib.parse.unquote(value or star, errors="replace")[:255]
        numbered = {}
        for k, v in params.items():  # RFC 2231 continuations: filename*0*, filename*1*, ...
            index = k[len(key) + 1 :].rstrip("*")
            if k.startswith(key + "*") and index.isdigit():
                numbered[int(index)] = v
        pieces = [numbered[i] for i in sorted(numbered)]
        if pieces:
            joined = "".join(pieces)
            if "''" in joined:
                joined = joined.split("''", 1)[1]
            return urllib.parse.unquote(joined, errors="replace")[:255]
    return ""
