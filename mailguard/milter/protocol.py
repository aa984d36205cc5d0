"""The Sendmail milter wire protocol, version 6, as a small sans-IO codec.

Why our own codec rather than a library: ``../shared/notes/postfix-milter.md`` records what
happened when the existing Python milter libraries were put behind a real Postfix.
kilter.service accepted every message after the first on a connection and lost the first
body chunk; purepythonmilter re-sent the first message's header edits on later messages and
crashed on quarantine; python-libmilter fell out of step after a reject and let 85 of 200
risky messages through. pymilter was correct, but it is a C extension over Sendmail's
libmilter (GPL-2.0, needs ``libmilter-dev`` to build) with one thread per connection. Every
one of those failures was in per-message state, which is exactly what a gate must get
right, and the wire format itself is small: a 4-byte big-endian length, a command byte and
NUL-terminated strings. So the framing lives here, free of sockets and clocks, where it can
be tested byte for byte; :mod:`mailguard.milter.session` holds the state machine and
:mod:`mailguard.milter.server` the asyncio I/O. Constants are those of libmilter's
``mfdef.h``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

VERSION = 6

# Commands, MTA -> milter.
ABORT, BODY, CONNECT, MACRO, BODYEOB = b"A", b"B", b"C", b"D", b"E"
HELO, QUIT_NC, HEADER, MAIL, EOH = b"H", b"K", b"L", b"M", b"N"
OPTNEG, QUIT, RCPT, DATA, UNKNOWN = b"O", b"Q", b"R", b"T", b"U"

# Replies, milter -> MTA.
ACCEPT, CONTINUE, DISCARD, REJECT, TEMPFAIL = b"a", b"c", b"d", b"r", b"t"
REPLYCODE, ADDHEADER, QUARANTINE, PROGRESS = b"y", b"h", b"q", b"p"
CHGHEADER = b"m"
SETSYMLIST = b"l"

# Actions the milter may take (SMFIF_*), offered by the MTA in OPTNEG.
SMFIF_ADDHDRS = 0x01
SMFIF_CHGHDRS = 0x10
SMFIF_QUARANTINE = 0x20
SMFIF_SETSYMLIST = 0x100

# Protocol steps and flags (SMFIP_*).
SMFIP_NOCONNECT = 0x01
SMFIP_NOHELO = 0x02
SMFIP_NOMAIL = 0x04
SMFIP_NORCPT = 0x08
SMFIP_NOBODY = 0x10
SMFIP_NOHDRS = 0x20
SMFIP_NOEOH = 0x40
SMFIP_NR_HDR = 0x80
SMFIP_NOUNKNOWN = 0x100
SMFIP_NODATA = 0x200
SMFIP_SKIP = 0x400
SMFIP_RCPT_REJ = 0x800
SMFIP_NR_CONN = 0x1000
SMFIP_NR_HELO = 0x2000
SMFIP_NR_MAIL = 0x4000
SMFIP_NR_RCPT = 0x8000
SMFIP_NR_DATA = 0x10000
SMFIP_NR_UNKN = 0x20000
SMFIP_NR_EOH = 0x40000
SMFIP_NR_BODY = 0x80000
SMFIP_HDR_LEADSPC = 0x100000

# Macro stages for SMFIR_SETSYMLIST (SMFIM_*).
SMFIM_CONNECT, SMFIM_HELO, SMFIM_ENVFROM, SMFIM_ENVRCPT = 0, 1, 2, 3
SMFIM_DATA, SMFIM_EOM, SMFIM_EOH = 4, 5, 6

#: Which no-reply flag waives the reply to which command.
NO_REPLY_FLAG: dict[bytes, int] = {
    CONNECT: SMFIP_NR_CONN,
    HELO: SMFIP_NR_HELO,
    MAIL: SMFIP_NR_MAIL,
    RCPT: SMFIP_NR_RCPT,
    DATA: SMFIP_NR_DATA,
    UNKNOWN: SMFIP_NR_UNKN,
    HEADER: SMFIP_NR_HDR,
    EOH: SMFIP_NR_EOH,
    BODY: SMFIP_NR_BODY,
}

#: Largest frame accepted. Postfix and Sendmail send body chunks of at most 64 KiB unless a
#: bigger size was negotiated (we never ask), and one header is capped far below this.
MAX_FRAME = 4 * 1024 * 1024

_LEN = struct.Struct("!I")
_OPTNEG = struct.Struct("!III")


class ProtocolError(Exception):
    """The peer sent something that is not the milter protocol; the connection must end."""


@dataclass(frozen=True, slots=True)
class Negotiation:
    version: int
    actions: int
    protocol: int


class FrameDecoder:
    """Turns a byte stream into ``(command, payload)`` frames; keeps partial frames."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buf = b""
        self._held: list[bytes] = []
        """Reads kept aside while a frame known to need ``_need`` bytes is incomplete."""
        self._held_bytes = 0
        self._need = 0
        self._max = max_frame

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        """Complete frames in ``data`` (after any partial one kept from before).

        An MTA writes several frames per read (Postfix: about five reads per message for
        some thirty frames), so this slices one ``bytes`` object and copies each payload
        once; what is left over waits for the next read. The reads of a big frame (a 4 MB
        header arrives in 64 KB pieces) are joined once it is complete: appending each to
        the partial frame would copy it again at every read, quadratic in the frame size.
        """
        if self._need:
            self._held.append(data)
            self._held_bytes += len(data)
            if len(self._buf) + self._held_bytes < self._need:
                return []
            buf = b"".join([self._buf, *self._held])
            self._held.clear()
            self._held_bytes = self._need = 0
        else:
            buf = self._buf + data if self._buf else data
        frames: list[tuple[bytes, bytes]] = []
        pos = 0
        end = len(buf)
        unpack = _LEN.unpack_from
        while end - pos >= 4:
            (size,) = unpack(buf, pos)
            if size == 0:
                raise ProtocolError("empty milter frame")
            if size > self._max:
                raise ProtocolError(f"milter frame of {size} bytes exceeds {self._max}")
            start = pos + 4
            pos = start + size
            if pos > end:
                pos = start - 4
                self._need = size + 4
                break
            frames.append((buf[start : start + 1], buf[start + 1 : pos]))
        self._buf = buf[pos:] if pos < end else b""
        return frames

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame still buffered."""
        return len(self._buf) + self._held_bytes


def frame(command: bytes, payload: bytes = b"") -> bytes:
    return _LEN.pack(len(payload) + 1) + command + payload


def cstrings(payload: bytes) -> list[bytes]:
    """Split NUL-terminated strings; a missing final NUL is tolerated."""
    if not payload:
        return []
    parts = payload.split(b"\0")
    if parts[-1] == b"":
        parts.pop()
    return parts


# ---------------------------------------------------------------- decoding MTA commands


def parse_optneg(payload: bytes) -> Negotiation:
    if len(payload) < _OPTNEG.size:
        raise ProtocolError(f"option negotiation of {len(payload)} bytes, need 12")
    return Negotiation(*_OPTNEG.unpack_from(payload))


@dataclass(frozen=True, slots=True)
class ConnectInfo:
    hostname: str
    family: str
    """``4``, ``6``, ``L`` (local socket) or ``U`` (unknown)."""
    port: int
    address: str


def parse_connect(payload: bytes) -> ConnectInfo:
    host, sep, rest = payload.partition(b"\0")
    if not sep or not rest:
        raise ProtocolError("connect information without an address family")
    family = chr(rest[0])
    if family == "U" or len(rest) < 3:
        return ConnectInfo(_text(host), family, 0, "")
    (port,) = struct.unpack_from("!H", rest, 1)
    address = rest[3:].split(b"\0", 1)[0]
    return ConnectInfo(_text(host), family, port, _text(address))


def parse_macros(payload: bytes) -> tuple[bytes, dict[str, str]]:
    """``D``: the stage (a command byte) and its macros, names without braces."""
    if not payload:
        raise ProtocolError("macro command without a stage")
    strings = cstrings(payload[1:])
    macros = {
        _text(strings[i]).strip("{}"): _text(strings[i + 1]) for i in range(0, len(strings) - 1, 2)
    }
    return payload[:1], macros


def parse_header(payload: bytes) -> tuple[bytes, bytes]:
    name, sep, rest = payload.partition(b"\0")
    if not sep:
        raise ProtocolError("header without a value")
    return name, rest[:-1] if rest.endswith(b"\0") else rest


def parse_args(payload: bytes) -> list[str]:
    """MAIL/RCPT: the address (``<a@b>``) followed by ESMTP parameters."""
    return [_text(s) for s in cstrings(payload)]


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


# ---------------------------------------------------------------- encoding milter replies


def optneg_reply(
    actions: int, protocol: int, macros: dict[int, str] | None = None, version: int = VERSION
) -> bytes:
    payload = _OPTNEG.pack(version, actions, protocol)
    for stage, names in (macros or {}).items():
        payload += _LEN.pack(stage) + names.encode("ascii") + b"\0"
    return frame(OPTNEG, payload)


def reply_code(code: str, text: str) -> bytes:
    """``y``: a full SMTP reply such as ``550 5.7.1 reason``.

    SMTP reply text is 7-bit (RFC 5321 4.2), one line, and ``%`` is special to the MTA's
    formatting, so anything else is replaced rather than sent.
    """
    if text.isascii() and text.isprintable() and "%" not in text:
        clean = text  # the usual reason: nothing to replace, no walk over every character
    else:
        clean = "".join(ch if " " <= ch <= "~" and ch != "%" else "?" for ch in text)
    return frame(REPLYCODE, f"{code} {clean[:400]}".encode("ascii") + b"\0")


def add_header(name: str, value: str) -> bytes:
    return frame(ADDHEADER, _header_payload(name, value))


def delete_header(index: int, name: str) -> bytes:
    """``m`` with an empty value: remove the ``index``-th (1-based) field called ``name``."""
    return frame(CHGHEADER, _LEN.pack(index) + _header_payload(name, ""))


def quarantine(reason: str) -> bytes:
    return frame(QUARANTINE, reason.encode("ascii", "replace") + b"\0")


def _header_payload(name: str, value: str) -> bytes:
    return name.encode("ascii") + b"\0" + value.encode("ascii", "replace") + b"\0"


SIMPLE = {r: frame(r) for r in (ACCEPT, CONTINUE, DISCARD, REJECT, TEMPFAIL, PROGRESS)}
