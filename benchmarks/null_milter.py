"""A milter that reads everything mailguard reads and decides nothing: the benchmark's floor.

Why this exists: ``bench_milter.py`` asks that Postfix with mailguard keeps >= 88 % of the
clean-mail throughput it has without a milter. Part of what a milter costs is not the
milter's own work but Postfix's: opening a connection to it per SMTP session, sending every
header, the body and the macros, and waiting for each reply. This program makes Postfix do
exactly that work, because it negotiates what ``mailguard milter --no-config`` negotiates
(a :class:`~mailguard.milter.server.MilterServer` works out the settings it runs with,
which its engine's rules adjust, and its :class:`~mailguard.milter.session.Session`
agrees the options, so the same frames flow and the same replies are waited for), then
answers ``continue`` wherever a reply is
due and ``accept`` at the end of the message, without parsing a byte of it.

The ratio measured with it is therefore the best any milter reading the same frames could
reach on the machine, whatever its language: the rest of mailguard's gap to it is
mailguard's own cost.

    python benchmarks/null_milter.py unix:/path/to/socket     # until SIGTERM/SIGINT
    python benchmarks/null_milter.py inet:127.0.0.1:0
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path

import _harness as h  # noqa: F401  (puts the repository on sys.path)

from mailguard.commands.settings import ConfigSource
from mailguard.milter import protocol as p
from mailguard.milter.listen import ListenSpec
from mailguard.milter.server import MilterServer
from mailguard.milter.session import Session
from mailguard.milter.settings import MilterSettings

_NO_REPLY = frozenset((p.ABORT, p.MACRO, p.QUIT, p.QUIT_NC))
_CONTINUE = p.SIMPLE[p.CONTINUE]
_ACCEPT = p.SIMPLE[p.ACCEPT]


def mailguards_terms() -> tuple[MilterSettings, bool]:
    """The settings ``mailguard milter --no-config`` runs with and whether it keeps bodies:
    worked out by the milter server itself, as its engine's rules adjust them."""
    source = ConfigSource(no_config=True).loader()()
    server = MilterServer(
        source.config, ListenSpec.parse("unix:/nonexistent/milter.sock"), settings=source.milter
    )
    server.pool.shutdown(wait=False)
    return server.settings, server.keep_body


class NullMilter(asyncio.Protocol):
    """One MTA connection: replies where the negotiated protocol wants one, reads nothing."""

    def __init__(self, settings: MilterSettings, keep_body: bool) -> None:
        self.settings, self.keep_body = settings, keep_body
        self.decoder = p.FrameDecoder()
        self.silent: frozenset[bytes] = frozenset()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        out: list[bytes] = []
        for command, payload in self.decoder.feed(data):
            if command == p.OPTNEG:
                # mailguard's own negotiation: the same frames follow.
                session = Session(self.settings, self.keep_body)
                out.append(session.handle(command, payload).replies[0])
                caps = session.caps
                self.silent = frozenset(c for c in p.NO_REPLY_FLAG if not caps.replies_to(c))
            elif command == p.BODYEOB:
                out.append(_ACCEPT)
            elif command == p.QUIT:
                self.transport.close()
                break
            elif command not in _NO_REPLY and command not in self.silent:
                out.append(_CONTINUE)
        if out:
            self.transport.write(b"".join(out))


async def serve(listen: str) -> None:
    """``unix:PATH`` or ``inet:HOST:PORT`` (port 0: the kernel picks; the log line says)."""
    loop = asyncio.get_running_loop()
    terms = mailguards_terms()

    def protocol() -> NullMilter:
        return NullMilter(*terms)

    path: Path | None = None
    if listen.startswith("unix:"):
        path = Path(listen[len("unix:") :])
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        server = await loop.create_unix_server(protocol, str(path), backlog=256)
        path.chmod(0o666)
    else:
        host, _, port = listen[len("inet:") :].rpartition(":")
        server = await loop.create_server(
            protocol, host, int(port), backlog=256, reuse_address=True
        )
        bound = server.sockets[0].getsockname()
        print(f"listening on inet:{bound[0]}:{bound[1]}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()
    if path is not None:
        with contextlib.suppress(OSError):
            path.unlink()


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].startswith(("unix:", "inet:")):
        print("usage: null_milter.py unix:/path/to/socket | inet:host:port", file=sys.stderr)
        return 2
    factory = None
    with contextlib.suppress(ImportError):  # the event loop mailguard's milter runs on
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(serve(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
