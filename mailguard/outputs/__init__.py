"""Report formats. Each renders a list of reports; none decides anything.

Addresses appear only when the user asks (``show_addresses``), and then hashed when a
:class:`~mailguard.redact.Redactor` is given: a data-protection tool's own output must not
become the next leak.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mailguard.redact import Redactor
from mailguard.report import Report

FORMATS = ("text", "json", "sarif")


@dataclass(frozen=True, slots=True)
class RenderOptions:
    show_addresses: bool = False
    redactor: Redactor | None = None

    def address(self, addr: str) -> str:
        return self.redactor.address(addr) if self.redactor else addr


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
    reports: Sequence[Report], fmt: str, options: RenderOptions, *, color: bool = False
) -> str:
    if fmt == "json":
        from mailguard.outputs.json_report import render_json

        return render_json(reports, options)
    if fmt == "sarif":
        from mailguard.outputs.sarif import render_sarif

        return render_sarif(reports, options)
    if fmt == "text":
        from mailguard.outputs.text import render_text

        return render_text(reports, options, color=color)
    raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
