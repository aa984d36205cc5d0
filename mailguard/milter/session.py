"""One milter connection as a state machine: frames in, replies (or "decide this") out.

No sockets, threads or clocks here, so the parts that broke other Python milters (state
that leaks from one message to the next on a shared connection, replies sent for steps
whose reply was waived, edits sent for the wrong message) are tested frame by frame in
``tests/test_milter_session.py``.

Rules this machine keeps:

* Per-message state lives in one :class:`Transaction` that is created at ``MAIL`` and
  dropped at ``ABORT`` (Postfix sends it after every transaction and on RSET), at the next
  ``MAIL``, and once the end-of-message reply is out. Nothing else carries over.
* A step gets a reply unless the MTA agreed to a no-reply flag for it (SMFIP_NR_*), and
  we only ask for flags and actions the MTA offered.
* Out-of-scope mail (inbound, not submitted by our users) is accepted at ``MAIL`` (or at
  end-of-headers, when the MAIL reply was waived) so the MTA stops streaming it to us; it
  is never altered.
* Every step the session does not use is negotiated away (:meth:`Session.wanted_protocol`):
  the connection step and the MAIL reply when ``scope = "all"``, the body when no rule reads
  it, end-of-headers when no decision can be made there. Settings reloaded (SIGHUP) during a
  connection are checked against what was agreed: a step given up for the old settings that
  the new ones need fails closed (the message is checked, or decided as incomplete).
* A message that is settled by its header block (:meth:`Transaction.may_settle_at_headers`,
  then the engine: see :mod:`mailguard.milter.server`) is answered at end-of-headers, and the
  MTA no longer streams its body to us.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from operator import itemgetter

from mailguard.attachments.mime import UUENCODE
from mailguard.milter import protocol as p
from mailguard.milter.settings import FIELD_COST, MilterSettings
from mailguard.recipients import Envelope
from mailguard.remedy import Rewritten

#: What we always want; each is only requested if the MTA offers it. More is given up per
#: connection by :meth:`Session.wanted_protocol`.
WANTED_PROTOCOL = (
    p.SMFIP_NOHELO | p.SMFIP_NOUNKNOWN | p.SMFIP_NODATA
    | p.SMFIP_NR_CONN | p.SMFIP_NR_HELO | p.SMFIP_NR_RCPT | p.SMFIP_NR_DATA | p.SMFIP_NR_UNKN
    | p.SMFIP_NR_HDR | p.SMFIP_NR_BODY | p.SMFIP_HDR_LEADSPC
)  # fmt: skip
WANTED_ACTIONS = p.SMFIF_ADDHDRS | p.SMFIF_CHGHDRS | p.SMFIF_QUARANTINE | p.SMFIF_SETSYMLIST

#: Macros we read, asked for explicitly when the MTA lets us (Sendmail and Postfix send
#: these by default anyway; asking makes a trimmed ``milter_*_macros`` setting harmless).
WANTED_MACROS = {
    p.SMFIM_CONNECT: "{daemon_name} {client_addr}",
    p.SMFIM_ENVFROM: "{auth_authen}",
    p.SMFIM_ENVRCPT: "i",  # Postfix sends a macro frame per recipient anyway: keep it small
    p.SMFIM_EOH: "i",  # the queue ID for a decision made at end-of-headers
    p.SMFIM_EOM: "i",
}

_CONNECTION_STAGES = (p.CONNECT, p.HELO)
_NAME = itemgetter(0)
_STEP_COMMANDS = frozenset(p.NO_REPLY_FLAG)

_UUENCODE = frozenset(v.encode() for v in UUENCODE)  # a body that is a uuencoded file


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What was agreed in option negotiation."""

    actions: int = 0
    protocol: int = 0

    @property
    def can_add_headers(self) -> bool:
        return bool(self.actions & p.SMFIF_ADDHDRS)

    @property
    def can_change_headers(self) -> bool:
        return bool(self.actions & p.SMFIF_CHGHDRS)

    @property
    def can_quarantine(self) -> bool:
        return bool(self.actions & p.SMFIF_QUARANTINE)

    @property
    def leading_space(self) -> bool:
        """Header values arrive (and must be sent) with the space after the colon."""
        return bool(self.protocol & p.SMFIP_HDR_LEADSPC)

    def replies_to(self, command: bytes) -> bool:
        flag = p.NO_REPLY_FLAG.get(command)
        return flag is None or not self.protocol & flag


MEMO_SIZE = 1024
"""Entries kept per memo below before it starts afresh: bounded whatever the MTA sends."""
MEMO_KEY_BYTES = 64
"""Longest key memoised (an offer is 12 bytes, an IPv6 address at most 45 characters)."""


@dataclass(frozen=True, slots=True)
class _Agreed:
    """What one option negotiation came to: the same for every connection that offers the
    same bytes under the same settings, so it is worked out once (Postfix opens a milter
    connection per SMTP session: one negotiation per message for one-message sessions)."""

    reply: bytes
    caps: Capabilities
    silent: frozenset[bytes]
    decide_at_headers: bool


class _Memo:
    """Answers that depend only on the settings object and a key, shared by connections.

    Tied to the settings by identity: a reload brings a new object and the memo starts
    afresh, so an answer is never kept past the settings it was worked out for.
    """

    __slots__ = ("settings", "values")

    def __init__(self) -> None:
        self.settings: object = None
        self.values: dict[object, object] = {}

    def table(self, settings: object) -> dict[object, object]:
        if self.settings is not settings or len(self.values) >= MEMO_SIZE:
            self.settings, self.values = settings, {}
        return self.values


_NEGOTIATED = _Memo()
"""(offer payload, keep_body) -> :class:`_Agreed`."""
_NETWORKS = _Memo()
"""client address -> whether it is in ``outgoing_networks``."""


@dataclass
class Transaction:
    """One message as the MTA streams it."""

    mail_from: str
    settings: MilterSettings
    rcpt_to: list[str] = field(default_factory=list)
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    body_bytes: int = 0
    """Body bytes seen, including those not kept."""
    header_bytes: int = 0
    """Header bytes kept (each field charged :data:`FIELD_COST` more), up to the cap."""
    dropped_fields: int = 0
    """Header fields not kept: they came after ``max_header_bytes`` was reached."""
    macros: dict[str, str] = field(default_factory=dict)
    keep_body: bool = True
    """Whether any rule reads the body (``reads`` in the rule files); if none does, the
    body is counted but not kept."""
    rewrite: Rewritten | None = None
    """What the ``rewrite`` action came to, when it is the configured one (set by the judge)."""
    body_missing: bool = False
    """A rule reads the body but the MTA will not send it: this connection gave the body
    up (SMFIP_NOBODY) under settings that needed none, before a reload."""

    @property
    def envelope(self) -> Envelope:
        return Envelope(self.mail_from, tuple(self.rcpt_to))

    def add_header(self, payload: bytes) -> None:
        """Keep a header field, unless the cap was reached: then keep none from here on.

        Only a prefix of the header block is kept, as when the engine itself stops reading
        a long one, so what the rules see is what the sender wrote first.
        """
        cost = len(payload) + FIELD_COST
        if self.dropped_fields or self.header_bytes + cost > self.settings.max_header_bytes:
            self.dropped_fields += 1
            return
        self.headers.append(p.parse_header(payload))
        self.header_bytes += cost

    @property
    def incomplete(self) -> str:
        """What the engine is not given, for its limits finding; empty when nothing."""
        if self.body_missing:
            return "body not received: the configuration changed during this SMTP session"
        if not self.dropped_fields:
            return ""
        n = self.dropped_fields
        return (
            f"header block over the milter's max_header_bytes "
            f"({self.settings.max_header_bytes:,} bytes): {n:,} more field{'s' if n != 1 else ''} "
            f"not read"
        )

    def add_body(self, chunk: bytes) -> None:
        self.body_bytes += len(chunk)
        if not self.keep_body:
            return
        room = self.settings.max_body_bytes - len(self.body)
        if room > 0:
            self.body += chunk[:room]

    def may_settle_at_headers(self) -> bool:
        """Whether the header block alone may decide this message (the engine then says).

        Only a single text part: a multipart body is where the limits rule finds MIME
        nesting and part counts over ``[limits]``, which the headers cannot rule out. All
        the header fields must have been kept, and the block must be small enough to be
        decided inline. No ``X-Mailguard-*`` field: those are ours to edit at the end of the
        message (forged verdicts removed, a signed approval deleted), and an approval is
        checked against the body, which may turn a ``block`` into a ``pass``.
        """
        if self.dropped_fields or self.header_bytes > self.settings.inline_header_bytes:
            return False
        names = self.names()
        if b"\0x-mailguard-" in names:
            return False
        cte = names.find(b"\0content-transfer-encoding\0")
        if cte >= 0:  # a uuencoded body is a file (attachment rules read it): read it
            value = self.headers[names.count(b"\0", 0, cte)][1].strip().lower()
            if value in _UUENCODE:
                return False
        at = names.find(b"\0content-type\0")
        if at < 0:
            return True  # no Content-Type: text/plain (RFC 2045 5.2)
        ctype = self.headers[names.count(b"\0", 0, at)][1]  # the first one: NULs before it
        return ctype.partition(b";")[0].strip().lower().startswith(b"text/")

    def content_type(self) -> str | None:
        """The message's top-level Content-Type, as the MTA passed it (first one wins)."""
        for name, value in self.headers:
            if name.lower() == b"content-type":
                return value.decode("latin-1")
        return None

    def names(self) -> bytes:
        """The field names kept, lower-cased, each between NULs (``b"\\0to\\0cc\\0"``): one
        ``in`` then asks about all of them (a name from the MTA never holds a NUL)."""
        return b"\0%b\0" % b"\0".join(map(_NAME, self.headers)).lower()

    def header_count(self, name: str) -> int:
        """Fields of this name the sender put in (case-insensitive)."""
        wanted = name.lower().encode("ascii")
        return sum(1 for field, _ in self.headers if field.lower() == wanted)

    def raw_message(self, leading_space: bool) -> bytes:
        """The message as the engine reads it: header fields, blank line, body."""
        sep = b":" if leading_space else b": "
        lines = [
            name + sep + value.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") + b"\r\n"
            for name, value in self.headers
        ]
        lines.append(b"\r\n")
        lines.append(bytes(self.body))
        return b"".join(lines)


@dataclass(frozen=True, slots=True)
class Step:
    """What the I/O layer must do after one frame."""

    replies: tuple[bytes, ...] = ()
    decide: Transaction | None = None
    """Judge this message, then send :meth:`Session.conclude`'s frames."""
    at_headers: bool = False
    """``decide`` at end-of-headers: conclude only if the headers settle it, else send
    :meth:`Session.read_body`'s frames and decide at the end of the message."""
    close: bool = False


NOTHING = Step()
"""The step for most frames: nothing to send, nothing to decide (compare with ``is``)."""
_CLOSE = Step(close=True)
_REPLY = {reply: Step((p.SIMPLE[reply],)) for reply in (p.CONTINUE, p.ACCEPT)}


class Session:
    """State of one MTA connection (which may carry many messages).

    Half of what Postfix sends is macro frames (one before every header and recipient), so
    they are kept as raw bytes per stage and only parsed when a macro is read: at MAIL for
    the scope and at the end of the message for the queue ID.
    """

    def __init__(self, settings: MilterSettings, keep_body: bool = True) -> None:
        self.settings = settings
        self.keep_body = keep_body
        """Keep message bodies for the engine: false when no enabled rule reads them."""
        self.caps = Capabilities()
        self._silent: frozenset[bytes] = frozenset()
        """Steps whose reply the MTA waived."""
        self._decide_at_headers = False
        """End-of-headers was agreed with a reply: a message may be decided there."""
        self._reset_connection()

    def _reset_connection(self) -> None:
        self.client_address = ""
        self.client_family = ""
        self.raw_macros: dict[bytes, bytes] = {}
        """Stage (command byte) -> the last ``D`` payload for it, as sent."""
        self.txn: Transaction | None = None
        self.skipping = False
        """Current message is out of scope: accepted at MAIL, nothing more to do."""

    def reload(self, settings: MilterSettings, keep_body: bool = True) -> None:
        """New settings apply from the next message on."""
        self.settings, self.keep_body = settings, keep_body

    # ------------------------------------------------------------------ commands

    def handle(self, command: bytes, payload: bytes) -> Step:
        if command == p.MACRO:
            if not payload:
                raise p.ProtocolError("macro command without a stage")
            stage = payload[:1]
            if stage == p.MAIL:  # a new envelope: the last message's macros are stale
                self._drop_message_macros()
            self.raw_macros[stage] = payload  # a stage's macros replace its previous ones
            return NOTHING
        if command == p.HEADER:
            txn = self.txn
            if txn is not None:
                txn.add_header(payload)
            if command in self._silent:
                return NOTHING
            return _REPLY[p.ACCEPT if self.skipping else p.CONTINUE]
        if command == p.OPTNEG:
            return Step((self._negotiate(payload),))
        if command == p.EOH and self._decide_at_headers:
            txn = self.txn
            if txn is not None and txn.may_settle_at_headers() and self._settle_at_headers():
                self._collect_macros(txn, (p.MAIL, p.DATA, p.EOH))
                return Step(decide=txn, at_headers=True)
        if command == p.ABORT:
            self._end_message()
            self._drop_message_macros()
            return NOTHING
        if command == p.QUIT:
            return _CLOSE
        if command == p.QUIT_NC:
            self._reset_connection()
            return NOTHING
        if command == p.BODYEOB:
            return self._end_of_message(payload)
        if command not in _STEP_COMMANDS:
            raise p.ProtocolError(f"unknown milter command {command!r}")
        reply = self._step(command, payload)
        if command in self._silent:
            return NOTHING  # the MTA waived this reply; sending one would desynchronise it
        return _REPLY[reply]

    def _step(self, command: bytes, payload: bytes) -> bytes:
        if command == p.CONNECT:
            info = p.parse_connect(payload)
            self.client_address, self.client_family = info.address, info.family
        elif command == p.MAIL:
            self._end_message()
            args = p.parse_args(payload)
            sender = args[0] if args else ""
            if not self._in_scope():
                self.skipping = True
                return p.ACCEPT
            self.txn = Transaction(sender, self.settings, keep_body=self.keep_body)
            # A reload may have turned on a body rule after this connection gave the body up.
            self.txn.body_missing = self.keep_body and bool(self.caps.protocol & p.SMFIP_NOBODY)
        elif self.txn is not None:
            if command == p.RCPT:
                args = p.parse_args(payload)
                if args:
                    self.txn.rcpt_to.append(args[0])
            elif command == p.BODY:
                self.txn.add_body(payload)
        elif self.skipping and command in (p.RCPT, p.HEADER, p.EOH, p.BODY, p.DATA):
            return p.ACCEPT
        return p.CONTINUE

    def _end_of_message(self, payload: bytes) -> Step:
        txn = self.txn
        if txn is None:
            # Out of scope (the MTA should not have streamed it) or no MAIL seen: let it be.
            self._end_message()
            return _REPLY[p.CONTINUE]
        if payload:
            txn.add_body(payload)
        self._collect_macros(txn, (p.MAIL, p.DATA, p.EOH, p.BODYEOB))
        return Step(decide=txn)

    def _collect_macros(self, txn: Transaction, stages: tuple[bytes, ...]) -> None:
        for stage in stages:
            if stage in self.raw_macros:
                txn.macros.update(p.parse_macros(self.raw_macros[stage])[1])

    def conclude(self, frames: list[bytes]) -> list[bytes]:
        """The decision's frames for the current message; the message is then over."""
        self._end_message()
        return frames

    def read_body(self) -> list[bytes]:
        """The reply to end-of-headers when the headers did not settle the message."""
        return [p.SIMPLE[p.CONTINUE]]

    def _settle_at_headers(self) -> bool:
        """Whether current settings allow a decision at end-of-headers (no edits needed for
        a message accepted there: headers are only added at the end of the message)."""
        s = self.settings
        return s.decide_at_headers and s.add_headers != "always" and s.inline_time_limit > 0

    def _end_message(self) -> None:
        self.txn = None
        self.skipping = False

    def _drop_message_macros(self) -> None:
        for stage in list(self.raw_macros):
            if stage not in _CONNECTION_STAGES:
                del self.raw_macros[stage]

    # ------------------------------------------------------------------ negotiation

    def _negotiate(self, payload: bytes) -> bytes:
        if len(payload) > MEMO_KEY_BYTES:  # an MTA sends 12 bytes; no memo for odd ones
            agreed = self._agree(payload)
        else:
            table = _NEGOTIATED.table(self.settings)
            key = (payload, self.keep_body)
            known = table.get(key)
            agreed = known if isinstance(known, _Agreed) else self._agree(payload)
            table[key] = agreed
        self.caps, self._silent = agreed.caps, agreed.silent
        self._decide_at_headers = agreed.decide_at_headers
        return agreed.reply

    def _agree(self, payload: bytes) -> _Agreed:
        offer = p.parse_optneg(payload)
        if offer.version < 2:
            raise p.ProtocolError(f"milter protocol version {offer.version} is too old")
        actions = WANTED_ACTIONS & offer.actions
        protocol = self.wanted_protocol(offer.protocol)
        caps = Capabilities(actions, protocol)
        silent = frozenset(c for c in _STEP_COMMANDS if not caps.replies_to(c))
        macros = WANTED_MACROS if actions & p.SMFIF_SETSYMLIST else None
        reply = p.optneg_reply(actions, protocol, macros, min(offer.version, p.VERSION))
        return _Agreed(reply, caps, silent, not protocol & (p.SMFIP_NOEOH | p.SMFIP_NR_EOH))

    def wanted_protocol(self, offered: int) -> int:
        """The steps to give up and replies to waive for this connection, of those offered.

        Each frame costs the MTA a write and us a wake-up, and a reply costs a round trip.
        Given up here when the current settings do not use them: the connection step (the
        client address) with ``scope = "all"``; the MAIL reply (an out-of-scope accept) with
        ``scope = "all"`` or when end-of-headers is answered (out-of-scope mail is accepted
        there); the body when no rule reads it; end-of-headers when no decision can be made
        there (else it is kept *with* its reply, which is then the decision or a continue).
        """
        wanted = WANTED_PROTOCOL
        if self.settings.scope == "all":
            wanted |= p.SMFIP_NOCONNECT | p.SMFIP_NR_MAIL
        if not self.keep_body:
            wanted |= p.SMFIP_NOBODY
        if not self._settle_at_headers():
            wanted |= p.SMFIP_NOEOH | p.SMFIP_NR_EOH
        elif offered & p.SMFIP_NR_MAIL:
            # End-of-headers is answered: out-of-scope mail is accepted there instead, and
            # every message in scope saves the MAIL round trip.
            wanted |= p.SMFIP_NR_MAIL
        return wanted & offered

    # ------------------------------------------------------------------ scope

    def macro(self, name: str) -> str:
        for raw in self.raw_macros.values():
            values = p.parse_macros(raw)[1]
            if name in values:
                return values[name]
        return ""

    def _in_scope(self) -> bool:
        s = self.settings
        if s.scope == "all" or self.caps.protocol & p.SMFIP_NOCONNECT:
            # The second: given up under scope "all" before a reload; without the client's
            # address, checking is the safe side.
            return True
        if self.client_family == "L":  # local socket: a program on this host
            return True
        # Cheapest first (all are alternatives): the client's network, known at CONNECT and
        # judged once per address and settings (most mail comes from a few clients), before
        # the macros, which are parsed here.
        address = self.client_address
        if address:
            if len(address) > MEMO_KEY_BYTES:
                inside = s.is_outgoing_network(address)
            else:
                table = _NETWORKS.table(s)
                known = table.get(address)
                inside = known if isinstance(known, bool) else s.is_outgoing_network(address)
                table[address] = inside
            if inside:
                return True
        if s.authenticated and self.macro("auth_authen"):
            return True
        if s.outgoing_daemons and self.macro("daemon_name") in s.outgoing_daemons:
            return True
        return not address and s.is_outgoing_network(self.macro("client_addr"))
