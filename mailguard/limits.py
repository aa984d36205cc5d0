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
    max_lookalike_domains: int = 10_000
    """Distinct recipient domains per message compared for lookalikes; the rest are not
    examined (the limits rule says so). A new domain costs up to ~0.2 ms (an ``xn--`` one
    is decoded), so this keeps a hostile message of 200,000 domains to a few seconds."""
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
    max_attachments: int = 64
    """Attached files read per message (files inside a ZIP count too)."""
    max_attachment_bytes: int = 32 * 1024 * 1024
    """Decoded bytes read per attached file (and inflated per ZIP archive)."""
    max_attachments_bytes: int = 64 * 1024 * 1024
    """Decoded bytes read from all attached files of a message."""
    max_attachment_rows: int = 100_000
    """Rows (or vCards) read per file; counts beyond are lower bounds."""
    max_attachment_cells: int = 1_000_000
    """Cells of a spreadsheet's used rectangle; a sheet spanning more is not opened."""
    max_attachments_cells: int = 2_000_000
    """Cells read from all attached files of a message."""
    max_attachment_ms: int = 2_000
    """Milliseconds spent reading one attached file."""
    max_attachments_ms: int = 5_000
    """Milliseconds spent reading all attached files of a message."""
    max_zip_entries: int = 10_000
    """Entries in a ZIP-based file (XLSX, ODS, .zip) before it is refused unopened."""
    max_zip_ratio: int = 200
    """Compression ratio of a ZIP entry (above 64 KiB) before the file is refused as a
    zip bomb."""

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str = "config") -> Limits:
        """Validate a ``[limits]`` table; errors start with ``where`` (the file)."""
        return cls(**configfile.integers(cls, data, f"{where}: limits"))
