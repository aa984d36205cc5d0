"""aiosmtpd's command loop without a wake-up per line, for the commands of every message.

aiosmtpd runs a task per connection that awaits ``StreamReader.readuntil`` for each command:
a future, a hand-back through the event loop and a task step per line, then its checks and
a dispatch by name, some 20 us a command. A script's message is six commands and the data,
on a new connection each time. :class:`LaneSMTP` takes the bytes in ``data_received``
instead and runs each command's coroutine there, to its end when it does not wait (EHLO,
MAIL, DATA's ``354``, QUIT); only one that waits (RCPT and the end of DATA wait for the
upstream) becomes a task, which goes on with the next line when it is done. The message
itself is handed to the :class:`~mailguard.proxy.dataread.Collector` as it arrives.

What a command does is aiosmtpd's own ``smtp_*`` method, called with the argument its loop
would pass, after the same checks in the same order; anything else - a command outside
:data:`HOT`, an empty, overlong or undecodable line, STARTTLS and AUTH (which read from the
stream themselves), a server with a PROXY-protocol timeout or call limits, ``mail.log``
logging at INFO - hands the connection, from that line on, to aiosmtpd's own loop, which
then sees the same bytes it would have seen from the start. Errors are answered as its loop
answers them. ``tests/test_proxy_lane.py`` compares both on random sessions cut at random
places (Hypothesis).
"""

from __future__ import annotations

import asyncio
import logging
import types
from collections.abc import Awaitable, Callable, Coroutine, Generator, Mapping
from typing import Any, ClassVar

from aiosmtpd.smtp import MISSING, SMTP, TLSSetupException, syntax

from mailguard.proxy.dataread import NOMINAL, TOO_LONG, Collector, DataEnd, read_message

HOT = frozenset({"EHLO", "HELO", "MAIL", "RCPT", "DATA", "RSET", "NOOP", "QUIT"})
"""The commands of a plain transaction: the lane runs these; any other hands over."""
mail_log = logging.getLogger("mail.log")


@types.coroutine
def _resume(coro: Coroutine[Any, Any, Any], waiting: Any) -> Generator[Any, Any, Any]:
    """Go on with a coroutine that was started by hand and is waiting on ``waiting``: what
    ``await`` would do had it been started by a task (values and exceptions passed through)."""
    while True:
        try:
            sent = yield waiting
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:  # a task's cancel() among them: the coroutine decides
            try:
                waiting = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                waiting = coro.send(sent)
            except StopIteration as stop:
                return stop.value


class _Handle:
    """What aiosmtpd cancels as its per-connection task (``_handler_coroutine``) while the
    lane serves. Its loop, cancelled, goes on until it next waits (for a line, or inside a
    command) and ends there, closing the writer: so does the lane (:meth:`LaneSMTP._drive`,
    :meth:`LaneSMTP._lane_run`), or the command task if one is waiting."""

    __slots__ = ("smtp",)

    def __init__(self, smtp: LaneSMTP) -> None:
        self.smtp = smtp

    def cancel(self, msg: Any = None) -> bool:
        smtp = self.smtp
        smtp._lane_cancelled = True
        if smtp._lane_task is not None:
            return smtp._lane_task.cancel(msg)
        if not smtp._lane_running:  # waiting for a line: it ends now
            smtp._lane_end()
        return True


class LaneSMTP(SMTP):
    lane = True
    """Serve the common commands in ``data_received`` (tests turn it off to compare)."""
    _lane = False
    _lane_stopped = False
    _lane_cancelled = False
    """Cancelled (QUIT, the connection lost): the lane ends when it would next wait."""
    _lane_running = False
    _lane_task: asyncio.Task[None] | None = None
    _lane_data: DataEnd | None = None
    _lane_paused = False
    _skip_greeting = False

    # ------------------------------------------------------------- the lane

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.transport is not None or not self._lane_possible():
            super().connection_made(transport)  # after STARTTLS, or aiosmtpd's loop throughout
            return
        # SMTP.connection_made for a new connection, without starting its loop's task.
        self._set_rset_state()
        self.session = self._create_session()
        self.session.peer = transport.get_extra_info("peername")
        self._reset_timeout()
        asyncio.StreamReaderProtocol.connection_made(self, transport)
        self.transport = transport
        self._lane = True
        self._lane_buffer = bytearray()
        self._handler_coroutine = _Handle(self)  # type: ignore[assignment]
        self._drive(self.push(f"220 {self.hostname} {self.__ident__}"))

    def _lane_possible(self) -> bool:
        return (
            self.lane
            and self._proxy_timeout is None
            and not self._enforce_call_limit
            and not mail_log.isEnabledFor(logging.INFO)  # its loop's lines would be missing
            and type(self).smtp_DATA is LaneSMTP.smtp_DATA
        )

    def data_received(self, data: bytes) -> None:
        if not self._lane:
            super().data_received(data)
            return
        if self._lane_stopped:
            return  # as aiosmtpd's cancelled loop: nobody reads it any more
        self._lane_buffer += data
        if self._lane_task is None:
            self._lane_run()
        elif len(self._lane_buffer) > 2 * self._reader._limit and not self._lane_paused:  # type: ignore[attr-defined]
            self._lane_paused = True  # as StreamReader: at most twice its limit held
            self.transport.pause_reading()  # type: ignore[union-attr]

    def connection_lost(self, error: Exception | None) -> None:
        self._lane_stopped = True
        super().connection_lost(error)
        # The tables of bound methods make the protocol a reference cycle, left to the
        # garbage collector (some 40 objects a connection); no command runs any more.
        self._smtp_methods = {}
        self._auth_methods = {}
        self._client_connected_cb = None

    def _lane_run(self) -> None:
        """Serve what has arrived, until a command waits or a line needs aiosmtpd's loop."""
        buffer = self._lane_buffer
        limit: int = self._reader._limit  # type: ignore[attr-defined]
        self._lane_running = True
        try:
            while not self._lane_stopped and self._lane_task is None and self._lane:
                ending = self._lane_data
                if ending is not None:
                    used = ending.feed(bytes(buffer)) if buffer else -1
                    if used < 0:
                        buffer.clear()
                        self._lane_wait()
                        break
                    del buffer[:used]
                    self._lane_data = None
                    self._drive(self._lane_call(self._data_end, ending.collector))
                    continue
                end = buffer.find(b"\n")
                if end < 0 or end > limit:
                    if end >= 0 or len(buffer) > limit:  # StreamReader's LimitOverrunError
                        self._hand_over()
                    else:
                        self._lane_wait()
                    break
                command = self._command(bytes(buffer[: end + 1]))
                if command is None:
                    self._hand_over()
                    break
                del buffer[: end + 1]
                self._reset_timeout()
                self._drive(self._lane_call(*command))
        finally:
            self._lane_running = False
        if self._lane_paused and self._lane_task is None and len(buffer) <= limit:
            self._lane_paused = False
            if self.transport is not None:
                self.transport.resume_reading()  # type: ignore[attr-defined]

    def _lane_wait(self) -> None:
        """More data is needed: where a cancelled aiosmtpd loop would end."""
        if self._lane_cancelled:
            self._lane_end()

    def _lane_end(self) -> None:
        self._lane_stopped = True
        self._writer.close()

    def _command(self, line: bytes) -> tuple[Callable[[Any], Awaitable[None]], Any] | None:
        """The method and argument aiosmtpd's loop would call for ``line``, if that is all it
        would do with it; None for a line it treats otherwise (then it shall)."""
        line = line.rstrip(b"\r\n")
        command_bytes, _, arg_bytes = line.partition(b" ")
        try:
            command = command_bytes.upper().decode("ascii")
        except UnicodeDecodeError:
            return None
        if command not in HOT:
            return None
        arg: str | None = None
        if arg_bytes:
            arg_bytes = arg_bytes.strip()
            try:
                arg = str(arg_bytes, "utf-8" if self.enable_SMTPUTF8 else "ascii",
                          "surrogateescape" if self.enable_SMTPUTF8 else "strict")  # fmt: skip
            except UnicodeDecodeError:
                return None
        assert self.session is not None
        max_size = (self.command_size_limits[command] if self.session.extended_smtp
                    else self.command_size_limit)  # fmt: skip
        if len(line) > max_size or not self._tls_handshake_okay:
            return None
        if self.require_starttls and not self._tls_protocol:
            return None
        if command == "DATA":
            return self._lane_start_data, arg
        method = self._smtp_methods.get(command)
        return None if method is None else (method, arg)

    def _hand_over(self) -> None:
        """aiosmtpd's own loop from here on, reading what the lane has not served."""
        self._lane = False
        if self._lane_paused:
            self._lane_paused = False
            self.transport.resume_reading()  # type: ignore[union-attr]
        pending, self._lane_buffer = bytes(self._lane_buffer), bytearray()
        if pending:
            super().data_received(pending)
        self._skip_greeting = True  # its loop begins with the 220, already sent
        self._handler_coroutine = task = self.loop.create_task(self._handle_client())
        if self._lane_cancelled:
            self.loop.call_soon(task.cancel)  # once it waits, as the lane's loop would end

    def _drive(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` here; if it has to wait, a task goes on with it (and then the lane)."""
        try:
            waiting = coro.send(None)
            if self._lane_cancelled:  # a cancelled task would be cancelled at this wait
                if isinstance(waiting, asyncio.Future):
                    waiting.cancel()
                waiting = coro.throw(asyncio.CancelledError())
        except StopIteration:
            return
        except (asyncio.CancelledError, ConnectionResetError):
            self._lane_stopped = True  # the writer is closed (_lane_call)
            return
        self._lane_task = self.loop.create_task(self._continue(coro, waiting))

    async def _continue(self, coro: Coroutine[Any, Any, None], waiting: Any) -> None:
        try:
            await _resume(coro, waiting)
        except ConnectionResetError:
            self._lane_stopped = True
        except asyncio.CancelledError:
            self._lane_stopped = True  # as aiosmtpd's task: over
            raise
        finally:
            self._lane_task = None
        if not self._lane_stopped:
            self._lane_run()

    async def _lane_call(self, method: Callable[[Any], Awaitable[None]], arg: Any) -> None:
        """One command as aiosmtpd's loop runs it, with its answers to errors."""
        assert self.session is not None
        try:
            await method(arg)
        except (asyncio.CancelledError, ConnectionResetError):
            mail_log.info("%r Connection lost during _handle_client()", self.session.peer)
            self._writer.close()
            raise
        except Exception as error:
            status = None
            try:
                status = await self.handle_exception(error)
            except Exception as inner_error:
                try:
                    mail_log.exception("%r Exception in handle_exception()", self.session.peer)
                    status = f"500 Error: ({inner_error.__class__.__name__}) {inner_error}"
                except Exception:
                    status = "500 Error: Cannot describe error"
            finally:
                if isinstance(error, TLSSetupException):
                    self.transport.close()  # type: ignore[union-attr]
                    self.connection_lost(error)
                else:
                    await self.push(status)  # type: ignore[arg-type]

    async def _lane_start_data(self, arg: str | None) -> None:
        collector = await self._data_begin(arg)
        if collector is not None:
            self._lane_data = DataEnd(collector)

    # ------------------------------------------------------------- replies

    _corked: list[bytes] | None = None
    """While set, replies are collected here instead of written (see :meth:`smtp_EHLO`)."""

    reworded: ClassVar[Mapping[str, str]] = {}
    """aiosmtpd's fixed replies said otherwise (the proxy's: with an enhanced status code)."""

    async def push(self, status: str | bytes) -> None:
        """aiosmtpd's ``push`` (same encoding, same bytes, but for :attr:`reworded`) without
        its debug line, which ``mail.log`` at WARNING never shows; collected instead while
        ``_corked``."""
        if self._skip_greeting:  # aiosmtpd's loop taking over (:meth:`_hand_over`)
            self._skip_greeting = False
            return
        if isinstance(status, str):
            status = self.reworded.get(status, status)
            status = status.encode("utf-8" if self.enable_SMTPUTF8 else "ascii")
        if self._corked is not None:
            self._corked.append(status)
            return
        writer = self._writer
        writer.write(status + b"\r\n")
        # drain() returns at once unless one of these holds (a coroutine per reply spared)
        if (
            self._paused  # type: ignore[attr-defined]
            or self._connection_lost  # type: ignore[attr-defined]
            or writer.transport.is_closing()
            or self._reader.exception() is not None
        ):
            await writer.drain()

    @syntax("EHLO hostname")
    async def smtp_EHLO(self, hostname: str) -> None:
        """aiosmtpd writes each line of the EHLO reply with a system call of its own (six
        for smtplib or PHPMailer); the same bytes go out in one write here."""
        self._corked = []
        try:
            await super().smtp_EHLO(hostname)
        finally:
            lines, self._corked = self._corked, None
        if lines:
            await self.push(b"\r\n".join(lines))

    # ------------------------------------------------------------- DATA

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        """aiosmtpd's ``smtp_DATA`` with the message read in blocks (:mod:`.dataread`):
        the same checks, replies and content, without a loop round per line."""
        collector = await self._data_begin(arg)
        if collector is None:
            return
        try:
            await read_message(self._reader, collector)
        except asyncio.CancelledError:
            self._writer.close()
            raise
        await self._data_end(collector)

    async def _data_begin(self, arg: str | None) -> Collector | None:
        """DATA up to the ``354``: a collector for the message, or None if refused."""
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return None
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return None
        if arg:
            await self.push("501 Syntax: DATA")
            return None
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        limit: int = self._reader._limit  # type: ignore[attr-defined]
        return Collector(self.data_size_limit, self.line_length_limit, limit)

    async def _data_end(self, collector: Collector) -> None:
        """DATA after its end mark: the refusal aiosmtpd would give, or the handler's reply."""
        assert self.envelope is not None
        if collector.state != NOMINAL:
            too_long = collector.state == TOO_LONG
            await self.push("500 Line too long (see RFC5321 4.5.3.1.6)" if too_long
                            else "552 Error: Too much mail data")  # fmt: skip
            self._set_post_data_state()
            return
        content = collector.content()
        self.envelope.content = self.envelope.original_content = content
        if self._decode_data:  # never for the proxy (it relays bytes); kept as aiosmtpd has it
            try:
                self.envelope.content = content.decode(*self._text_codec())
            except UnicodeDecodeError:
                await self.push("500 Error: strict ASCII mode")
                return
        try:
            status = await self._call_handler_hook("DATA")
        finally:  # answered or failed (451), the transaction is over (RFC 5321 4.1.1.4)
            self._set_post_data_state()
        await self.push("250 OK" if status is MISSING else status)

    def _text_codec(self) -> tuple[str, str]:
        return ("utf-8", "surrogateescape") if self.enable_SMTPUTF8 else ("ascii", "strict")
