"""Resource limits that keep hostile input bounded in time and memory.

Every limit that is reached becomes a finding (rule tag ``partial-read``) rather than an
exception, so an oversized or maliciously nested message is still decided, and the
operator sees why the decision was made on partial information.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mailguard import configfile


@dataclass(frozen=True, slots=True)
class Limits:
    max_header_bytes: int = 16 * 1024 * 1024
    """Largest header block read; beyond it the rest is treated as body."""
    max_header_field_bytes: int = 256 * 1024
    """Longest single header field before it is reported (non-address fields are cut)."""
    max_addresses: int = 200_000
    """Addresses counted per message before counting stops."""
    max_mime_depth: int = 64
    """Multipart nesting followed when looking for the first text part."""
    max_mime_parts: int = 200
    """Sibling parts examined per multipart when looking for text."""
    body_scan_bytes: int = 64 * 1024
    """Encoded bytes of the first text part that are decoded."""
    body_text_chars: int = 2000
    """Characters of body text given to content checks ("the first part of the body")."""
    max_message_bytes: int = 100 * 1024 * 1024
    """Largest message file (or mbox message) ``check`` and ``scan`` read; a bigger one is
    an error entry naming this cap, never read into memory."""

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str = "config") -> Limits:
        """Validate a ``[limits]`` table; errors start with ``where`` (the file)."""
        return cls(**configfile.integers(cls, data, f"{where}: limits"))
