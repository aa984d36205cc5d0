"""The register's wording for GDPR Art. 33: what each incident record says and asks.

Art. 33(5) requires every personal-data breach to be documented, notified or not, and Art.
33(3) says what a record holds. The fields mailguard can fill (nature, categories and
numbers of data subjects and records) are worded here from what the scan found; the ones
only a person can decide (consequences, measures, notification) are boxes to complete, with
a hint of what the law expects. The method notes that define the register's figures are
here too: they are the other text a regulator reads, and change with the same reviews.
"""

from __future__ import annotations

from mailguard.archive.register import Incident
from mailguard.outputs.scan_html_markup import esc, int_of, subjects, todo
from mailguard.outputs.words import count
from mailguard.rules import TAG_PARTIAL, TAG_SENSITIVE
from mailguard.sensitive import vocabulary

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


METHOD_NOTES = (
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
    "<strong>People listed in attachments</strong> are the distinct rows or cards of "
    "attached spreadsheets, CSV exports and contact files that carry a person's email "
    "address, phone number, postal address, name with date of birth or national "
    "identifier. They are counted apart from the people exposed in To/Cc, per incident "
    "(mailguard keeps none of their details).",
    "<strong>Dates</strong> are in UTC, from each message's Date header. Messages without "
    "a readable date are shown as <em>undated</em>; a date filter never excludes them.",
    "<strong>Addresses</strong> are listed only on request. When redacted, each is shown "
    "as a keyed hash (HMAC-SHA-256): the same address gives the same hash within this "
    "report, and cannot be recovered from it without the key.",
)
"""How the figures were computed: the definitions a reader of the records needs, as HTML
(trusted: these are mailguard's own words)."""


def art33_rows(incident: Incident) -> list[tuple[str, str]]:
    """The Art. 33(3) fields of one record, as (label, HTML) rows."""
    return [
        ("Nature of the breach", esc(_nature(incident))),
        ("Categories of data subjects", _data_subjects(incident)),
        ("Approximate number of data subjects", esc(_approximate(incident))),
        ("Categories and approximate number of personal data records", _data_records(incident)),
        ("Likely consequences", todo("Likely consequences", _consequence_hint(incident))),
        ("Measures taken or proposed", todo("Measures taken or proposed", _MEASURES_HINT)),
        ("Reported to the supervisory authority?", todo("Yes / no, date, reference", _SA_HINT)),
        ("Data subjects informed?", todo("Yes / no, date, how", _INFORMED_HINT)),
    ]


def _nature(incident: Incident) -> str:
    if not incident.listed:
        return _header_nature(incident)
    r = incident.recipients
    external = int_of(r, "visible_external") + int_of(r, "bcc")
    text = (
        f"Confidentiality breach (unauthorised disclosure): files attached to the message list "
        f"{count(incident.listed, 'person', 'people')} "
        f"({', '.join(incident.listed_data) or 'personal data'}); the message was addressed "
        f"to {count(int_of(r, 'visible') + int_of(r, 'bcc'), 'recipient')} in To/Cc/Bcc"
        f"{f', {external:,} of them external' if external else ''}."
    )
    if int_of(r, "exposed_parties") >= 2:
        text += " " + _header_nature(incident)
    return text


def _header_nature(incident: Incident) -> str:
    r = incident.recipients
    external = int_of(r, "visible_external")
    if external == 0:
        names = ", ".join(str(f.get("name", f.get("code", ""))) for f in incident.findings)
        return (
            "No external address was visible in To/Cc. mailguard scored the message "
            f"{incident.verdict} for: {names or 'unrecorded findings'}. Check whether personal "
            "data was disclosed before recording this as a breach."
        )
    text = (
        f"Confidentiality breach (unauthorised disclosure): the email addresses of "
        f"{count(external, 'external recipient')} were disclosed to every recipient of the "
        f"message, because they were written in To/Cc instead of Bcc. To/Cc held "
        f"{count(int_of(r, 'visible'), 'address', 'addresses')} ({int_of(r, 'visible_internal'):,} "
        f"internal, {external:,} external, at {count(int_of(r, 'external_domains'), 'domain')})."
    )
    lists = int_of(r, "mailing_lists")
    if lists:
        text += (
            f" {count(lists, 'of them is a mailing list', 'of them are mailing lists')}, "
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
    return "<ul>" + "".join(f"<li>{esc(item)}</li>" for item in items) + "</ul>"


def _approximate(incident: Incident) -> str:
    n = subjects(incident)
    text = f"{'at least ' if incident.tagged(TAG_PARTIAL) else ''}{n:,}"
    if incident.listed:
        text += f", and {incident.listed:,} people listed in attachments"
    return text


def _data_records(incident: Incident) -> str:
    n = subjects(incident)
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
    if incident.listed:
        items.append(
            f"Attached files listing {incident.listed:,} people, with: "
            f"{', '.join(incident.listed_data) or 'personal data'}"
        )
    return "<ul>" + "".join(f"<li>{esc(item)}</li>" for item in items) + "</ul>"


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
