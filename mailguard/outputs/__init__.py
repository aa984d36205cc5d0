"""The formats of ``check``: one emitter module per format, dispatched by :func:`render`.

Each emitter renders a list of reports and decides nothing. What a report may show (which
addresses, hashed or not, which quotes) is decided in one place,
:class:`mailguard.redact.Privacy`, for these formats and the scan register's alike: a
data-protection tool's own output must not become the next leak.

=========  =========================================
``text``   :mod:`mailguard.outputs.text`
``json``   :mod:`mailguard.outputs.json_report`
``sarif``  :mod:`mailguard.outputs.sarif`
=========  =========================================

The scan register's formats are in :mod:`mailguard.outputs.scan`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import Any

from mailguard.redact import Privacy
from mailguard.report import Report
from mailguard.rules import Rule

FORMATS = ("text", "json", "sarif")


RenderOptions = Privacy
"""The privacy policy of a ``check`` report: the one policy of every output."""


def dump_json(doc: object, pretty: bool = False) -> str:
    """JSON text for machines by default: ``indent`` forces the pure-Python encoder, while
    compact output goes through the C one (about 4x faster on a 5,000-message report).
    ``pretty`` (``--pretty``) is for people reading it."""
    if pretty:
        return json.dumps(doc, indent=2, ensure_ascii=False)
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


def message_dict(report: Report, options: RenderOptions) -> dict[str, Any]:
    """The per-message object of the JSON contract, as ``options`` allow it to be shown."""
    entry = report.to_dict()
    entry["source"] = options.source(report.source)
    entry["message_id"] = options.message_id(report.message_id)
    entry["findings"] = [options.finding(f.to_dict()) for f in report.findings]
    return entry


def summary(reports: Sequence[Report]) -> dict[str, Any]:
    counts = Counter(r.verdict for r in reports)
    return {
        "messages": len(reports),
        **{v: counts.get(v, 0) for v in ("pass", "warn", "block", "error")},
    }


def addresses(report: Report, options: RenderOptions) -> list[dict[str, str]]:
    return [
        {"address": options.address(e.address.addr), "header": e.address.header, "kind": e.kind}
        for e in report.exposed()
    ]


def render(
    reports: Sequence[Report],
    fmt: str,
    options: RenderOptions,
    *,
    color: bool = False,
    rules: Sequence[Rule] | None = None,
    pretty: bool = False,
) -> str:
    if fmt == "json":
        from mailguard.outputs.json_report import render_json

        return render_json(reports, options, pretty=pretty)
    if fmt == "sarif":
        from mailguard.outputs.sarif import render_sarif

        return render_sarif(reports, options, rules, pretty=pretty)
    if fmt == "text":
        from mailguard.outputs.text import render_text

        return render_text(reports, options, color=color)
    raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
