"""Personal data in attachments: spreadsheets, exports and contact files that list people.

:func:`analyse_message` finds the attached files of a message (:mod:`.mime`), and reads
CSV/TSV, plain-text tables, vCards, XLSX/XLSM and ODS (python-calamine), one level inside
ZIP archives, within the caps of ``[limits]`` (:mod:`.analysis`, :mod:`.zipsafe`,
:mod:`.sheets`). It counts distinct people and the kinds of data per column
(:mod:`.columns`, :mod:`.identifiers`). The check context computes it only when an
enabled rule reads attachments; :func:`might_attach` lets a message without any skip it.
"""

from __future__ import annotations

from collections.abc import Callable

from mailguard.attachments.analysis import EMPTY, LABELS, Analysis, FileResult
from mailguard.attachments.columns import vocabularies
from mailguard.attachments.mime import attachments, might_attach
from mailguard.limits import Limits

__all__ = ["EMPTY", "LABELS", "Analysis", "FileResult", "analyse_message", "might_attach"]


def analyse_message(
    raw: bytes,
    body_offset: int,
    get: Callable[[str], str | None],
    limits: Limits,
    extra_terms: tuple[str, ...] = (),
) -> Analysis:
    """The attachment analysis of one message (``get`` reads its top-level headers)."""
    from mailguard.attachments.analysis import analyse

    if not might_attach(get("content-type")):
        return EMPTY
    parts, reached = attachments(raw, body_offset, get, limits)
    if not parts and not reached:
        return EMPTY
    return analyse(parts, limits, vocabularies(extra_terms), reached)
