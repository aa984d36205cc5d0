"""Turning bytes of message data into text: always text, never an exception.

A charset name in a message is attacker-controlled. Python's codec registry answers it with
much more than charsets: ``idna`` and ``undefined`` raise ``UnicodeError`` whatever the
error handler, ``punycode`` raises on 8-bit input and takes quadratic time, a name with a
NUL raises ``ValueError`` and one with a lone surrogate ``UnicodeEncodeError``. One such
word in a Subject must not turn a mass exposure into an unchecked message (verdict
``error``), so every decoder of message data goes through :func:`decode_bytes`: it
decodes with replacement characters, falls back to UTF-8 for anything that is not a text
charset, and says what it did so the degradation can be reported (the undecodable-text
rule) rather than hidden.
"""

from __future__ import annotations

import binascii
import codecs
import functools

# Codecs the registry knows that are no MIME charset: they raise on ordinary data,
# interpret escapes, or (punycode) cost quadratic time.
_NOT_CHARSETS = frozenset(
    {"idna", "punycode", "undefined", "unicode-escape", "raw-unicode-escape", "escape"}
)
# Longer than any registered charset name (the IANA registry's longest is 45 characters).
_MAX_NAME = 64

FALLBACK = "utf-8"


def codec_for(charset: str) -> str | None:
    """The Python codec for a MIME charset name, or ``None`` when it is not a usable charset.

    RFC 2231 language suffixes (``utf-8*en``) are dropped. Only text encodings qualify:
    ``base64`` or ``zlib`` are codecs too, but not charsets. Names are cached, but only
    plausible ones: a 256 KB "charset" must not stay in memory.
    """
    if len(charset) > 4 * _MAX_NAME:
        return None
    return _codec_for(charset)


@functools.lru_cache(maxsize=1024)
def _codec_for(charset: str) -> str | None:
    name = charset.partition("*")[0].strip().lower()
    if not name or len(name) > _MAX_NAME or not name.isascii() or not name.isprintable():
        return None
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError, UnicodeError):
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name in _NOT_CHARSETS:
        return None
    return info.name


def decode_bytes(data: bytes, charset: str | None) -> tuple[str, str | None]:
    """``(text, problem)``: the decoded text, and why it is degraded (``None`` if it is not).

    Undecodable bytes become U+FFFD; a missing or unusable charset decodes as UTF-8, which
    keeps ASCII text (and so the words content rules look for) intact.
    """
    if charset is None:
        codec = FALLBACK
        problem = None
    else:
        found = codec_for(charset)
        codec = found or FALLBACK
        problem = None if found else f"unknown charset {_shown(charset)}"
    try:
        text = data.decode(codec, "replace")
    except (UnicodeError, ValueError, LookupError, TypeError) as exc:
        # A codec that raises despite errors="replace" (none of those admitted is known to,
        # but the registry is open to third-party codecs).
        text = data.decode(FALLBACK, "replace")
        problem = f"charset {_shown(charset or codec)} failed ({type(exc).__name__})"
    if problem is None and "\ufffd" in text and b"\xef\xbf\xbd" not in data:
        problem = f"bytes that are not valid {_shown(charset or codec)}"
    return text, problem


def _shown(charset: str) -> str:
    """A charset name safe to quote in a finding: printable, short."""
    cleaned = "".join(c if c.isprintable() and c.isascii() else "?" for c in charset[:40])
    return repr(cleaned + ("…" if len(charset) > 40 else ""))


_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_NOISE = _B64_ALPHABET + b"= \t\r\n"


def decode_base64(data: bytes, *, partial: bool = False) -> tuple[bytes, bool]:
    """``(decoded, damaged)``: base64 decoded leniently, never raising.

    Characters outside the alphabet are skipped and missing padding is supplied, as mail
    clients do; ``damaged`` says the input was not clean base64 (stray characters, data
    after padding, a dangling character). ``partial`` means the input was cut at a byte
    budget, so an incomplete last group is expected rather than damage.
    """
    damaged = bool(data.translate(None, _B64_NOISE)) or b"=" in data.rstrip(b"= \t\r\n")
    clean = data.translate(None, _B64_DELETE)
    extra = len(clean) % 4
    if partial:
        clean = clean[: len(clean) - extra]
    elif extra == 1:
        clean, damaged = clean[:-1], True
    elif extra:
        clean += b"=" * (4 - extra)
    return binascii.a2b_base64(clean), damaged


_B64_DELETE = bytes(sorted(set(range(256)) - set(_B64_ALPHABET)))
