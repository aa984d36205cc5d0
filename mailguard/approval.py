"""Signed approvals: a person accountable for a mailout approves it once, with a key.

``mailguard approve`` checks a message, shows the report, and adds one header field::

    X-Mailguard-Approval: v=1; key=20261201-a1b2c3d4; t=1796083200; exp=1796169600;
     rcpt=<digest>; from=<digest>; subj=<digest>; body=<digest>; len=<bytes>;
     mac=<HMAC-SHA256>

It binds the key id, the issue and expiry times (Unix seconds), and SHA-256 digests
(unpadded base64url) of what the approver saw:

``rcpt``  the sorted, distinct visible recipients (To, Cc, Resent-To, Resent-Cc), each
          normalised as everywhere else in mailguard (``parse_address_list``: lower case,
          IDN domains as punycode), one per line;
``from``  the From mailboxes: decoded display name and normalised address, sorted;
``subj``  the Subject, RFC 2047 words decoded and runs of whitespace made one space;
``body``  the body (everything after the blank line) canonicalised so that transport does
          not change it but any content change does: line ends (CRLF, LF, CR) made LF,
          spaces and tabs at line ends removed, blank lines at the end removed (Postfix and
          SMTP clients change exactly these: CRLF, and the final line end); ``len`` is
          its length, so that a body cut short on the way is named as such.

``mac`` is HMAC-SHA256 with the key over the other tags in that order; it is compared in
constant time. The field itself is never part of what is hashed, so signing, folding the
field or removing it changes nothing. Header parts not listed (Received, Date,
Message-ID, DKIM-Signature) may change in transit; the envelope is not bound either: Bcc
recipients see no one.

:func:`verify` answers :data:`ABSENT`, valid (key id, expiry) or invalid with reasons that
say what was wrong ("approval expired", "recipients changed since approval", "body changed
since approval", "unknown key …", "malformed approval: …"). An invalid approval is never
ignored: the rule tagged approval-invalid makes it a finding that blocks. :func:`settle`
(called by the engine) turns the verdict of a validly approved message into ``pass``,
keeping its score and findings, and notes the key id and expiry (``Report.approval``).

The keys come from ``Services.approval`` (a :class:`~mailguard.approval_keys.Keyring`
the settings loader builds from ``[approval] keys``). For a pre-send proxy, :func:`strip`
removes the field from raw bytes before relaying; for the milter, :func:`header_indexes`
gives the CHGHEADER indexes to delete.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from mailguard.addresses import parse_address_list
from mailguard.approval_keys import KEY_ID, Key, Keyring
from mailguard.errors import InputError
from mailguard.headers import ADDRESS_HEADERS, decode_rfc2047, find_header_end
from mailguard.limits import Limits
from mailguard.message import Message, parse_message
from mailguard.recipients import RecipientAnalysis
from mailguard.report import Report
from mailguard.services import Services

HEADER = "X-Mailguard-Approval"
VERSION = "1"
TAG_INVALID = "approval-invalid"
"""The tag of the rule that reports an invalid approval (the milter words its refusal from
that finding's message)."""
MAX_VALID_FOR = 90 * 86400
"""Longest validity ``sign`` accepts: an approval is for one mailout, not a standing permit."""
CLOCK_SKEW = 300
"""Seconds an approval's issue time may lie in the future (the signer's clock is ahead)."""
MAX_FIELD_CHARS = 2048
"""A longer field is malformed without being parsed (bounded work on hostile input)."""

_VISIBLE = tuple(h for h in ADDRESS_HEADERS if not h.endswith("bcc"))
_DIGEST_TAGS = ("rcpt", "from", "subj", "body")
_TAGS = ("v", "key", "t", "exp", *_DIGEST_TAGS, "len", "mac")
_B64 = re.compile(r"[A-Za-z0-9_-]{43}")
_TIME = re.compile(r"[0-9]{1,12}")
_CHANGED = {
    "rcpt": "recipients changed since approval",
    "from": "From changed since approval",
    "subj": "Subject changed since approval",
    "body": "body changed since approval",
}


@dataclass(frozen=True, slots=True)
class Verification:
    """What :func:`verify` found. ``reasons`` is empty unless ``status`` is ``invalid``."""

    status: Literal["valid", "absent", "invalid"]
    key_id: str | None = None
    expires: int | None = None
    issued: int | None = None
    reasons: tuple[str, ...] = ()

    @property
    def valid(self) -> bool:
        return self.status == "valid"

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)


ABSENT = Verification("absent")


@dataclass(frozen=True, slots=True)
class Approved:
    """A report's note that a valid approval set its verdict (``Report.approval``)."""

    key_id: str
    expires: int
    issued: int
    verdict: str
    """The verdict without the approval (``block``, ``warn`` or ``pass``)."""

    def to_dict(self) -> dict[str, object]:
        return {
            "key_id": self.key_id,
            "issued": iso(self.issued),
            "expires": iso(self.expires),
            "verdict_without_approval": self.verdict,
        }

    def note(self) -> str:
        """The line reports show (text, SARIF's justification)."""
        return (
            f"approved with key {self.key_id}, valid until {iso(self.expires)} (without the "
            f"approval: {self.verdict}); the findings below are what was approved"
        )


def iso(seconds: float) -> str:
    """UTC time as ISO 8601; a time past what the platform can show stays a number."""
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))
    except (OverflowError, OSError, ValueError):
        return f"{seconds:.0f} (Unix time)"


# ------------------------------------------------------------------ what is bound


def _digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode("ascii")


def canonical_body(body: bytes) -> bytes:
    """The body as hashed: LF line ends, no blanks at line ends, no blank lines at the end.

    Whole-buffer operations in C where possible: most bodies have no blank before a line
    end, and two ``in`` tests say so. Otherwise lines are stripped a slice at a time, so a
    body of millions of short lines never becomes one list of millions (memory stays
    bounded); a regex for "blanks before a line end" would try every space of the text.
    """
    text = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n") + b"\n"
    if b" \n" in text or b"\t\n" in text:
        text = _strip_line_ends(text)
    text = text.rstrip(b"\n")
    return text + b"\n" if text else b""


_SLICE = 64 * 1024


def _strip_line_ends(text: bytes) -> bytes:
    """``text`` (ending in LF) with the blanks before each LF removed, a slice at a time."""
    out: list[bytes] = []
    start, last = 0, len(text) - 1
    while start <= last:
        end = text.find(b"\n", min(start + _SLICE, last))
        piece = text[start : end + 1]
        out.append(b"\n".join([line.rstrip(b" \t") for line in piece.split(b"\n")]))
        start = end + 1
    return b"".join(out)


def _addresses(message: Message, names: Iterable[str], limits: Limits) -> tuple[list[str], bool]:
    found: list[str] = []
    truncated = False
    for name in names:
        for value in message.get_all(name):
            parsed = parse_address_list(value, name, limit=limits.max_addresses)
            truncated = truncated or parsed.truncated
            if name == "from":
                found += [f"{_words(decode_rfc2047(a.name).strip(chr(34)))} <{a.addr}>"
                          for a in parsed.addresses]  # fmt: skip
            else:
                found += [a.addr for a in parsed.addresses]
    return sorted(set(found)), truncated


def _words(text: str) -> str:
    return " ".join(text.split())


def bindings(
    message: Message, visible: tuple[Iterable[str], bool] | None = None
) -> tuple[dict[str, str], bool]:
    """The digests an approval binds, and whether the recipients were cut at a limit.

    ``visible``: the visible recipients' normalised addresses and whether counting stopped,
    when the engine's recipient analysis has them already (the same parser, so the same
    digest; a test holds both ways to agreement): saves parsing a 300-address To again.
    """
    if visible is None:
        recipients, truncated = _addresses(message, _VISIBLE, message.limits)
    else:
        recipients, truncated = sorted(set(visible[0])), visible[1]
    senders, cut = _addresses(message, ("from",), message.limits)
    subject = _words(" ".join(decode_rfc2047(s) for s in message.get_all("subject")))
    body = canonical_body(message.raw[message.body_offset :])
    digests = {
        "rcpt": _digest("\n".join(recipients).encode("utf-8", "surrogateescape")),
        "from": _digest("\n".join(senders).encode("utf-8", "surrogateescape")),
        "subj": _digest(subject.encode("utf-8", "surrogateescape")),
        "body": _digest(body),
        "len": str(len(body)),
    }
    return digests, truncated or cut


def _mac(key: Key, tags: Mapping[str, str]) -> bytes:
    text = ";".join(f"{name}={tags[name]}" for name in _TAGS[:-1])
    return hmac.new(key.secret, b"mailguard-approval\0" + text.encode("ascii"), "sha256").digest()


# ------------------------------------------------------------------ signing


def sign(raw: bytes, key: Key, valid_for: float, now: float, limits: Limits | None = None) -> bytes:
    """``raw`` with an approval field by ``key``, valid ``valid_for`` seconds from ``now``.

    Any approval field already there is replaced; the rest of the message is kept byte for
    byte. Raises :class:`InputError` for a message that cannot be read or whose recipients
    cannot all be counted (an approval must cover everyone it lets through).
    """
    if not 0 < valid_for <= MAX_VALID_FOR:
        raise InputError(
            f"the validity must be more than 0 and at most {MAX_VALID_FOR // 86400} days"
        )
    message = parse_message(strip(raw), limits)
    raw = message.raw  # bare-CR line ends come back as LF: the field must go into the headers
    if message.problems and any(p.kind == "header-block-truncated" for p in message.problems):
        raise InputError("the header block is larger than mailguard reads: it cannot be approved")
    digests, truncated = bindings(message)
    if truncated:
        raise InputError("more addresses than mailguard counts: the message cannot be approved")
    issued = int(now)
    tags = {"v": VERSION, "key": key.id, "t": str(issued), "exp": str(int(now + valid_for))}
    tags.update(digests)
    tags["mac"] = base64.urlsafe_b64encode(_mac(key, tags)).rstrip(b"=").decode("ascii")
    return insert_field(raw, _fold(tags))


def _fold(tags: Mapping[str, str]) -> list[str]:
    """The field's lines, each under 78 characters (the first one carries the name)."""
    parts = [f"{name}={tags[name]};" for name in _TAGS]
    parts[-1] = parts[-1].rstrip(";")
    head = f"{HEADER}: " + " ".join(parts[:4])
    return [head, *(" " + part for part in parts[4:])]


def insert_field(raw: bytes, lines: Sequence[str]) -> bytes:
    """``raw`` with a header field (given as its folded lines) added at the end of the
    header block, in the message's own line-end style."""
    found = find_header_end(raw, 0, len(raw))
    end = found[0] if found is not None else len(raw.rstrip(b"\r\n"))
    first = raw.find(b"\n")
    eol = b"\r\n" if first > 0 and raw[first - 1] == 13 else b"\n"
    field = eol.join(line.encode("ascii") for line in lines)
    return raw[:end] + eol + field + raw[end:] if found else raw[:end] + eol + field + eol + eol


# ------------------------------------------------------------------ verifying


def verify(
    message: Message | bytes,
    keys: Keyring | None,
    now: float,
    limits: Limits | None = None,
    visible: tuple[Iterable[str], bool] | None = None,
) -> Verification:
    """Check the approval field of ``message`` against ``keys`` at time ``now``
    (``visible``: see :func:`bindings`)."""
    if not isinstance(message, Message):
        message = parse_message(message, limits)
    values = message.get_all(HEADER.lower())
    if not values:
        return ABSENT
    if len(values) > 1:
        return _invalid(f"malformed approval: {len(values)} {HEADER} fields (one is allowed)")
    tags, problem = _parse(values[0])
    if tags is None:
        return _invalid(f"malformed approval: {problem}")
    key_id, issued, expires = tags["key"], int(tags["t"]), int(tags["exp"])
    key = keys.get(key_id) if keys is not None else None
    if key is None:
        known = "no approval keys are configured" if not keys else "not among the configured keys"
        return _invalid(f"unknown key {key_id!r} ({known})", key_id, expires, issued)
    given = base64.urlsafe_b64decode(tags["mac"] + "=")
    if not hmac.compare_digest(_mac(key, tags), given):
        reason = "approval signature does not match (altered, or another key has that id)"
        return _invalid(reason, key_id, expires, issued)
    reasons: list[str] = []
    if now >= expires:
        reasons.append(f"approval expired (at {iso(expires)})")
    elif issued > now + CLOCK_SKEW:
        reasons.append(f"approval issued in the future ({iso(issued)}): check the clocks")
    digests, truncated = bindings(message, visible)
    if truncated:
        reasons.append("more addresses than mailguard counts: the recipients cannot be verified")
    reasons += [words for tag, words in _CHANGED.items() if digests[tag] != tags[tag]]
    if digests["body"] != tags["body"] and int(digests["len"]) < int(tags["len"]):
        # Most likely cut on the way (the milter keeps at most max_body_bytes of a body).
        got, approved = int(digests["len"]), int(tags["len"])
        reasons.append(
            f"only {got:,} of the {approved:,} approved body bytes arrived (cut short, e.g. by "
            "the milter's max_body_bytes?)"
        )
    if reasons:
        return _invalid("; ".join(reasons), key_id, expires, issued)
    return Verification("valid", key_id, expires, issued)


def _invalid(
    reason: str, key_id: str | None = None, expires: int | None = None, issued: int | None = None
) -> Verification:
    return Verification("invalid", key_id, expires, issued, (reason,))


def _parse(value: str) -> tuple[dict[str, str] | None, str]:
    """The tags of a field value, or ``None`` and what is wrong (never quoting the value)."""
    if len(value) > MAX_FIELD_CHARS:
        return None, f"the field is longer than {MAX_FIELD_CHARS} characters"
    tags: dict[str, str] = {}
    for part in value.split(";"):
        name, eq, text = part.partition("=")
        name, text = name.strip(), "".join(text.split())
        if not name and not eq:
            continue
        if name not in _TAGS:
            return None, "an unknown tag" if eq else "a part that is not tag=value"
        if name in tags:
            return None, f"the tag {name!r} appears twice"
        tags[name] = text
    missing = [name for name in _TAGS if name not in tags]
    if missing:
        return None, f"missing {', '.join(missing)}"
    if tags["v"] != VERSION:
        return None, f"unsupported version (this mailguard reads v={VERSION})"
    if not KEY_ID.fullmatch(tags["key"]):
        return None, "the key id is not a valid key id"
    if not (_TIME.fullmatch(tags["t"]) and _TIME.fullmatch(tags["exp"])):
        return None, "t and exp must be Unix times"
    if not _TIME.fullmatch(tags["len"]):
        return None, "len must be a byte count"
    for name in (*_DIGEST_TAGS, "mac"):
        if not _B64.fullmatch(tags[name]):
            return None, f"{name} is not a SHA-256 value in base64url"
    try:
        base64.urlsafe_b64decode(tags["mac"] + "=")
    except (binascii.Error, ValueError):
        return None, "mac is not base64url"
    return tags, ""


def review(
    message: Message, services: Services, mode: str, recipients: RecipientAnalysis | None = None
) -> Verification:
    """The approval of a message the engine is judging: outgoing mail only (an archived
    copy's approval expired long ago and says nothing about the exposure)."""
    if mode != "outgoing" or not message.get_all(HEADER):  # an empty field is there too
        return ABSENT
    clock = services.clock or time.time
    visible = None if recipients is None else (recipients.visible.keys(), recipients.truncated)
    return verify(message, services.approval, clock(), visible=visible)


def settle(report: Report, verification: Verification) -> Report:
    """A validly approved report gets the verdict ``pass`` and an :class:`Approved` note;
    its score and findings stay, so a reader sees what was approved."""
    if not verification.valid:
        return report
    assert verification.key_id is not None and verification.expires is not None
    report.approval = Approved(
        verification.key_id, verification.expires, verification.issued or 0, report.verdict
    )
    report.verdict = "pass"
    return report


# ------------------------------------------------------------------ removing the field


def _is_approval_line(line: bytes) -> bool:
    name, colon, _ = line.partition(b":")
    return bool(colon) and name.rstrip(b" \t").lower() == b"x-mailguard-approval"


def strip(raw: bytes) -> bytes:
    """``raw`` without any approval field (with its continuation lines), otherwise byte for
    byte the same: what a proxy relays after a valid approval."""
    found = find_header_end(raw, 0, len(raw))
    end = found[0] if found is not None else len(raw)
    block = raw[:end]
    if b"x-mailguard-approval" not in block.lower():
        return raw
    kept: list[bytes] = []
    skipping = False
    for line in block.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and skipping:
            continue  # a continuation line of the field being removed
        skipping = _is_approval_line(line)
        if not skipping:
            kept.append(line)
    out = b"".join(kept)
    if not block.endswith(b"\n") and out.endswith(b"\n"):
        # The last field was removed: the line end before it now ends the block, and
        # raw[end:] brings its own.
        out = out[:-2] if out.endswith(b"\r\n") else out[:-1]
    return out + raw[end:]


def header_indexes(headers: Sequence[tuple[bytes | str, object]]) -> list[int]:
    """The 1-based indexes (among fields of that name, as milter CHGHEADER counts them) of
    the approval fields in ``headers``, highest first: deleting in that order leaves the
    remaining indexes valid."""
    n = sum(1 for name, _ in headers if _name(name) == "x-mailguard-approval")
    return list(range(n, 0, -1))


def _name(name: bytes | str) -> str:
    text = name.decode("latin-1") if isinstance(name, bytes) else name
    return text.strip().lower()
