"""The incident register as one HTML file a DPO can hand to an auditor, a board or a regulator.

GDPR Art. 33(5) requires every personal-data breach to be documented, whether or not it is
notified; Art. 33(3) says what a record holds. So each incident gets a record with those
fields filled from what the scan knows (nature, categories and numbers of data subjects and
records) and clearly marked boxes for what only a person can decide (consequences,
measures, notification). Archive-wide figures count *people* (distinct addresses), not
messages, because that is the number a regulator asks for.

The file must open years later on an air-gapped machine and print cleanly: everything is
inline (CSS, SVG chart), nothing is fetched, no script runs, and a Content-Security-Policy
forbids loading anything should a future edit slip. It is built with ``html.escape`` and
f-strings rather than a template engine: the markup is small, a dependency would have to be
audited and shipped for one output format, and explicit escaping at each value keeps the
"every untrusted string is escaped" rule visible in review. Subjects, sources and finding
messages come from the scanned mail and are hostile input.

Addresses follow the other outputs: counts by default, addresses only with
``show_addresses``, and with a :class:`~mailguard.redact.Redactor` no raw address, subject,
source, Message-ID, error text or quote from a message is written at all — the register
must not become the next leak. :class:`mailguard.redact.Privacy` decides, as for the other
formats.
"""

from __future__ import annotations

import html
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from mailguard import __version__
from mailguard.archive.register import Incident, Register
from mailguard.domains import registrable_domain
from mailguard.redact import Privacy, Redactor
from mailguard.rules import TAG_PARTIAL, TAG_SENSITIVE
from mailguard.sensitive import vocabulary

UNDATED = "undated"
TOP_DOMAINS = 15
WORST = 10
MAX_FILLED_MONTHS = 72
"""Months with no incident are drawn as empty slots up to this span; a wider span (usually
one bogus Date header from 1970) would squeeze every bar to a hairline, so then only
months with incidents are drawn and the chart says so."""
MAX_BAR_LABELS = 24

_CSS = """
:root { color-scheme: light; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
  sans-serif; color: #1a1a1a; background: #fff; max-width: 1100px; margin: 0 auto;
  padding: 24px 32px 48px; }
h1 { font-size: 1.75em; margin: 0 0 .3em; }
h2 { font-size: 1.3em; border-bottom: 2px solid #1a1a1a; padding-bottom: .2em; margin: 2em 0 .6em; }
h3 { font-size: 1.15em; margin: .8em 0 .4em; }
h4 { font-size: 1em; margin: 1.2em 0 .3em; }
table { border-collapse: collapse; width: 100%; margin: .4em 0 1em; }
th, td { text-align: left; vertical-align: top; padding: 4px 8px; border-bottom: 1px solid #ccc; }
thead th { background: #f0f0f0; border-bottom: 2px solid #888; }
tbody th { font-weight: 600; width: 16em; }
td > ul { margin: 0; padding-left: 1.2em; }
table.figures { width: auto; min-width: 28em; }
table.figures tbody th { width: auto; padding-right: 2em; }
.nowrap { white-space: nowrap; }
.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  font-size: .88em; overflow-wrap: anywhere; }
nav { font-size: .9em; margin: 1em 0; }
nav a { margin-right: 1em; }
.warning { border: 3px solid #b00020; background: #fdecee; padding: 12px 16px; margin: 1em 0; }
.notice { border-left: 4px solid #555; background: #f5f5f5; padding: 8px 12px; margin: 1em 0; }
.lead { font-size: 1.08em; }
.stats { display: grid; grid-template-columns: repeat(4, 1fr); gap: 12px; margin: 1em 0; }
.stat { border: 1px solid #bbb; border-radius: 4px; padding: 10px 12px; }
.stat .n { display: block; font-size: 1.9em; font-weight: 700; line-height: 1.2; }
.stat .l { display: block; font-size: .85em; color: #444; }
.verdict { font-weight: 700; font-size: .8em; letter-spacing: .06em; padding: 0 6px;
  border: 1px solid currentColor; border-radius: 3px; white-space: nowrap; }
.verdict-block { color: #8b0000; background: #fde8e8; }
.verdict-warn { color: #6b4200; background: #fff1cc; }
.flag { font-weight: 600; }
.incident { border: 1px solid #bbb; border-radius: 4px; padding: 2px 20px 14px; margin: 28px 0; }
.todo { border: 2px dashed #777; border-radius: 3px; padding: 6px 10px; min-height: 2.6em; }
.todo strong { display: block; }
.todo .hint { color: #555; font-size: .9em; }
.addresses { columns: 3 16em; font-size: .88em; margin: .3em 0 1em; padding-left: 2em; }
.backlink { font-size: .85em; }
figure { margin: 0; }
figcaption { font-size: .9em; color: #444; }
svg text { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; }
footer { margin-top: 3em; font-size: .9em; }
footer li { margin: .3em 0; }
@page { size: A4; margin: 15mm; }
@media print {
  body { max-width: none; padding: 0; font-size: 9pt; line-height: 1.35; }
  th, td { padding: 2px 5px; }
  tbody th { width: 11em; }
  .todo { padding: 3px 8px; min-height: 0; }
  .incident h4 { margin: .6em 0 .2em; }
  nav, .backlink { display: none; }
  a { color: inherit; text-decoration: none; }
  .incident { break-before: page; border: none; padding: 0; margin: 0; }
  h2, h3, h4 { break-after: avoid; }
  tr, .todo, .stat, figure { break-inside: avoid; }
  .warning { border-width: 2pt; }
}
"""

_CSP = "default-src 'none'; style-src 'unsafe-inline'"


@dataclass(frozen=True, slots=True)
class _View:
    """What every section needs: the register, the privacy policy and the record references."""

    register: Register
    privacy: Privacy
    refs: dict[int, str]
    """``id(incident)`` -> ``INC-0001``: incidents are unhashable dataclasses."""

    @property
    def redactor(self) -> Redactor | None:
        return self.privacy.redactor

    @property
    def show_addresses(self) -> bool:
        return self.privacy.show_addresses

    def address(self, addr: str) -> str:
        return self.privacy.address(addr)

    def subject(self, subject: str | None) -> str:
        return self.privacy.subject(subject) or "(no subject)"

    def ref(self, incident: Incident) -> str:
        return self.refs[id(incident)]


def render_html(
    register: Register,
    *,
    redactor: Redactor | None = None,
    show_addresses: bool = False,
    generated: datetime | None = None,
    title: str = "mailguard incident register",
) -> str:
    """The register as one self-contained HTML document; the same for the same ``generated``."""
    incidents = register.incidents
    view = _View(
        register=register,
        privacy=Privacy(show_addresses, redactor),
        refs={id(i): f"INC-{n:04d}" for n, i in enumerate(incidents, 1)},
    )
    when = generated or datetime.now(UTC)
    body = [
        _header(view, title, when),
        _summary(view),
        _chart_section(register),
        _domains(register),
        _worst(view),
        _records(view, incidents),
        _errors(view),
        _provenance(view),
        _footer(when),
    ]
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
        '<meta name="referrer" content="no-referrer">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta name="generator" content="mailguard {_e(__version__)}">\n'
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n"
        f'<body id="top">\n{"".join(body)}</body>\n</html>\n'
    )


# ---------------------------------------------------------------------------- sections


def _header(view: _View, title: str, when: datetime) -> str:
    reg = view.register
    sources = "".join(f"<li><code>{_e(view.privacy.source(s))}</code></li>" for s in reg.sources)
    rows = [
        ("Generated", _e(_datetime(when))),
        ("Sources scanned", f"<ul>{sources}</ul>" if sources else "not recorded"),
        ("Period covered", _e(_period(reg.total.first, reg.total.last))),
    ]
    window = _window(reg.since, reg.until)
    if window:
        rows.append(("Date filter", _e(window)))
    rows += [
        ("Addresses in this report", _e(_address_policy(view))),
        ("Produced by", f"mailguard {_e(__version__)}"),
        ("Data protection officer / contact point (Art. 33(3)(b))", _todo("Name and contact")),
    ]
    warning = ""
    if reg.interrupted:
        warning = (
            '<div class="warning" role="alert"><strong>Incomplete register: the scan was '
            "interrupted.</strong> Only the messages read before the interruption are counted "
            "here; the figures are lower bounds. Run the scan again to complete the register."
            "</div>\n"
        )
    warning += _not_read_warning(view)
    nav = (
        '<nav aria-label="Contents"><a href="#summary">Summary</a><a href="#chart">Over time'
        '</a><a href="#domains">Domains</a><a href="#worst">Worst incidents</a><a href="#records"'
        '>Incident records</a><a href="#errors">Errors</a><a href="#provenance">How made</a>'
        '<a href="#method">Method</a></nav>\n'
    )
    return (
        f"<header>\n<h1>{_e(title)}</h1>\n{warning}"
        f'<table class="meta"><tbody>{_rows(rows)}</tbody></table>\n</header>\n{nav}'
    )


def _not_read_warning(view: _View, most: int = 10) -> str:
    """The banner naming failed sources and unreadable folders: without it a register of a
    source that was never read would open with "no exposure was found"."""
    reg = view.register
    parts = []
    for entries, what in ((reg.failed_sources, "source"), (reg.unread_paths, "folder")):
        if not entries:
            continue
        items = "".join(
            f"<li><code>{_e(view.privacy.source(e.source))}</code>: "
            f"{_e(view.privacy.error(e.message))}</li>"
            for e in entries[:most]
        )
        if len(entries) > most:
            items += f"<li>… and {len(entries) - most:,} more (see Errors)</li>"
        parts.append(
            f"<strong>{_count(len(entries), what)} could not be read.</strong> An exposure "
            f"there is not in this register.<ul>{items}</ul>"
        )
    if not parts:
        return ""
    return (
        '<div class="warning" role="alert"><strong>Incomplete register.</strong> '
        + "".join(parts)
        + "</div>\n"
    )


def _summary(view: _View) -> str:
    reg = view.register
    n_inc = len(reg.total.incidents)
    sensitive = sum(1 for i in reg.total.incidents if i.sensitive)
    people, public = len(reg.exposed), len(reg.personal)
    if n_inc:
        lead = (
            f"{_count(n_inc, 'message')} exposed recipients' addresses in To/Cc. Across the "
            f"archive, {_count(people, 'distinct person', 'distinct people')} outside the "
            f"organisation had their address disclosed, {public:,} of them members of the "
            f"public at personal mailboxes."
        )
        if sensitive:
            lead += (
                f" In {_count(sensitive, 'incident')} the context also reveals something "
                "sensitive about the recipients (see the records)."
            )
    else:
        lead = "No message was scored warn or block: no exposure of recipients was found"
        lead += " in the messages that were read." if reg.errors or reg.interrupted else "."
        if reg.failed_sources or reg.unread_paths:
            lead = (
                f"Not everything could be read ({_count(len(reg.failed_sources), 'source')} "
                f"and {_count(len(reg.unread_paths), 'folder')} failed, listed above). {lead}"
            )
    cards = [
        (reg.total.messages, "messages scanned"),
        (n_inc, "incidents (warn or block)"),
        (people, "unique people exposed"),
        (public, "of whom members of the public"),
    ]
    stats = "".join(
        f'<div class="stat"><span class="n">{n:,}</span><span class="l">{_e(label)}</span></div>'
        for n, label in cards
    )
    rows = [
        ("Messages scanned", reg.total.messages),
        ("Pass (nothing to report)", reg.count("pass")),
        ("Warn", reg.count("warn")),
        ("Block", reg.count("block")),
        ("Could not be read (error)", reg.count("error")),
        ("Sources that could not be read (not counted as messages)", len(reg.failed_sources)),
        ("Folders that could not be read (not counted as messages)", len(reg.unread_paths)),
        ("Incidents (warn or block)", n_inc),
        ("Incidents with sensitive context", sensitive),
        ("Unique people exposed across the archive", people),
        ("… of whom members of the public (personal mailboxes)", public),
        ("Distinct exposed domains", len(reg.domains)),
    ]
    table = "".join(
        f'<tr><th scope="row">{_e(k)}</th><td class="num">{v:,}</td></tr>' for k, v in rows
    )
    table += _rows(
        [
            ("Dates of messages", _e(_period(reg.total.first, reg.total.last))),
            ("Data read", _e(_size(reg.total.bytes))),
            ("Scan time", _e(_duration(reg.elapsed))),
        ]
    )
    return (
        f'<section id="summary">\n<h2>Summary</h2>\n<p class="lead">{_e(lead)}</p>\n'
        f'<div class="stats">{stats}</div>\n<table class="figures"><tbody>{table}</tbody>'
        "</table>\n</section>\n"
    )


def _chart_section(register: Register) -> str:
    months = register.by_month()
    if not months:
        body = '<p class="notice">No incidents: there is nothing to chart.</p>'
    else:
        body = _chart(months)
    return f'<section id="chart">\n<h2>Incidents over time</h2>\n{body}\n</section>\n'


def _domains(register: Register) -> str:
    top = register.domains.most_common(TOP_DOMAINS)
    if not top:
        return (
            '<section id="domains">\n<h2>Top exposed domains</h2>\n'
            "<p>No external address was exposed.</p>\n</section>\n"
        )
    distinct = _distinct_by_domain(register.exposed)
    rows = "".join(
        f'<tr><td>{_e(domain)}</td><td class="num">{distinct.get(domain, 0):,}</td>'
        f'<td class="num">{times:,}</td></tr>'
        for domain, times in top
    )
    more = len(register.domains) - len(top)
    verb = "is" if more == 1 else "are"
    note = f"<p>{_count(more, 'further domain')} {verb} not listed.</p>" if more > 0 else ""
    return (
        '<section id="domains">\n<h2>Top exposed domains</h2>\n'
        "<p>Organisations and mail providers whose users' addresses were visible. Domains "
        "identify organisations or providers, not people, so they are shown in full.</p>\n"
        '<table><thead><tr><th scope="col">Domain</th><th scope="col" class="num">Distinct '
        'addresses</th><th scope="col" class="num">Times exposed (summed over incidents)</th>'
        f"</tr></thead><tbody>{rows}</tbody></table>\n{note}</section>\n"
    )


def _worst(view: _View) -> str:
    worst = view.register.worst(WORST)
    if not worst:
        return '<section id="worst">\n<h2>Worst incidents</h2>\n<p>None.</p>\n</section>\n'
    head = "".join(
        f'<th scope="col"{_NUM_CLASS if h in _NUMERIC else ""}>{_e(h)}</th>'
        for h in _WORST_HEADINGS
    )
    rows = "".join(
        f'<tr><td class="nowrap"><a href="#{_anchor(view.ref(i))}">{_e(view.ref(i))}</a></td>'
        f'<td class="nowrap">{_e(_datetime(i.date, short=True))}</td>'
        f"<td>{_verdict(i.verdict)}</td>"
        f'<td class="num">{i.score}</td><td class="num">{_subjects(i):,}</td>'
        f'<td class="num">{i.personal_count:,}</td>'
        f"<td>{_e(', '.join(i.sensitive) or '—')}</td>"
        f"<td>{_e(' '.join(i.codes))}</td></tr>"
        for i in worst
    )
    which = (
        f"All {_count(len(worst), 'incident')}"
        if len(worst) == len(view.register.total.incidents)
        else f"The {len(worst)} highest-scoring incidents"
    )
    return (
        f'<section id="worst">\n<h2>Worst incidents</h2>\n<p>{which}, highest score first '
        "(most people exposed first among equal scores). The reference links to the full "
        "record.</p>\n"
        f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>\n</section>\n"
    )


_WORST_HEADINGS = (
    "Ref.", "Date (UTC)", "Verdict", "Score", "People exposed", "Members of the public",
    "Sensitive context", "Rules",
)  # fmt: skip
_NUMERIC = {"Score", "People exposed", "Members of the public"}
_NUM_CLASS = ' class="num"'


def _records(view: _View, incidents: list[Incident]) -> str:
    intro = (
        "<p>One record per incident, oldest first, with the fields of GDPR Art. 33(3). Each "
        "record documents a possible personal data breach (Art. 33(5)); dashed boxes are for "
        "the data protection officer to complete.</p>\n"
        if incidents
        else "<p>No incidents, so no records.</p>\n"
    )
    if incidents and not view.show_addresses:
        intro += (
            '<p class="notice">The exposed addresses are not listed in this report; produce '
            "it with <code>--show-addresses</code> to include them.</p>\n"
        )
    records = "".join(_record(view, i) for i in incidents)
    return (
        f'<section id="records">\n<h2>Incident records (GDPR Art. 33)</h2>\n{intro}{records}'
        "</section>\n"
    )


def _record(view: _View, incident: Incident) -> str:
    ref = view.ref(incident)
    findings = "".join(
        f"<li><code>{_e(f.get('code', ''))}</code> {_e(f.get('name', ''))} "
        f"(+{_e(f.get('weight', 0))}): {_e(str(f.get('message', '')))}</li>"
        for f in map(view.privacy.finding, incident.findings)
    )
    ident = [
        ("Date and time (UTC)", _e(_datetime(incident.date))),
        ("Source", f"<code>{_e(view.privacy.source(incident.source))}</code>"),
        ("Message-ID", _code_or(view.privacy.message_id(incident.message_id) or "", "none")),
        ("Sender", _code_or(view.address(incident.sender) if incident.sender else "", "unknown")),
        ("Subject", _e(view.subject(incident.subject))),
        ("Verdict and score", f"{_verdict(incident.verdict)} score {incident.score} of 100"),
        ("Findings", f"<ul>{findings}</ul>" if findings else "none recorded"),
    ]
    art33 = [
        ("Nature of the breach", _e(_nature(incident))),
        ("Categories of data subjects", _data_subjects(incident)),
        ("Approximate number of data subjects", _e(_approximate(incident))),
        ("Categories and approximate number of personal data records", _data_records(incident)),
        ("Likely consequences", _todo("Likely consequences", _consequence_hint(incident))),
        ("Measures taken or proposed", _todo("Measures taken or proposed", _MEASURES_HINT)),
        ("Reported to the supervisory authority?", _todo("Yes / no, date, reference", _SA_HINT)),
        ("Data subjects informed?", _todo("Yes / no, date, how", _INFORMED_HINT)),
    ]
    return (
        f'<article class="incident" id="{_anchor(ref)}" aria-labelledby="{_anchor(ref)}-h">\n'
        f'<h3 id="{_anchor(ref)}-h">{_e(ref)} {_verdict(incident.verdict)} '
        f"{_e(_datetime(incident.date, short=True))}</h3>\n"
        f"<table><tbody>{_rows(ident)}</tbody></table>\n"
        "<h4>Record under GDPR Art. 33(3)</h4>\n"
        f'<table class="art33"><tbody>{_rows(art33)}</tbody></table>\n'
        f"{_exposed_list(view, incident)}"
        '<p class="backlink"><a href="#worst">Back to worst incidents</a> · '
        '<a href="#top">Top</a></p>\n</article>\n'
    )


def _errors(view: _View) -> str:
    errors = view.register.errors
    if not errors:
        return (
            '<section id="errors">\n<h2>Errors</h2>\n<p>None: every message found was read '
            "and checked.</p>\n</section>\n"
        )
    rows = "".join(
        f'<tr><td class="num">{n}</td><td><code>{_e(view.privacy.source(e.source))}</code></td>'
        f"<td>{_e(view.privacy.error(e.message))}</td></tr>"
        for n, e in enumerate(errors, 1)
    )
    return (
        f'<section id="errors">\n<h2>Errors</h2>\n<p>{_count(len(errors), "item")} could not be '
        f"read and {'was' if len(errors) == 1 else 'were'} <strong>not checked</strong>. An "
        "exposure there would not appear in this register.</p>\n"
        '<table><thead><tr><th scope="col" class="num">#</th><th scope="col">Source</th>'
        f'<th scope="col">Problem</th></tr></thead><tbody>{rows}</tbody></table>\n</section>\n'
    )


def _provenance(view: _View) -> str:
    """Everything that decides the numbers, so an auditor can reproduce them."""
    p = view.register.provenance
    if not p:
        return (
            '<section id="provenance">\n<h2>How this register was made</h2>\n<p>Not '
            "recorded: this register was not made by <code>mailguard scan</code>.</p>\n"
            "</section>\n"
        )
    scoring = p["scoring"]
    internal = ", ".join(p["internal_domains"]) or f"none set: {p['internal_domains_default']}"
    rows = [
        ("mailguard version", _e(p["mailguard_version"])),
        ("Rule set", f"{_e(p['rule_set']['version'])}, <code>{_e(p['rule_set']['digest'])}</code>"),
        ("Mode", _e(p["mode"])),
        ("Date filter", _e(_window(view.register.since, view.register.until) or "none")),
        (
            "Configuration file",
            _code_or(view.privacy.source(p["config_file"]) or "", "none (defaults)"),
        ),
        ("Internal domains", _e(internal)),
        ("Thresholds", _e(f"warn at score {scoring['warn_at']}, block at {scoring['block_at']}")),
        ("Disabled rules", _e(", ".join(p["disabled_rules"]) or "none")),
        ("Personal mailbox domains", _e(p["personal_domains"])),
        ("Limits", _e(", ".join(f"{k} = {v:,}" for k, v in p["limits"].items()))),
    ]
    rules = "".join(
        f"<tr><td><code>{_e(code)}</code></td><td>{_e(r['severity'])}</td>"
        f'<td class="num">{_e(r["weight"])}</td><td>'
        + (_e(", ".join(f"{k} = {v!r}" for k, v in r["options"].items())) or "none")
        + "</td></tr>"
        for code, r in p["rules"].items()
    )
    return (
        '<section id="provenance">\n<h2>How this register was made</h2>\n<p>Scanning the '
        "same sources with these settings gives the same figures; a different figure points "
        "to a different setting.</p>\n"
        f'<table class="meta"><tbody>{_rows(rows)}</tbody></table>\n'
        '<table><thead><tr><th scope="col">Enabled rule</th><th scope="col">Severity</th>'
        '<th scope="col" class="num">Weight</th><th scope="col">Options</th></tr></thead>'
        f"<tbody>{rules}</tbody></table>\n</section>\n"
    )


def _footer(when: datetime) -> str:
    points = [
        "<strong>Incidents</strong> are messages mailguard scored <em>warn</em> or "
        "<em>block</em>. Each one is a possible personal data breach to be assessed; the "
        "score reflects how many unrelated people could see each other's addresses and "
        "whether the context is sensitive.",
        "<strong>Unique people exposed</strong> is the number of distinct external email "
        "addresses visible in To or Cc of incident messages, after normalising each address. "
        "A person on ten exposed lists counts once. Addresses of the sending organisation "
        "(internal) and of mailing lists (which hide their members) are not counted. "
        "<strong>Members of the public</strong> are those at personal mailbox providers "
        "(Gmail, Outlook.com and the like).",
        "<strong>People exposed per incident</strong> is the number of external addresses "
        "visible in To/Cc of that message, less mailing-list addresses.",
        "<strong>Domains</strong>: <em>distinct addresses</em> counts unique people at a "
        "domain; <em>times exposed</em> adds up every incident in which an address at it was "
        "visible.",
        "<strong>Archive mode</strong>: in a copy kept in Sent mail, a Bcc header is how the "
        "mail client records whom it Bcc'd; that header was not delivered to the recipients, "
        "so it is not counted as an exposure.",
        "<strong>Sensitive context</strong> is inferred from words in the "
        "sender's name and address, the subject and the opening text, using the vocabulary "
        "shipped with mailguard. It indicates special category (Art. 9), criminal offence "
        "(Art. 10) or vulnerable-group data; confirm it by reading the message.",
        "<strong>Dates</strong> are in UTC, from each message's Date header. Messages without "
        "a readable date are shown as <em>undated</em>; a date filter never excludes them.",
        "<strong>Addresses</strong> are listed only on request. When redacted, each is shown "
        "as a keyed hash (HMAC-SHA-256): the same address gives the same hash within this "
        "report, and cannot be recovered from it without the key.",
    ]
    items = "".join(f"<li>{p}</li>" for p in points)
    return (
        f'<footer id="method">\n<h2>How the figures were computed</h2>\n<ul>{items}</ul>\n'
        f"<p>Generated by mailguard {_e(__version__)} on {_e(_datetime(when))}.</p>\n"
        "</footer>\n"
    )


# ---------------------------------------------------------------------------- Art. 33 fields

_MEASURES_HINT = (
    "For example: recipients asked to delete the message, apology sent, mailouts moved to "
    "Bcc or a mail-merge tool, staff briefed, mailguard run on outgoing mail."
)
_SA_HINT = (
    "Notification is due within 72 hours of becoming aware, unless the breach is unlikely "
    "to result in a risk to the people concerned (Art. 33(1)); if not reported, record why."
)
_INFORMED_HINT = (
    "Required without undue delay when the breach is likely to result in a high risk to "
    "them (Art. 34)."
)


def _nature(incident: Incident) -> str:
    r = incident.recipients
    external = _int(r, "visible_external")
    if external == 0:
        names = ", ".join(str(f.get("name", f.get("code", ""))) for f in incident.findings)
        return (
            "No external address was visible in To/Cc. mailguard scored the message "
            f"{incident.verdict} for: {names or 'unrecorded findings'}. Check whether personal "
            "data was disclosed before recording this as a breach."
        )
    text = (
        f"Confidentiality breach (unauthorised disclosure): the email addresses of "
        f"{_count(external, 'external recipient')} were disclosed to every recipient of the "
        f"message, because they were written in To/Cc instead of Bcc. To/Cc held "
        f"{_count(_int(r, 'visible'), 'address', 'addresses')} ({_int(r, 'visible_internal'):,} "
        f"internal, {external:,} external, at {_count(_int(r, 'external_domains'), 'domain')})."
    )
    lists = _int(r, "mailing_lists")
    if lists:
        text += (
            f" {_count(lists, 'of them is a mailing list', 'of them are mailing lists')}, "
            "whose members were not exposed."
        )
    if incident.tagged(TAG_PARTIAL):
        text += " Counting stopped at a configured limit, so the true numbers may be higher."
    if incident.sensitive:
        text += (
            f" The context reveals {', '.join(incident.sensitive)}, so being on the list is "
            f"itself {_legal_phrase(incident)}."
        )
    return text


def _data_subjects(incident: Incident) -> str:
    public = incident.personal_count
    others = max(incident.exposed_count - public, 0)
    items = [
        f"Members of the public (personal mailboxes): {public:,}",
        f"Contacts at other organisations: {others:,}",
    ]
    if incident.sensitive:
        items.append(
            f"The list itself reveals: {', '.join(incident.sensitive)}. Every recipient is "
            f"identifiable as connected with this, which makes it {_legal_phrase(incident)}."
        )
    return "<ul>" + "".join(f"<li>{_e(item)}</li>" for item in items) + "</ul>"


def _approximate(incident: Incident) -> str:
    n = _subjects(incident)
    return f"{'at least ' if incident.tagged(TAG_PARTIAL) else ''}{n:,}"


def _data_records(incident: Incident) -> str:
    n = _subjects(incident)
    items = [
        f"Email addresses: {n:,} (one per data subject)",
        "Display names: mailguard does not record them; where the sender's address book "
        "supplied names, they were disclosed with the addresses (check the original message)",
    ]
    if incident.sensitive:
        items.append(
            f"Being on a list about {', '.join(incident.sensitive)} (inferred from the "
            f"context): {n:,}, one per data subject; {_legal_phrase(incident)}"
        )
    return "<ul>" + "".join(f"<li>{_e(item)}</li>" for item in items) + "</ul>"


def _consequence_hint(incident: Incident) -> str:
    hint = "Consider unwanted contact, spam and targeted phishing using the disclosed addresses"
    if incident.sensitive:
        hint += (
            f"; and that every recipient learned the others are connected with "
            f"{', '.join(incident.sensitive)} (distress, discrimination, stigma)"
        )
    return hint + "."


def _legal_phrase(incident: Incident) -> str:
    """What the sensitive context makes the list, in the words of the GDPR."""
    bases = _legal_bases(incident)
    phrases = []
    if any(b.startswith("Art. 9") for b in bases):
        phrases.append("special category data under GDPR Art. 9")
    if any(b.startswith("Art. 10") for b in bases):
        phrases.append("criminal offence data under GDPR Art. 10")
    if any("vulnerable" in b for b in bases):
        phrases.append("data about a vulnerable group (a higher risk to the people concerned)")
    return " and ".join(phrases) or "sensitive data (review its legal category)"


def _legal_bases(incident: Incident) -> list[str]:
    """From the sensitive-context finding's evidence, else from the vocabulary's labels."""
    for f in incident.findings:
        evidence = f.get("evidence") or {}
        if TAG_SENSITIVE in f.get("tags", ()) and evidence.get("legal_basis"):
            return [str(b) for b in evidence["legal_basis"]]
    by_label = {c.label: c.gdpr for c in vocabulary().categories}
    return [by_label[label] for label in incident.sensitive if label in by_label]


def _exposed_list(view: _View, incident: Incident) -> str:
    if not incident.exposed or not view.show_addresses:
        return ""
    personal = set(incident.personal)
    groups = [
        ("Members of the public", [a for a in incident.exposed if a in personal]),
        ("Other organisations", [a for a in incident.exposed if a not in personal]),
    ]
    out = ["<h4>Exposed addresses" + (" (keyed hashes)" if view.redactor else "") + "</h4>\n"]
    for label, addrs in groups:
        if addrs:
            items = "".join(f"<li><code>{_e(view.address(a))}</code></li>" for a in addrs)
            out.append(f'<p>{_e(label)}: {len(addrs):,}</p>\n<ol class="addresses">{items}</ol>\n')
    return "".join(out)


# ---------------------------------------------------------------------------- chart


def _chart(months: dict[str, Counter[str]]) -> str:
    """Stacked bars per month (block at the base, warn above), hatched so print needs no colour."""
    slots, filled = _month_slots(months)
    width, height = 960, 320
    left, right, top, bottom = 52, 16, 44, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    step, ceiling = _scale(max(sum(c.values()) for _, c in slots))
    slot_w = plot_w / len(slots)
    bar_w = min(slot_w * 0.72, 56.0)
    every = max(1, math.ceil(len(slots) / 12))

    def y(value: float) -> float:
        return top + plot_h - value / ceiling * plot_h

    parts = [
        '<defs><pattern id="mg-hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="6" height="6" fill="#f2c14e"/>'
        '<line x1="0" y1="0" x2="0" y2="6" stroke="#6b4200" stroke-width="2"/></pattern></defs>'
    ]
    for tick in range(0, ceiling + 1, step):
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" '
            f'stroke="{"#444" if tick == 0 else "#ddd"}" stroke-width="1"/>'
            f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end" font-size="12" '
            f'fill="#333">{tick}</text>'
        )
    for n, (key, counts) in enumerate(slots):
        x = left + n * slot_w + (slot_w - bar_w) / 2
        if key == UNDATED and n:
            sep = left + n * slot_w
            parts.append(
                f'<line x1="{sep:.1f}" x2="{sep:.1f}" y1="{top}" y2="{top + plot_h}" '
                'stroke="#888" stroke-dasharray="4 3"/>'
            )
        parts.append(_bars(key, counts, x, bar_w, y, len(slots) <= MAX_BAR_LABELS))
        if key == UNDATED or n % every == 0:
            cx = left + n * slot_w + slot_w / 2
            parts.append(
                f'<text x="{cx:.1f}" y="{top + plot_h + 18}" text-anchor="middle" '
                f'font-size="12" fill="#333">{_e(key)}</text>'
            )
    parts.append(
        f'<text x="14" y="{top + plot_h / 2:.1f}" font-size="12" fill="#333" '
        f'text-anchor="middle" transform="rotate(-90 14 {top + plot_h / 2:.1f})">'
        "incidents</text>"
        f'<rect x="{left}" y="12" width="14" height="14" fill="#8b0000"/>'
        f'<text x="{left + 20}" y="24" font-size="13">block</text>'
        f'<rect x="{left + 80}" y="12" width="14" height="14" fill="url(#mg-hatch)" '
        'stroke="#6b4200"/>'
        f'<text x="{left + 100}" y="24" font-size="13">warn</text>'
    )
    total = sum(sum(c.values()) for c in months.values())
    dated = [k for k in months if k != UNDATED]
    span = f" from {dated[0]} to {dated[-1]}" if dated else ""
    desc = (
        f"Bar chart of {_count(total, 'incident')}{span}, one bar per month, block and warn "
        "stacked." + (f" {sum(months[UNDATED].values())} undated." if UNDATED in months else "")
    )
    note = "" if filled else " Months without incidents are left out: the dates span too long."
    svg = (
        f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" '
        'aria-labelledby="chart-title chart-desc" preserveAspectRatio="xMidYMid meet">'
        f'<title id="chart-title">Incidents per month, by verdict</title>'
        f'<desc id="chart-desc">{_e(desc)}</desc>{"".join(parts)}</svg>'
    )
    return (
        f"<figure>{svg}<figcaption>Incidents per month (UTC), by verdict: block solid, warn "
        f"hatched.{_e(note)}</figcaption></figure>\n{_chart_table(slots)}"
    )


def _bars(
    key: str, counts: Counter[str], x: float, w: float, y: Callable[[float], float], label: bool
) -> str:
    out = [f'<g class="slot" data-month="{_e(key)}">']
    base = 0
    for verdict, fill in (("block", "#8b0000"), ("warn", "url(#mg-hatch)")):
        n = counts.get(verdict, 0)
        if not n:
            continue
        y0, y1 = y(base + n), y(base)
        out.append(
            f'<rect class="bar bar-{verdict}" x="{x:.1f}" y="{y0:.1f}" width="{w:.1f}" '
            f'height="{y1 - y0:.1f}" fill="{fill}" stroke="#333" stroke-width="0.5">'
            f"<title>{_e(key)}: {n} {verdict}</title></rect>"
        )
        base += n
    if label and base:
        out.append(
            f'<text x="{x + w / 2:.1f}" y="{y(base) - 4:.1f}" text-anchor="middle" '
            f'font-size="12" font-weight="600">{base}</text>'
        )
    out.append("</g>")
    return "".join(out)


def _chart_table(slots: list[tuple[str, Counter[str]]]) -> str:
    rows = "".join(
        f'<tr><th scope="row">{_e(key)}</th><td class="num">{c.get("block", 0)}</td>'
        f'<td class="num">{c.get("warn", 0)}</td><td class="num">{sum(c.values())}</td></tr>'
        for key, c in slots
    )
    return (
        "<details><summary>The figures in the chart, as a table</summary>"
        '<table class="chart-data"><thead><tr><th scope="col">Month</th>'
        '<th scope="col" class="num">Block</th><th scope="col" class="num">Warn</th>'
        f'<th scope="col" class="num">Total</th></tr></thead><tbody>{rows}</tbody></table>'
        "</details>"
    )


def _month_slots(
    months: dict[str, Counter[str]],
) -> tuple[list[tuple[str, Counter[str]]], bool]:
    """The months to draw, gaps filled with empty months when the span allows; undated last."""
    dated = sorted(k for k in months if k != UNDATED)
    keys, filled = dated, True
    if dated:
        first, last = _month_number(dated[0]), _month_number(dated[-1])
        if last - first < MAX_FILLED_MONTHS:
            keys = [f"{m // 12:04d}-{m % 12 + 1:02d}" for m in range(first, last + 1)]
        else:
            filled = False
    slots = [(k, months.get(k, Counter())) for k in keys]
    if UNDATED in months:
        slots.append((UNDATED, months[UNDATED]))
    return slots, filled


def _month_number(key: str) -> int:
    year, month = key.split("-")
    return int(year) * 12 + int(month) - 1


def _scale(peak: int) -> tuple[int, int]:
    """A 1-2-5 tick step giving at most five intervals, and the axis top it implies."""
    step = 1
    while True:
        for m in (1, 2, 5):
            if math.ceil(peak / (step * m)) <= 5:
                return step * m, max(step * m * math.ceil(peak / (step * m)), step * m)
        step *= 10


# ---------------------------------------------------------------------------- small helpers


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _rows(rows: list[tuple[str, str]]) -> str:
    """Key/value rows; values are already HTML (each caller escapes what it puts in)."""
    return "".join(f'<tr><th scope="row">{_e(k)}</th><td>{v}</td></tr>' for k, v in rows)


def _todo(label: str, hint: str = "") -> str:
    hint_html = f'<span class="hint">{_e(hint)}</span>' if hint else ""
    return f'<div class="todo"><strong>To be completed: {_e(label)}</strong>{hint_html}</div>'


def _verdict(verdict: str) -> str:
    return f'<span class="verdict verdict-{_e(verdict)}">{_e(verdict.upper())}</span>'


def _code_or(text: str, missing: str) -> str:
    return f"<code>{_e(text)}</code>" if text else _e(missing)


def _anchor(ref: str) -> str:
    return ref.lower()


def _int(mapping: dict[str, Any], key: str) -> int:
    try:
        return int(mapping.get(key, 0) or 0)
    except (TypeError, ValueError):
        return 0


def _subjects(incident: Incident) -> int:
    """External addresses visible in To/Cc; mailing lists hide their members, so they are out."""
    r = incident.recipients
    return max(_int(r, "visible_external") - _int(r, "mailing_lists"), 0)


def _distinct_by_domain(addresses: set[str]) -> Counter[str]:
    """Unique people per registrable domain: the register's domain counter sums incidents."""
    cache: dict[str, str] = {}
    counts: Counter[str] = Counter()
    for addr in addresses:
        domain = addr.rpartition("@")[2]
        if domain not in cache:
            cache[domain] = registrable_domain(domain)
        counts[cache[domain]] += 1
    return counts


def _count(n: int, word: str, plural: str | None = None) -> str:
    return f"{n:,} {word if n == 1 else (plural or word + 's')}"


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _datetime(value: datetime | None, *, short: bool = False) -> str:
    if value is None:
        return "undated" if short else "unknown (no readable Date header)"
    return _utc(value).strftime("%Y-%m-%d %H:%M" if short else "%Y-%m-%d %H:%M:%S UTC")


def _period(first: datetime | None, last: datetime | None) -> str:
    if first is None or last is None:
        return "no dated messages"
    return f"{_datetime(first, short=True)} to {_datetime(last, short=True)} (UTC)"


def _day(value: date | datetime) -> str:
    if isinstance(value, datetime):
        value = _utc(value)
        if (value.hour, value.minute, value.second) != (0, 0, 0):
            return value.strftime("%Y-%m-%d %H:%M UTC")
        value = value.date()
    return value.isoformat()


def _window(since: date | datetime | None, until: date | datetime | None) -> str:
    """The scanner admits undated messages whatever the window, and the reader should know."""
    if since is None and until is None:
        return ""
    parts = []
    if since is not None:
        parts.append(f"on or after {_day(since)}")
    if until is not None:
        parts.append(f"on or before {_day(until)}")
    return f"messages dated {' and '.join(parts)}; undated messages were included"


def _address_policy(view: _View) -> str:
    if view.redactor:
        listed = "exposed addresses listed" if view.show_addresses else "not listed"
        return (
            "redacted: addresses, sources and Message-IDs as keyed hashes; subjects, error "
            f"texts and words quoted from messages withheld; {listed}"
        )
    return "listed per incident" if view.show_addresses else "not listed (counts only)"


def _size(n: int) -> str:
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


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"
