"""Escaping, small pieces of markup and the wording of values (dates, sizes, durations)
that every part of the HTML register uses.

Every value that comes from the scanned mail goes through :func:`esc`; helpers that take
HTML (``table_rows``) say so, and their callers escape what they put in.
"""

from __future__ import annotations

import html
from datetime import UTC, date, datetime
from typing import Any

from mailguard.archive.register import Incident
from mailguard.outputs.words import printable


def esc(value: object) -> str:
    """``value`` as HTML text, its control characters shown as escapes: a bidirectional
    override in a subject or file name would otherwise make the register read differently
    from what the mail holds (``invoice\\u202efdp.exe`` shown as ``invoiceexe.pdf``)."""
    return html.escape(printable(str(value), lines=True), quote=True)


def table_rows(rows: list[tuple[str, str]]) -> str:
    """Key/value rows; values are already HTML (each caller escapes what it puts in)."""
    return "".join(f'<tr><th scope="row">{esc(k)}</th><td>{v}</td></tr>' for k, v in rows)


def todo(label: str, hint: str = "") -> str:
    hint_html = f'<span class="hint">{esc(hint)}</span>' if hint else ""
    return f'<div class="todo"><strong>To be completed: {esc(label)}</strong>{hint_html}</div>'


def verdict_badge(verdict: str) -> str:
    return f'<span class="verdict verdict-{esc(verdict)}">{esc(verdict.upper())}</span>'


def code_or(text: str, missing: str) -> str:
    return f"<code>{esc(text)}</code>" if text else esc(missing)


def anchor(ref: str) -> str:
    return ref.lower()


def int_of(mapping: dict[str, Any], key: str) -> int:
    try:
        return int(mapping.get(key, 0) or 0)
    except (TypeError, ValueError):
        return 0


def subjects(incident: Incident) -> int:
    """Data subjects of one incident: external addresses visible in To/Cc, less mailing
    lists (which hide their members)."""
    r = incident.recipients
    return max(int_of(r, "visible_external") - int_of(r, "mailing_lists"), 0)


def utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def datetime_text(value: datetime | None, *, short: bool = False) -> str:
    if value is None:
        return "undated" if short else "unknown (no readable Date header)"
    return utc(value).strftime("%Y-%m-%d %H:%M" if short else "%Y-%m-%d %H:%M:%S UTC")


def period_text(first: datetime | None, last: datetime | None) -> str:
    if first is None or last is None:
        return "no dated messages"
    return f"{datetime_text(first, short=True)} to {datetime_text(last, short=True)} (UTC)"


def day_text(value: date | datetime) -> str:
    if isinstance(value, datetime):
        value = utc(value)
        if (value.hour, value.minute, value.second) != (0, 0, 0):
            return value.strftime("%Y-%m-%d %H:%M UTC")
        value = value.date()
    return value.isoformat()


def window_text(since: date | datetime | None, until: date | datetime | None) -> str:
    """The scanner admits undated messages whatever the window, and the reader should know."""
    if since is None and until is None:
        return ""
    parts = []
    if since is not None:
        parts.append(f"on or after {day_text(since)}")
    if until is not None:
        parts.append(f"on or before {day_text(until)}")
    return f"messages dated {' and '.join(parts)}; undated messages were included"


def size_text(n: int) -> str:
    if n <= 0:
        return "not measured"
    if n < 1000:
        return f"{n:,} bytes"
    value = float(n)
    for unit in ("kB", "MB", "GB"):
        value /= 1000
        if value < 1000 or unit == "GB":
            break
    return f"{value:,.1f} {unit}"


def duration_text(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"
