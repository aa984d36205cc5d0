"""The same list of people in the other forms a file travels in (MG601-MG603): compressed
(gzip, bzip2, xz), with no name or a misleading one, uuencoded, inside a forwarded
message. Each must get the verdict the plain CSV attachment gets, or an MG603 note that
says why it was not read: never a clean pass. Found by a fuzzer that sent one list of
patients every way it could; the messages are built here, not read from its files."""

from __future__ import annotations

import base64
import binascii
import bz2
import gzip
import io
import lzma
import tarfile
import time
import zlib

import pytest

from mailguard import Engine
from mailguard.config import from_mapping
from tests.support import attachments as fx

CONFIG = {"internal_domains": ["clinic.example"]}
PATIENTS = fx.csv_bytes(fx.patient_rows(300))


def check(data: bytes, config: dict | None = None):
    return Engine(from_mapping(config if config is not None else CONFIG)).check(data)


def codes(report) -> dict[str, object]:
    return {f.code: f for f in report.findings}


def raw_message(part_headers: str, body: bytes, *, top: str | None = None) -> bytes:
    """A multipart/mixed message with a text part and one part with exactly these
    headers (no name added) and this already-encoded body."""
    head = (
        b"From: Office <office@clinic.example>\r\nTo: someone@partner.example\r\n"
        b"Subject: the list\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="B"\r\n\r\n'
    )
    text = b"--B\r\nContent-Type: text/plain\r\n\r\nPlease see attached.\r\n"
    part = b"--B\r\n" + part_headers.encode() + b"\r\n\r\n" + body + b"\r\n--B--\r\n"
    return head + text + part


def b64(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", b"\r\n").rstrip()


def assert_same_as_plain(report) -> None:
    """The verdict, people and special categories of the plain CSV attachment."""
    plain = codes(check(fx.message([("patients.csv", "text/csv", PATIENTS)])))
    found = codes(report)
    assert report.verdict == "block", report.findings
    assert found["MG601"].evidence["people"] == plain["MG601"].evidence["people"] == 300
    assert set(found["MG601"].evidence["kinds"]) == set(plain["MG601"].evidence["kinds"])
    assert found["MG602"].evidence["labels"] == plain["MG602"].evidence["labels"]
    assert "MG603" not in found


def assert_quiet(report) -> None:
    assert report.verdict == "pass", report.findings
    assert not [c for c in codes(report) if c.startswith("MG6")]


# ------------------------------------------------------------------ 1. compressed files


@pytest.mark.parametrize(
    ("name", "pack"),
    [("patients.csv.gz", gzip.compress), ("patients.csv.bz2", bz2.compress),
     ("patients.csv.xz", lzma.compress)],
)  # fmt: skip
def test_a_compressed_csv_gets_the_verdict_of_the_plain_one(name, pack):
    assert_same_as_plain(check(fx.message([(name, "application/gzip", pack(PATIENTS))])))
    harmless = check(fx.message([("prices.csv.gz", "application/gzip", pack(fx.price_list()))]))
    assert_quiet(harmless)


def test_a_compressed_vcard_file_and_a_compressed_workbook_are_read():
    cards = check(
        fx.message([("volunteers.vcf.xz", "application/x-xz", lzma.compress(fx.vcards(120)))])
    )
    assert codes(cards)["MG601"].evidence["people"] == 120
    book = fx.xlsx(fx.patient_rows(250))
    workbook = check(fx.message([("patients.xlsx.gz", "application/gzip", gzip.compress(book))]))
    assert workbook.verdict == "block"
    assert codes(workbook)["MG601"].evidence["people"] == 250


def test_a_gzip_bomb_is_a_note_with_its_reason_in_bounded_time():
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b"\0" * (1 << 20)
    bomb = b"".join(packer.compress(block) for _ in range(40)) + packer.flush()  # 40 MiB
    assert len(bomb) < 100_000
    start = time.perf_counter()
    report = check(fx.message([("patients.csv.gz", "application/gzip", bomb)]))
    assert time.perf_counter() - start < 10
    note = codes(report)["MG603"]
    assert "unpacks to more than the size cap" in note.message
    assert "max_attachment_bytes" in note.message
    assert note.evidence["over_limit"] == 1


@pytest.mark.parametrize(
    ("data", "reason"),
    [(gzip.compress(PATIENTS)[:2000], "cut off"),
     (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + b"\xff" * 64, "damaged gzip"),
     (b"\x28\xb5\x2f\xfd" + b"\x00" * 32, "zstd")],
    ids=["cut-off", "damaged", "zstd"],
)  # fmt: skip
def test_a_compressed_file_that_cannot_be_unpacked_is_a_note(data, reason):
    report = check(fx.message([("patients.csv.gz", "application/gzip", data)]))
    assert reason in codes(report)["MG603"].message


def test_a_compressed_tar_archive_is_a_note_not_a_pass():
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        info = tarfile.TarInfo("patients.csv")
        info.size = len(PATIENTS)
        tar.addfile(info, io.BytesIO(PATIENTS))
    report = check(fx.message([("export.tar.gz", "application/gzip", out.getvalue())]))
    assert "tar archive" in codes(report)["MG603"].message


def test_a_compressed_list_inside_a_zip_is_a_note_not_a_pass():
    archive = fx.zipped([("patients.csv.gz", gzip.compress(PATIENTS))])
    report = check(fx.message([("export.zip", "application/zip", archive)]))
    assert "compressed file inside an archive" in codes(report)["MG603"].message


# ------------------------------------------------------------------ 2. no name, wrong name


def test_a_nameless_octet_stream_list_is_read_by_its_content():
    report = check(raw_message("Content-Type: application/octet-stream\r\n"
                               "Content-Transfer-Encoding: base64", b64(PATIENTS)))  # fmt: skip
    assert_same_as_plain(report)
    prose = b"Dear all,\r\nthe meeting is moved to Tuesday, 3pm; room 4.\r\nThanks, Ann\r\n" * 20
    assert_quiet(check(raw_message("Content-Type: application/octet-stream\r\n"
                                   "Content-Transfer-Encoding: base64", b64(prose))))  # fmt: skip


def test_a_list_under_a_misleading_name_is_read_by_its_content():
    report = check(fx.message([("minutes.pdf", "application/pdf", PATIENTS)]))
    assert_same_as_plain(report)
    pdf = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n" * 50
    assert_quiet(check(fx.message([("minutes.pdf", "application/pdf", pdf)])))


def test_a_nameless_gzip_stream_is_unpacked():
    report = check(raw_message("Content-Type: application/octet-stream\r\n"
                               "Content-Transfer-Encoding: base64",
                               b64(gzip.compress(PATIENTS))))  # fmt: skip
    assert_same_as_plain(report)


# ------------------------------------------------------------------ 3. uuencoded files


def uuencode(data: bytes, name: str) -> bytes:
    """What ``uuencode name`` writes (``binascii.b2a_uu`` 45 bytes a line)."""
    lines = [binascii.b2a_uu(data[i : i + 45]) for i in range(0, len(data), 45)]
    return f"begin 644 {name}\n".encode() + b"".join(lines) + b"`\nend\n"


def text_message(body: bytes) -> bytes:
    return (
        b"From: Office <office@clinic.example>\nTo: someone@partner.example\n"
        b"Subject: the list\nMIME-Version: 1.0\nContent-Type: text/plain\n\n" + body
    )


def test_a_list_uuencoded_in_the_text_of_a_message_is_read():
    report = check(text_message(b"see attached\n\n" + uuencode(PATIENTS, "patients.csv")))
    assert_same_as_plain(report)
    prices = check(text_message(b"prices\n\n" + uuencode(fx.price_list(), "prices.csv")))
    assert_quiet(prices)


def test_a_list_uuencoded_in_a_text_part_of_a_multipart_message_is_read():
    data = raw_message("Content-Type: text/plain", uuencode(PATIENTS, "patients.csv"))
    assert_same_as_plain(check(data))


@pytest.mark.parametrize("cte", ["x-uuencode", "uuencode", "x-uue"])
def test_a_part_with_a_uuencode_transfer_encoding_is_decoded(cte):
    headers = f"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: {cte}"
    assert_same_as_plain(check(raw_message(headers, uuencode(PATIENTS, "patients.csv"))))


def test_a_uuencoded_bomb_is_capped_and_said():
    big = uuencode(gzip.compress(b"\0" * (4 << 20)), "patients.csv.gz")
    config = {**CONFIG, "limits": {"max_attachment_bytes": 1 << 20}}
    note = codes(check(text_message(b"x\n" + big), config))["MG603"]
    assert "unpacks to more than the size cap" in note.message


def test_text_that_merely_mentions_begin_stays_a_pass():
    body = b"Hello,\nbegin 644 is how uuencode starts\nbegin here\nend\n" * 200
    assert_quiet(check(text_message(body)))
    assert check(text_message(b"x\n" + uuencode(PATIENTS, "patients.csv"))).verdict == "block"


# ------------------------------------------------------------------ 4. forwarded messages


def forwarded(inner: bytes, cte: str = "") -> bytes:
    headers = "Content-Type: message/rfc822" + (
        f"\r\nContent-Transfer-Encoding: {cte}" if cte else ""
    )
    return raw_message(headers, inner)


def test_a_list_attached_to_a_forwarded_message_is_read():
    inner = fx.message([("patients.csv", "text/csv", PATIENTS)])
    assert_same_as_plain(check(forwarded(inner)))
    assert_same_as_plain(check(forwarded(forwarded(inner))))  # forwarded twice
    assert_quiet(check(forwarded(fx.message([("prices.csv", "text/csv", fx.price_list())]))))


def test_a_base64_encoded_forwarded_message_is_said_not_passed():
    inner = fx.message([("patients.csv", "text/csv", PATIENTS)])
    report = check(forwarded(b64(inner), "base64"))
    assert report.verdict != "pass", report.findings
    assert "forwarded message encoded as base64" in codes(report)["MG002"].message


# ------------------------------------------------------------------ bounded cost


@pytest.mark.parametrize(
    "line",
    [b"begin 644 is not a file\n", b"begin 644 a.csv\nM" + b"!" * 60 + b"\n",
     b"\nbegin\n"],
    ids=["prose", "unterminated", "bare"],
)  # fmt: skip
def test_many_begin_lines_cost_linear_time(line):
    """The uuencode walk moves forward at every ``begin``: text made of them stays linear
    (an unterminated one runs to the end of the text once, then the walk is past it)."""
    from tests.test_linear_time import assert_linear

    engine = Engine(from_mapping(CONFIG))
    assert_linear(lambda n: text_message(line * n), engine.check, 2_000, 512_000)
    if line != b"begin 644 a.csv\nM" + b"!" * 60 + b"\n":  # that one runs to the end
        listed = text_message(line * 1000 + uuencode(PATIENTS, "patients.csv"))
        assert engine.check(listed).verdict == "block"
