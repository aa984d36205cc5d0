"""The SMTP side: aiosmtpd's protocol engine with our own handler.

aiosmtpd parses SMTP; what each command *does* is here. RCPT is passed to the upstream at
once and its answer returned (a recipient the provider refuses is refused to the client,
as a direct connection would do). At the end of DATA the message is judged by the same
engine and config as ``mailguard check`` and the milter, with the real envelope, and
:mod:`mailguard.proxy.actions` decides what reaches the upstream. Nothing blocking runs on
the event loop: the upstream client is asyncio (:mod:`mailguard.proxy.relay`); a check of a
message over 64 KB, or one that takes over 50 ms or needs a DNS answer not cached yet, goes
to a decision thread, as in the milter.

aiosmtpd's ``mail.log`` logger writes every sender and recipient address at INFO, so the
proxy raises it to WARNING (:func:`quiet_aiosmtpd`); and its default exception handler
sends the client the exception's text and logs a traceback: :meth:`Gateway.handle_exception`
replaces both with ``451 4.3.0`` and one line naming the exception type.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from concurrent.futures import ThreadPoolExecutor

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
from aiosmtpd.smtp import Envelope as SmtpEnvelope
from aiosmtpd.smtp import Session as SmtpSession

from mailguard import approval
from mailguard.engine import Engine, ran_out_of_time
from mailguard.milter import logline
from mailguard.milter.decision import ERROR_REPLY, Outcome, log_fields
from mailguard.proxy import actions, aiosmtpd_init
from mailguard.proxy.auth import Users
from mailguard.proxy.journal import Journal
from mailguard.proxy.lane import LaneSMTP
from mailguard.proxy.relay import Relay, Reply, Upstream, UpstreamError
from mailguard.proxy.replies import IDLE, INTERNAL, REWORDED, SHUTTING_DOWN, format_reply
from mailguard.proxy.settings import ProxySettings, is_loopback
from mailguard.recipients import Envelope
from mailguard.report import Report
from mailguard.resolver import no_waiting
from mailguard.scoring import Scoring

log = logging.getLogger("mailguard.proxy")
INLINE_BYTES = 64 * 1024
"""Messages up to this size are checked on the event loop first (well under a millisecond)."""
INLINE_SECONDS = 0.05
"""The longest a check may hold the event loop (the milter's ``inline_time_limit``)."""
_PLAIN_PATH = re.compile(
    r"\s*<((?:[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+\.)*[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
    r"@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>\s*(.*)\Z",
    re.DOTALL,
)
_peer_is_loopback = functools.lru_cache(maxsize=256)(is_loopback)
"""Asked for every connection, nearly always about the same few peers."""


def quiet_aiosmtpd() -> None:
    """aiosmtpd logs addresses at INFO (``sender: ...``, ``recip: ...``): keep it out."""
    logging.getLogger("mail.log").setLevel(logging.WARNING)


aiosmtpd_init.install()


class ProxySession(SmtpSession):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.upstream: Upstream | None = None
        self.mail_reply: Reply | None = None
        """The upstream's answer to MAIL (sent with the first RCPT); None: not sent yet."""
        self._busy = False
        self.ready_at = 0.0
        """Loop time at which we last stopped being busy: the client's idle time counts
        from our reply, not from the last time the timer found us busy."""

    @property
    def busy(self) -> bool:
        """Waiting for the upstream, or judging or delivering a message: the client waits
        for us, so the idle timer does not apply (the upstream's own is relay_timeout)."""
        return self._busy

    @busy.setter
    def busy(self, value: bool) -> None:
        self._busy = value
        if not value:
            self.ready_at = self.loop.time()


class ProxySMTP(aiosmtpd_init.QuickSMTP, LaneSMTP):
    """aiosmtpd's SMTP with our session type and AUTH without TLS from loopback only (and
    its set-up from per-class tables: :class:`~mailguard.proxy.aiosmtpd_init.QuickSMTP`)."""

    reworded = REWORDED
    line_length_limit = 64 * 1024
    """RFC 5321 allows 1,000 octets per line and aiosmtpd refuses longer ones; scripts that
    write a To: of 300 addresses on one line are this gateway's customers, and Postfix too
    accepts long lines (splitting them). Still bounded: a longer line is refused."""

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """``<local@domain> params`` the common way without aiosmtpd's RFC 5322 parser
        (which also defines a class per call); anything unusual (quotes, ``<>``, 8-bit,
        no brackets) still goes to that parser, so the results are the same."""
        match = _PLAIN_PATH.match(arg)
        if match is None or match.group(2).startswith("("):
            return super()._getaddr(arg)
        return match.group(1), match.group(2)

    _heard = 0.0
    """When the client last sent anything (loop time)."""

    def data_received(self, data: bytes) -> None:
        """Idle means nothing received: a 50 MB message on a slow link is not idle (aiosmtpd
        restarts its timer only per command, so it would cut such an upload off). Only a
        timestamp here; the timer checks it when it fires."""
        self._heard = self.loop.time()
        super().data_received(data)

    def _reset_timeout(self, duration: float | None = None) -> None:
        """aiosmtpd restarts the idle timer for every command: a cancelled timer and a new
        one each time. Here a command only notes the time (as a receipt does); the pending
        timer, when it fires, waits on for whatever is left (:meth:`_timeout_cb`), so the
        client is cut off at the same moment."""
        if duration is None:
            self._heard = now = self.loop.time()
            handle = self._timeout_handle
            if handle is not None and not handle.cancelled() and handle.when() > now:
                return
        super()._reset_timeout(duration)

    def _timeout_cb(self) -> None:
        """``421`` before closing, as RFC 5321 asks; never while we are delivering."""
        session = self.session
        quiet = self.loop.time() - self._heard
        if isinstance(session, ProxySession):
            if session.busy:
                self._reset_timeout()
                return
            quiet = min(quiet, self.loop.time() - session.ready_at)
        if quiet < self._timeout_duration:
            self._reset_timeout(self._timeout_duration - quiet)
            return
        transport = self.transport
        write = getattr(transport, "write", None)  # uvloop's transports are not asyncio's
        if transport is not None and write is not None and not transport.is_closing():
            write(IDLE.encode() + b"\r\n")
        super()._timeout_cb()

    def goodbye(self) -> None:
        """``421`` and close: the proxy is stopping (RFC 5321 3.8); the client retries."""
        transport = self.transport
        write = getattr(transport, "write", None)
        if transport is not None and write is not None and not transport.is_closing():
            write(SHUTTING_DOWN.encode() + b"\r\n")
            transport.close()

    def _create_session(self) -> ProxySession:
        return ProxySession(self.loop)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        gateway = self.event_handler
        if isinstance(gateway, Gateway):
            gateway.clients.add(self)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and peer and _peer_is_loopback(str(peer[0])):
            # Clear-text PLAIN/LOGIN is acceptable where nobody can listen in: loopback.
            self._auth_require_tls = False

    def connection_lost(self, error: Exception | None) -> None:
        session = self.session
        super().connection_lost(error)
        gateway = self.event_handler
        if isinstance(gateway, Gateway):
            gateway.clients.discard(self)
            if isinstance(session, ProxySession):
                gateway.forget(session)


class Gateway:
    """The aiosmtpd handler: one instance serves every connection."""

    def __init__(
        self, engine: Engine, scoring: Scoring, settings: ProxySettings, relay: Relay,
        journal: Journal, users: Users | None = None,
    ) -> None:  # fmt: skip
        self.engine = engine
        self.scoring = scoring
        self.settings = settings
        self.relay = relay
        self.journal = journal
        self.users = users
        self.decide_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="mailguard-check")
        self._releasing: set[asyncio.Task[None]] = set()
        self.clients: set[ProxySMTP] = set()
        """The connected clients (told ``421`` when the proxy stops)."""

    # ------------------------------------------------------------- aiosmtpd hooks

    async def handle_EHLO(
        self, server: SMTP, session: SmtpSession, envelope: SmtpEnvelope, hostname: str,
        responses: list[str],
    ) -> list[str]:  # fmt: skip
        session.host_name = hostname
        if self.users is None:
            responses = [r for r in responses if not r[4:].startswith("AUTH")]
        return responses

    async def handle_MAIL(
        self, server: SMTP, session: ProxySession, envelope: SmtpEnvelope, address: str,
        options: list[str],
    ) -> str:  # fmt: skip
        # The upstream hears MAIL together with the first RCPT, in one hand-off to a relay
        # thread instead of two (a third of the hand-offs of a one-recipient message); its
        # answer to MAIL, if not 250, is the answer to that RCPT and every later one.
        await self._release(session)
        session.busy = True  # waiting for an upstream connection: the client waits for us
        try:
            session.upstream = await self.relay.acquire()
        except UpstreamError as exc:
            return format_reply(exc.reply)
        finally:
            session.busy = False
        session.mail_reply = None
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(
        self, server: SMTP, session: ProxySession, envelope: SmtpEnvelope, address: str,
        options: list[str],
    ) -> str:  # fmt: skip
        if len(envelope.rcpt_tos) >= self.settings.max_recipients:
            return f"452 4.5.3 Too many recipients (at most {self.settings.max_recipients:,})"
        upstream = session.upstream
        if upstream is None:
            return "451 4.4.2 mailguard: the upstream connection was lost; start again"
        if session.mail_reply is not None and session.mail_reply[0] // 100 != 2:
            return format_reply(session.mail_reply)
        session.busy = True  # waiting for the upstream's answer (up to relay_timeout)
        try:
            if session.mail_reply is None:
                sender, opts = envelope.mail_from or "", tuple(envelope.mail_options)
                session.mail_reply, reply = await upstream.begin(sender, opts, address)
            else:
                reply = await upstream.rcpt(address)
        except UpstreamError as exc:
            session.mail_reply = session.mail_reply or exc.reply
            return format_reply(exc.reply)
        finally:
            session.busy = False
        if reply[0] // 100 == 2:  # any 2xx: the upstream has the recipient, so do we
            envelope.rcpt_tos.append(address)
        return format_reply(reply)

    async def handle_RSET(self, server: SMTP, session: ProxySession, envelope: SmtpEnvelope) -> str:
        await self._release(session)
        return "250 2.0.0 OK"

    async def handle_QUIT(self, server: SMTP, session: ProxySession, envelope: SmtpEnvelope) -> str:
        await self._release(session)
        return "221 2.0.0 Bye"

    async def handle_exception(self, error: Exception) -> str:
        where = error.__traceback__
        while where is not None and where.tb_next is not None:
            where = where.tb_next
        line = f"{where.tb_frame.f_code.co_filename}:{where.tb_lineno}" if where else "?"
        log.error("internal error: %s at %s", type(error).__name__, line)
        return INTERNAL

    def authenticate(
        self, server: SMTP, session: SmtpSession, envelope: SmtpEnvelope, mechanism: str,
        auth_data: object,
    ) -> AuthResult:  # fmt: skip
        ok = (
            self.users is not None
            and mechanism in ("PLAIN", "LOGIN")
            and isinstance(auth_data, LoginPassword)
            and self.users.check(auth_data.login, auth_data.password)
        )
        return AuthResult(success=bool(ok), handled=False)

    async def handle_DATA(self, server: SMTP, session: ProxySession, envelope: SmtpEnvelope) -> str:
        started = time.monotonic()
        session.busy = True
        try:
            reply, fields = await self._deliver(session, envelope, started)
        finally:
            await self._release(session)
            session.busy = False  # only now: the reply is written before anything else
        self._log(envelope, fields, reply, started)
        return format_reply(reply)

    # ------------------------------------------------------------- the decision

    async def _deliver(
        self, session: ProxySession, envelope: SmtpEnvelope, started: float
    ) -> tuple[Reply, dict[str, object]]:
        raw = bytes(envelope.original_content or b"")
        upstream = session.upstream
        if upstream is None:
            return (451, "4.4.2 mailguard: the upstream connection was lost"), {"action": "none"}
        env = Envelope(envelope.mail_from, tuple(envelope.rcpt_tos))
        report, failure = await self._judge(raw, env, started)
        # The approval field is for this gate, not for the recipients: it goes, valid or not
        # (a valid one has already made the verdict pass, with approved=<key id> logged).
        raw = approval.strip(raw)
        if report is None:  # out of time: on_error, as the milter
            failed: dict[str, object] = {"action": self.settings.on_error, "error": failure}
            if self.settings.on_error == "accept":
                return await self._relay(upstream, raw), failed
            await upstream.rset()
            return (451, f"4.7.1 {ERROR_REPLY[1]}"), failed
        fields: dict[str, object] = _counts(report)
        if (
            report.verdict == "error"
            and self.settings.on_error != "accept"
            and not any("internal error" in f.message for f in report.findings)
        ):
            # Not a message mailguard can read: sending the same bytes again cannot help.
            await upstream.rset()
            fields["action"] = "reject"
            return (554, f"5.6.0 {actions.refusal_reason(report)}"), fields
        action = actions.configured(report, self.settings)
        if action == "rewrite":
            data, info = await asyncio.get_running_loop().run_in_executor(
                self.decide_pool, actions.rewrite, raw, report, self.engine, env, self.scoring,
                self.settings.rewrite_to,
            )  # fmt: skip
            fields.update(info)
            if data is not None:
                fields["action"] = "rewrite"
                return await self._relay(upstream, data), fields
            action = self.settings.rewrite_fallback
        fields["action"] = action
        if action in ("reject", "tempfail"):
            await upstream.rset()
            return actions.refusal(
                "550 5.7.1" if action == "reject" else "451 4.7.1", report
            ), fields
        if action == "split":
            await upstream.rset()
            result = await actions.split(
                upstream, self.journal, raw, envelope.mail_from or "",
                tuple(envelope.mail_options), list(envelope.rcpt_tos), self.relay.helo,
            )  # fmt: skip
            fields.update(copies=result.copies, sent=result.sent, earlier=result.earlier,
                          failed=result.temporary + result.permanent)  # fmt: skip
            return result.reply(), fields
        data = edit_headers(raw, actions.verdict_headers(report, self.settings))
        return await self._relay(upstream, data), fields

    async def _relay(self, upstream: Upstream, data: bytes) -> Reply:
        try:
            return await upstream.data(data)
        except UpstreamError as exc:
            return exc.reply

    async def _judge(
        self, raw: bytes, envelope: Envelope, started: float
    ) -> tuple[Report | None, str]:
        """As the milter decides: a small message on the event loop, for at most
        :data:`INLINE_SECONDS` and never waiting for DNS (``no_waiting``); one that is big,
        slow or needs a lookup not cached yet is decided again on a worker thread, all
        within ``decision_timeout``."""
        deadline = started + self.settings.decision_timeout

        def run(until: float) -> Report:
            return self.engine.check(raw, envelope=envelope, source="proxy", deadline=until)

        if len(raw) <= INLINE_BYTES:
            with no_waiting():
                report = run(min(deadline, time.monotonic() + INLINE_SECONDS))
            if not ran_out_of_time(report):
                return report, ""
        remaining = deadline - time.monotonic()
        future = asyncio.get_running_loop().run_in_executor(self.decide_pool, run, deadline)
        try:
            report = await asyncio.wait_for(future, max(0.0, remaining))
        except TimeoutError:
            return None, "decision exceeded its time budget"
        if ran_out_of_time(report):
            return None, "decision exceeded its time budget"
        return report, ""

    # ------------------------------------------------------------- bookkeeping

    async def _release(self, session: ProxySession) -> None:
        upstream, session.upstream = session.upstream, None
        if upstream is not None:
            await self.relay.release(upstream)

    async def stop_serving(self, grace: float) -> None:
        """``421 4.3.2`` to every client, and its connection closed (RFC 5321 3.8). A client
        whose message is being judged or relayed hears its answer first, for up to
        ``grace`` seconds; after that its upstream connection is dropped mid-command (no
        half-sent message can be completed) and it hears ``421`` too, as it does while it
        sends a message (nothing of that has reached the upstream). Returns once their
        upstream connections are given back (RSET), so that the pool can close them."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        told: set[ProxySMTP] = set()
        while untold := self.clients - told:
            late = loop.time() >= deadline
            for smtp in untold:
                session = smtp.session
                if late or not (isinstance(session, ProxySession) and session.busy):
                    smtp.goodbye()
                    told.add(smtp)
            await asyncio.sleep(0.01)
        closing = loop.time() + 1.0
        while self.clients and loop.time() < closing:  # connection_lost comes after close
            await asyncio.sleep(0.01)
        if self._releasing:
            await asyncio.wait(list(self._releasing), timeout=self.settings.relay_timeout)

    def forget(self, session: ProxySession) -> None:
        """The client went away: give its upstream connection back (RSET first)."""
        if session.upstream is None:
            return
        task = asyncio.ensure_future(self._release(session))
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)

    def _log(
        self, envelope: SmtpEnvelope, fields: dict[str, object], reply: Reply, started: float
    ) -> None:
        line = {**fields, "reply": reply[0], "ms": f"{(time.monotonic() - started) * 1000:.2f}"}
        if self.settings.log_addresses:
            line["from"] = envelope.mail_from or "<>"
        text = " ".join(f"{k}={v}" for k, v in line.items() if k != "error")
        if "error" in fields:
            logline.emit(log, logging.ERROR, f"message {text} error={fields['error']!r}")
        else:
            logline.emit(log, logging.INFO, f"message {text}")


def edit_headers(raw: bytes, headers: list[tuple[str, str]]) -> bytes:
    from mailguard.proxy.edit import add_headers

    return add_headers(raw, headers)


def _counts(report: Report) -> dict[str, object]:
    """The milter's counts for the log line (no addresses, no subject)."""
    fields = log_fields(report, Outcome("", []))
    del fields["action"]
    return fields
