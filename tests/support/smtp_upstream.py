"""A second upstream for the proxy tests: an aiosmtpd server with TLS, AUTH and faults.

Why not a second Postfix with SASL: Postfix's SASL needs Dovecot's or Cyrus' auth daemon
set up beside it, and, more to the point, the tests need an upstream that misbehaves on
cue (refuse these recipients, drop the connection after the 10th message) and that says
exactly what it saw (TLS or not, who logged in, how many connections). This server is
real SMTP over real TLS sockets with its own test CA, made with the ``openssl`` CLI (the
package the IMAP tests already install); the happy path to a real MTA is covered by the
Postfix harness.
"""

from __future__ import annotations

import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from tests.support.packages import ensure_packages
from tests.support.procs import free_ports


def make_test_ca(directory: Path) -> dict[str, Path]:
    """A CA and a certificate for localhost/127.0.0.1 signed by it (EC keys: fast)."""
    ensure_packages("openssl")
    directory.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"]
    steps = [
        ["-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=mailguard proxy test CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ["-keyout", "server.key", "-out", "server.pem", "-subj", "/CN=localhost",
         "-CA", "ca.pem", "-CAkey", "ca.key",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-addext", "basicConstraints=critical,CA:FALSE",
         "-addext", "extendedKeyUsage=serverAuth"],
    ]  # fmt: skip
    for step in steps:
        result = subprocess.run(
            ["openssl", "req", "-x509", *ec, *step], cwd=directory, capture_output=True,
            text=True, check=False, timeout=30,
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"openssl failed: {result.stderr[-2000:]}")
    return {"ca": directory / "ca.pem", "cert": directory / "server.pem",
            "key": directory / "server.key"}  # fmt: skip


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    tls: bool
    login: bytes | None


@dataclass
class Faults:
    refuse: dict[str, str] = field(default_factory=dict)
    """Recipient -> the reply to RCPT (e.g. ``450 4.2.0 try later``)."""
    drop_after: int | None = None
    """Abort the connection at the next MAIL once this many messages were accepted (once)."""


class UpstreamHandler:
    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self.received: list[Received] = []
        self.peers: set[object] = set()
        self.lock = threading.Lock()

    async def handle_EHLO(self, server: SMTP, session: Any, envelope: Any, hostname: str,
                          responses: list[str]) -> list[str]:  # fmt: skip
        session.host_name = hostname
        return responses

    async def handle_MAIL(self, server: SMTP, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:  # fmt: skip
        drop = self.faults.drop_after
        if drop is not None and len(self.received) >= drop:
            self.faults.drop_after = None
            assert server.transport is not None
            server.transport.abort()
            return "421 4.3.2 gone"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(self, server: SMTP, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:  # fmt: skip
        refusal = self.faults.refuse.get(address)
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        login = session.auth_data.login if isinstance(session.auth_data, LoginPassword) else None
        with self.lock:
            self.received.append(
                Received(envelope.mail_from, list(envelope.rcpt_tos),
                         bytes(envelope.original_content),
                         server.transport.get_extra_info("ssl_object") is not None, login)
            )  # fmt: skip
        return "250 2.0.0 Ok: queued"


class CountingSMTP(SMTP):
    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        handler = self.event_handler
        if isinstance(handler, UpstreamHandler):
            # A set: STARTTLS calls connection_made again for the same connection.
            handler.peers.add(transport.get_extra_info("peername"))


class _Controller(Controller):
    def factory(self) -> SMTP:
        return CountingSMTP(self.handler, **self.SMTP_kwargs)


class UpstreamServer:
    """``with UpstreamServer(tls_dir, mode="starttls", user=..., password=...) as up:``.

    ``mode``: ``starttls`` (STARTTLS required before anything else), ``tls`` (implicit TLS)
    or ``none``. With ``user`` set, AUTH is required.
    """

    def __init__(
        self, tls: dict[str, Path], *, mode: str = "starttls", user: str | None = None,
        password: str | None = None, faults: Faults | None = None, smtputf8: bool = True,
    ) -> None:  # fmt: skip
        import ssl

        self.handler = UpstreamHandler(faults or Faults())
        self.port = free_ports(1)[0]
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(tls["cert"], tls["key"])
        kwargs: dict[str, Any] = {"hostname": "127.0.0.1", "port": self.port}
        smtp: dict[str, Any] = {"enable_SMTPUTF8": smtputf8, "ident": "test upstream"}
        if mode == "starttls":
            smtp.update(tls_context=context, require_starttls=True)
        elif mode == "tls":
            kwargs["ssl_context"] = context
        if user:
            expected = LoginPassword(user.encode(), (password or "").encode())

            def authenticator(server: SMTP, session: Any, envelope: Any, mechanism: str,
                              data: Any) -> AuthResult:  # fmt: skip
                # handled=False: aiosmtpd then answers a failure with 535 (True: nothing)
                return AuthResult(success=data == expected, handled=False, auth_data=data)

            smtp.update(auth_required=True, authenticator=authenticator,
                        auth_require_tls=mode != "none")  # fmt: skip
        self.controller = _Controller(self.handler, **kwargs, **smtp)

    @property
    def received(self) -> list[Received]:
        return self.handler.received

    def __enter__(self) -> UpstreamServer:
        self.controller.start()
        self.handler.peers.clear()  # the controller's own readiness probe
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        self.controller.stop()
