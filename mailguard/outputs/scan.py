"""The formats of ``scan`` (the incident register): one emitter module per format.

=========  =========================================
``text``   :mod:`mailguard.outputs.scan_text`
``json``   :mod:`mailguard.outputs.scan_json`
``csv``    :mod:`mailguard.outputs.scan_csv`
``html``   :mod:`mailguard.outputs.scan_html`
=========  =========================================

Privacy rules, the same in every format, are decided by :class:`mailguard.redact.Privacy`:

* exposed addresses appear only with ``show_addresses`` (and in the data formats, as keyed
  hashes, under ``--redact``), so "unique people exposed" stays checkable;
* with a redactor the sender is hashed and the subject withheld (subjects name people), and
  so is everything else that may carry an address or quote a message: sources, Message-IDs,
  error texts, findings' quotes;
* text output is counts only, whatever the options, except for the addresses asked for.
"""

from __future__ import annotations

from datetime import datetime

from mailguard.archive.register import Register
from mailguard.outputs.scan_csv import CSV_COLUMNS, render_csv
from mailguard.outputs.scan_json import incident_dict, render_json
from mailguard.outputs.scan_text import (
    incomplete_lines,
    provenance_lines,
    render_text,
    summary_lines,
)
from mailguard.redact import Privacy

__all__ = [
    "CSV_COLUMNS",
    "SCAN_FORMATS",
    "ScanRenderOptions",
    "incident_dict",
    "incomplete_lines",
    "provenance_lines",
    "render_csv",
    "render_json",
    "render_register",
    "render_text",
    "summary_lines",
]

SCAN_FORMATS = ("text", "json", "csv", "html")

ScanRenderOptions = Privacy
"""The register's privacy policy: the one policy of every output."""


def render_register(
    register: Register,
    fmt: str,
    options: Privacy,
    *,
    generated: datetime | None = None,
    pretty: bool = False,
) -> str:
    """The register in ``fmt``; ``generated`` (HTML only) fixes the time the page states;
    ``pretty`` indents JSON."""
    if fmt == "json":
        return render_json(register, options, pretty=pretty)
    if fmt == "csv":
        return render_csv(register, options)
    if fmt == "html":
        # Imported here: the HTML page and its stylesheet are only loaded when asked for.
        from mailguard.outputs.scan_html import render_html

        return render_html(register, options, generated=generated)
    if fmt == "text":
        return render_text(register, options)
    raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(SCAN_FORMATS)}")
