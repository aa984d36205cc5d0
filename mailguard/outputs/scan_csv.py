"""The incident register as CSV: one row per incident, for a spreadsheet register."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable

from mailguard.archive.register import Incident, Register, isoformat_utc
from mailguard.redact import Privacy

CSV_COLUMNS: list[tuple[str, Callable[[Incident, Privacy], object]]] = [
    ("date", lambda i, o: isoformat_utc(i.date) or ""),
    ("verdict", lambda i, o: i.verdict),
    ("score", lambda i, o: i.score),
    ("visible", lambda i, o: i.recipients.get("visible", 0)),
    ("external", lambda i, o: i.recipients.get("visible_external", 0)),
    ("personal", lambda i, o: i.recipients.get("personal", 0)),
    ("external_parties", lambda i, o: i.recipients.get("exposed_parties", 0)),
    ("external_domains", lambda i, o: i.recipients.get("external_domains", 0)),
    ("sensitive_context", lambda i, o: "; ".join(i.sensitive)),
    ("rules", lambda i, o: " ".join(i.codes)),
    ("message_id", lambda i, o: o.message_id(i.message_id) or ""),
    ("sender", lambda i, o: o.address(i.sender) or ""),
    ("subject", lambda i, o: o.subject(i.subject) or ""),
    ("source", lambda i, o: o.source(i.source)),
]


def render_csv(register: Register, options: Privacy) -> str:
    """One row per incident, for a spreadsheet register."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([name for name, _ in CSV_COLUMNS])
    for incident in register.incidents:
        writer.writerow([_cell(get(incident, options)) for _, get in CSV_COLUMNS])
    return out.getvalue()


def _cell(value: object) -> object:
    # A spreadsheet runs a cell that starts with = + - @ as a formula: subjects and
    # sources come from senders, so neutralise them (OWASP "CSV injection").
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value
