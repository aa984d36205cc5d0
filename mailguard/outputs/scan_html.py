"""The incident register as one HTML file a DPO can hand to an auditor, a board or a regulator.

This module lays out the page; the Art. 33 wording of each record is in
:mod:`~mailguard.outputs.scan_html_art33`, the chart in
:mod:`~mailguard.outputs.scan_html_chart` and the stylesheet in ``scan_html.css`` (package
data, inlined into the page).

Archive-wide figures count *people* (distinct addresses), not messages, because that is the
number a regulator asks for. The file must open years later on an air-gapped machine and
print cleanly: everything is inline (CSS, SVG chart), nothing is fetched, no script runs,
and a Content-Security-Policy forbids loading anything should a future edit slip. It is
built with ``html.escape`` and f-strings rather than a template engine: the markup is small,
a dependency would have to be audited and shipped for one output format, and explicit
escaping at each value keeps the "every untrusted string is escaped" rule visible in review.
Subjects, sources and finding messages come from the scanned mail and are hostile input.

What the page shows of people is decided by :class:`mailguard.redact.Privacy`, as for the
other formats: counts by default, addresses only when the policy prints them, and under
``--redact`` no raw address, subject, source, Message-ID, error text or quote from a message
is written at all — the register must not become the next leak.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib.resources import files

from mailguard import __version__
from mailguard.archive.register import Incident, Register
from mailguard.outputs.scan_html_art33 import METHOD_NOTES, art33_rows
from mailguard.outputs.scan_html_chart import chart_section
from mailguard.outputs.scan_html_markup import (
    anchor,
    code_or,
    datetime_text,
    duration_text,
    esc,
    period_text,
    size_text,
    subjects,
    table_rows,
    todo,
    verdict_badge,
    window_text,
)
from mailguard.outputs.words import count, dns_text
from mailguard.redact import Privacy, Redactor

TOP_DOMAINS = 15
WORST = 10
STYLESHEET = "scan_html.css"
_CSP = "default-src 'none'; style-src 'unsafe-inline'"


@cache
def stylesheet() -> str:
    """The page's CSS, shipped as package data so it can be read and linted as CSS."""
    return files(__package__).joinpath(STYLESHEET).read_text(encoding="utf-8")


@dataclass(frozen=True, slots=True)
class _View:
    """What every section needs: the register, the privacy policy and the record references."""

    register: Register
    privacy: Privacy
    refs: dict[int, str]
    """``id(incident)`` -> ``INC-0001``: incidents are unhashable dataclasses."""

    def ref(self, incident: Incident) -> str:
        return self.refs[id(incident)]


def render_html(
    register: Register,
    privacy: Privacy | None = None,
    *,
    redactor: Redactor | None = None,
    show_addresses: bool = False,
    generated: datetime | None = None,
    title: str = "mailguard incident register",
) -> str:
    """The register as one self-contained HTML document; the same for the same ``generated``.

    ``privacy`` is the report's policy; ``redactor`` and ``show_addresses`` are a shorthand
    for ``Privacy(show_addresses, redactor)`` and may not be given with it.
    """
    if privacy is None:
        privacy = Privacy(show_addresses, redactor)
    elif redactor is not None or show_addresses:
        raise TypeError("give either a Privacy policy or redactor/show_addresses, not both")
    incidents = register.incidents
    view = _View(
        register=register,
        privacy=privacy,
        refs={id(i): f"INC-{n:04d}" for n, i in enumerate(incidents, 1)},
    )
    when = generated or datetime.now(UTC)
    body = [
        _header(view, title, when),
        _summary(view),
        chart_section(register),
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
        f'<meta name="generator" content="mailguard {esc(__version__)}">\n'
        f"<title>{esc(title)}</title>\n<style>\n{stylesheet()}</style>\n</head>\n"
        f'<body id="top">\n{"".join(body)}</body>\n</html>\n'
    )


# ---------------------------------------------------------------------------- sections


def _header(view: _View, title: str, when: datetime) -> str:
    reg = view.register
    sources = "".join(f"<li><code>{esc(view.privacy.source(s))}</code></li>" for s in reg.sources)
    rows = [
        ("Generated", esc(datetime_text(when))),
        ("Sources scanned", f"<ul>{sources}</ul>" if sources else "not recorded"),
        ("Period covered", esc(period_text(reg.total.first, reg.total.last))),
    ]
    window = window_text(reg.since, reg.until)
    if window:
        rows.append(("Date filter", esc(window)))
    rows += [
        ("Addresses in this report", esc(view.privacy.describe())),
        ("Produced by", f"mailguard {esc(__version__)}"),
        ("Data protection officer / contact point (Art. 33(3)(b))", todo("Name and contact")),
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
        f"<header>\n<h1>{esc(title)}</h1>\n{warning}"
        f'<table class="meta"><tbody>{table_rows(rows)}</tbody></table>\n</header>\n{nav}'
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
            f"<li><code>{esc(view.privacy.source(e.source))}</code>: "
            f"{esc(view.privacy.error(e.message))}</li>"
            for e in entries[:most]
        )
        if len(entries) > most:
            items += f"<li>… and {len(entries) - most:,} more (see Errors)</li>"
        parts.append(
            f"<strong>{count(len(entries), what)} could not be read.</strong> An exposure "
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
    people, public = reg.unique_people, len(reg.public)
    if n_inc:
        lead = (
            f"{count(n_inc, 'message')} exposed recipients' addresses in To/Cc. Across the "
            f"archive, {count(people, 'distinct person', 'distinct people')} outside the "
            f"organisation had their address disclosed, {public:,} of them members of the "
            f"public at personal mailboxes."
        )
        if sensitive:
            lead += (
                f" In {count(sensitive, 'incident')} the context also reveals something "
                "sensitive about the recipients (see the records)."
            )
    else:
        lead = "No message was scored warn or block: no exposure of recipients was found"
        lead += " in the messages that were read." if reg.errors or reg.interrupted else "."
        if reg.failed_sources or reg.unread_paths:
            lead = (
                f"Not everything could be read ({count(len(reg.failed_sources), 'source')} "
                f"and {count(len(reg.unread_paths), 'folder')} failed, listed above). {lead}"
            )
    cards = [
        (reg.total.messages, "messages scanned"),
        (n_inc, "incidents (warn or block)"),
        (people, "unique people exposed"),
        (public, "of whom members of the public"),
    ]
    stats = "".join(
        f'<div class="stat"><span class="n">{n:,}</span><span class="l">{esc(label)}</span></div>'
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
        f'<tr><th scope="row">{esc(k)}</th><td class="num">{v:,}</td></tr>' for k, v in rows
    )
    table += table_rows(
        [
            ("Dates of messages", esc(period_text(reg.total.first, reg.total.last))),
            ("Data read", esc(size_text(reg.total.bytes))),
            ("Scan time", esc(duration_text(reg.elapsed))),
        ]
    )
    return (
        f'<section id="summary">\n<h2>Summary</h2>\n<p class="lead">{esc(lead)}</p>\n'
        f'<div class="stats">{stats}</div>\n<table class="figures"><tbody>{table}</tbody>'
        "</table>\n</section>\n"
    )


def _domains(register: Register) -> str:
    # Ties by name: the order units were merged in (workers, a store) must not show.
    top = sorted(register.domains.items(), key=lambda item: (-item[1], item[0]))[:TOP_DOMAINS]
    if not top:
        return (
            '<section id="domains">\n<h2>Top exposed domains</h2>\n'
            "<p>No external address was exposed.</p>\n</section>\n"
        )
    distinct = register.distinct_by_domain()
    rows = "".join(
        f'<tr><td>{esc(domain)}</td><td class="num">{distinct.get(domain, 0):,}</td>'
        f'<td class="num">{times:,}</td></tr>'
        for domain, times in top
    )
    more = len(register.domains) - len(top)
    verb = "is" if more == 1 else "are"
    note = f"<p>{count(more, 'further domain')} {verb} not listed.</p>" if more > 0 else ""
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
        f'<th scope="col"{_NUM_CLASS if h in _NUMERIC else ""}>{esc(h)}</th>'
        for h in _WORST_HEADINGS
    )
    rows = "".join(
        f'<tr><td class="nowrap"><a href="#{anchor(view.ref(i))}">{esc(view.ref(i))}</a></td>'
        f'<td class="nowrap">{esc(datetime_text(i.date, short=True))}</td>'
        f"<td>{verdict_badge(i.verdict)}</td>"
        f'<td class="num">{i.score}</td><td class="num">{subjects(i):,}</td>'
        f'<td class="num">{i.personal_count:,}</td>'
        f"<td>{esc(', '.join(i.sensitive) or '—')}</td>"
        f"<td>{esc(' '.join(i.codes))}</td></tr>"
        for i in worst
    )
    which = (
        f"All {count(len(worst), 'incident')}"
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
    if incidents and not view.privacy.print_addresses:
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
        f"<li><code>{esc(f.get('code', ''))}</code> {esc(f.get('name', ''))} "
        f"(+{esc(f.get('weight', 0))}): {esc(str(f.get('message', '')))}</li>"
        for f in map(view.privacy.finding, incident.findings)
    )
    ident = [
        ("Date and time (UTC)", esc(datetime_text(incident.date))),
        ("Source", f"<code>{esc(view.privacy.source(incident.source))}</code>"),
        ("Message-ID", code_or(view.privacy.message_id(incident.message_id) or "", "none")),
        (
            "Sender",
            code_or(view.privacy.address(incident.sender) if incident.sender else "", "unknown"),
        ),
        ("Subject", esc(view.privacy.subject(incident.subject) or "(no subject)")),
        ("Verdict and score", f"{verdict_badge(incident.verdict)} score {incident.score} of 100"),
        ("Findings", f"<ul>{findings}</ul>" if findings else "none recorded"),
    ]
    return (
        f'<article class="incident" id="{anchor(ref)}" aria-labelledby="{anchor(ref)}-h">\n'
        f'<h3 id="{anchor(ref)}-h">{esc(ref)} {verdict_badge(incident.verdict)} '
        f"{esc(datetime_text(incident.date, short=True))}</h3>\n"
        f"<table><tbody>{table_rows(ident)}</tbody></table>\n"
        "<h4>Record under GDPR Art. 33(3)</h4>\n"
        f'<table class="art33"><tbody>{table_rows(art33_rows(incident))}</tbody></table>\n'
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
        f'<tr><td class="num">{n}</td><td><code>{esc(view.privacy.source(e.source))}</code></td>'
        f"<td>{esc(view.privacy.error(e.message))}</td></tr>"
        for n, e in enumerate(errors, 1)
    )
    return (
        f'<section id="errors">\n<h2>Errors</h2>\n<p>{count(len(errors), "item")} could not be '
        f"read and {'was' if len(errors) == 1 else 'were'} <strong>not checked</strong>. An "
        "exposure there would not appear in this register.</p>\n"
        '<table><thead><tr><th scope="col" class="num">#</th><th scope="col">Source</th>'
        f'<th scope="col">Problem</th></tr></thead><tbody>{rows}</tbody></table>\n</section>\n'
    )


def _provenance(view: _View) -> str:
    """Everything that decides the numbers, so an auditor can reproduce them."""
    p = view.privacy.provenance(view.register.provenance)
    if not p:
        return (
            '<section id="provenance">\n<h2>How this register was made</h2>\n<p>Not '
            "recorded: this register was not made by <code>mailguard scan</code>.</p>\n"
            "</section>\n"
        )
    scoring = p["scoring"]
    internal = ", ".join(p["internal_domains"]) or f"none set: {p['internal_domains_default']}"
    rows = [
        ("mailguard version", esc(p["mailguard_version"])),
        (
            "Rule set",
            f"{esc(p['rule_set']['version'])}, <code>{esc(p['rule_set']['digest'])}</code>",
        ),
        ("Mode", esc(p["mode"])),
        ("Date filter", esc(window_text(view.register.since, view.register.until) or "none")),
        (
            "Configuration file",
            code_or(p["config_file"] or "", "none (defaults)"),
        ),
        ("Internal domains", esc(internal)),
        ("Thresholds", esc(f"warn at score {scoring['warn_at']}, block at {scoring['block_at']}")),
        ("Disabled rules", esc(", ".join(p["disabled_rules"]) or "none")),
        ("Personal mailbox domains", esc(p["personal_domains"])),
        ("Limits", esc(", ".join(f"{k} = {v:,}" for k, v in p["limits"].items()))),
    ]
    if "dns" in p:  # registers made before DNS existed have no entry
        rows.append(("DNS lookups", esc(dns_text(p["dns"]))))
    rules = "".join(
        f"<tr><td><code>{esc(code)}</code></td><td>{esc(r['severity'])}</td>"
        f'<td class="num">{esc(r["weight"])}</td><td>'
        + (esc(", ".join(f"{k} = {v!r}" for k, v in r["options"].items())) or "none")
        + "</td></tr>"
        for code, r in p["rules"].items()
    )
    return (
        '<section id="provenance">\n<h2>How this register was made</h2>\n<p>Scanning the '
        "same sources with these settings gives the same figures; a different figure points "
        "to a different setting.</p>\n"
        f'<table class="meta"><tbody>{table_rows(rows)}</tbody></table>\n'
        '<table><thead><tr><th scope="col">Enabled rule</th><th scope="col">Severity</th>'
        '<th scope="col" class="num">Weight</th><th scope="col">Options</th></tr></thead>'
        f"<tbody>{rules}</tbody></table>\n</section>\n"
    )


def _footer(when: datetime) -> str:
    items = "".join(f"<li>{p}</li>" for p in METHOD_NOTES)
    return (
        f'<footer id="method">\n<h2>How the figures were computed</h2>\n<ul>{items}</ul>\n'
        f"<p>Generated by mailguard {esc(__version__)} on {esc(datetime_text(when))}.</p>\n"
        "</footer>\n"
    )


def _exposed_list(view: _View, incident: Incident) -> str:
    if not incident.exposed or not view.privacy.print_addresses:
        return ""
    personal = set(incident.personal)
    groups = [
        ("Members of the public", [a for a in incident.exposed if a in personal]),
        ("Other organisations", [a for a in incident.exposed if a not in personal]),
    ]
    out = [
        "<h4>Exposed addresses" + (" (keyed hashes)" if view.privacy.redacting else "") + "</h4>\n"
    ]
    for label, addrs in groups:
        if addrs:
            items = "".join(f"<li><code>{esc(view.privacy.address(a))}</code></li>" for a in addrs)
            out.append(f'<p>{esc(label)}: {len(addrs):,}</p>\n<ol class="addresses">{items}</ol>\n')
    return "".join(out)


# ---------------------------------------------------------------------------- small helpers
