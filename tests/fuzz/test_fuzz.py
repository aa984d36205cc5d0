"""Short fuzz runs in the normal suite (Hypothesis); the long campaign is in README.md.

The promises are in :mod:`tests.fuzz.targets`, shared with the atheris harnesses. Each test
here runs a few hundred generated inputs (a few seconds in all); ``HYPOTHESIS_PROFILE=long``
runs 20,000 each. Generators are structured where random bytes would rarely get past the
first check: header blocks with encoded words in hostile charsets, MIME trees, mbox files
made of From_ lines and lines that only look like them, milter frame sequences.
"""

from __future__ import annotations

import base64
import os
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailguard.config import from_mapping
from mailguard.engine import Engine
from mailguard.milter import protocol as p
from tests.fuzz import targets

LONG = os.environ.get("HYPOTHESIS_PROFILE") == "long"


def budget(examples: int) -> settings:
    """``examples`` in the suite; the loaded profile's count in a long campaign."""
    if LONG:
        return settings(deadline=None, database=None)
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# ---------------------------------------------------------------------------- messages

CHARSETS = st.one_of(
    st.sampled_from([
        "utf-8", "UTF-8", "iso-8859-1", "windows-1252", "utf-16", "utf-7", "iso-2022-jp",
        "gb2312", "koi8-r", "us-ascii", "idna", "punycode", "undefined", "unicode_escape",
        "base64", "rot13", "zlib", "utf\x008", "x-unknown", "\u00e9", "utf-8*en", "", "?",
    ]),
    st.text(max_size=12),
)  # fmt: skip


@st.composite
def encoded_words(draw: st.DrawFn) -> str:
    charset = draw(CHARSETS).replace("?", "")
    kind = draw(st.sampled_from("bBqQx"))
    if kind in "bB" and draw(st.booleans()):
        payload = base64.b64encode(draw(st.binary(max_size=24))).decode()
    else:
        payload = draw(st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=24))
    return f"=?{charset}?{kind}?{payload.replace('?', '=3F')}?="


WORDS = st.one_of(
    encoded_words(),
    st.text(st.characters(min_codepoint=33, max_codepoint=0x7E), min_size=1, max_size=10),
    st.sampled_from(["=?", "?=", "=?utf-8?q?", '"', "<", ">", "(", ")", ",", ";", ":", "\\"]),
)
HEADER_TEXT = st.lists(WORDS, max_size=8).map(" ".join)

# Forty external organisations in To: a mass exposure MG101 must block whatever else is there.
EXPOSED = ", ".join(f"person{i}@org{i}.example" for i in range(40))
OURS = from_mapping({"internal_domains": ["ours.example"]})
_ENGINE = Engine(OURS)

LEAF_TYPES = st.sampled_from([
    "text/plain", "text/html", "text/enriched", "application/octet-stream", "message/rfc822",
    "TEXT/PLAIN", "", "text", "/",
])  # fmt: skip
ENCODINGS = st.sampled_from(["", "7bit", "8bit", "base64", "quoted-printable", "x-uuencode"])
BODIES = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200).map(lambda t: t.encode("utf-8")),
    st.sampled_from([b"<", b"<script>", b"<p>housing benefit</p>", b"=\r\n", b"\xff\xfe"]).map(
        lambda b: b * 20
    ),
)


def _leaf(ctype: str, charset: str, cte: str, body: bytes) -> bytes:
    head = f'Content-Type: {ctype}; charset="{charset}"\r\n'
    if cte:
        head += f"Content-Transfer-Encoding: {cte}\r\n"
    if cte == "base64" and body and body[:1] != b"<":
        body = base64.encodebytes(body)
    return head.encode("utf-8", "surrogatepass") + b"\r\n" + body


LEAVES = st.builds(_leaf, LEAF_TYPES, CHARSETS, ENCODINGS, BODIES)


@st.composite
def _multipart(draw: st.DrawFn, children: st.SearchStrategy[bytes]) -> bytes:
    boundary = draw(st.sampled_from(["b", "b1", "=_x", "a b", ""]))
    parts = draw(st.lists(children, max_size=4))
    closed = draw(st.booleans())
    out = f"Content-Type: multipart/{draw(st.sampled_from(['mixed', 'alternative']))}; "
    out += f'boundary="{boundary}"\r\n\r\n'
    body = b"".join(b"--" + boundary.encode() + b"\r\n" + part + b"\r\n" for part in parts)
    return out.encode() + body + (b"--" + boundary.encode() + b"--\r\n" if closed else b"")


MIME = st.recursive(LEAVES, lambda children: _multipart(children), max_leaves=6)


@st.composite
def poisoned_messages(draw: st.DrawFn) -> bytes:
    subject = draw(HEADER_TEXT)
    name = draw(HEADER_TEXT)
    extra = draw(st.lists(st.tuples(st.sampled_from(["X-A", "Comments", "Reply-To"]),
                                    HEADER_TEXT), max_size=2))  # fmt: skip
    head = f"From: {name} <hr@ours.example>\r\nTo: {EXPOSED}\r\nSubject: {subject}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in extra) + "MIME-Version: 1.0\r\n"
    return head.encode("utf-8", "surrogatepass") + draw(MIME)


@budget(300)
@given(st.binary(max_size=3000))
def test_check_turns_any_bytes_into_a_report(data: bytes) -> None:
    targets.check_message(data)


@budget(100)
@given(poisoned_messages())
def test_no_encoding_hides_a_mass_exposure(data: bytes) -> None:
    """Whatever the charsets, encoded words and MIME tree, 40 parties in To are blocked."""
    targets.check_message(data)
    for mode in ("outgoing", "archived"):
        report = _ENGINE.check(data, mode=mode)  # type: ignore[arg-type]
        assert report.verdict == "block" and "MG101" in report.codes, (
            report.verdict,
            [(f.code, f.message) for f in report.findings],
        )


# ---------------------------------------------------------------------------- mbox

FROM_LINES = st.sampled_from([
    b"From a@b.example Mon Jun  1 09:00:00 2020", b"From - Mon Jun  1 09:00:00 2020",
    b"From 1844347792267117879@xxx", b"From x Mon 1:00", b"From a@b\r", b"From a@b\f",
    b"From Russia with love", b"From ", b"From 111\x0b", b">From a@b 1:00", b"From\ta@b",
])  # fmt: skip
LINES = st.one_of(
    FROM_LINES,
    st.sampled_from([b"", b"\r", b"Subject: x", b"To: a@b", b">>From x", b"\xef\xbb\xbf"]),
    st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")),
)


@st.composite
def mbox_files(draw: st.DrawFn) -> bytes:
    bom = b"\xef\xbb\xbf" if draw(st.booleans()) and draw(st.booleans()) else b""
    lines = draw(st.lists(LINES, max_size=30))
    first = [draw(FROM_LINES)] if draw(st.integers(0, 9)) else []
    end = draw(st.sampled_from([b"\n", b"", b"\n\n", b"\r\n"]))
    newline = b"\r\n" if draw(st.integers(0, 4)) == 0 else b"\n"
    return bom + newline.join(first + lines) + end


@budget(200)
@given(mbox_files())
def test_mbox_splitter_accounts_for_every_message(data: bytes) -> None:
    targets.split_mbox(data)


@budget(60)
@given(st.binary(max_size=400))
def test_mbox_splitter_on_arbitrary_bytes_after_a_from_line(data: bytes) -> None:
    targets.split_mbox(b"From a@b.example Mon Jun  1 09:00:00 2020\n" + data)


# ---------------------------------------------------------------------------- milter


def _cstrings(*parts: bytes) -> bytes:
    return b"".join(part + b"\0" for part in parts)


TEXT = st.binary(max_size=20).map(lambda b: b.replace(b"\0", b""))
PAYLOADS = {
    p.OPTNEG: st.tuples(st.integers(0, 8), st.integers(0, 0x3FF), st.integers(0, 0x3FFFFF)).map(
        lambda t: struct.pack("!III", *t)
    ),
    p.CONNECT: st.tuples(TEXT, st.sampled_from(b"46LU"), st.integers(0, 65535), TEXT).map(
        lambda t: t[0] + b"\0" + bytes([t[1]]) + struct.pack("!H", t[2]) + t[3] + b"\0"
    ),
    p.MACRO: st.tuples(st.sampled_from(b"CHMRTLNEO"), st.lists(TEXT, max_size=6)).map(
        lambda t: bytes([t[0]]) + _cstrings(*t[1])
    ),
    p.MAIL: st.lists(TEXT, max_size=3).map(lambda parts: _cstrings(*parts)),
    p.RCPT: st.lists(TEXT, max_size=3).map(lambda parts: _cstrings(*parts)),
    p.HEADER: st.tuples(
        st.sampled_from([b"To", b"Cc", b"From", b"Subject", b"Bcc", b"X"]),
        st.one_of(TEXT, st.just(EXPOSED.encode()), HEADER_TEXT.map(lambda t: t.encode())),
    ).map(lambda t: _cstrings(*t)),
    p.BODY: st.binary(max_size=100),
}
FRAMES = st.one_of(
    *[payload.map(lambda body, c=command: (c, body)) for command, payload in PAYLOADS.items()],
    st.tuples(
        st.sampled_from([p.EOH, p.DATA, p.BODYEOB, p.ABORT, p.QUIT_NC, p.UNKNOWN, p.HELO]),
        st.binary(max_size=8),
    ),
    st.tuples(st.binary(min_size=1, max_size=1), st.binary(max_size=12)),
)


@st.composite
def milter_streams(draw: st.DrawFn) -> bytes:
    frames = [(p.OPTNEG, struct.pack("!III", 6, 0x1FF, 0x1FFFFF))] if draw(st.booleans()) else []
    frames += draw(st.lists(FRAMES, max_size=25))
    return b"".join(p.frame(command, payload) for command, payload in frames)


@budget(200)
@given(milter_streams(), st.integers(0, 40))
def test_milter_session_takes_any_frame_sequence(stream: bytes, chunk: int) -> None:
    targets.milter_stream(stream, chunk)


@budget(100)
@given(st.binary(max_size=600), st.integers(0, 40))
def test_milter_decoder_takes_any_bytes(stream: bytes, chunk: int) -> None:
    targets.milter_stream(stream, chunk)


# ---------------------------------------------------------------------------- config

KEYS = st.sampled_from([
    "internal_domains", "personal_domains", "extra_personal_domains", "mailing_lists",
    "scoring", "limits", "rules", "milter", "warn_at", "block_at",
    "max_mime_depth", "body_scan_bytes", "MG101", "MG002", "exposed-external-parties",
    "enabled", "severity", "weight", "min_parties", "mode", "on_block", "on_error", "scope",
    "outgoing_networks", "decision_timeout", "log_addresses", "categories", "x",
    "tool", "mailguard",
])  # fmt: skip
SCALARS = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True),
    st.booleans(),
    st.text(max_size=8),
    st.sampled_from(["high", "monitor", "reject", "10.0.0.0/8", "::1", "all", "a.example"]),
)
TABLES = st.recursive(
    st.dictionaries(KEYS, SCALARS, max_size=4),
    lambda inner: st.dictionaries(
        KEYS, st.one_of(SCALARS, st.lists(SCALARS, max_size=3), inner), max_size=4
    ),
    max_leaves=12,
)


@budget(200)
@given(TABLES)
def test_config_from_any_table_is_a_config_or_a_config_error(table: dict) -> None:
    targets.config_mapping(table)


def _toml_string(text: str) -> str:
    escaped = "".join(
        "\\" + c if c in '"\\' else (f"\\u{ord(c):04x}" if ord(c) < 0x20 or c == "\x7f" else c)
        for c in text
    )
    return f'"{escaped}"'


def _toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if v != v else repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_string(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    return _toml_string(v) if isinstance(v, str) else str(v)


def _toml(table: dict, prefix: str = "") -> str:
    """A TOML document holding ``table``, under the table header ``prefix`` if given."""
    lines = [f"[{prefix}]"] if prefix else []
    lines += [f"{_toml_string(k)} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


# KEYS include "tool" and "mailguard": a pyproject.toml whose `tool` or `tool.mailguard` is
# not a table (`tool = 1`) used to raise TypeError/AttributeError from the loader.
@budget(60)
@given(TABLES, st.sampled_from(["", "tool.mailguard", "tool"]))
def test_config_file_loader_on_generated_toml(table: dict, prefix: str) -> None:
    document = _toml(table, prefix).encode()
    assert targets.toml_text(document) is not None, document
    targets.load_config(document)


@budget(100)
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode)))
def test_config_file_loader_on_any_bytes(data: bytes) -> None:
    # Any bytes, UTF-8 or not (a non-UTF-8 file used to escape as UnicodeDecodeError).
    targets.load_config(data)


# ---------------------------------------------------------------------------- found by fuzzing


def test_byte_order_mark_without_a_from_line_is_not_an_mbox(tmp_path) -> None:
    """atheris: after a BOM the "does it start with From_" test was skipped, and the rest of
    the file became a message."""
    from mailguard.archive.mbox import iter_mbox

    path = tmp_path / "bom.mbox"
    path.write_bytes(b"\xef\xbb\xbf\x02\xef\xbb\xbf\r\n\r\n-\n\r\n")
    (entry,) = iter_mbox(path)
    assert entry.data is None and "not an mbox" in (entry.error or "")
    targets.split_mbox(path.read_bytes())
