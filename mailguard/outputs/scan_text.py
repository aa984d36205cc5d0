"""The incident register as text: counts only, whatever the options, except the addresses
the privacy policy lists (:attr:`Privacy.list_addresses`)."""

from __future__ import annotations

from mailguard.archive.register import Register
from mailguard.outputs.words import count, dns_text, printable
from mailguard.redact import Privacy


def render_text(register: Register, options: Privacy) -> str:
    lines = []
    if register.interrupted:
        lines += ["INTERRUPTED: the scan was stopped; this register is incomplete.", ""]
    if register.failed_sources or register.unread_paths:
        lines += [*incomplete_lines(register, options), ""]
    for incident in register.incidents:
        r = incident.recipients
        when = incident.date.strftime("%Y-%m-%d %H:%M") if incident.date else "undated"
        line = (
            f"{incident.verdict.upper():<5}  {when}  score {incident.score:>3}  "
            f"{r.get('visible_external', 0):>5} external ({r.get('personal', 0)} personal, "
            f"{count(r.get('exposed_parties', 0), 'party', 'parties')})  {' '.join(incident.codes)}"
        )
        if incident.sensitive:
            line += f"  sensitive: {', '.join(incident.sensitive)}"
        if incident.listed:
            line += f"  attachments list {incident.listed:,}: {', '.join(incident.listed_data)}"
        lines.append(line)
        message_id = options.message_id(incident.message_id) or "(no Message-ID)"
        lines.append(f"       {options.source(incident.source)}  {message_id}")
        if options.list_addresses:
            lines.append(
                "       exposed: " + ", ".join(str(options.address(a)) for a in incident.exposed)
            )
    for error in register.errors:
        lines.append(f"ERROR  {options.source(error.source)}: {options.error(error.message)}")
    if lines:
        lines.append("")
    lines += summary_lines(register)
    lines += provenance_lines(register)
    return "\n".join(map(printable, lines)) + "\n"  # one line each: sources, IDs are the mail's


def incomplete_lines(register: Register, options: Privacy, most: int = 5) -> list[str]:
    """The opening banner of a register that did not read everything it was asked to."""
    lines = []
    for entries, what in (
        (register.failed_sources, "source"),
        (register.unread_paths, "folder"),
    ):
        if not entries:
            continue
        n = len(entries)
        lines.append(
            f"INCOMPLETE: {count(n, what)} could not be read; "
            "an exposure there is not in this register:"
        )
        lines += [
            f"  {options.source(e.source)}: {options.error(e.message)}" for e in entries[:most]
        ]
        if n > most:
            lines.append(f"  ... and {n - most:,} more (see the errors below)")
    return lines


def provenance_lines(register: Register) -> list[str]:
    """How the register was made, in brief (the JSON register has every rule option)."""
    p = register.provenance
    if not p:
        return []
    scoring = p["scoring"]
    internal = ", ".join(p["internal_domains"]) or str(p["internal_domains_default"])
    window = " ".join(f"{key} {p[key]}" for key in ("since", "until") if p.get(key)) or "all dates"
    dns = [f"DNS lookups: {dns_text(p['dns'])}"] if "dns" in p else []
    return [
        f"Made by mailguard {p['mailguard_version']} (rule set {p['rule_set']['digest'][:19]}), "
        f"mode {p['mode']}, {window}; warn at {scoring['warn_at']}, block at "
        f"{scoring['block_at']}; internal domains: {internal}",
        f"Rules enabled: {' '.join(p['enabled_rules']) or 'none'}"
        + (f"; disabled: {' '.join(p['disabled_rules'])}" if p["disabled_rules"] else ""),
        *dns,
    ]


def summary_lines(register: Register) -> list[str]:
    """The closing lines of the text register (also said on stderr when the register goes
    to a file): counts only, never an address."""
    s = register.summary()
    lines: list[str] = []
    period = f"{s['first_date'][:10]} to {s['last_date'][:10]}" if s["first_date"] else "no dates"
    lines.append(
        f"{count(s['messages'], 'message')} scanned ({period}): "
        f"{count(s['incidents'], 'incident')} ({s['block']:,} block, {s['warn']:,} warn), "
        f"{s['pass']:,} pass, {s['error']:,} unreadable"
    )
    if s["failed_sources"] or s["unreadable_paths"]:
        sources, folders = s["failed_sources"], s["unreadable_paths"]
        lines.append(
            f"NOT READ: {count(sources, 'failed source')}, {count(folders, 'unreadable folder')} "
            "(their messages are not counted above)"
        )
    lines.append(
        f"{count(s['unique_exposed_addresses'], 'distinct person', 'distinct people')} exposed "
        f"({s['unique_exposed_personal_addresses']:,} at personal mailboxes), "
        f"{count(s['exposed_domains'], 'domain')}, in {register.elapsed:.1f} s"
    )
    if s.get("people_listed_in_attachments"):
        lines.append(
            f"{count(s['people_listed_in_attachments'], 'person', 'people')} listed in "
            "attachments of incidents (not counted above: no address of theirs was in To/Cc)"
        )
    return lines
