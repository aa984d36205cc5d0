"""An in-memory stand-in for the asyncio transport of a milter connection.

Shared by the in-process milter benchmark (benchmarks/bench_milter_inproc.py) and the
tests that replay MTA reads through MilterConnection without sockets.
"""

from __future__ import annotations


class MemoryTransport:
    """What the connection writes, kept; enough of ``asyncio.Transport`` for the milter."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass
