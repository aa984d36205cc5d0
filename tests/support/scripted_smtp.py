"""An upstream that answers each command from a script: the proxy's failure paths on cue.

Why not aiosmtpd (support/smtp_upstream.py) or Postfix: neither can be told "greet with
554", "answer DATA with 250", "close the connection half-way through the message" or "never
answer the end of data" for one connection and behave on the next. This is a real SMTP
server on a real loopback socket, a thread per connection, that reads lines and answers
from a table; it records every line it read and every message it accepted.

A script maps a key to a reply (one or more lines, ``\\r\\n`` between them) or to
:data:`STALL` (read on, never answer) or :data:`DROP` (close the socket at once). Keys:
``greeting``, the command verbs (``EHLO``, ``MAIL``, ``RCPT``, ``DATA``, ``RSET`` ...),
``RCPT <address>`` for one recipient, ``in-data`` (what to do at the first line of the
message: only :data:`DROP` or :data:`STALL` mean anything), ``.`` (the end of data) and
``*`` (any line not in the script: after ``STARTTLS``, the client's TLS handshake).
``scripts`` gives the script of the n-th connection (0-based); later ones use the last. As
a real server, it answers a MAIL inside an open transaction (no RSET since), and a RCPT
outside one (a refused MAIL), with ``503``.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field
from types import TracebackType

Script = dict[str, str | tuple[str, ...]]
"""A key's reply, or a tuple of them for its successive uses (the last one repeating)."""
STALL = "<stall>"
DROP = "<drop>"
DEFAULTS = {
    "greeting": "220 scripted ESMTP",
    "EHLO": "250-scripted\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 100000000",
    "HELO": "250 scripted",
    "MAIL": "250 2.1.0 Ok",
    "RCPT": "250 2.1.5 Ok",
    "DATA": "354 End data with <CR><LF>.<CR><LF>",
    ".": "250 2.0.0 Ok: queued",
    "RSET": "250 2.0.0 Ok",
    "NOOP": "250 2.0.0 Ok",
    "QUIT": "221 2.0.0 Bye",
}


@dataclass
class Accepted:
    mail_from: bytes
    rcpt_tos: list[bytes]
    data: bytes


@dataclass
class _Transaction:
    mail_from: bytes = b""
    rcpt_tos: list[bytes] = field(default_factory=list)
    data: list[bytes] = field(default_factory=list)


class ScriptedUpstream:
    """``with ScriptedUpstream({"MAIL": "451 4.3.0 busy"}) as up:`` then relay to ``up.port``."""

    def __init__(self, *scripts: Script) -> None:
        self.scripts = scripts or ({},)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.server.getsockname()[1]
        self.lines: list[list[bytes]] = []
        """Every line each connection sent, by connection."""
        self.accepted: list[Accepted] = []
        self.closed = 0
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def __enter__(self) -> ScriptedUpstream:
        threading.Thread(target=self._serve, daemon=True, name="scripted-smtp").start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        self.server.close()
        with self._lock:
            for conn in self._conns:
                conn.close()

    @property
    def connections(self) -> int:
        return len(self.lines)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with self._lock:
                number = len(self.lines)
                self.lines.append([])
                self._conns.append(conn)
            script: Script = {**DEFAULTS, **self.scripts[min(number, len(self.scripts) - 1)]}
            threading.Thread(
                target=self._session, args=(conn, script, self.lines[number]), daemon=True
            ).start()

    def _session(self, conn: socket.socket, script: Script, seen: list[bytes]) -> None:
        try:
            self._converse(conn, script, seen)
        except OSError:
            pass
        finally:
            with self._lock:
                self.closed += 1
            conn.close()

    def _converse(self, conn: socket.socket, script: Script, seen: list[bytes]) -> None:
        stalled = False
        asked: dict[str, int] = {}

        def reply_to(key: str) -> str:
            """The reply ``key`` gets now (the next of a tuple of them, the last repeating)."""
            found = script.get(key, script.get("*", "502 5.5.2 Error: command not recognized"))
            if isinstance(found, tuple):
                asked[key] = n = asked.get(key, 0) + 1
                return found[min(n, len(found)) - 1]
            return found

        def answer(reply: str) -> bool:
            """False: the connection is to end."""
            if stalled:
                return True
            if reply == DROP:
                return False
            if reply != STALL:
                conn.sendall(reply.encode() + b"\r\n")
            return True

        file = conn.makefile("rb")
        if not answer(reply_to("greeting")):
            return
        txn: _Transaction | None = None
        in_data = False
        while line := file.readline():
            seen.append(line)
            if in_data and txn is not None:
                if line == b".\r\n":
                    in_data, reply = False, reply_to(".")
                    if reply.startswith("2"):
                        with self._lock:
                            self.accepted.append(
                                Accepted(txn.mail_from, txn.rcpt_tos, b"".join(txn.data))
                            )
                    txn = None
                    if not answer(reply):
                        return
                elif not txn.data and script.get("in-data") in (DROP, STALL):
                    if script["in-data"] == DROP:
                        return
                    in_data, stalled = False, True  # read on, answer nothing
                else:
                    txn.data.append(line[1:] if line.startswith(b".") else line)
                continue
            verb, _, arg = line.rstrip(b"\r\n").partition(b" ")
            key = verb.decode("ascii", "replace").upper()
            address = arg.partition(b":")[2].strip().strip(b"<>")
            if key == "RCPT" and f"RCPT {address.decode(errors='replace')}" in script:
                key = f"RCPT {address.decode(errors='replace')}"
            reply = reply_to(key)
            if key == "MAIL" and txn is not None:  # a transaction is open: RSET first
                reply = "503 5.5.1 Error: nested MAIL command"
            elif key.startswith("RCPT") and txn is None:  # as behind a refused MAIL
                reply = "503 5.5.1 Error: need MAIL command"
            elif key == "MAIL" and reply.startswith("2"):
                txn = _Transaction(mail_from=address)
            elif key.startswith("RCPT") and reply.startswith("2") and txn is not None:
                txn.rcpt_tos.append(address)
            elif key == "DATA" and reply.startswith("354"):
                in_data = True
            elif key == "RSET":
                txn = None
            if not answer(reply) or key == "QUIT":
                return
