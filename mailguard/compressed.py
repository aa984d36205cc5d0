"""Message files stored compressed, told by their first bytes and unpacked within a bound.

A mail server can keep its Maildir files compressed (Dovecot's ``mail_compress``, formerly
``zlib``, plugin: the file keeps its name, its content is gzip, bzip2, xz, zstd or lz4), and
archives hold gzipped ``.eml`` files. Read as they are, such messages were "not a message"
error entries: whatever they exposed went unseen. gzip, bzip2 and xz are unpacked with the
standard library; zstd and lz4 need libraries the standard one lacks, so such a file is an
error entry that names its format, never a silent pass.

Unpacking stops at ``max_bytes`` of output (``limits.max_message_bytes``): a few KB that
inflate to gigabytes (a compression bomb) cost what the cap allows, then an error.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Protocol

_BZIP2 = re.compile(rb"BZh[1-9]1AY&SY")  # "BZh", the block size, then the block magic
_GZIP = b"\x1f\x8b\x08"  # the magic and deflate, its only method
_XZ = b"\xfd7zXZ\x00"
_UNSUPPORTED = {b"\x28\xb5\x2f\xfd": "zstd", b"\x04\x22\x4d\x18": "lz4"}
MAX_STREAMS = 16
"""Concatenated streams unpacked from one file (one is what servers and tools write)."""


class CompressedError(Exception):
    """A compressed file that cannot be unpacked here; the message says why (no content)."""

    over_cap = False
    """Whether the output would exceed the cap (a bomb, or just big), not damaged data:
    callers that sort refusals by cause (the attachment reader's limits) read it."""


class CompressedOverCap(CompressedError):
    """More output than the cap allows."""

    over_cap = True


class _Decompressor(Protocol):
    @property
    def eof(self) -> bool: ...
    @property
    def unused_data(self) -> bytes: ...
    def decompress(self, data: bytes, max_length: int = ..., /) -> bytes: ...


def kind(data: bytes) -> str | None:
    """The compression a file's first bytes announce, or ``None`` for anything else (a
    message starts with a header field name, never with these bytes)."""
    if data.startswith(_GZIP):
        return "gzip"
    if data.startswith(_XZ):
        return "xz"
    if _BZIP2.match(data):
        return "bzip2"
    return _UNSUPPORTED.get(data[:4])


def _maker(name: str) -> Callable[[], _Decompressor] | None:
    """Imported on first use: ``check`` of plain messages does not load the codecs."""
    if name == "gzip":
        import zlib

        return lambda: zlib.decompressobj(wbits=31)
    if name == "bzip2":
        import bz2

        return bz2.BZ2Decompressor
    if name == "xz":
        import lzma

        return lzma.LZMADecompressor
    return None


def decompress(data: bytes, max_bytes: int, cap_name: str = "limits.max_message_bytes") -> bytes:
    """The unpacked content of ``data``, at most ``max_bytes``; :class:`CompressedError`
    for a format not unpacked here, damaged or cut-off data, or too much output
    (:class:`CompressedOverCap`, naming ``cap_name``: message files and attachments have
    different caps). Several concatenated streams (``cat a.gz b.gz``) are unpacked one
    after the other."""
    name = kind(data)
    if name is None:
        return data
    make = _maker(name)
    if make is None:
        raise CompressedError(
            f"compressed with {name} (a mail server's mail_compress plugin, perhaps), which "
            "mailguard cannot unpack: not read"
        )
    parts: list[bytes] = []
    room = max_bytes
    rest = data
    try:
        while rest and kind(rest) == name:  # bytes after the last stream: padding, ignored
            if len(parts) == MAX_STREAMS:  # each stream's rest is a copy: bound the copies
                raise CompressedError(
                    f"more than {MAX_STREAMS} concatenated {name} streams; not read"
                )
            unpacker = make()
            part = unpacker.decompress(rest, room + 1)
            if len(part) > room:
                raise CompressedOverCap(
                    f"{name} data that unpacks to more than the size cap of {max_bytes:,} "
                    f"bytes ({cap_name}); not read"
                )
            parts.append(part)
            room -= len(part)
            if not unpacker.eof:
                raise CompressedError(f"{name} data cut off before its end; not read")
            rest = unpacker.unused_data
    except CompressedError:
        raise
    except Exception as exc:  # zlib.error, lzma.LZMAError, OSError (bz2), EOFError, ...
        raise CompressedError(f"damaged {name} data ({type(exc).__name__}); not read") from None
    return b"".join(parts)
