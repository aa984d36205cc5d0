"""Recipient analysis: who sees whom, and how many strangers learn each other's addresses.

The harm of a To/Cc mailout is that people who do not know each other learn each other's
addresses. So the unit of exposure is the *party*: each address at a consumer mailbox
provider is its own party (a member of the public), each other external organisation
(registrable domain) is one party, and internal colleagues seeing each other is no
exposure at all. Mailing-list addresses hide their members and are not parties.
"""

from __future__ import annotations

import fnmatch
import operator
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from mailguard.addresses import Address, address_key, parse_address_list
from mailguard.config import Config
from mailguard.deadline import checkpoint
from mailguard.domains import registrable_domain
from mailguard.headers import ADDRESS_HEADERS
from mailguard.message import Message

_ANGLE = re.compile(r"<([^<>]*)>")
_HEADER_KINDS = tuple((h, h.removeprefix("resent-")) for h in ADDRESS_HEADERS)


@dataclass(frozen=True, slots=True)
class Envelope:
    """SMTP envelope: who the message is really delivered to (``RCPT TO``)."""

    mail_from: str | None = None
    rcpt_to: tuple[str, ...] = ()


@dataclass
class RecipientAnalysis:
    """Everything the recipient checks need, computed once per message."""

    by_header: dict[str, dict[str, Address]]
    """Distinct addresses per header kind (``to``, ``cc``, ``bcc``; Resent-* folded in)."""
    visible: dict[str, Address]
    """Distinct addresses in To/Cc/Resent-To/Resent-Cc, in first-seen order."""
    bcc: dict[str, Address]
    internal: set[str]
    personal: set[str]
    lists: set[str]
    parties: dict[str, list[str]]
    """Exposed party key (registrable domain, or the address for personal ones) -> addresses."""
    domains: Counter[str]
    """Registrable domain -> number of visible external addresses."""
    internal_basis: str
    """How internal was decided, for explanations ("configured", "sender domain x")."""
    sender: Address | None = None
    invalid: list[tuple[str, str]] = field(default_factory=list)
    """(header, entry) pairs with no usable address: left out of the counts."""
    malformed: list[tuple[str, str]] = field(default_factory=list)
    """(header, entry) pairs that are broken but whose visible addresses were counted."""
    semicolon_headers: list[str] = field(default_factory=list)
    truncated: bool = False
    envelope_rcpt: set[str] = field(default_factory=set)
    envelope_visible: set[str] = field(default_factory=set)
    by_domain: dict[str, list[str]] = field(default_factory=dict)
    """Full domain (as written, normalised) -> the visible addresses at it."""

    def summary(self) -> dict[str, object]:
        """The ``recipients`` object of the JSON contract (counts only, never addresses)."""
        external = len(self.visible) - len(self.internal)
        return {
            "to": len(self.by_header["to"]),
            "cc": len(self.by_header["cc"]),
            "bcc": len(self.bcc),
            "visible": len(self.visible),
            "visible_internal": len(self.internal),
            "visible_external": external,
            "external_domains": len(self.domains),
            "personal": len(self.personal),
            "exposed_parties": len(self.parties),
            "mailing_lists": len(self.lists),
            "invalid_entries": len(self.invalid),
            "malformed_entries": len(self.malformed),
            "envelope_recipients": len(self.envelope_rcpt),
            "envelope_recipients_visible": len(self.envelope_visible),
            "top_domains": [[d, n] for d, n in _top(self.domains, 5)],
            "internal_basis": self.internal_basis,
        }


def analyse(
    message: Message, config: Config, envelope: Envelope | None = None
) -> RecipientAnalysis:
    limit = config.limits.max_addresses
    by_header: dict[str, dict[str, Address]] = {"to": {}, "cc": {}, "bcc": {}}
    invalid: list[tuple[str, str]] = []
    malformed: list[tuple[str, str]] = []
    semicolons: list[str] = []
    truncated = False
    count = 0
    headers = message.headers
    for header, kind in _HEADER_KINDS:
        values = headers.get(header)
        if not values:
            continue
        bucket = by_header[kind]
        for value in values:
            checkpoint()
            parsed = parse_address_list(value, header, limit=limit, start_count=count)
            addresses = parsed.addresses
            count += len(addresses)
            # C-level dict building; a duplicate keeps its first position, last details.
            bucket.update(zip([a.addr for a in addresses], addresses, strict=True))
            if parsed.invalid:
                invalid.extend((header, text) for text in parsed.invalid)
            if parsed.malformed:
                malformed.extend((header, text) for text in parsed.malformed)
            if parsed.semicolon_separated and header not in semicolons:
                semicolons.append(header)
            truncated = truncated or parsed.truncated
    to, cc = by_header["to"], by_header["cc"]
    visible = {**to, **cc}
    visible.update(to)  # an address in both is reported as a To recipient

    sender = sender_of(message, envelope)
    internal_set = config.internal_set
    is_internal: Callable[[str], bool]
    if internal_set:
        is_internal = internal_set.__contains__
        basis = "configured: " + ", ".join(internal_set)
    elif sender is not None and sender.domain not in config.personal_set:
        org = registrable_domain(sender.domain)
        basis = f"sender's domain {org}"
        is_internal = _subdomain_test(org)
    else:
        # A sender at Gmail is not "internal" with every Gmail user: only their own address.
        basis = "sender's own address (sender uses a personal mailbox)" if sender else "none"
        is_internal = _never

    list_addrs = _list_addresses(message, config)
    list_patterns = config.mailing_lists
    personal_set = config.personal_set
    internal: set[str] = set()
    personal: set[str] = set()
    lists: set[str] = set()
    parties: dict[str, list[str]] = {}
    domains: Counter[str] = Counter()
    own = sender.addr if sender else None
    own_domain = sender.domain if sender else None
    classify = personal_set.classify
    # Classify per domain, not per address: big lists repeat a few domains many times.
    by_domain: dict[str, list[str]] = {}
    for key, addr in visible.items():
        by_domain.setdefault(addr.domain, []).append(key)
    check_lists = bool(list_addrs or list_patterns)
    for n, (domain, keys) in enumerate(by_domain.items()):
        if not n & 31:  # each domain is a few lookups: checking every one cost ~2 %
            checkpoint()
        if is_internal(domain):
            internal.update(keys)
            continue
        if domain == own_domain and own in keys:
            internal.add(own)
            keys = [k for k in keys if k != own]
            if not keys:  # only the sender's own mailbox: no external domain at all
                continue
        org, is_personal = classify(domain)
        domains[org] += len(keys)
        if check_lists:
            found = [k for k in keys if k in list_addrs or _matches_list(k, list_patterns)]
            lists.update(found)
            keys = [k for k in keys if k not in lists]
        if not keys:
            continue
        if is_personal:
            personal.update(keys)
            parties.update((k, [k]) for k in keys)
        else:
            parties.setdefault(org, []).extend(keys)

    envelope_rcpt: set[str] = set()
    if envelope is not None:
        rcpt_keys = map(address_key, map(_strip_angle, envelope.rcpt_to))
        envelope_rcpt = {key for key in rcpt_keys if key is not None}
    return RecipientAnalysis(
        by_header=by_header,
        visible=visible,
        bcc=by_header["bcc"],
        internal=internal,
        personal=personal,
        lists=lists,
        parties=parties,
        domains=domains,
        by_domain=by_domain,
        internal_basis=basis,
        sender=sender,
        invalid=invalid,
        malformed=malformed,
        semicolon_headers=semicolons,
        truncated=truncated,
        envelope_rcpt=envelope_rcpt,
        envelope_visible=envelope_rcpt & visible.keys(),
    )


def _top(counts: Counter[str], n: int) -> list[tuple[str, int]]:
    """``counts.most_common(n)``, which is documented as this ``sorted`` (ties keep their
    order): for the few domains of most messages a plain sort beats its heap."""
    if len(counts) > 64:
        return counts.most_common(n)
    return sorted(counts.items(), key=_count, reverse=True)[:n]


_count = operator.itemgetter(1)


def _never(_domain: str) -> bool:
    return False


def _subdomain_test(org: str) -> Callable[[str], bool]:
    suffix = "." + org

    def test(domain: str) -> bool:
        return domain == org or domain.endswith(suffix)

    return test


def _strip_angle(value: str) -> str:
    if value.startswith("<") and value.endswith(">") and value.count("<") == 1:
        return value[1:-1]  # the usual SMTP form, without a regex
    m = _ANGLE.search(value)
    return m.group(1) if m else value


def sender_of(message: Message, envelope: Envelope | None) -> Address | None:
    """The author (From, else Sender, else the envelope sender) the reports name."""
    for header in ("from", "sender"):
        for value in message.get_all(header):
            parsed = parse_address_list(value, header)
            if parsed.addresses:
                return parsed.addresses[0]
    if envelope is not None and envelope.mail_from:
        parsed = parse_address_list(_strip_angle(envelope.mail_from), "envelope")
        if parsed.addresses:
            return parsed.addresses[0]
    return None


def _list_addresses(message: Message, config: Config) -> set[str]:
    """Addresses the message itself declares as mailing lists (List-Post, List-Id)."""
    found: set[str] = set()
    for value in message.get_all("list-post"):
        for target in _ANGLE.findall(value) or [value]:
            parsed = parse_address_list(target, "list-post")
            found.update(a.addr for a in parsed.addresses)
    for value in message.get_all("list-id"):
        # List-Id: Name <dev.lists.example.org> identifies dev@lists.example.org.
        for ident in _ANGLE.findall(value):
            local, _, domain = ident.strip().lower().partition(".")
            if local and domain:
                found.add(f"{local}@{domain}")
    return found


def _matches_list(address: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(address, p.lower()) for p in patterns)
