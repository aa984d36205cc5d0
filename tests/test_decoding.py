"""Decoders of message data degrade, never raise: a poisoned charset must not hide an exposure.

Before, an encoded word with a non-ASCII charset name made ``email.header`` raise
``CharsetError`` and a body labelled ``idna``/``undefined`` (or with a NUL in its charset)
made ``bytes.decode`` raise: the engine's catch-all turned a 40-party exposure into
verdict ``error`` (MG001). Now the text is read with replacement characters, the verdict
stands, and MG003 says what was degraded.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import mailguard
from mailguard.archive.scanner import Scanner, Unit
from mailguard.charsets import codec_for, decode_base64, decode_bytes
from mailguard.config import Config
from mailguard.headers import decode_rfc2047, decode_words
from mailguard.sources import Input

TO = ", ".join(f"person{i}@org{i}.example" for i in range(40))


def _message(
    *,
    subject: str = "Quarterly update",
    sender: str = "a@ours.example",
    ctype: str = "text/plain; charset=utf-8",
    body: bytes = b"hello",
) -> bytes:
    head = (
        f"From: {sender}\r\nTo: {TO}\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n"
        f"Content-Type: {ctype}\r\n\r\n"
    )
    return head.encode("utf-8") + body + b"\r\n"


POISONED = {
    "subject, non-ASCII charset": _message(subject="=?utf-8\u00e9?q?Hello?="),
    "subject, latin-1 charset byte": _message(subject="=?\u00ff?b?SGVsbG8=?="),
    "subject, unknown charset": _message(subject="=?x-unknown-cs?q?Hello?="),
    "subject, idna charset": _message(subject="=?idna?q?Hello?="),
    "subject, damaged base64": _message(subject="=?utf-8?b?S?="),
    "from name, non-ASCII charset": _message(sender="=?\u00e9?q?Anna?= <a@ours.example>"),
    "from name, quoted encoded word": _message(sender='"=?\u00e9?q?Anna?=" <a@ours.example>'),
    "body, idna": _message(ctype="text/plain; charset=idna", body=b"caf\xe9 hello"),
    "body, undefined": _message(ctype="text/plain; charset=undefined"),
    "body, NUL in charset": _message(ctype='text/plain; charset="utf\x008"'),
    "body, punycode": _message(ctype="text/plain; charset=punycode", body=b"\xff" * 100),
    "body, surrogate-like charset": _message(ctype="text/plain; charset=\u00e9\u00e9"),
    "body, html idna": _message(ctype="text/html; charset=idna", body=b"<p>hi</p>"),
    "body, base64 junk": (
        _message(
            ctype="text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64",
            body=b"aGVsbG8=!!aGV",
        )
    ),
}


@pytest.mark.parametrize("mode", ["outgoing", "archived"])
@pytest.mark.parametrize("name", list(POISONED))
def test_poisoned_charset_keeps_the_mass_exposure_verdict(name: str, mode: str) -> None:
    report = mailguard.check(POISONED[name], mode=mode)
    assert report.verdict == "block", (report.verdict, report.codes)
    assert "MG101" in report.codes and "MG001" not in report.codes
    assert "MG003" in report.codes


def test_archive_scanner_registers_the_incident() -> None:
    inputs = tuple(Input(f"msg{i}", data) for i, data in enumerate(POISONED.values()))
    unit = Unit("inputs", inputs=inputs, size=sum(len(i.data or b"") for i in inputs))
    register = Scanner(Config(), jobs=1).scan([("poisoned", [unit])])
    assert register.errors == []
    assert len(register.incidents) == len(POISONED)
    assert all("MG101" in i.codes for i in register.incidents)


def test_clean_encodings_give_no_degradation_finding() -> None:
    report = mailguard.check(
        _message(
            subject="=?ISO-8859-1?Q?caf=E9?= =?utf-8?b?w6k=?=",
            sender="=?utf-8?q?Andr=C3=A9?= <a@ours.example>",
            ctype="text/plain; charset=windows-1252\r\nContent-Transfer-Encoding: base64",
            body=b"aGVsbG8gd29ybGQ=",
        )
    )
    assert "MG003" not in report.codes and report.verdict == "block"


def test_finding_names_the_charset_but_never_the_text() -> None:
    report = mailguard.check(_message(subject="=?x-secret-cs?q?Housing_benefit?="))
    (finding,) = [f for f in report.findings if f.code == "MG003"]
    assert "x-secret-cs" in finding.message
    assert "ousing" not in finding.message and "benefit" not in finding.message


def test_degraded_subject_keeps_its_ascii_words_for_the_content_rules() -> None:
    report = mailguard.check(_message(subject="=?x-unknown?q?housing_benefit_claimants?="))
    assert "MG301" in report.codes
    assert report.subject == "housing benefit claimants"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("=?utf-8?q?caf=C3=A9?= =?utf-8?q?_ok?=", "café ok"),
        ("x =?utf-8?b?w6k=?= y", "x é y"),
        ("=?ISO-8859-1?Q?Andr=E9?= Pirard", "André Pirard"),
        ("=?utf-8*en?q?lang?=", "lang"),
        ("=?utf-8?b?w6k?=", "é"),  # missing padding
        ("=?utf-8?q?a?==?utf-8?q?b?=", "ab"),
        ("no words =? here ?=", "no words =? here ?="),
        ("=?utf-8?b?4oKs?==?utf-8?b?IA==?=", "€ "),
    ],
)
def test_encoded_words_still_decode(value: str, text: str) -> None:
    assert decode_rfc2047(value) == text
    assert decode_words(value)[1] is None


def test_character_split_across_two_words_is_joined() -> None:
    # "é" is C3 A9: one mailer wrote each byte in its own word.
    assert decode_words("=?utf-8?q?=C3?= =?utf-8?q?=A9?=") == ("é", None)


@pytest.mark.parametrize(
    "charset",
    [
        "idna",
        "punycode",
        "undefined",
        "unicode_escape",
        "base64",
        "rot13",
        "zlib",
        "x\x00y",
        "\udcff",
        "é",
        "a" * 200,
        "",
        " ",
        "..",
        "aliases",
    ],
)
def test_codecs_that_are_no_charsets_are_refused(charset: str) -> None:
    assert codec_for(charset) is None
    text, problem = decode_bytes(b"abc\xff\\N{x}", charset)
    assert text.startswith("abc") and problem


@pytest.mark.parametrize(
    "charset",
    [
        "utf-8",
        "UTF-8",
        "latin1",
        "windows-1252",
        "koi8-r",
        "iso-2022-jp",
        "gb2312",
        "utf-7",
        "utf-16",
        "us-ascii",
    ],
)
def test_real_charsets_are_accepted(charset: str) -> None:
    assert codec_for(charset) is not None


@pytest.mark.parametrize(
    ("data", "partial", "decoded", "damaged"),
    [
        (b"aGVsbG8=", False, b"hello", False),
        (b"aGVs\r\nbG8=\r\n", False, b"hello", False),
        (b"aGVsbG8", False, b"hello", False),
        (b"aGVsbG8gd", True, b"hello ", False),
        (b"aGVsbG8gd", False, b"hello ", True),
        (b"aGVs!bG8=", False, b"hello", True),
        (b"aG=VsbG8", False, b"hello", True),
        (b"", False, b"", False),
    ],
)
def test_lenient_base64(data: bytes, partial: bool, decoded: bytes, damaged: bool) -> None:
    assert decode_base64(data, partial=partial) == (decoded, damaged)


def test_unreadable_input_is_still_an_error(tmp_path: Path) -> None:
    """Internal errors stay for real problems: a non-message is still MG001."""
    assert mailguard.check(b"\r\n\r\njust a body").verdict == "error"


def test_long_hostile_values_are_not_kept_in_caches() -> None:
    """Decoding caches hold only short keys: a stream of 200 KB subjects, charset names
    and domains must not pin memory in a long-running milter (here 8 x 40 KB each)."""
    import gc
    import tracemalloc

    from mailguard.domains import DomainSet, normalise_domain, registrable_domain

    internal = DomainSet(["ours.example"])
    tracemalloc.start()
    try:
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for i in range(8):
            big = f"{i}" + "=?x?q?a?= " * 4_000
            decode_words(big)
            decode_bytes(b"abc", f"{i}" + "x" * 40_000)
            domain = f"d{i}." + "a." * 20_000 + "example"
            normalise_domain(domain)
            registrable_domain(domain)
            assert domain not in internal
            del big, domain
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert kept < 100_000, f"{kept:,} bytes kept after 8 hostile values of 40 KB each"
