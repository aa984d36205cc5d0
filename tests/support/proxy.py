"""Run ``mailguard proxy`` in a thread of the test process, on a free loopback port.

In-process rather than a subprocess so a test can swap settings per test in milliseconds
and read the proxy's log lines from a handler; the SMTP traffic is still real sockets, and
one test runs the real ``mailguard proxy`` command (tests/test_proxy_cli.py).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import replace
from pathlib import Path
from types import TracebackType

from mailguard.config import Config
from mailguard.proxy.server import ProxyServer
from mailguard.proxy.settings import ProxySettings
from mailguard.services import Services


class LogLines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


class RunningProxy:
    """``with RunningProxy(settings) as proxy:`` then SMTP to ``proxy.port``."""

    def __init__(
        self, settings: ProxySettings, config: Config | None = None, *, journal: Path,
        services: Services | None = None,
    ) -> None:  # fmt: skip
        self.settings = replace(settings, listen="127.0.0.1:0", journal=str(journal))
        self.config = config or Config()
        self.services = services
        self.server: ProxyServer | None = None
        self.log = LogLines()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.port

    def messages(self) -> list[str]:
        return [line for line in self.log.lines if line.startswith("message ")]

    def __enter__(self) -> RunningProxy:
        self.server = ProxyServer(self.config, self.settings, services=self.services)
        logging.getLogger("mailguard.proxy").addHandler(self.log)
        logging.getLogger("mailguard.proxy").setLevel(logging.DEBUG)
        self._thread = threading.Thread(target=self._run, name="test-proxy", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        return self

    def _run(self) -> None:
        async def main() -> None:
            assert self.server is not None
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            try:
                await self.server.start()
            except BaseException as exc:
                self._error = exc
                self._ready.set()
                return
            self._ready.set()
            try:
                await self._stop.wait()
            finally:
                await self.server.close()

        asyncio.run(main())  # the loop the real command runs on (see proxy/server.run)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)
        logging.getLogger("mailguard.proxy").removeHandler(self.log)
