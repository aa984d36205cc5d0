"""Generate the example messages in this directory, and ``expected.toml`` beside them.

Why these examples exist: mailguard has to recognise, before a message is sent, that it exposes
a list of recipients to each other. The messages that matter most are the ones that have already
gone wrong in public: the incidents in README.md, where an organisation put the personal addresses
of patients, new recruits or service users in To or Cc instead of Bcc. Each incident
file here is modelled on one of them (same kind of sender, same kind of list, roughly the same
size); the control files are ordinary messages that must *not* be blocked. Together they give
the tests, the docs and the benchmarks one shared, realistic corpus with known answers.

Everything in them is synthetic: organisations use ``.example`` domains, people have names drawn
from the lists below and made-up local parts at real consumer mail providers. The header syntax
deliberately includes what real mail has: folded address lists, quoted display names with
commas, RFC 2047 encoded names and subjects, quoted-printable bodies, the empty group
``undisclosed-recipients:;`` and a ``Bcc:`` header left in the payload.

Run ``python3 examples/incidents/generate.py``. The output is deterministic (one
``random.Random(2020)``, fixed dates, no network): running it again rewrites the same bytes.
"""

from __future__ import annotations

import base64
import datetime as dt
import random
import textwrap
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from email.utils import format_datetime
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parent
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
    header_block = "\r\n".join(headers)
    for line in header_block.split("\r\n"):
        if len(line) > MAX_LINE:
            raise ValueError(f"{example.filename}: header line over {MAX_LINE}: {line!r}")
    return (header_block + "\r\n\r\n" + body).encode("utf-8")


def message_id(rng: random.Random, when: dt.datetime, domain: str) -> str:
    return f"<{when:%Y%m%d%H%M%S}.{rng.getrandbits(48):012x}@{domain}>"


def when(year: int, month: int, day: int, hour: int, minute: int, second: int) -> dt.datetime:
    """A fixed UK local time (BST from the last Sunday of March to the last of October)."""
    bst = dt.datetime(year, 3, 25) <= dt.datetime(year, month, day) < dt.datetime(year, 10, 25)
    tz = dt.timezone(dt.timedelta(hours=1 if bst else 0))
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=tz)


# --- the messages -----------------------------------------------------------------------------

TRACERS_SENDER = "Recruitment Team <recruitment@serviceco.example>"
TRACERS_SUBJECT = "Welcome to the contact tracing team: training and next steps"
TRACERS_DATE = when(2020, 5, 18, 17, 4, 12)
TRACERS_BODY = wrap_body(
    [
        "Dear colleague,",
        "Welcome to the contact tracing service, and thank you for joining us at such an "
        "important time. You are one of the new contact tracers who will help the national "
        "test and trace programme reach people who have been in close contact with someone "
        "who has tested positive for coronavirus (COVID-19).",
        "Your online induction training starts next week. Within the next 48 hours you will "
        "receive a separate email with your login details for the learning portal and the "
        "time of your first training session. Please do not call the recruitment helpdesk to "
        "ask for your session details: the invitations are going out in batches and the "
        "helpdesk is handling a very high number of calls.",
        "Before your first session, please make sure that:\n"
        "- you have a laptop or desktop computer, a headset and a reliable internet\n"
        "  connection;\n"
        "- you have completed your pre-employment checks and uploaded your\n"
        "  right-to-work documents;\n"
        "- you have read the confidentiality and data protection guidance that came\n"
        "  with your offer letter.",
        "Contact tracers work from home in shifts, seven days a week. Your team leader will "
        "get in touch after your training to agree your shift pattern for the first month.",
        "We look forward to working with you.",
        "Kind regards,",
        "Recruitment Team\nContact Tracing Programme\nServiceCo",
    ]
)

GIC_BODY = wrap_body(
    [
        "Dear patient,",
        "Welcome to the autumn update from the Gender Identity Clinic. This newsletter goes to "
        "everyone who is currently seen by the clinic or is waiting for a first appointment.",
        "Appointments during COVID-19",
        "Most first and follow-up appointments are still taking place by video or telephone. "
        "Your clinician will contact you a few days before your appointment to confirm how it "
        "will take place. If you have changed your name, pronouns, address or phone number, "
        "please let the admin team know so that we can update your records before then.",
        "Waiting list",
        "We know that many of you have been waiting a long time for a first appointment, and "
        "we are sorry for this. We are offering appointments in the order in which referrals "
        "were received and will write to you as soon as one is available. While you wait, your "
        "GP can continue to support you, including with blood tests and with any hormone "
        "prescriptions that have already been agreed.",
        "Art project \u2013 call for submissions",
        "Our Patient and Public Involvement team is launching an art project for trans and "
        "non-binary people who use the clinic. We\u2019d love to see drawings, paintings, "
        "photographs, poems or short pieces of writing about your experience of gender and "
        "identity. Submissions are welcome until 30 November; please reply to this email if "
        "you would like to take part.",
        "Peer support",
        "Our peer support groups continue online every fortnight, including a group for people "
        "who are new to the service. Details are on the clinic\u2019s website.",
        "With best wishes,",
        "Patient and Public Involvement Team\nGender Identity Clinic",
    ],
    width=None,
)

COUNCIL_BODY = wrap_body(
    [
        "Dear panel members,",
        "Thank you to everyone who joined the lived experience panel for the regional gender "
        "identity service on 24 February. Your feedback on the new patient information "
        "leaflets and on how the service writes to people on its waiting list has already "
        "been passed to the clinical team.",
        "Our next meeting is on Wednesday 24 March at 6.30pm, online. The joining link will "
        "be sent the day before. Draft minutes of the last meeting are below; please let me "
        "know of any corrections by 17 March.",
        "Minutes, 24 February 2021 (draft)\n"
        "1. Welcome and introductions. Two new members joined the panel.\n"
        "2. Patient information leaflets. Members asked for plainer language\n"
        "   about waiting times and for information on support for families.\n"
        "3. Waiting list letters. The service will send a short update every\n"
        "   six months to people still waiting for a first appointment.\n"
        "4. Peer support. The council will look into funding for an\n"
        "   additional online peer support group.\n"
        "5. Any other business. None.",
        "As always, if you would rather give feedback one-to-one, just reply to me directly.",
        "Best wishes,",
        "Patient Council\nRiverside Health",
    ]
)

HIV_BODY = wrap_body(
    [
        "Dear community advisory board members,",
        "Please find below the papers for our next meeting on Thursday 27 February, 6pm to "
        "8pm, in the upstairs meeting room at our office. Tea, coffee and sandwiches "
        "will be provided from 5.30pm.",
        "Agenda\n"
        "1. Welcome, apologies and minutes of the last meeting\n"
        "2. PrEP access: update on waiting times at local sexual health clinics\n"
        "3. HIV testing week: what worked and what we would change\n"
        "4. U=U stigma campaign: draft posters for comment\n"
        "5. Peer mentoring for people newly diagnosed with HIV\n"
        "6. Any other business",
        "For item 4, the draft posters will be shared at the meeting. We are particularly keen "
        "to hear from members living with HIV about whether the wording feels right.",
        "Travel expenses can be claimed on the night; please bring your receipts. If you need "
        "help with childcare or access costs, let us know beforehand and we\u2019ll arrange it.",
        "A reminder that everything discussed at the advisory board is confidential, and that "
        "members\u2019 names and health information are never shared outside the board.",
        "Warm regards,",
        "Community Engagement Team\nPositive Futures HIV Support",
    ],
    width=None,
)

MEMO_BODY = wrap_body(
    [
        "Dear colleagues,",
        "As we move into the new financial year I wanted to write to everyone across the "
        "council, including our schools and social care teams, with an update on three things: "
        "our budget, the return to our offices and this year's staff survey.",
        "Budget. Full Council agreed the 2021/22 budget last month. There are no proposals for "
        "compulsory redundancies, and the pay award will be applied as soon as it is agreed "
        "nationally.",
        "Returning to offices. The Civic Centre and the three area offices will reopen for "
        "more desk-based staff from 17 May, with booking through the desk booking system. "
        "Please talk to your manager before you come back in; working from home remains the "
        "default for those who can.",
        "Staff survey. The survey opens on Monday and runs for three weeks. It takes about "
        "fifteen minutes, is anonymous, and the results will shape our workforce plan.",
        "Thank you, as ever, for everything you have done for our residents over the past year.",
        "Best wishes,",
        "Chief Executive\nNorthfield Council",
    ]
)

PARTNER_BODY = wrap_body(
    [
        "Hi all,",
        "Following our call on Friday, here is the delivery schedule for the remaining pump "
        "housings on PO 48213:",
        "- 120 units, collection Thursday 25 March from our Unit 4 dispatch bay\n"
        "- 180 units, collection Thursday 8 April\n"
        "- 150 units, collection Thursday 22 April",
        "Each load is on 4 standard pallets (1200 x 1000 mm), about 620 kg per pallet. Goods "
        "will be ready from 8am; please book the collection slot with our dispatch office at "
        "least 24 hours in advance.",
        "Daniel (copied) is taking over our side of the account from April, so please include "
        "him on anything to do with collections.",
        "Thanks,\nPriya",
        "Priya Shah\nSupply Chain Manager\nAcme Engineering",
    ]
)

FIXTURES_BODY = wrap_body(
    [
        "Hi all,",
        "Fixtures for Saturday 10 October:",
        "First team: away at Millbrook Rangers, kick-off 2pm.\n"
        "Meet at the clubhouse at 12.45 to share lifts.\n"
        "\n"
        "Reserves: home to Eastgate Athletic, kick-off 2pm, pitch 2.\n"
        "Please be changed by 1.30.",
        "Away kit for the first team (white shirts, navy shorts). Match fees are \u00a35 as "
        "usual, or pay by bank transfer with your surname as the reference.",
        "If you can't make it, let me know by Thursday evening so I can sort out the squads. "
        "We're still short of a linesman for the reserves, so any volunteers gratefully "
        "received.",
        "Cheers,\nMark\nFixtures Secretary, Oakfield FC",
    ]
)

SUPPLIER_BODY = wrap_body(
    [
        "Dear supplier,",
        "From 1 March 2021 Brightline Retail will move all purchase orders, invoices and "
        "remittance advice to our new supplier portal. From that date we will no longer be "
        "able to accept invoices by post or by email.",
        "What you need to do",
        "1. Register your company on the portal before 22 February using the link in the "
        "separate invitation email you will receive this week.",
        "2. Check your bank details and VAT number on the portal. For your security, we will "
        "never ask you to change bank details by email.",
        "3. Quote the purchase order number on every invoice. Invoices without a valid PO "
        "number will be returned.",
        "Payment terms are unchanged. We will run two short online training sessions for "
        "suppliers on 17 and 18 February; please reply if you would like to attend.",
        "Thank you for your support with this change.",
        "Kind regards,",
        "Procurement Team\nBrightline Retail",
    ],
    width=None,
)

LIST_BODY = wrap_body(
    [
        "On Tue, 1 Jun 2021 at 18:32, Wei Chen wrote:\n"
        "> I'd like to propose that 3.0 drops support for Python 3.6. It's\n"
        "> past end of life, and keeping it means we can't use dataclasses\n"
        "> or the new typing features in the core modules.",
        "+1 from me. The CI matrix for 3.6 is also the one that fails most often for reasons "
        "that have nothing to do with our code.",
        "Could we do it in two steps, though? Add a deprecation warning in 2.9 and remove "
        "support in 3.0, so downstream packagers get one release of notice. I'm happy to "
        "prepare the pull request for the warning and the changelog entry.",
        "Also copying Fatima, who maintains the Debian package and may have a view on timing.",
        "Cheers,\nTom",
    ]
)


def build(rng: random.Random) -> list[Example]:
    book = AddressBook(rng)
    examples: list[Example] = []

    # 01, 05, 11: the same 296 new contact tracers.
    tracers = book.personal_list(296)
    examples.append(
        Example(
            "01-contact-tracers-cc.eml",
            "2020: outsourcer emails 296 newly hired contact tracers with their personal "
            "addresses in Cc",
            ["block"],
            TRACERS_SENDER,
            TRACERS_SUBJECT,
            TRACERS_DATE,
            TRACERS_BODY,
            to=tracers[:1],
            cc=tracers[1:],
        )
    )

    patients = book.personal_list(1718)
    examples.append(
        Example(
            "02-gender-identity-clinic-to.eml",
            "2019: NHS gender identity clinic emails about 1,781 patients with their addresses "
            "in To (model: 1,718 in one message)",
            ["block"],
            "Gender Identity Clinic <newsletter@gic-trust.example>",
            "Gender Identity Clinic patient newsletter \u2013 autumn update",
            when(2020, 10, 9, 15, 21, 37),
            GIC_BODY,
            to=patients,
            quoted_printable=True,
        )
    )

    panel = book.personal_list(15)
    examples.append(
        Example(
            "03-patient-council-cc.eml",
            "Patient council emails 15 people with lived experience of gender dysphoria with "
            "their addresses in Cc",
            ["block"],
            "Patient Council <patient.council@riverside-health.example>",
            "Patient council: next meeting and minutes",
            when(2021, 3, 10, 10, 14, 55),
            COUNCIL_BODY,
            to=panel[:1],
            cc=panel[1:],
        )
    )

    board = book.personal_list(60)
    partners = [
        book.at_domain("westgate-hospital.example"),
        book.at_domain("westgate-hospital.example", style="quoted-comma"),
        book.at_domain("strathmore-university.example"),
        book.at_domain("strathmore-university.example"),
        book.at_domain("eastfield-council.example"),
    ]
    board = board[:12] + partners[:2] + board[12:40] + partners[2:4] + board[40:] + partners[4:]
    examples.append(
        Example(
            "04-hiv-charity-cc.eml",
            "2020: HIV charity emails its community advisory network with every address "
            "visible; 65 addresses identified people by name",
            ["block"],
            "Positive Futures HIV Support <info@positivefutures.example>",
            "Advisory board \u2013 meeting papers",
            when(2020, 2, 18, 14, 32, 9),
            HIV_BODY,
            to=board[:1],
            cc=board[1:],
            quoted_printable=True,
        )
    )

    examples.append(
        Example(
            "05-contact-tracers-done-right.eml",
            "01 done right: To: undisclosed-recipients:;, the 296 tracers only in the envelope",
            ["pass"],
            TRACERS_SENDER,
            TRACERS_SUBJECT,
            TRACERS_DATE,
            TRACERS_BODY,
            undisclosed=True,
        )
    )

    council_domains = {
        "northfield-council.example": 60,
        "schools.northfield-council.example": 15,
        "social-care.northfield-council.example": 15,
        "housing.northfield-council.example": 10,
    }
    staff = []
    for _ in range(400):
        domain = rng.choices(list(council_domains), weights=list(council_domains.values()))[0]
        style = rng.choices(["quoted-comma", "plain"], weights=[65, 35])[0]
        staff.append(book.at_domain(domain, style=style, accented=0.02))
    examples.append(
        Example(
            "06-all-staff-memo.eml",
            "control: chief executive's memo to 400 staff, all at the council's own domain "
            "and its subdomains",
            ["pass"],
            "Chief Executive <ceo@northfield-council.example>",
            "Message from the Chief Executive: budget, offices and staff survey",
            when(2021, 4, 15, 8, 30, 0),
            MEMO_BODY,
            to=staff[:360],
            cc=staff[360:],
        )
    )

    examples.append(
        Example(
            "07-partner-company.eml",
            "control: everyday business email to three people at a partner company",
            ["pass"],
            "Priya Shah <priya.shah@acme-engineering.example>",
            "PO 48213: collection schedule for March and April",
            when(2021, 3, 23, 11, 47, 21),
            PARTNER_BODY,
            to=[book.at_domain("partner-logistics.example") for _ in range(3)],
            cc=[book.role("Daniel Okafor", "daniel.okafor", "acme-engineering.example")],
        )
    )

    examples.append(
        Example(
            "08-sports-club-fixtures.eml",
            "borderline: club fixtures email to 12 members' personal addresses in To",
            ["warn"],
            "Fixtures Secretary <fixtures@oakfield-fc.example>",
            "Fixtures for Saturday",
            when(2020, 10, 7, 19, 52, 40),
            FIXTURES_BODY,
            to=book.personal_list(12),
        )
    )

    # fmt: off
    first_words = [
        "harbour", "kestrel", "summit", "meadow", "granite", "northgate", "bluefern", "oakridge",
        "silverline", "redbrook", "copperfield", "lakeside", "highmoor", "westbury", "ashdown",
        "fairway", "ironbridge", "larkspur", "millstone", "parkhill", "thornbury", "eastbrook",
        "wrenfield", "saltmarsh", "foxglove", "ravensworth", "clearwater", "stonebridge",
        "hollybank", "brackenridge", "marlowe", "anchorpoint", "greystone", "juniper",
    ]
    second_words = [
        "foods", "packaging", "logistics", "textiles", "print", "electrical", "dairy",
        "cleaning", "furniture", "fresh-produce", "signage", "labels", "bakery", "paper",
    ]
    # fmt: on
    supplier_domains = [
        f"{word}-{rng.choice(second_words)}.example" for word in rng.sample(first_words, 30)
    ]
    roles = [("Accounts Receivable", "accounts"), ("Sales Office", "sales"), ("Orders", "orders")]
    suppliers = []
    for i, domain in enumerate(supplier_domains):
        if i % 6 == 4:
            display, local = roles[(i // 6) % len(roles)]
            suppliers.append(book.role(display, local, domain))
        else:
            suppliers.append(book.at_domain(domain, style=rng.choice(["plain", "quoted"])))
    examples.append(
        Example(
            "09-supplier-update.eml",
            "borderline: procurement notice to 30 contacts at 30 supplier companies in To",
            ["warn"],
            "Procurement <procurement@brightline-retail.example>",
            "Supplier portal changes from 1 March",
            when(2021, 2, 15, 9, 15, 3),
            SUPPLIER_BODY,
            to=suppliers,
            quoted_printable=True,
        )
    )

    parent = "<CAF3kq9x2Lw8Zb0sNn5RmD7uEo1TjYp4Vc6@mail.gmail.com>"
    examples.append(
        Example(
            "10-mailing-list-post.eml",
            "control: reply to a mailing-list thread, copying two participants",
            ["pass"],
            "Tom Walker <tom@walker-software.example>",
            "Re: [dev] Proposal: drop Python 3.6 support in 3.0",
            when(2021, 6, 2, 21, 8, 44),
            LIST_BODY,
            to=[
                Mailbox(
                    "dev@lists.opensource-project.example", "dev@lists.opensource-project.example"
                )
            ],
            cc=[
                book.role("Wei Chen", "wei.chen.dev", "gmail.com"),
                book.role("Fatima Hussain", "fatima", "debian-packaging.example"),
            ],
            extra_headers=[
                ("In-Reply-To", parent),
                ("References", parent),
                ("List-Id", "Developers <dev.lists.opensource-project.example>"),
                ("List-Post", "<mailto:dev@lists.opensource-project.example>"),
            ],
        )
    )

    examples.append(
        Example(
            "11-bcc-header-left-in-payload.eml",
            "01 half done right: To: undisclosed-recipients:;, but a mail-merge script left a "
            "Bcc header with the 296 tracers' addresses in the message itself",
            ["warn", "block"],
            TRACERS_SENDER,
            TRACERS_SUBJECT,
            TRACERS_DATE,
            TRACERS_BODY,
            undisclosed=True,
            bcc=tracers,
        )
    )

    for example in examples:
        domain = example.sender.rsplit("@", 1)[1].rstrip(">")
        example.message_id = message_id(rng, example.date, domain)
    return examples


# --- expected.toml ------------------------------------------------------------------------


def distinct(boxes: Iterable[Mailbox]) -> set[str]:
    return {box.addr.casefold() for box in boxes}


def counts(example: Example) -> dict[str, int]:
    visible = distinct(example.to) | distinct(example.cc)
    personal = {a for a in visible if a.rsplit("@", 1)[1] in PERSONAL_DOMAINS}
    return {
        "visible": len(visible),
        "to": len(distinct(example.to)),
        "cc": len(distinct(example.cc)),
        "bcc": len(distinct(example.bcc)),
        "personal": len(personal),
    }


# What the brief for each file asks for; build() must produce exactly this.
SPEC: dict[str, dict[str, int]] = {
    "01-contact-tracers-cc.eml": {"visible": 296, "to": 1, "cc": 295, "bcc": 0, "personal": 296},
    "02-gender-identity-clinic-to.eml": {"visible": 1718, "to": 1718, "personal": 1718},
    "03-patient-council-cc.eml": {"visible": 15, "to": 1, "cc": 14, "personal": 15},
    "04-hiv-charity-cc.eml": {"visible": 65, "to": 1, "cc": 64, "personal": 60},
    "05-contact-tracers-done-right.eml": {"visible": 0, "bcc": 0},
    "06-all-staff-memo.eml": {"visible": 400, "personal": 0},
    "07-partner-company.eml": {"visible": 4, "to": 3, "cc": 1, "personal": 0},
    "08-sports-club-fixtures.eml": {"visible": 12, "to": 12, "personal": 12},
    "09-supplier-update.eml": {"visible": 30, "to": 30, "personal": 0},
    "10-mailing-list-post.eml": {"visible": 3, "to": 1, "cc": 2},
    "11-bcc-header-left-in-payload.eml": {"visible": 0, "bcc": 296},
}


def toml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def expected_toml(examples: Sequence[Example]) -> str:
    lines = [
        "# What mailguard must conclude about each example. Written by generate.py; do not edit.",
        "# visible:  distinct addresses in To and Cc together (case-insensitive)",
        "# to, cc, bcc: distinct addresses in that header of the message itself",
        "# personal: distinct visible addresses at consumer mail providers (gmail.com, ...)",
        "# verdict:  the verdicts that are acceptable",
    ]
    for example in examples:
        lines += ["", f"[{toml_string(example.filename)}]"]
        lines.append(f"incident = {toml_string(example.incident)}")
        lines += [f"{key} = {value}" for key, value in counts(example).items()]
        lines.append(f"verdict = [{', '.join(toml_string(v) for v in example.verdict)}]")
    return "\n".join(lines) + "\n"


def main() -> None:
    examples = build(random.Random(2020))
    for example in examples:
        got = counts(example)
        for key, want in SPEC[example.filename].items():
            if got[key] != want:
                raise AssertionError(f"{example.filename}: {key} = {got[key]}, want {want}")
        (OUT_DIR / example.filename).write_bytes(render(example))
    (OUT_DIR / "expected.toml").write_text(expected_toml(examples), encoding="utf-8")


if __name__ == "__main__":
    main()
