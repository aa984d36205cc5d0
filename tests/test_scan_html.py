"""The HTML incident register: right figures, one Art. 33 record per incident, nothing leaks.

The register is built by hand so every expected number is known: three incidents (two dated
months apart, one undated) whose exposed lists overlap, so the unique-people count (6) is
smaller than the sum of the per-incident counts (8).
"""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from html.parser import HTMLParser

import pytest

from mailguard.archive.register import Incident, Register, Tally
from mailguard.outputs.scan_html import render_html
from mailguard.redact import Redactor
from mailguard.rules import find_rule

GENERATED = datetime(2025, 3, 3, 10, 15, tzinfo=UTC)
HOSTILE = "<script>alert(1)</script>"
SENDER = "clinic@riverside.example"
ADDRESSES = [
    "ann@gmail.com",
    "bob@hotmail.com",
    "carol@partner.example",
    "dan@yahoo.com",
    "eve@supplier.example",
    "fay@supplier.example",
]
SUBJECTS = [HOSTILE + " HIV clinic group", "Newsletter for Jane Doe", "Invoice query"]


def finding(code: str, name: str, message: str, **evidence) -> dict:
    return {
        "code": code,
        "name": name,
        "severity": "high",
        "message": message,
        "weight": 20,
        "evidence": evidence,
        "tags": list(find_rule(code).tags),  # as Finding.to_dict gives them
    }


def incident(
    *,
    date: datetime | None,
    verdict: str,
    score: int,
    exposed: list[str],
    personal: list[str],
    subject: str,
    source: str,
    sensitive: list[str] | None = None,
    findings: list[dict] | None = None,
    internal: int = 1,
    bcc: int = 0,
    lists: int = 0,
) -> Incident:
    domains: dict[str, int] = {}
    for addr in exposed:
        domain = addr.rpartition("@")[2]
        domains[domain] = domains.get(domain, 0) + 1
    external = len(exposed) + lists
    return Incident(
        source=source,
        message_id=f"<{source.rpartition('#')[2]}@riverside.example>",
        date=date,
        sender=SENDER,
        subject=subject,
        verdict=verdict,
        score=score,
        findings=findings
        or [finding("MG101", "exposed-external-parties", f"{len(exposed)} external parties")],
        recipients={
            "to": external + internal,
            "cc": 0,
            "bcc": bcc,
            "visible": external + internal,
            "visible_internal": internal,
            "visible_external": external,
            "external_domains": len(domains),
            "personal": len(personal),
            "mailing_lists": lists,
        },
        exposed=exposed,
        personal=personal,
        domains=domains,
        sensitive=sensitive or [],
        exposed_count=len(exposed),
        personal_count=len(personal),
    )


def incidents() -> list[Incident]:
    ann, bob, carol, dan, eve, fay = ADDRESSES
    return [
        # Found in this order; the register sorts them: Jan (0001), Mar (0002), undated (0003).
        incident(
            date=None,
            verdict="block",
            score=70,
            exposed=[bob, eve, fay],
            personal=[bob],
            subject=SUBJECTS[2],
            source="/mail/Sent.mbox#9",
        ),
        incident(
            date=datetime(2024, 3, 2, 9, 30, tzinfo=UTC),
            verdict="warn",
            score=45,
            exposed=[ann, dan],
            personal=[ann, dan],
            subject=SUBJECTS[1],
            source="/mail/Sent.mbox#5",
        ),
        incident(
            date=datetime(2024, 1, 15, 10, 0, tzinfo=UTC),
            verdict="block",
            score=90,
            exposed=[ann, bob, carol],
            personal=[ann, bob],
            subject=SUBJECTS[0],
            source="/mail/Sent.mbox#2",
            sensitive=["HIV", "Sexual health"],
            findings=[
                finding("MG101", "exposed-external-parties", "3 external parties"),
                finding(
                    "MG301",
                    "sensitive-context",
                    f"sensitive context {HOSTILE}",
                    labels=["HIV", "Sexual health"],
                    legal_basis=["Art. 9 health data"],
                ),
            ],
        ),
    ]


def build(
    found: list[Incident] | None = None, *, interrupted: bool = False, errors: bool = True
) -> Register:
    found = incidents() if found is None else found
    register = Register(["/mail/Sent.mbox", "imaps://dpo@mail.riverside.example/Sent"])
    tally = Tally()
    for n in range(6):
        tally.count("pass", datetime(2024, 1 + n, 3, tzinfo=UTC), 1000)
    for i in found:
        tally.count(i.verdict, i.date, 2000)
        tally.incidents.append(i)
    if errors:
        tally.add_error("/mail/Sent.mbox#7", f"message cut off {HOSTILE}")
    register.merge(tally)
    register.interrupted = interrupted
    register.elapsed = 12.5
    return register


def render(register: Register | None = None, **kwargs) -> str:
    return render_html(build() if register is None else register, generated=GENERATED, **kwargs)


class StructureChecker(HTMLParser):
    """Fails on an end tag that does not close the innermost open element."""

    VOID = frozenset({"meta", "link", "br", "hr", "img", "input", "wbr", "col", "source"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.ids: list[str] = []
        self.hrefs: list[str] = []

    def handle_starttag(self, tag, attrs):
        self._attrs(attrs)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self._attrs(attrs)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.stack[-1:]} at {self.getpos()}")
            return
        self.stack.pop()

    def _attrs(self, attrs):
        values = dict(attrs)
        if "id" in values:
            self.ids.append(values["id"])
        if "href" in values:
            self.hrefs.append(values["href"])


def parse(text: str) -> StructureChecker:
    checker = StructureChecker()
    checker.feed(text)
    checker.close()
    assert checker.problems == []
    assert checker.stack == []
    assert text.startswith("<!DOCTYPE html>")
    return checker


def figure(text: str, label: str) -> str:
    match = re.search(rf'<th scope="row">{re.escape(label)}</th><td class="num">([\d,]+)<', text)
    assert match, label
    return match.group(1)


def records(text: str) -> dict[str, str]:
    """Each incident record's HTML by its reference."""
    found = re.findall(r'<article class="incident" id="(inc-\d{4})".*?</article>', text, re.S)
    bodies = re.findall(r'<article class="incident".*?</article>', text, re.S)
    return dict(zip(found, bodies, strict=True))


# ---------------------------------------------------------------------------- figures


def test_summary_counts_people_not_messages():
    text = render()
    parse(text)
    assert sum(len(i.exposed) for i in incidents()) == 8  # the per-incident sum...
    assert figure(text, "Unique people exposed across the archive") == "6"  # ...vs people
    assert figure(text, "… of whom members of the public (personal mailboxes)") == "3"
    assert figure(text, "Messages scanned") == "10"
    assert figure(text, "Pass (nothing to report)") == "6"
    assert figure(text, "Warn") == "1"
    assert figure(text, "Block") == "2"
    assert figure(text, "Could not be read (error)") == "1"
    assert figure(text, "Incidents (warn or block)") == "3"
    assert figure(text, "Incidents with sensitive context") == "1"
    assert figure(text, "Distinct exposed domains") == "5"
    assert "2024-01-03 00:00 to 2024-06-03 00:00 (UTC)" in text
    assert "12.5 s" in text
    assert "mailguard 0.1.0" in text
    assert "2025-03-03 10:15:00 UTC" in text


def test_header_lists_sources_and_date_filter():
    register = build()
    register.since = datetime(2024, 1, 1, tzinfo=UTC)
    text = render(register)
    assert "<code>/mail/Sent.mbox</code>" in text
    assert "imaps://dpo@mail.riverside.example/Sent" in text
    assert "on or after 2024-01-01; undated messages were included" in text
    assert "Date filter" not in render()


def test_domains_table_separates_people_from_exposures():
    text = render()
    # ann@gmail.com was exposed twice: one person, two exposures.
    assert '<td>gmail.com</td><td class="num">1</td><td class="num">2</td>' in text
    assert '<td>supplier.example</td><td class="num">2</td><td class="num">2</td>' in text


def test_interrupted_warning_only_when_interrupted():
    assert "Incomplete register" in render(build(interrupted=True))
    assert 'role="alert"' in render(build(interrupted=True))
    assert "Incomplete register" not in render()


def test_output_is_deterministic_given_the_time():
    assert render() == render()


# ---------------------------------------------------------------------------- chart


def bars(text: str) -> int:
    return len(re.findall(r'<rect class="bar bar-(?:warn|block)"', text))


def slots(text: str) -> list[str]:
    return re.findall(r'<g class="slot" data-month="([^"]+)"', text)


def test_chart_has_one_bar_per_verdict_and_month_and_fills_gaps():
    text = render()
    assert slots(text) == ["2024-01", "2024-02", "2024-03", "undated"]
    assert bars(text) == 3
    assert '<title id="chart-title">' in text and 'aria-labelledby="chart-title chart-desc"' in text
    table = re.search(r'<table class="chart-data">.*?</table>', text, re.S)
    assert table and table.group().count("<tr>") == 5  # header + 4 slots


def test_chart_stacks_warn_on_block_in_one_month():
    found = [
        incident(
            date=datetime(2024, 5, d, tzinfo=UTC),
            verdict=v,
            score=50,
            exposed=[f"x{d}@gmail.com"],
            personal=[f"x{d}@gmail.com"],
            subject="s",
            source=f"m#{d}",
        )
        for d, v in ((1, "block"), (2, "warn"), (3, "warn"))
    ]
    text = render(build(found))
    assert slots(text) == ["2024-05"]
    assert bars(text) == 2
    assert "2024-05: 2 warn" in text and "2024-05: 1 block" in text


def test_chart_with_36_months_stays_readable():
    found = [
        incident(
            date=datetime(2022 + m // 12, m % 12 + 1, 10, tzinfo=UTC),
            verdict="warn",
            score=40,
            exposed=["a@gmail.com"],
            personal=["a@gmail.com"],
            subject="s",
            source=f"m#{m}",
        )
        for m in range(36)
    ]
    text = render(build(found))
    assert len(slots(text)) == 36 and bars(text) == 36
    svg = re.search(r"<svg.*?</svg>", text, re.S)
    assert svg
    month_labels = re.findall(r">(\d{4}-\d{2})</text>", svg.group())
    assert 6 <= len(month_labels) <= 12  # every third month, not 36 overlapping labels
    assert not re.search(r'font-weight="600">\d+</text>', svg.group())  # no per-bar counts


def test_chart_does_not_fill_decades_for_one_bogus_date():
    found = [
        incident(
            date=when,
            verdict="warn",
            score=40,
            exposed=["a@gmail.com"],
            personal=["a@gmail.com"],
            subject="s",
            source=f"m#{n}",
        )
        for n, when in enumerate(
            [datetime(1970, 1, 1, tzinfo=UTC), datetime(2024, 6, 1, tzinfo=UTC)]
        )
    ]
    text = render(build(found))
    assert slots(text) == ["1970-01", "2024-06"]
    assert "Months without incidents are left out" in text


def test_zero_incident_register_renders():
    text = render(build([], errors=False))
    checker = parse(text)
    assert "No incidents" in text
    assert "<svg" not in text
    assert figure(text, "Unique people exposed across the archive") == "0"
    assert "every message found was read" in text
    assert not checker.problems


# ---------------------------------------------------------------------------- records


def test_references_are_in_date_order_and_links_resolve():
    text = render()
    checker = parse(text)
    refs = records(text)
    assert list(refs) == ["inc-0001", "inc-0002", "inc-0003"]
    assert "2024-01-15 10:00:00 UTC" in refs["inc-0001"]
    assert "2024-03-02 09:30:00 UTC" in refs["inc-0002"]
    assert "unknown (no readable Date header)" in refs["inc-0003"]
    local = [h[1:] for h in checker.hrefs if h.startswith("#")]
    assert set(local) <= set(checker.ids)
    assert len(checker.ids) == len(set(checker.ids))
    worst = re.search(r'<section id="worst">.*?</section>', text, re.S)
    assert worst
    # Highest score first: the Jan incident (90), the undated one (70), then March (45).
    assert re.findall(r'href="#(inc-\d+)"', worst.group()) == ["inc-0001", "inc-0003", "inc-0002"]


ART33_FIELDS = (
    "Nature of the breach",
    "Categories of data subjects",
    "Approximate number of data subjects",
    "Categories and approximate number of personal data records",
    "Likely consequences",
    "Measures taken or proposed",
    "Reported to the supervisory authority?",
    "Data subjects informed?",
)


def test_every_record_has_the_art33_fields_and_placeholders():
    text = render()
    for ref, body in records(text).items():
        for label in ART33_FIELDS:
            assert f'<th scope="row">{label}</th>' in body, (ref, label)
        assert body.count('<div class="todo">') == 4, ref
    # Four per record, plus the DPO contact point in the header.
    assert text.count('<div class="todo">') == 3 * 4 + 1


def test_record_figures_and_nature():
    refs = records(render())
    first = refs["inc-0001"]
    assert "the email addresses of 3 external recipients were disclosed" in first
    assert "Members of the public (personal mailboxes): 2" in first
    assert "Contacts at other organisations: 1" in first
    assert '<th scope="row">Approximate number of data subjects</th><td>3</td>' in first
    assert "Email addresses: 3" in first
    assert "The list itself reveals: HIV, Sexual health" in first
    assert "special category data under GDPR Art. 9" in first
    for other in ("inc-0002", "inc-0003"):
        assert "Art. 9" not in refs[other]
        assert "reveals:" not in refs[other]
    assert "Contacts at other organisations: 2" in refs["inc-0003"]


def test_sensitive_label_without_evidence_uses_the_vocabulary():
    found = [
        incident(
            date=None,
            verdict="block",
            score=80,
            exposed=["a@gmail.com", "b@gmail.com"],
            personal=["a@gmail.com", "b@gmail.com"],
            subject="s",
            source="m#1",
            sensitive=["Criminal justice"],
        )
    ]
    assert "criminal offence data under GDPR Art. 10" in render(build(found))


def test_mailing_lists_in_the_nature_and_no_archived_bcc_wording():
    """The scanner judges archived mail, where a Bcc header is a record: the register has
    no wording for a Bcc leak (that rule is outgoing-only and cannot reach it)."""
    found = [
        incident(
            date=None,
            verdict="block",
            score=80,
            exposed=["a@gmail.com"],
            personal=["a@gmail.com"],
            subject="s",
            source="m#1",
            bcc=40,
            lists=1,
            findings=[finding("MG501", "bcc-header-in-payload", "Bcc header with 40")],
        )
    ]
    body = records(render(build(found)))["inc-0001"]
    assert "1 of them is a mailing list" in body
    assert "Bcc: header" not in body


def test_errors_are_listed():
    text = render()
    errors = re.search(r'<section id="errors">.*?</section>', text, re.S)
    assert errors
    assert "/mail/Sent.mbox#7" in errors.group()
    assert "message cut off" in errors.group()
    assert "not checked" in errors.group()


# ---------------------------------------------------------------------------- safety


def test_hostile_text_is_escaped_everywhere():
    found = incidents()
    found[0].source = f"/mail/{HOSTILE}.mbox#9"
    found[0].message_id = f"<{HOSTILE}@x>"
    text = render(build(found), title=HOSTILE)
    parse(text)
    assert "<script" not in text.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_no_external_resources():
    for text in (render(), render(show_addresses=True), render(build([], errors=False))):
        assert "<script" not in text.lower()
        assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", text, re.I)
        assert not re.search(r"url\(\s*['\"]?\s*(?:https?:)?//", text, re.I)
        assert "@import" not in text
        assert "default-src 'none'" in text


def test_addresses_are_not_listed_by_default():
    text = render()
    for addr in ADDRESSES:
        assert addr not in text
    assert "--show-addresses" in text


def test_show_addresses_lists_them_by_kind():
    body = records(render(show_addresses=True))["inc-0001"]
    assert "Members of the public: 2" in body and "Other organisations: 1" in body
    for addr in ("ann@gmail.com", "bob@hotmail.com", "carol@partner.example"):
        assert f"<li><code>{addr}</code></li>" in body


@pytest.mark.parametrize("show", [False, True])
def test_redacted_report_holds_no_raw_address_or_subject(show):
    redactor = Redactor(b"test-key")
    found = incidents()
    # Addresses that reach free text: a file named after a person, an engine message.
    found[0].source = "/mail/2024_bob@hotmail.com.eml"
    found[1].findings.append(finding("MG105", "unparseable-recipients", "bad: dan@yahoo.com>"))
    register = build(found)
    text = render_html(register, redactor=redactor, show_addresses=show, generated=GENERATED)
    parse(text)
    lowered = text.lower()
    for addr in [*ADDRESSES, SENDER]:
        assert addr not in lowered, addr
    for subject in SUBJECTS:
        assert html.escape(subject).lower() not in lowered
    assert "Jane Doe" not in text and "clinic group" not in text and "Invoice" not in text
    assert "[redacted]" in text
    assert figure(text, "Unique people exposed across the archive") == "6"
    assert redactor.address(SENDER) in text
    # Sources are hashed whole (a pattern for "the address part" of a file name would have
    # to guess); a message's position in its container stays readable.
    assert f"<code>{redactor.locator('/mail/2024_bob@hotmail.com.eml')}</code>" in text
    assert "2024_" not in text and "/mail/" not in text
    assert f"<code>{redactor.value('source', '/mail/Sent.mbox')}#5</code>" in text
    listed = [redactor.address(a) in text for a in ADDRESSES]
    assert all(listed) if show else redactor.address("ann@gmail.com") not in text
    assert "dan@yahoo.com" not in lowered and "[message withheld under --redact" in text
