"""``mailguard domains``: the recipient domains of some mail, and which may be your own.

Sources are the scan's (``.eml`` files and folders, mbox, Maildir, IMAP folders), read by
the scan's planning and readers; from IMAP only header blocks are fetched. Suggestions
only: nothing is written to any config. DNS is used only with ``--dns``; without it no
resolver is even built.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Iterator, Sequence

from mailguard.archive.domain_survey import DEFAULT_DEADLINE, Survey, local_inputs, survey
from mailguard.archive.imap_url import is_imap_url
from mailguard.archive.register import SOURCE, ErrorEntry
from mailguard.commands import CommandError
from mailguard.commands.common import warn
from mailguard.commands.settings import ConfigSource, load_settings
from mailguard.lookalike import KINDS, unicode_form
from mailguard.resolver import DnsService
from mailguard.scoring import EXIT_ERROR
from mailguard.sources import Input

FORMATS = ("text", "json")


def run_domains(
    sources: Sequence[str],
    source: ConfigSource | None = None,
    *,
    fmt: str = "text",
    deadline: float = DEFAULT_DEADLINE,
    pattern: str = "*.eml",
    stderr: Callable[[str], None] | None = None,
) -> int:
    """Survey, print; 0, or 2 when a source or message could not be read."""
    if fmt not in FORMATS:
        raise CommandError(f"--format must be one of {', '.join(FORMATS)}")
    if not (math.isfinite(deadline) and deadline > 0):
        raise CommandError("--deadline must be a positive number of seconds")
    say = stderr or warn
    settings = load_settings(source)
    config = settings.config
    errors: list[ErrorEntry] = []
    inputs = _inputs(sources, config.limits.max_message_bytes, pattern, errors, say)
    service = None
    if settings.dns.enabled:
        dns = settings.dns
        service = DnsService(dns.servers, timeout=dns.timeout, deadline=deadline)
    try:
        result = survey(inputs, config, dns=service, deadline=deadline)
    finally:
        if service is not None:
            service.close()
    result.errors = errors
    sys.stdout.write(render_json(result) if fmt == "json" else render_text(result))
    for entry in errors:
        say(f"mailguard: error: {entry.source}: {entry.message}")
    return EXIT_ERROR if errors or result.unreadable else 0


def _inputs(
    sources: Sequence[str], max_bytes: int, pattern: str, errors: list[ErrorEntry],
    say: Callable[[str], None],
) -> Iterator[Input]:  # fmt: skip
    for source in sources:
        if not is_imap_url(source):
            yield from local_inputs(source, pattern, max_bytes, errors)
            continue
        from mailguard.archive import imap

        label = "IMAP source"  # never the raw URL: it may hold a password
        try:
            target = imap.parse_imap_url(source)
            label = target.label()
            password = imap.password_from_env_or_prompt(target)
            # Headers are all a survey reads: no body is fetched.
            yield from imap.iter_imap(target, password, needs_body=lambda headers: False)
        except (ValueError, imap.ImapError) as exc:
            errors.append(ErrorEntry(label, str(exc), SOURCE))


def render_json(result: Survey) -> str:
    data = {
        "organisation": list(result.organisation),
        "organisation_basis": result.basis,
        "dns": result.dns,
        "fingerprint": result.fingerprint,
        "messages": result.messages,
        "unreadable": result.unreadable,
        "errors": [{"source": e.source, "message": e.message} for e in result.errors],
        "domains": [r.as_json() for r in result.rows],
        "suggestion": result.suggestion,
    }
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def render_text(result: Survey) -> str:
    org = ", ".join(result.organisation) or "unknown (no internal_domains, no sender domain)"
    lines = [
        f"Organisation: {org} ({result.basis})",
        f"Messages read: {result.messages:,}"
        + (f", unreadable: {result.unreadable:,}" if result.unreadable else ""),
    ]
    if result.dns and result.fingerprint:
        fp = result.fingerprint
        lines.append(
            "Tenant-specific MX: " + (", ".join(fp["mx"]) or "none")
            + "; SPF includes: " + (", ".join(fp["spf"]) or "none")
        )  # fmt: skip
    lines.append("")
    table = [("DOMAIN", "MESSAGES", "ADDRESSES", "MARK", "MX/SPF")]
    for row in result.rows:
        shown = unicode_form(row.domain)
        if shown != row.domain:
            shown = f"{shown} ({row.domain})"
        marks = ["internal"] if row.internal else []
        if row.candidate:
            marks.append("candidate internal")
        if row.lookalike is not None:
            look = row.lookalike
            marks.append(f"suspicious: looks like {look.intended} ({KINDS[look.kind]})")
        table.append((shown, f"{row.messages:,}", f"{row.addresses:,}", "; ".join(marks), row.dns))
    widths = [max(len(r[i]) for r in table) for i in range(4)]
    for r in table:
        cells = [r[0].ljust(widths[0]), r[1].rjust(widths[1]), r[2].rjust(widths[2]),
                 r[3].ljust(widths[3]), r[4]]  # fmt: skip
        lines.append("  ".join(cells).rstrip())
    if not result.rows:
        lines.append("(no recipient domains)")
    lines.append("")
    if not result.dns:
        lines.append("No DNS lookups made: run with --dns to find candidate internal domains.")
    suggestion = result.suggestion
    if suggestion:
        lines += ["Suggested (not applied; paste into mailguard.toml if right):", suggestion]
    elif result.dns:
        lines.append("No candidate internal domains found.")
    return "\n".join(lines) + "\n"
