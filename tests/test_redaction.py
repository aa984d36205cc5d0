"""``--redact``: no report format of ``check`` or ``scan`` may carry an address or quote a message.

One archive holds every way an address or a private word reaches a report: recipients,
Message-IDs built from an address, file, folder and mbox names holding addresses, subjects
with sensitive words, a header name quoted by MG002, an unreadable message and a folder
whose error text quotes its name. Every format is grepped for every one of those strings;
and without ``--redact`` the same greps must find them, so the test cannot pass vacuously.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import mailguard
from mailguard.archive.register import ErrorEntry, Incident, Register, Tally
from mailguard.cli import app
from mailguard.outputs.scan import ScanRenderOptions, render_csv, render_json, render_text
from mailguard.outputs.scan_html import render_html
from mailguard.redact import REASON_WITHHELD, Privacy, Redactor
from tests.support.faults import before_every_check

runner = CliRunner()

SENDER = "office.parish@stmarys.example"
HEADER_NAME = "X-Copied-For-marta.lopez@protonmail.com"
CLUB = [f"{n}@{d}" for n, d in zip(
    ["zoe.private", "yusuf.kaya", "amelie.durand", "bjorn.svensson", "chiara.russo",
     "dmitri.volkov", "esther.nkemelu", "farid.haddad", "greta.lindqvist", "hugo.moreau",
     "ines.carvalho", "jonas.weber"],
    ["gmail.com", "outlook.com", "yahoo.com", "hotmail.com", "gmx.de", "web.de"] * 2,
    strict=True,
)]  # fmt: skip
CLAIMANTS = [f"{n}@{d}" for n, d in zip(
    ["kwame.mensah", "lucia.fernandez", "mateo.rossi", "nadia.petrova", "oskar.nowak",
     "priya.raman", "quentin.leroy", "rosa.jimenez", "sven.olsen", "tamar.cohen",
     "ulrike.brandt", "vera.novak"],
    ["gmail.com", "icloud.com", "yahoo.co.uk", "hotmail.co.uk", "aol.com", "mail.com"] * 2,
    strict=True,
)]  # fmt: skip
MBOX_PEOPLE = [f"{n}@gmail.com" for n in (
    "wanda.kowalska", "xavier.dupont", "yara.haddad", "zeno.bianchi", "abel.tesfaye",
    "bea.lindgren", "cato.hansen", "dora.szabo", "emil.horvath", "fenna.visser",
    "gil.rosen", "hanna.berg")]  # fmt: skip
MID_ADDRESS = "zoe.private@gmail.com"  # a Message-ID built from a recipient's address
FILE_ADDRESS = "olga.secret@yahoo.com"  # a file named after a person
DIR_ADDRESS = "kim.private@corp.example"  # a folder named after a person
MBOX_ADDRESS = "lena.berg@web.de"
MISSING_ADDRESS = "ivan.petrov@mail.ru"
SUBJECTS = ["Housing benefit claimants: new office hours", "Drug rehab aftercare group"]
MATCHED_WORDS = ["housing benefit", "drug rehab"]
DISPLAY_NAMES = ["Zoe Privatename", "Kwame Mensahname"]

ADDRESSES = [
    *CLUB, *CLAIMANTS, *MBOX_PEOPLE, SENDER, MID_ADDRESS, FILE_ADDRESS, DIR_ADDRESS,
    MBOX_ADDRESS, MISSING_ADDRESS, "marta.lopez@protonmail.com",
]  # fmt: skip
PRIVATE = sorted(
    {*ADDRESSES, *(a.split("@")[0] for a in ADDRESSES), *SUBJECTS, *MATCHED_WORDS,
     *DISPLAY_NAMES, HEADER_NAME},
    key=str.lower,
)  # fmt: skip


def _message(
    to: list[str], subject: str, message_id: str, extra: list[str] = (), body: str = "Hello."
) -> bytes:
    named = [f'"{DISPLAY_NAMES[0]}" <{to[0]}>', f'"{DISPLAY_NAMES[1]}" <{to[1]}>', *to[2:]]
    headers = [
        f"From: St Mary's Parish Office <{SENDER}>",
        "To: " + ", ".join(named),
        f"Subject: {subject}",
        f"Message-ID: {message_id}",
        "Date: Mon, 04 Mar 2024 10:00:00 +0000",
        *extra,
    ]
    return ("\r\n".join(headers) + "\r\n\r\n" + body + "\r\n").encode()


def build_archive(root: Path) -> dict[str, Path]:
    tree = root / "parish"
    (tree / "2024").mkdir(parents=True)
    (tree / f"2024/2024_{FILE_ADDRESS}.eml").write_bytes(
        _message(CLUB, SUBJECTS[1], f"<{MID_ADDRESS}.reply.7@mailer.example>")
    )
    oversized = f"{HEADER_NAME}: " + "x" * 300_000
    (tree / "2024/claimants.eml").write_bytes(
        _message(CLAIMANTS, SUBJECTS[0], "<claimants-2024@stmarys.example>", [oversized])
    )
    (tree / f"2024/broken_{FILE_ADDRESS}.eml").write_bytes(b"")  # unreadable: empty
    empty = root / DIR_ADDRESS  # its error text quotes its name (check)
    empty.mkdir()
    mbox = root / f"sent_{MBOX_ADDRESS}.mbox"
    mbox.write_bytes(
        b"From MAILER-DAEMON Mon Mar  4 10:00:00 2024\n"
        + _message(MBOX_PEOPLE, SUBJECTS[1], f"<{MBOX_ADDRESS}@mailer.example>").replace(
            b"\r\n", b"\n"
        )
    )
    return {"tree": tree, "empty": empty, "mbox": mbox, "missing": root / f"{MISSING_ADDRESS}"}


def leaked(text: str) -> list[str]:
    lowered = text.lower()
    return [s for s in PRIVATE if s.lower() in lowered]


@pytest.fixture
def archive(tmp_path: Path) -> dict[str, Path]:
    return build_archive(tmp_path)


def check_output(archive: dict[str, Path], fmt: str, *options: str) -> str:
    out = archive["tree"].parent / f"check.{fmt}"
    paths = [str(archive["tree"]), str(archive["empty"]), str(archive["missing"])]
    result = runner.invoke(
        app, ["check", *paths, "--format", fmt, "-o", str(out), "--no-config", *options]
    )
    assert result.exit_code in (1, 2), result.output
    return out.read_text(encoding="utf-8")


def scan_output(archive: dict[str, Path], fmt: str, *options: str) -> str:
    out = archive["tree"].parent / f"scan.{fmt}"
    sources = [str(archive[k]) for k in ("tree", "empty", "mbox", "missing")]
    result = runner.invoke(
        app,
        ["scan", *sources, "--format", fmt, "-o", str(out), "--no-config", "--jobs", "1",
         *options],
    )  # fmt: skip
    assert result.exit_code in (1, 2), result.output
    return out.read_text(encoding="utf-8")


@pytest.mark.parametrize("show", [(), ("--show-addresses",)], ids=["counts", "addresses"])
@pytest.mark.parametrize("fmt", ["text", "json", "sarif"])
def test_check_under_redact_names_nobody_and_quotes_nothing(archive, fmt, show):
    text = check_output(archive, fmt, "--redact", *show)
    assert leaked(text) == [], fmt
    assert "hmac:" in text  # sources are hashed, not dropped


@pytest.mark.parametrize("show", [(), ("--show-addresses",)], ids=["counts", "addresses"])
@pytest.mark.parametrize("fmt", ["text", "json", "csv", "html"])
def test_scan_under_redact_names_nobody_and_quotes_nothing(archive, fmt, show):
    text = scan_output(archive, fmt, "--redact", *show)
    assert leaked(text) == [], fmt
    assert "hmac:" in text


@pytest.mark.parametrize("fmt", ["text", "json", "sarif"])
def test_check_without_redact_shows_what_redact_hides(archive, fmt):
    found = leaked(check_output(archive, fmt, "--show-addresses"))
    # The file and folder names, and MG002's header name, in every format ...
    assert {FILE_ADDRESS, DIR_ADDRESS, HEADER_NAME} <= set(found), found
    if fmt != "text":  # ... the Message-ID and the matched word where findings are listed
        assert MID_ADDRESS in found and "housing benefit" in found, found
    if fmt != "sarif":
        assert set(CLUB) <= set(found), found


@pytest.mark.parametrize("fmt", ["text", "json", "csv", "html"])
def test_scan_without_redact_shows_what_redact_hides(archive, fmt):
    found = leaked(scan_output(archive, fmt, "--show-addresses"))
    assert {FILE_ADDRESS, MID_ADDRESS, MBOX_ADDRESS} <= set(found), found
    if fmt != "text":
        assert SUBJECTS[0] in found, found
    if fmt in ("json", "html"):
        assert HEADER_NAME in found and "housing benefit" in found, found


def test_redacted_findings_say_what_was_found_without_quoting_it(archive):
    text = check_output(archive, "json", "--redact")
    by_code = {
        f["code"]: f
        for m in json.loads(text)["messages"]
        for f in m["findings"]
    }  # fmt: skip
    assert "Debt / financial hardship (in subject)" in by_code["MG301"]["message"]
    assert "a header is 300,0" in by_code["MG002"]["message"]
    assert by_code["MG002"]["evidence"]["limits"] == [f"a header is {300_000:,} characters long"]
    assert REASON_WITHHELD in by_code["MG001"]["message"]
    assert all("redacted" not in f for f in by_code.values())  # the variant is not shown twice


def test_keyed_hashes_keep_sources_of_one_container_together():
    redactor = Redactor(b"k")
    a, b = (
        redactor.locator("/x/sent_lena@web.de.mbox@0"),
        redactor.locator("/x/sent_lena@web.de.mbox@812"),
    )
    assert a.split("@")[0] == b.split("@")[0] and a.endswith("@0") and b.endswith("@812")
    imap = redactor.locator("imaps://kim%40corp.example@imap.example:993/Sent;UID=7")
    assert imap.endswith(";UID=7") and "kim" not in imap
    assert redactor.locator("<stdin>") == "<stdin>"
    assert redactor.value("message-id", MID_ADDRESS) != redactor.address(MID_ADDRESS)
    assert Redactor(b"other").locator("/x/a.eml") != redactor.locator("/x/a.eml")


def _register(incidents: list[Incident], errors: list[ErrorEntry]) -> Register:
    tally = Tally()
    for incident in incidents:
        tally.count(incident.verdict, incident.date)
        tally.incidents.append(incident)
    for error in errors:
        tally.add_error(error.source, error.message)
    register = Register(["imaps://kim%40corp.example@imap.example:993/Clients"])
    register.merge(tally)
    return register


def _incident(message_id: str, finding_message: str) -> Incident:
    return Incident(
        source="imaps://kim%40corp.example@imap.example:993/Clients;UID=3",
        message_id=message_id,
        date=None,
        sender=SENDER,
        subject=SUBJECTS[0],
        verdict="warn",
        score=40,
        findings=[{"code": "MG105", "name": "unparseable-recipients", "severity": "low",
                   "message": finding_message, "weight": 40, "evidence": {}}],
        recipients={"visible": 2, "visible_external": 2},
        exposed=CLUB[:2],
        personal=CLUB[:2],
        domains={"gmail.com": 1, "outlook.com": 1},
    )  # fmt: skip


def _scan_formats(register: Register, privacy: Privacy) -> dict[str, str]:
    options = ScanRenderOptions(privacy.show_addresses, privacy.redactor)
    return {
        "text": render_text(register, options),
        "json": render_json(register, options),
        "csv": render_csv(register, options),
        "html": render_html(
            register, redactor=privacy.redactor, show_addresses=privacy.show_addresses
        ),
    }


def test_error_texts_and_unmarked_quotes_are_withheld():
    """Errors quote whatever their producer saw (an IMAP login name, a folder list); a
    finding that quotes an address without saying so still does not get through."""
    errors = [
        ErrorEntry(
            "imaps://kim%40corp.example@imap.example:993/Clients",
            f"login as '{DIR_ADDRESS}' failed. Its folders: INBOX, Clients/{DISPLAY_NAMES[0]}",
        ),
        ErrorEntry(f"/mail/{FILE_ADDRESS}.eml", f"cannot parse header {HEADER_NAME}"),
    ]
    incident = _incident(f"<{MID_ADDRESS}>", f"bad entry: {CLAIMANTS[0]}>")
    register = _register([incident], errors)
    for fmt, text in _scan_formats(register, Privacy(True, Redactor())).items():
        assert leaked(text) == [], fmt
        assert "kim%40corp" not in text, fmt
    plain = _scan_formats(register, Privacy(True, None))
    assert DIR_ADDRESS in plain["json"] and DISPLAY_NAMES[0] in plain["html"]


LINEAR_N = 2_000_000
"""Big enough that the render, not the interpreter, dominates (about 15 ms at N)."""


def test_html_register_redaction_is_linear():
    """A Message-ID of many '@' and a header name quoted in a finding: the register used to
    look for known addresses around every '@' (1,000 of them: 4 s) and to search findings
    with a backtracking pattern (a 20,000-character name: 1 s, 40,000: 4 s). Doubling the
    input may at most about double the time."""

    def register(n: int) -> Register:
        incident = _incident("<" + "@" * n + ">", f"input exceeds safe limits: {'X' * n} header")
        incident.source = "a@" * (n // 2)
        return _register([incident], [ErrorEntry("@." * (n // 2), "x" * n + "@")])

    redactor = Redactor(b"k")
    registers = {n: register(n) for n in (LINEAR_N, 2 * LINEAR_N)}
    best = dict.fromkeys(registers, float("inf"))
    render_html(registers[2 * LINEAR_N], redactor=redactor)  # warm up
    for _ in range(5):  # interleaved and in CPU time: other processes' load does not count
        for n, register_n in registers.items():
            start = time.process_time()
            render_html(register_n, redactor=redactor, show_addresses=True)
            best[n] = min(best[n], time.process_time() - start)
    assert best[2 * LINEAR_N] / best[LINEAR_N] < 3, best


def test_library_logs_no_address_while_checking(archive, caplog):
    """Logs carry no address unless asked (the milter's ``log_addresses``): what ``check``
    and ``scan`` log at every level while reading the archive is checked here."""
    caplog.set_level(logging.DEBUG)
    for path in sorted(archive["tree"].rglob("*.eml")):
        mailguard.check(path.read_bytes(), source=str(path.name))
    scan_output(archive, "json")
    assert leaked(caplog.text) == [], caplog.text


def test_internal_error_log_names_no_file(monkeypatch, caplog):
    """The one thing the library logs: an internal error, by type and code location. Not
    by source, which may be a file named after a person."""

    def broken(ctx: object) -> None:
        raise RuntimeError(f"boom {FILE_ADDRESS}")

    before_every_check(monkeypatch, broken)
    caplog.set_level(logging.DEBUG)
    source = f"/mail/2024_{FILE_ADDRESS}.eml"
    report = mailguard.check(_message(CLUB, SUBJECTS[0], "<a@b>"), source=source)
    assert report.verdict == "error" and report.source == source
    assert "RuntimeError" in caplog.text
    assert leaked(caplog.text) == [], caplog.text
