"""Open ZIP-based files (XLSX, ODS, a .zip of exports) without trusting what they claim.

Everything is decided from the central directory *before* anything is inflated: the
number of entries, each entry's declared size against the byte cap, its compression ratio
(a zip bomb inflates a few KB to gigabytes), encryption. Then each entry is inflated with
a bounded read, so an entry that lies about its size stops at the cap rather than at the
end of memory. XML in an office file may not declare entities (billion laughs, external
entities): such a file is refused, not parsed.
"""

from __future__ import annotations

import io
import zipfile
import zlib
from collections.abc import Callable

from mailguard.deadline import checkpoint
from mailguard.limits import Limits

SMALL_ENTRY = 64 * 1024
"""Entries that inflate to less than this are not held to the compression ratio: tiny XML
files of repeated markup legitimately compress 500:1."""
_DTD = (b"<!DOCTYPE", b"<!ENTITY")


class Refused(Exception):
    """The file cannot be inspected safely or at all; the text says why (no content)."""

    def __init__(self, reason: str, *, limit: bool = False, encrypted: bool = False) -> None:
        super().__init__(reason)
        self.limit = limit
        self.encrypted = encrypted


def open_zip(data: bytes, limits: Limits) -> zipfile.ZipFile:
    """The archive, after its container passed the checks (entry count); each entry is
    then held to :func:`check_entry` by whoever inflates it."""
    counted = _directory_entries(data)
    if counted > limits.max_zip_entries:  # before zipfile builds an object per entry
        raise Refused(f"{counted:,} entries in the archive (limit {limits.max_zip_entries:,})",
                      limit=True)  # fmt: skip
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
        raise Refused(f"corrupt ZIP container ({type(exc).__name__})") from None
    if len(infos) > limits.max_zip_entries:
        raise Refused(f"{len(infos):,} entries in the archive (limit {limits.max_zip_entries:,})",
                      limit=True)  # fmt: skip
    return archive


def _directory_entries(data: bytes) -> int:
    """Central-directory headers in the region the end record names (0 if there is none):
    a count that costs one ``bytes.count``, where ``zipfile`` spends ~20 µs and a few
    hundred bytes on each entry, so 250,000 empty entries would cost 5 s and 100 MB."""
    eocd = data.rfind(b"PK\x05\x06", max(0, len(data) - 65_557))
    if eocd < 0 or eocd + 22 > len(data):
        return 0
    size = int.from_bytes(data[eocd + 12 : eocd + 16], "little")
    end = eocd
    locator = eocd - 20
    if locator >= 0 and data.startswith(b"PK\x06\x07", locator):  # a zip64 end record
        z64 = data.rfind(b"PK\x06\x06", 0, locator)
        if z64 >= 0:
            size, end = int.from_bytes(data[z64 + 40 : z64 + 48], "little"), z64
    return data.count(b"PK\x01\x02", max(0, end - size), end)


def check_entry(info: zipfile.ZipInfo, limits: Limits) -> None:
    """Refuse an entry from what the central directory declares, before inflating it."""
    if info.flag_bits & 0x1:
        raise Refused("encrypted (password-protected) archive", encrypted=True)
    if info.file_size > limits.max_attachment_bytes:
        raise Refused(
            f"an entry claims {info.file_size:,} bytes uncompressed "
            f"(limit {limits.max_attachment_bytes:,})", limit=True,
        )  # fmt: skip
    if info.file_size > SMALL_ENTRY and info.file_size > limits.max_zip_ratio * max(
        info.compress_size, 1
    ):
        raise Refused(
            f"an entry inflates {info.file_size // max(info.compress_size, 1):,}:1 "
            f"(limit {limits.max_zip_ratio}:1): a zip bomb", limit=True,
        )  # fmt: skip


def read_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, budget: int) -> bytes:
    """Inflate one entry, never past its declared size nor ``budget`` bytes."""
    cap = min(info.file_size, budget)
    out = bytearray()
    try:
        with archive.open(info) as stream:
            while len(out) <= cap:
                checkpoint()
                piece = stream.read(min(1 << 20, cap + 1 - len(out)))
                if not piece:
                    break
                out += piece
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, zlib.error,
            NotImplementedError, RuntimeError) as exc:  # fmt: skip
        raise Refused(f"corrupt ZIP entry ({type(exc).__name__})") from None
    if len(out) > cap:
        raise Refused("an entry inflates beyond its declared size or the byte cap", limit=True)
    return bytes(out)


def office_copy(data: bytes, limits: Limits) -> tuple[bytes, dict[str, bytes]]:
    """An uncompressed copy of an office file's ZIP, and its XML parts by name.

    The spreadsheet reader only ever sees this copy, whose every entry was inflated under
    the caps and checked for entity declarations: it cannot be made to inflate or expand
    more than was checked here.
    """
    archive = open_zip(data, limits)
    declared = 0
    for info in archive.infolist():  # one file: any entry refused refuses it all
        check_entry(info, limits)
        declared += info.file_size
    if declared > limits.max_attachment_bytes:
        raise Refused(f"entries claim {declared:,} bytes uncompressed in total "
                      f"(limit {limits.max_attachment_bytes:,})", limit=True)  # fmt: skip
    out = io.BytesIO()
    xml: dict[str, bytes] = {}
    budget = limits.max_attachment_bytes
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as copy:
        for info in archive.infolist():
            if info.is_dir():
                continue
            body = read_entry(archive, info, budget)
            budget -= len(body)
            if _is_xml(info.filename, body):
                if any(marker in body for marker in _DTD):
                    raise Refused("XML with a DOCTYPE or entity declarations (refused unparsed)",
                                  limit=True)  # fmt: skip
                xml[info.filename] = body
            copy.writestr(info.filename, body)
    return out.getvalue(), xml


def _is_xml(name: str, body: bytes) -> bool:
    """By name or by content: a reader follows relationships to a part of any name
    (``xl/evil.bin``, ``sheet1.XML``), so a part is checked for what it holds."""
    if name.lower().endswith((".xml", ".rels")) or name == "mimetype":
        return True
    head = body[:64].lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith((b"<", b"\xff\xfe", b"\xfe\xff"))


def members(
    data: bytes, limits: Limits, wanted: Callable[[str], bool]
) -> list[tuple[str, bytes | Refused]]:
    """Files of a plain ZIP archive that ``wanted`` names, one level down: each one's
    bytes, or why not. Other files are not inflated at all. Each entry is judged on its
    own: an encrypted file or a bomb beside a list of people must not hide the list."""
    archive = open_zip(data, limits)
    found: list[tuple[str, bytes | Refused]] = []
    budget = limits.max_attachment_bytes
    for info in archive.infolist():
        if info.is_dir() or not wanted(info.filename):
            continue
        try:
            check_entry(info, limits)
            if budget <= 0:
                raise Refused(f"past {limits.max_attachment_bytes:,} bytes inflated from the "
                              "archive, not read", limit=True)  # fmt: skip
            body = read_entry(archive, info, budget)
        except Refused as exc:
            found.append((info.filename, exc))
            continue
        budget -= len(body)
        found.append((info.filename, body))
    return found
