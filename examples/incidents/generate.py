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

People, addresses and the encoding of headers and bodies come from the one synthetic-mail
generator, ``tests/support/synth.py``, shared with the tests and the benchmarks; this file
holds the incidents. Run ``python3 examples/incidents/generate.py``. The output is
deterministic (one ``random.Random(2020)``, fixed dates, no network): running it again
rewrites the same bytes.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parent
REPO = OUT_DIR.parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.support.synth import (  # noqa: E402 - needs the repository on sys.path
    PERSONAL_DOMAINS,
    AddressBook,
    Example,
    Mailbox,
    message_id,
    render,
    when,
    wrap_body,
)

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
