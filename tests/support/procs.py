"""Process and port helpers shared by the private-server harnesses (Postfix, Dovecot).

Both start real daemons from Debian's packages in the background and must know, without
guessing, when a port is up and when every process they started has gone.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def free_ports(count: int = 1) -> list[int]:
    """Distinct loopback TCP ports that were free a moment ago (all bound at once, so distinct).

    Also handy in tests for a port where nothing listens (a dead relay or milter).
    """
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.01) -> bool:
    """Poll ``predicate`` until true or ``timeout`` seconds passed; True if it came true."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, pgrp) of a process, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = raw.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1]), int(fields[2])


def alive(pid: int) -> bool:
    """Running and not a zombie (this container's init reaps orphans only now and then)."""
    stat = proc_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def processes(*, ppid: int | None = None, pgrp: int | None = None) -> set[int]:
    """Live processes with the given parent and/or process group."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = proc_stat(int(entry.name))
        if stat is None or stat[0] in ("Z", "X"):
            continue
        if (ppid is None or stat[1] == ppid) and (pgrp is None or stat[2] == pgrp):
            found.add(int(entry.name))
    return found
