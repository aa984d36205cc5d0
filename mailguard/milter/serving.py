"""Running a server until the service manager stops it: SIGTERM or SIGINT set an event the
server drains on (in-flight decisions finish, no message is cut off). Shared by the milter
and the pre-send proxy, which stop the same way."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger("mailguard.milter")


class Servable(Protocol):
    async def serve(self, stop: asyncio.Event) -> None: ...


async def serve_until_signalled(server: Servable) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    await server.serve(stop)


def run(server: Servable) -> None:
    """Serve until SIGTERM or SIGINT, on uvloop when it is installed."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:
        log.info("uvloop is not installed; using asyncio's own event loop")
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(serve_until_signalled(server))
