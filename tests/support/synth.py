"""The one generator of synthetic mail: people, addresses, headers and bodies.

Used by ``examples/incidents/generate.py`` (the incident files and their known answers), by
the three benchmarks (the standard mix of ``bench_check``/``bench_scan``, the two messages
of ``bench_milter``) and by tests. It lives in ``tests/support`` because that is already the
package of mailguard-independent helpers that tests import and that the benchmarks import
(``tests.support.postfix``); scripts outside ``tests/`` put the repository root on
``sys.path``. It never imports mailguard: what judges the messages must not also make them.

Everything is synthetic and deterministic: organisations use ``.example`` domains, people
have names drawn from the lists below and made-up local parts at real consumer mail
providers, and all randomness comes from a ``random.Random`` the caller seeds. The header
syntax includes what real mail has: folded address lists, quoted display names with
commas, RFC 2047 encoded names and subjects, quoted-printable bodies.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import random
import re
import textwrap
import time
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from email.utils import format_datetime, parseaddr, parsedate_to_datetime

MAX_LINE = 78  # RFC 5322 "SHOULD" limit, excluding CRLF
MAX_MAILBOX = 72  # longest rendered mailbox, so that "Bcc: " + mailbox + "," still fits

# fmt: off
FIRST_NAMES = [
    "Amelia", "Oliver", "Olivia", "George", "Isla", "Harry", "Ava", "Jack", "Emily", "Noah",
    "Sophie", "Leo", "Grace", "Oscar", "Freya", "Charlie", "Lily", "Jacob", "Ella", "Thomas", "Mia",
    "James", "Ruby", "William", "Evie", "Mohammed", "Aisha", "Priya", "Arjun", "Fatima", "Daniel",
    "Chloe", "Samuel", "Hannah", "Joseph", "Megan", "Callum", "Niamh", "Ryan", "Kieran", "Bethany",
    "Liam", "Rebecca", "Adam", "Zainab", "Hamza", "Yusuf", "Amara", "Kwame", "Chidi", "Tomasz",
    "Katarzyna", "Ioana", "Andrei", "Wei", "Rhys", "Cerys", "Euan", "Eilidh", "Isobel", "Nathan",
    "Laura", "Paul", "Karen", "David", "Susan", "Gareth", "Claire",
]
SURNAMES = [
    "Hughes", "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies",
    "Robinson", "Wright", "Thompson", "Evans", "Walker", "White", "Roberts", "Green", "Hall",
    "Wood", "Jackson", "Clarke", "Patel", "Khan", "Ahmed", "Begum", "Ali", "Singh", "Kaur", "Shah",
    "Hussain", "Okafor", "Mensah", "Adeyemi", "Nowak", "Kowalski", "Murphy", "O'Brien", "Kelly",
    "Campbell", "Stewart", "MacDonald", "Fraser", "Reid", "Morgan", "Price", "Lloyd", "Griffiths",
    "Owen", "Chen", "Wong", "Nguyen", "Baker", "Turner", "Mitchell", "Cooper", "Ward", "Harris",
    "Lewis", "Young", "King", "Clarke-Davies", "McLaughlin",
]
# Names with non-ASCII letters, drawn now and then (alone or with a name from the lists above);
# in headers they go out as RFC 2047 encoded words.
ACCENTED_FIRST = [
    "Zo\u00eb", "Siobh\u00e1n", "Jos\u00e9", "\u0141ukasz", "Ren\u00e9e", "Ay\u015fe",
    "Bj\u00f6rn", "Chlo\u00eb", "Se\u00e1n", "Ma\u0142gorzata", "Ma\u00eblle", "Sin\u00e9ad",
    "Agn\u00e8s", "J\u00fcrgen",
]
ACCENTED_SURNAMES = [
    "Br\u00fcckner", "N\u00ed Bhriain", "N\u00fa\u00f1ez", "W\u00f3jcik", "Lef\u00e8vre",
    "Y\u0131lmaz", "\u00c5kesson", "Gu\u00e9rin", "\u00d3 Briain", "Kami\u0144ska", "Pe\u00f1a",
    "Concei\u00e7\u00e3o", "M\u00fcller", "S\u00f8ndergaard",
]
# fmt: on

# Consumer mail providers, with rough weights (a guess, not a measurement) for a UK list.
PERSONAL_DOMAINS: dict[str, int] = {
    "gmail.com": 30,
    "hotmail.co.uk": 14,
    "outlook.com": 10,
    "yahoo.co.uk": 9,
    "icloud.com": 8,
    "btinternet.com": 7,
    "googlemail.com": 5,
    "sky.com": 5,
    "live.co.uk": 5,
    "aol.com": 3,
}

_FOLD = str.maketrans(
    {"\u0141": "L", "\u0142": "l", "\u0131": "i", "\u00d8": "O", "\u00f8": "o", "\u00df": "ss"}
)
# Characters allowed unencoded inside an RFC 2047 "Q" word in a phrase (RFC 2047, 5 (3)).
_Q_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")


def ascii_fold(text: str) -> str:
    """Lower-case ASCII letters, digits and hyphens of ``text``, as used in a local part."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_FOLD))
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).lower()
    return "".join(c for c in plain if c.isascii() and (c.isalnum() or c == "-"))


def q_encode(text: str) -> str:
    """One RFC 2047 encoded word, Q encoding."""
    out = []
    for byte in text.encode("utf-8"):
        if byte == 0x20:
            out.append("_")
        elif byte in _Q_SAFE:
            out.append(chr(byte))
        else:
            out.append(f"={byte:02X}")
    return f"=?utf-8?q?{''.join(out)}?="


def b_encode(text: str) -> str:
    """One RFC 2047 encoded word, B encoding."""
    return f"=?utf-8?b?{base64.b64encode(text.encode('utf-8')).decode('ascii')}?="


@dataclass(frozen=True)
class Mailbox:
    """One address as it appears in a header (``text``) and its bare addr-spec (``addr``)."""

    addr: str
    text: str


class AddressBook:
    """Makes synthetic people; every address it hands out is new (case-insensitively)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.seen: set[str] = set()

    def _claim(self, addr: str) -> bool:
        key = addr.casefold()
        if key in self.seen:
            return False
        self.seen.add(key)
        return True

    def _name(self, accented: float) -> tuple[str, str]:
        rng = self.rng
        if rng.random() >= accented:
            return rng.choice(FIRST_NAMES), rng.choice(SURNAMES)
        which = rng.choice(["first", "last", "both"])
        first = rng.choice(ACCENTED_FIRST if which != "last" else FIRST_NAMES)
        last = rng.choice(ACCENTED_SURNAMES if which != "first" else SURNAMES)
        return first, last

    def _personal_local(self, first: str, last: str) -> str:
        rng = self.rng
        f, s = ascii_fold(first), ascii_fold(last).replace("-", "")
        year = rng.randint(1958, 2002)
        patterns = [
            (f"{f}.{s}", 10),
            (f"{f}.{s}{year % 100:02d}", 14),
            (f"{f}{s}{rng.randint(1, 999)}", 12),
            (f"{f}_{s}", 6),
            (f"{f[0]}{s}", 6),
            (f"{f[0]}.{s}{rng.randint(1, 99)}", 8),
            (f"{s}.{f}", 5),
            (f"{f}.{s}{year}", 9),
            (f"{f}{s[0]}{year % 100:02d}", 6),
            (f"{f}{s}", 6),
            (f"{f}.{s}.{rng.randint(1, 9)}", 3),
            (f"{s}{f[0]}{rng.randint(10, 99)}", 4),
        ]
        local = rng.choices([p for p, _ in patterns], weights=[w for _, w in patterns])[0]
        if rng.random() < 0.03:  # some people type their address with capitals
            local = ".".join(part.capitalize() for part in local.split("."))
        return local

    def _render(self, first: str, last: str, addr: str, style: str) -> str:
        name = f"{first} {last}"
        if style == "encoded" or not name.isascii():
            if style == "quoted-comma":
                name = f"{last}, {first}"
            word = b_encode(name) if self.rng.random() < 0.25 else q_encode(name)
            return f"{word} <{addr}>"
        if style == "quoted-comma":
            return f'"{last}, {first}" <{addr}>'
        if style == "quoted":
            return f'"{name}" <{addr}>'
        if style == "bare":
            return addr
        return f"{name} <{addr}>"

    def _style(self) -> str:
        styles = {"plain": 78, "quoted-comma": 10, "quoted": 6, "bare": 4, "encoded": 2}
        return self.rng.choices(list(styles), weights=list(styles.values()))[0]

    def personal(self, style: str | None = None, accented: float = 0.02) -> Mailbox:
        """Someone at a consumer mail provider."""
        while True:
            chosen = style or self._style()
            first, last = self._name(1.0 if chosen == "encoded" else accented)
            domain = self.rng.choices(
                list(PERSONAL_DOMAINS), weights=list(PERSONAL_DOMAINS.values())
            )[0]
            addr = f"{self._personal_local(first, last)}@{domain}"
            text = self._render(first, last, addr, chosen)
            if len(text) <= MAX_MAILBOX and self._claim(addr):
                return Mailbox(addr, text)

    def personal_list(self, count: int) -> list[Mailbox]:
        """``count`` personal mailboxes; from 10 on, always at least one quoted "Last, First"
        name and one encoded name, so every large example exercises both."""
        forced: dict[int, str] = {}
        if count >= 10:
            quoted, encoded = self.rng.sample(range(count), 2)
            forced = {quoted: "quoted-comma", encoded: "encoded"}
        return [self.personal(forced.get(i)) for i in range(count)]

    def at_domain(self, domain: str, style: str = "plain", accented: float = 0.0) -> Mailbox:
        """Someone with a first.last address at an organisation."""
        while True:
            first, last = self._name(accented)
            base = f"{ascii_fold(first)}.{ascii_fold(last)}"
            for suffix in ["", "2", "3", "4", "5"]:
                addr = f"{base}{suffix}@{domain}"
                text = self._render(first, last, addr, style)
                if len(text) <= MAX_MAILBOX and self._claim(addr):
                    return Mailbox(addr, text)

    def role(self, display: str, local: str, domain: str) -> Mailbox:
        addr = f"{local}@{domain}"
        if not self._claim(addr):
            raise ValueError(f"duplicate address {addr}")
        return Mailbox(addr, f"{display} <{addr}>")


@dataclass
class Example:
    """One message to write, with what mailguard is expected to conclude about it."""

    filename: str
    incident: str
    verdict: list[str]
    sender: str
    subject: str
    date: dt.datetime
    body: str
    to: list[Mailbox] = field(default_factory=list)
    cc: list[Mailbox] = field(default_factory=list)
    bcc: list[Mailbox] = field(default_factory=list)
    undisclosed: bool = False  # To: undisclosed-recipients:;
    extra_headers: list[tuple[str, str]] = field(default_factory=list)
    quoted_printable: bool = False
    message_id: str = ""


# --- header and body encoding ---------------------------------------------------------------


def fold_addresses(name: str, boxes: Sequence[Mailbox]) -> str:
    """``Name: a, b,`` folded after the comma between addresses into lines of at most 78."""
    lines: list[str] = []
    current = f"{name}:"
    for i, box in enumerate(boxes):
        item = box.text + ("," if i < len(boxes) - 1 else "")
        if len(current) + 1 + len(item) <= MAX_LINE:
            current = f"{current} {item}"
        else:
            lines.append(current)
            current = f" {item}"
    lines.append(current)
    return "\r\n".join(lines)


def fold_unstructured(name: str, value: str) -> str:
    """An unstructured header such as Subject; non-ASCII text goes out as encoded words."""
    if value.isascii():
        return "\r\n".join(
            textwrap.wrap(
                f"{name}: {value}",
                MAX_LINE,
                subsequent_indent=" ",
                break_long_words=False,
                break_on_hyphens=False,
            )
        )
    words = [w + " " for w in value.split(" ")]
    words[-1] = words[-1].rstrip(" ")
    lines: list[str] = []
    current, chunk = f"{name}:", ""
    for word in words:
        longer = q_encode(chunk + word)
        if chunk and (len(longer) > 75 or len(current) + 1 + len(longer) > MAX_LINE):
            lines.append(f"{current} {q_encode(chunk)}")
            current, chunk = "", word
        else:
            chunk += word
    lines.append(f"{current} {q_encode(chunk)}")
    return "\r\n".join(lines)


def wrap_body(blocks: Iterable[str], width: int | None = 72) -> str:
    """Paragraphs wrapped to ``width`` (kept whole if None); blocks with newlines kept as is."""
    out = []
    for block in blocks:
        if "\n" in block or width is None:
            out.append(block)
        else:
            out.append(textwrap.fill(block, width))
    return "\n\n".join(out) + "\n"


def qp_encode(text: str) -> str:
    """Quoted-printable (RFC 2045) of UTF-8 ``text``, CRLF line breaks, lines of at most 76."""
    out: list[str] = []
    for line in text.split("\n"):
        data = line.encode("utf-8")
        tokens = []
        for i, byte in enumerate(data):
            literal = 33 <= byte <= 126 and byte != 0x3D
            if literal or (byte in (0x09, 0x20) and i != len(data) - 1):
                tokens.append(chr(byte))
            else:
                tokens.append(f"={byte:02X}")
        current = ""
        for token in tokens:
            if len(current) + len(token) > 75:
                out.append(current + "=")
                current = ""
            current += token
        out.append(current)
    return "\r\n".join(out)


def render(example: Example) -> bytes:
    headers = [fold_unstructured("From", example.sender)]
    if example.undisclosed:
        headers.append("To: undisclosed-recipients:;")
    elif example.to:
        headers.append(fold_addresses("To", example.to))
    if example.cc:
        headers.append(fold_addresses("Cc", example.cc))
    if example.bcc:
        headers.append(fold_addresses("Bcc", example.bcc))
    headers += [
        fold_unstructured("Subject", example.subject),
        f"Date: {format_datetime(example.date)}",
        f"Message-ID: {example.message_id}",
    ]
    headers += [f"{name}: {value}" for name, value in example.extra_headers]
    cte = "quoted-printable" if example.quoted_printable else "8bit"
    headers += [
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        f"Content-Transfer-Encoding: {cte}",
    ]
    if example.quoted_printable:
        body = qp_encode(example.body.rstrip("\n")) + "\r\n"
    else:
        body = example.body.replace("\n", "\r\n")
    for line in "\r\n".join(headers).split("\r\n"):
        if len(line) > MAX_LINE:
            raise ValueError(f"{example.filename}: header line over {MAX_LINE}: {line!r}")
    return assemble(headers, body)


def assemble(headers: Sequence[str], body: str) -> bytes:
    """Header fields (already folded, CRLF inside), a blank line and the CRLF ``body``."""
    return ("\r\n".join(headers) + "\r\n\r\n" + body).encode("utf-8")


def message_id(rng: random.Random, when: dt.datetime, domain: str) -> str:
    return f"<{when:%Y%m%d%H%M%S}.{rng.getrandbits(48):012x}@{domain}>"


def when(year: int, month: int, day: int, hour: int, minute: int, second: int) -> dt.datetime:
    """A fixed UK local time (BST from the last Sunday of March to the last of October)."""
    bst = dt.datetime(year, 3, 25) <= dt.datetime(year, month, day) < dt.datetime(year, 10, 25)
    tz = dt.timezone(dt.timedelta(hours=1 if bst else 0))
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=tz)


# --- prose --------------------------------------------------------------------------------

WORDS = (
    "the", "project", "team", "meeting", "please", "find", "attached", "update", "schedule",
    "we", "will", "review", "next", "week", "thanks", "for", "your", "help", "with", "this",
    "budget", "plan", "office", "delivery", "confirm", "details", "below", "and", "to", "of",
    "a", "in", "on", "is", "as", "discussed", "agreed", "action", "points", "deadline", "draft",
    "report", "figures", "quarter", "client", "supplier", "contract", "venue", "agenda",
    "minutes", "following", "regarding", "changes", "let", "me", "know", "if", "any",
    "questions", "best", "regards", "kind", "available", "call", "tomorrow", "morning",
)  # fmt: skip
"""Office small talk: bodies that trigger no content rule."""


def paragraph(rng: random.Random) -> str:
    """One paragraph of 25-45 words of office small talk, unwrapped."""
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(25, 45))).capitalize() + "."


def prose(rng: random.Random, size: int) -> str:
    """Paragraphs wrapped at 72 columns, LF line ends, about ``size`` characters in all."""
    out: list[str] = []
    length = 0
    while length < size:
        para = textwrap.fill(paragraph(rng), 72)
        out.append(para)
        length += len(para) + 2
    return "\n\n".join(out)


# --- the standard mix (bench_check, bench_scan) ---------------------------------------------

SMALL_COUNT = 4_500
CC300_COUNT = 400
ATTACHMENT_COUNT = 100
CC300_RECIPIENTS = 300
BIG_RECIPIENTS = 10_000
ATTACHMENT_RAW_BYTES = 1_500_000
"""Random PDF bytes per attachment: 2,000,000 base64 characters, ~2.03 MB with line ends."""
ORG_DOMAIN_POOL = 400
"""Organisation domains are ``domain0.example`` ... ``domain399.example``."""
MIX_PERSONAL_SHARE = 0.45
"""Share of the mix's recipients at consumer providers; the rest are at organisations."""

SUBJECTS = (
    "Minutes from Tuesday's planning meeting", "Re: Q3 budget figures", "Invoice INV-{n}",
    "Updated rota for next week", "Welcome to the team", "Re: Re: Draft proposal v{n}",
    "Agenda for the annual general meeting", "Fwd: Venue confirmation", "Project Falcon update",
    "Reminder: timesheets due Friday", "Your quote reference {n}", "Re: Contract renewal",
    "Office closure over the bank holiday", "Training session materials", "Re: Lunch on Thursday?",
    "Newsletter - spring edition", "Change to delivery schedule", "Follow-up from our call",
)  # fmt: skip
MAILERS = (
    "Microsoft Outlook 16.0", "Apple Mail (2.3774.600.62)", "Mozilla Thunderbird 128.5.0",
    "Roundcube Webmail/1.6.9", "Evolution 3.52.4",
)  # fmt: skip
CRLF = "\r\n"


@dataclass(frozen=True, slots=True)
class Sample:
    """One generated message and what it should be found to contain."""

    kind: str
    """``small``, ``cc300``, ``attachment`` or ``big``."""
    data: bytes
    visible: int
    """Distinct To/Cc addresses written into it (the engine's ``recipients["visible"]``)."""


class MixGenerator:
    """Outgoing office mail: Received chains, DKIM, multipart/alternative bodies, attachments.

    People come from :class:`AddressBook` (a fresh one per message: addresses are distinct
    within a message, as a mail client makes them); all randomness from one seeded Random.
    """

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.serial = 0
        self.base_date = dt.datetime(2025, 3, 3, 8, 0, tzinfo=dt.UTC)

    def _org_domain(self) -> str:
        return f"domain{self.rng.randrange(ORG_DOMAIN_POOL)}.example"

    def _people(self, book: AddressBook, count: int, colleagues_at: str = "") -> list[Mailbox]:
        out = []
        for _ in range(count):
            if colleagues_at and self.rng.random() < 0.3:
                out.append(book.at_domain(colleagues_at, book._style(), accented=0.04))
            elif self.rng.random() < MIX_PERSONAL_SHARE:
                out.append(book.personal(accented=0.04))
            else:
                out.append(book.at_domain(self._org_domain(), book._style(), accented=0.04))
        return out

    def _date(self) -> dt.datetime:
        offset = dt.timedelta(seconds=self.rng.randrange(90 * 24 * 3600))
        tz = dt.timezone(dt.timedelta(hours=self.rng.choice((0, 0, 1, 2, -5))))
        return (self.base_date + offset).astimezone(tz)

    def _received(self, sender_domain: str, rcpt: str, when: dt.datetime) -> list[str]:
        rng = self.rng
        hops = []
        for hop in range(rng.randint(2, 4)):
            host = f"mail{rng.randrange(1, 40)}.{sender_domain}"
            ip = f"198.51.100.{rng.randrange(1, 255)}"
            relay = rng.choice(("smtp-out", "mx", "relay", "outbound"))
            stamp = format_datetime(when + dt.timedelta(seconds=hop * rng.randint(1, 4)))
            hops.append(
                f"Received: from {host} ({host} [{ip}]){CRLF}"
                f"\tby {relay}{rng.randrange(1, 9)}.{sender_domain} (Postfix) with ESMTPSA"
                f" id 4{rng.getrandbits(40):010X}{CRLF}"
                f"\tfor <{rcpt}>; {stamp}"
            )
        hops.reverse()
        return hops

    def _dkim(self, domain: str) -> str:
        rng = self.rng
        b = base64.b64encode(rng.randbytes(256)).decode()
        bh = base64.b64encode(rng.randbytes(32)).decode()
        return (
            f"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d={domain};{CRLF}"
            f"\ts=sel{rng.randrange(1, 3)}; t={rng.randrange(1_740_000_000, 1_750_000_000)};{CRLF}"
            f"\th=from:to:cc:subject:date:message-id:mime-version:content-type;{CRLF}"
            f"\tbh={bh};{CRLF}"
            f"\tb={(CRLF + chr(9) + ' ').join(b[i : i + 70] for i in range(0, len(b), 70))}"
        )

    def _headers(
        self, sender: Mailbox, domain: str, to: list[Mailbox], cc: list[Mailbox], ctype: str
    ) -> list[str]:
        rng = self.rng
        self.serial += 1
        when = self._date()
        lines = self._received(domain, to[0].addr, when)
        if rng.random() < 0.5:
            lines.append(self._dkim(domain))
        lines += [f"From: {sender.text}", fold_addresses("To", to)]
        if cc:
            lines.append(fold_addresses("Cc", cc))
        subject = rng.choice(SUBJECTS).format(n=rng.randrange(1000, 99999))
        lines += [
            f"Subject: {subject}",
            f"Date: {format_datetime(when)}",
            f"Message-ID: <{rng.getrandbits(96):024x}.{self.serial}@{domain}>",
            "MIME-Version: 1.0",
        ]
        if rng.random() < 0.3:
            lines.append(f"Reply-To: {sender.text}")
        lines.append(f"X-Mailer: {rng.choice(MAILERS)}")
        if rng.random() < 0.4:
            lines.append("Content-Language: en-GB")
        lines.append(ctype)
        return lines

    def _text(self, paras: list[str]) -> str:
        return CRLF.join(CRLF.join(textwrap.wrap(p, 72)) + CRLF for p in paras)

    def _alternative_body(self, boundary: str, greeting: str, paragraphs: int) -> str:
        paras = [greeting, *(paragraph(self.rng) for _ in range(paragraphs)), "Kind regards,"]
        html = (
            '<html><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8">'
            '</head><body style="font-family: Calibri, sans-serif; font-size: 11pt;">'
            + "".join(f'<p style="margin: 0 0 8pt 0;">{p}</p>\n' for p in paras)
            + "</body></html>"
        )
        return (
            f"This is a multi-part message in MIME format.{CRLF}{CRLF}"
            f"--{boundary}{CRLF}"
            f'Content-Type: text/plain; charset="utf-8"{CRLF}'
            f"Content-Transfer-Encoding: 7bit{CRLF}{CRLF}"
            f"{self._text(paras)}{CRLF}"
            f"--{boundary}{CRLF}"
            f'Content-Type: text/html; charset="utf-8"{CRLF}'
            f"Content-Transfer-Encoding: quoted-printable{CRLF}{CRLF}"
            f"{qp_encode(html)}{CRLF}{CRLF}"
            f"--{boundary}--{CRLF}"
        )

    def _start(self, to_count: int, cc_count: int, *, colleagues: bool = True) -> tuple[
        AddressBook, Mailbox, str, list[Mailbox], list[Mailbox], str
    ]:  # fmt: skip
        book = AddressBook(self.rng)
        domain = self._org_domain()
        sender = book.at_domain(domain, book._style())
        at = domain if colleagues else ""
        to = self._people(book, to_count, at) if colleagues else [book.at_domain(domain)]
        cc = self._people(book, cc_count, at)
        return book, sender, domain, to, cc, f"----=_Part_{self.rng.getrandbits(64):016x}"

    def small(self) -> Sample:
        _, sender, domain, to, cc, boundary = self._start(
            self.rng.randint(1, 3), self.rng.choice((0, 0, 0, 1, 2))
        )
        ctype = f'Content-Type: multipart/alternative;{CRLF}\tboundary="{boundary}"'
        body = self._alternative_body(boundary, "Hi,", self.rng.randint(2, 4))
        return Sample("small", assemble(self._headers(sender, domain, to, cc, ctype), body),
                      len(to) + len(cc))  # fmt: skip

    def many_cc(self, count: int, kind: str = "cc300") -> Sample:
        _, sender, domain, to, cc, boundary = self._start(1, count, colleagues=False)
        ctype = f'Content-Type: multipart/alternative;{CRLF}\tboundary="{boundary}"'
        body = self._alternative_body(boundary, "Dear all,", self.rng.randint(3, 5))
        return Sample(kind, assemble(self._headers(sender, domain, to, cc, ctype), body),
                      len(to) + len(cc))  # fmt: skip

    def attachment(self) -> Sample:
        rng = self.rng
        _, sender, domain, to, cc, boundary = self._start(rng.randint(1, 3), rng.choice((0, 0, 1)))
        ctype = f'Content-Type: multipart/mixed;{CRLF}\tboundary="{boundary}"'
        head = self._headers(sender, domain, to, cc, ctype)
        text = self._text(["Hi,", paragraph(rng), paragraph(rng), "Report attached.", "Thanks,"])
        pdf = b"%PDF-1.7\n" + rng.randbytes(ATTACHMENT_RAW_BYTES - 9)
        encoded = base64.encodebytes(pdf).replace(b"\n", b"\r\n")  # 76-character lines
        name = f"report-{rng.randrange(1000, 9999)}.pdf"
        body = (
            f"--{boundary}{CRLF}"
            f'Content-Type: text/plain; charset="utf-8"{CRLF}'
            f"Content-Transfer-Encoding: 7bit{CRLF}{CRLF}"
            f"{text}{CRLF}"
            f"--{boundary}{CRLF}"
            f'Content-Type: application/pdf; name="{name}"{CRLF}'
            f'Content-Disposition: attachment; filename="{name}"{CRLF}'
            f"Content-Transfer-Encoding: base64{CRLF}{CRLF}"
        )
        data = assemble(head, body) + encoded + f"--{boundary}--{CRLF}".encode()
        return Sample("attachment", data, len(to) + len(cc))


def build_mix(seed: int, scale: int) -> list[Sample]:
    """The standard mix divided by ``scale`` (1 = full), deterministically shuffled:
    4,500 small messages, 400 with one To and 300 Cc, 100 with a 2 MB PDF attached."""
    gen = MixGenerator(seed)
    mix = [gen.small() for _ in range(SMALL_COUNT // scale)]
    mix += [gen.many_cc(CC300_RECIPIENTS) for _ in range(CC300_COUNT // scale)]
    mix += [gen.attachment() for _ in range(ATTACHMENT_COUNT // scale)]
    gen.rng.shuffle(mix)
    return mix


def build_big(seed: int) -> Sample:
    """One message with 1 To and 10,000 Cc (its own seed so --quick does not change it)."""
    return MixGenerator(seed + 1).many_cc(BIG_RECIPIENTS, kind="big")


# --- the milter benchmark's two messages ---------------------------------------------------


def clean_message(sender: str, recipient: str) -> str:
    """One sender, one recipient, ~2 KB of text: what most outgoing mail looks like.

    LF line ends: ``smtp-source -F`` sends each line with CRLF (and dot-stuffs).
    """
    rng = random.Random(1729)
    head = [
        f"From: Alice Example <{sender}>",
        f"To: Bob Example <{recipient}>",
        "Subject: Minutes from Tuesday's planning meeting",
        "Date: Tue, 04 Mar 2025 09:12:44 +0000",
        "Message-ID: <bench-clean.1729@example.test>",
        "MIME-Version: 1.0",
        'Content-Type: text/plain; charset="utf-8"',
        "Content-Transfer-Encoding: 7bit",
    ]
    body = "Hi Bob,\n\n" + prose(rng, 1400) + "\n\nKind regards,\nAlice\n"
    return "\n".join(head) + "\n\n" + body


def cc300_message(sender: str, count: int = CC300_RECIPIENTS) -> str:
    """A rota mailed to ``count`` people's personal addresses in Cc instead of Bcc.

    The exposure mailguard exists to stop (verdict ``block``); LF line ends as above.
    """
    rng = random.Random(300)
    book = AddressBook(rng)
    cc = [book.personal(style="plain") for _ in range(count)]
    domain = sender.split("@")[1]
    head = [
        f"From: HR Team <{sender}>",
        f"To: Rota <rota@{domain}>",
        fold_addresses("Cc", cc).replace("\r\n", "\n"),
        "Subject: Your shifts for April",
        "Date: Tue, 04 Mar 2025 16:02:10 +0000",
        "Message-ID: <bench-cc300.300@serviceco.example>",
        "MIME-Version: 1.0",
        'Content-Type: text/plain; charset="utf-8"',
    ]
    body = "Dear all,\n\n" + prose(rng, 600) + "\n\nHR Team\n"
    return "\n".join(head) + "\n\n" + body


# --- mbox ---------------------------------------------------------------------------------

_MBOXRD_QUOTE = re.compile(rb"^(>*From )", re.MULTILINE)
_FROM_HEADER = re.compile(rb"^From:[ \t]*([^\n]*)", re.MULTILINE | re.IGNORECASE)
_DATE_HEADER = re.compile(rb"^Date:[ \t]*([^\n]*)", re.MULTILINE | re.IGNORECASE)


def mbox_entry(from_line: bytes, message: bytes) -> tuple[bytes, int]:
    """One mboxrd entry for an LF ``message``: the ``From_`` line, the message with every
    ``From `` (or ``>From ``, ...) at a line start quoted with one more ``>``, a blank line.
    Returns the entry and how many lines were quoted."""
    body, quoted = _MBOXRD_QUOTE.subn(rb">\1", message)
    return from_line + body + (b"\n" if body.endswith(b"\n") else b"\n\n"), quoted


def mbox_from_line(message: bytes) -> bytes:
    """``From sender asctime`` from the message's own From and Date headers."""
    end = message.find(b"\n\n")
    head = message if end < 0 else message[:end]
    sender = "MAILER-DAEMON"
    if (m := _FROM_HEADER.search(head)) is not None:
        sender = parseaddr(m.group(1).decode("utf-8", "replace"))[1] or sender
    when = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    if (m := _DATE_HEADER.search(head)) is not None:
        with contextlib.suppress(TypeError, ValueError, IndexError):
            when = parsedate_to_datetime(m.group(1).decode("ascii", "replace"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return f"From {sender} {time.asctime(when.astimezone(dt.UTC).timetuple())}\n".encode()
