"""Header-block splitting shared by the top-level message and by MIME parts."""

from __future__ import annotations

import email.errors
import email.header
import re
from dataclasses import dataclass

from mailguard.limits import Limits

ADDRESS_HEADERS = ("to", "cc", "bcc", "resent-to", "resent-cc", "resent-bcc")

HEADER_END = re.compile(rb"\r?\n\r?\n")
_FIELD_NAME = re.compile(r"^[!-9;-~]+$")  # printable ASCII except ":" (RFC 5322 ftext)


@dataclass(slots=True)
class HeaderProblem:
    """Something odd about the header block, reported by the input-limits/malformed rules."""

    kind: str  # "oversized-field" | "header-block-truncated" | "no-colon" | "binary"
    detail: str
    size: int = 0


def _decode_block(block: bytes, problems: list[HeaderProblem]) -> list[str]:
    try:
        return block.decode("utf-8").split("\n")
    except UnicodeDecodeError:
        pass
    lines = []
    bad = 0
    for raw_line in block.split(b"\n"):
        try:
            lines.append(raw_line.decode("utf-8"))
        except UnicodeDecodeError:
            bad += 1
            lines.append(raw_line.decode("latin-1"))  # raw 8-bit names: keep every byte
    if bad:
        problems.append(HeaderProblem("binary", f"{bad} header line(s) are not UTF-8", bad))
    return lines


def parse_header_block(
    block: bytes, limits: Limits, problems: list[HeaderProblem]
) -> dict[str, list[str]]:
    headers: dict[str, list[str]] = {}
    name: str | None = None
    parts: list[str] = []
    no_colon = 0

    def finish() -> None:
        if name is None:
            return
        value = "".join(parts).strip()
        key = name.lower()
        if len(value) > limits.max_header_field_bytes:
            problems.append(
                HeaderProblem(
                    "oversized-field",
                    f"{name} header is {len(value):,} characters long",
                    len(value),
                )
            )
            if key not in ADDRESS_HEADERS:  # address lists are bounded by max_addresses
                value = value[: limits.max_header_field_bytes]
        headers.setdefault(key, []).append(value)

    for line in _decode_block(block, problems):
        if line.endswith("\r"):
            line = line[:-1]
        if not line:
            continue
        if line[0] in " \t":
            if name is not None:
                parts.append(line)
            continue
        colon = line.find(":")
        candidate = line[:colon].rstrip() if colon > 0 else ""
        if not candidate or not _FIELD_NAME.match(candidate):
            no_colon += 1
            continue
        finish()
        name = candidate
        parts = [line[colon + 1 :]]
    finish()
    if no_colon:
        problems.append(
            HeaderProblem("no-colon", f"{no_colon} header line(s) are not 'Name: value'", no_colon)
        )
    return headers


def decode_rfc2047(value: str) -> str:
    """Decode encoded-words for display and matching; never raises on junk."""
    if "=?" not in value:
        return value
    try:
        return str(email.header.make_header(email.header.decode_header(value)))
    except (ValueError, LookupError, UnicodeError, email.errors.HeaderParseError):
        return value
