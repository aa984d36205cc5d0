"""JSON output: the stable contract (``schema_version`` 1) for scripts and pipelines."""

from __future__ import annotations

from collections.abc import Sequence

from mailguard import __version__
from mailguard.outputs import RenderOptions, addresses, dump_json, message_dict, summary
from mailguard.report import SCHEMA_VERSION, Report


def render_json(reports: Sequence[Report], options: RenderOptions, *, pretty: bool = False) -> str:
    messages = []
    for report in reports:
        entry = message_dict(report, options)
        if options.list_addresses:
            entry["addresses"] = addresses(report, options)
        messages.append(entry)
    doc = {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "mailguard", "version": __version__},
        "summary": summary(reports),
        "messages": messages,
    }
    return dump_json(doc, pretty)
