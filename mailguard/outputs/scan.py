"""The incident register as text, JSON and CSV (HTML is :mod:`mailguard.outputs.scan_html`).

Privacy rules, the same in every format:

* exposed addresses appear only with ``show_addresses``, and as keyed hashes when a
  redactor is given (``--redact``), so "unique people exposed" stays checkable;
* with a redactor the sender is hashed and the subject withheld (subjects name people), and
  so is everything else that may carry an address or quote a message: sources, Message-IDs,
  error texts, findings' quotes (:class:`mailguard.redact.Privacy` decides, for every format);
* text output is counts only, whatever the options, except for the addresses asked for.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mailguard import __version__
from mailguard.archive.register import Incident, Register, isoformat_utc
from mailguard.outputs.words import count
from mailguard.redact import Privacy
from mailguard.report import SCHEMA_VERSION


@dataclass(frozen=True, slots=True)
class ScanRenderOptions(Privacy):
    """The register's privacy policy: :class:`~mailguard.redact.Privacy`, and addresses are
    listed (as hashes) under ``--redact`` even without ``--show-addresses``."""

    @property
    def list_addresses(self) -> bool:
        return self.show_addresses or self.redactor is not None


def incident_dict(incident: Incident, options: ScanRenderOptions) -> dict[str, Any]:
    """One incident of the JSON contract."""
    item: dict[str, Any] = {
        "source": options.source(incident.source),
        "message_id": options.message_id(incident.message_id),
        "date": isoformat_utc(incident.date),
        "sender": options.address(incident.sender),
        "subject": options.subject(incident.subject),
        "verdict": incident.verdict,
        "score": incident.score,
        "rules": incident.codes,
        "recipients": incident.recipients,
        "sensitive_context": incident.sensitive,
        "exposed_domains": incident.domains,
        "findings": [options.finding(f) for f in incident.findings],
    }
    if options.list_addresses:
        item["exposed_addresses"] = [options.address(a) for a in incident.exposed]
        item["exposed_personal_addresses"] = [options.address(a) for a in incident.personal]
    return item


def render_json(register: Register, options: ScanRenderOptions) -> str:
    data: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "mailguard", "version": __version__},
        "sources": [options.source(s) for s in register.sources],
        "since": register.since.isoformat() if register.since else None,
        "until": register.until.isoformat() if register.until else None,
        "redacted": options.redactor is not None,
        "summary": register.summary(),
        "exposed_domains": dict(register.domains.most_common()),
        "worst": [options.source(i.source) for i in register.worst()],
        "incidents": [incident_dict(i, options) for i in register.incidents],
        "errors": [
            {
                "source": options.source(e.source),
                "message": options.error(e.message),
                "kind": e.kind,
            }
            for e in register.errors
        ],
        "failed_sources": [
            {"source": options.source(e.source), "message": options.error(e.message)}
            for e in register.failed_sources
        ],
        "provenance": _provenance(register, options),
    }
    if options.list_addresses:
        data["exposed_addresses"] = sorted(str(options.address(a)) for a in register.exposed)
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


CSV_COLUMNS: list[tuple[str, Callable[[Incident, ScanRenderOptions], object]]] = [
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


def render_csv(register: Register, options: ScanRenderOptions) -> str:
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


def render_text(register: Register, options: ScanRenderOptions) -> str:
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
    return "\n".join(lines) + "\n"


def _provenance(register: Register, options: Privacy) -> dict[str, Any]:
    """The record of settings; its one path (the config file's) is hashed like any source."""
    data = dict(register.provenance)
    if data.get("config_file"):
        data["config_file"] = options.source(data["config_file"])
    return data


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
    return [
        f"Made by mailguard {p['mailguard_version']} (rule set {p['rule_set']['digest'][:19]}), "
        f"mode {p['mode']}, {window}; warn at {scoring['warn_at']}, block at "
        f"{scoring['block_at']}; internal domains: {internal}",
        f"Rules enabled: {' '.join(p['enabled_rules']) or 'none'}"
        + (f"; disabled: {' '.join(p['disabled_rules'])}" if p["disabled_rules"] else ""),
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
    return lines
