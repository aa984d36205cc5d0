"""Personal data in attachments: spreadsheets, exports and contact files that list people.

:func:`analyse_message` finds the attached files of a message (:mod:`.mime`), and reads
CSV/TSV, plain-text tables, vCards, XLSX/XLSM and ODS (python-calamine), one level inside
ZIP archives, within the caps of ``[limits]`` (:mod:`.analysis`, :mod:`.zipsafe`,
:mod:`.sheets`). It counts distinct people and the kinds of data per column
(:mod:`.columns`, :mod:`.identifiers`). The check context computes it only when an
enabled rule reads attachments; :func:`might_attach` lets a message without any skip it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailguard.attachments.mime import might_attach, uuencoded
from mailguard.attachments.model import EMPTY, LABELS, Analysis, FileResult

if TYPE_CHECKING:
    from mailguard.config import Config
    from mailguard.message import Message

__all__ = [
    "EMPTY",
    "LABELS",
    "Analysis",
    "FileResult",
    "analyse_message",
    "might_attach",
    "uuencoded",
]


def analyse_message(message: Message, config: Config) -> Analysis:
    """The attachment analysis of one message, with the caps of ``config.limits``."""
    types = message.headers.get("content-type")
    if not might_attach(types[0] if types else None) and not uuencoded(
        message.raw, message.body_offset
    ):
        return EMPTY  # the common case: a Content-Type look and one find
    from mailguard.attachments.analysis import analyse
    from mailguard.attachments.columns import vocabularies
    from mailguard.attachments.mime import attachments

    parts, reached = attachments(message.raw, message.body_offset, message.get, config.limits)
    if not parts and not reached:
        return EMPTY
    vocab = vocabularies(config.sensitive_settings.extra_terms)
    return analyse(parts, config.limits, vocab, reached)
