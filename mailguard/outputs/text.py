"""Human-readable output: the verdict, the counts that explain it, and what to do.

Shows counts and domains by default; individual addresses only when the privacy policy lists
them (``--show-addresses``, or ``--redact`` as hashes). On a terminal, lines are wrapped to
its width and continuation lines keep their indent, so a finding stays visibly under its
message; piped output is never wrapped.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape
from rich.padding import Padding
from rich.text import Text

from mailguard.outputs import RenderOptions, summary
from mailguard.outputs.words import count, printable
from mailguard.report import Report
from mailguard.rules import find_rule

STYLE = {"pass": "bold green", "warn": "bold yellow", "block": "bold red", "error": "bold magenta"}


def render_text(
    reports: Sequence[Report], options: RenderOptions, *, color: bool = False, quiet: bool = False
) -> str:
    """The reports, then one summary line; ``quiet`` leaves out messages that pass."""
    buffer = io.StringIO()
    width = shutil.get_terminal_size((100, 24)).columns if color else 100
    console = Console(
        file=buffer, force_terminal=color, no_color=not color, width=width,
        highlight=False, soft_wrap=not color,
    )  # fmt: skip
    for report in reports:
        if not (quiet and report.verdict == "pass"):
            _message(console, report, options)
    totals = summary(reports)
    parts = [f"{totals[v]:,} {v}" for v in ("block", "warn", "pass", "error") if totals[v]]
    if totals["messages"]:
        console.print(f"{count(totals['messages'], 'message')} checked: {', '.join(parts)}")
    else:  # nothing was judged at all: "nothing to report" would mislead
        console.print("no message checked")
    skipped = {f"{s.code} {s.name} ({s.reason})": None for r in reports for s in r.skipped}
    if skipped:
        console.print(escape(f"not run: {'; '.join(skipped)}"), style="dim")
    return buffer.getvalue()


def _say(console: Console, line: str | Text, indent: int = 6) -> None:
    """One indented line (``str`` is rich markup); wrapped lines keep the indent."""
    body = Text.from_markup(printable(line)) if isinstance(line, str) else line
    if console.soft_wrap:
        console.print(Text(" " * indent) + body)
    else:
        console.print(Padding(body, (0, 0, 0, indent), expand=False))


def _message(console: Console, report: Report, options: RenderOptions) -> None:
    head = Text()
    head.append(f"{report.verdict.upper():5}", style=STYLE[report.verdict])
    head.append(f"  {printable(options.source(report.source))}  ", style="bold")
    head.append(f"score {report.score}/100", style="dim")
    console.print(head)
    if report.approval is not None:
        _say(console, escape(report.approval.note()), 6)
    r = report.recipients
    if report.verdict != "error":
        external = r["visible_external"]
        line = (
            f"{r['visible']:,} visible in To/Cc ({r['visible_internal']:,} internal, "
            f"{external:,} external"
        )
        if external:
            orgs = max(r.get("exposed_parties", 0) - r["personal"], 0)
            line += f": {r['personal']:,} personal, {count(orgs, 'other organisation')}"
        line += f") · Bcc {r['bcc']:,}"
        _say(console, escape(line))
        top = r.get("top_domains") or []
        if top and external:
            more = r["external_domains"] - len(top)
            shown = ", ".join(f"{d} {n:,}" for d, n in top) + (
                f", +{more} more" if more > 0 else ""
            )
            _say(console, escape(f"external domains: {shown}"))
    for f in report.findings:
        message = options.finding(f.to_dict())["message"]
        _say(
            console,
            f"[bold]+{f.weight:<3}[/bold] [cyan]{f.code}[/cyan] {f.name}: {escape(message)}",
        )
    if report.findings and report.verdict in ("warn", "block", "error"):
        first = report.findings[0]
        fix = (first.rule or find_rule(first.code)).doc["fix"]
        _say(console, f"[dim]how to fix: {escape(_first_sentence(fix))}[/dim]")
    if options.list_addresses:
        for entry in report.exposed():
            a = entry.address
            _say(console, escape(f"{a.header:<9} {entry.kind:<12} {options.address(a.addr)}"), 8)


def _first_sentence(text: str) -> str:
    flat = " ".join(text.split())
    end = flat.find(". ")
    return flat if end < 0 else flat[: end + 1]
