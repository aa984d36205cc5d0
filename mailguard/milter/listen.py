"""Where the milter listens and how many connections fit: the socket side of the daemon.

Kept out of :mod:`mailguard.milter.server` (which serves the protocol on these sockets) and
re-exported there, so ``mailguard.milter.server.ListenSpec`` keeps working.
"""

from __future__ import annotations

import resource
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

FD_RESERVE = 64
"""File descriptors kept free beyond one per connection: listener, event loop, logs."""


@dataclass(frozen=True, slots=True)
class ListenSpec:
    """Where to listen, in Postfix (``inet:host:port``, ``unix:/path``) or Sendmail
    (``inet:port@host``, ``local:/path``) notation."""

    family: str  # "inet" | "unix"
    host: str = ""
    port: int = 0
    path: str = ""

    @classmethod
    def parse(cls, spec: str) -> ListenSpec:
        kind, sep, rest = spec.partition(":")
        if not sep or not rest:
            raise ValueError(f"listen spec {spec!r}: expected inet:HOST:PORT or unix:PATH")
        kind = kind.lower()
        if kind in ("unix", "local"):
            return cls("unix", path=rest)
        if kind not in ("inet", "inet6"):
            raise ValueError(f"listen spec {spec!r}: unknown kind {kind!r} (inet or unix)")
        if "@" in rest:  # Sendmail: inet:port@host
            port_text, _, host = rest.partition("@")
        else:
            host, _, port_text = rest.rpartition(":")
        host = host.strip("[]") or ("::" if kind == "inet6" else "127.0.0.1")
        try:
            port = int(port_text)
        except ValueError:
            raise ValueError(f"listen spec {spec!r}: {port_text!r} is not a port") from None
        if not 0 <= port <= 65535:
            raise ValueError(f"listen spec {spec!r}: port out of range")
        return cls("inet", host=host, port=port)

    def __str__(self) -> str:
        return f"unix:{self.path}" if self.family == "unix" else f"inet:{self.host}:{self.port}"


def fd_budget(wanted: int) -> int:
    """How many connections fit in the open-file limit, raising its soft value if need be.

    Without this, connections past ``ulimit -n`` (1,024 by default) make every ``accept`` fail
    and all mail tempfail with nothing in our log. The soft limit is raised as far as the
    hard one allows (systemd: ``LimitNOFILE``); what still does not fit lowers the cap.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = wanted + FD_RESERVE
    infinite = resource.RLIM_INFINITY
    if soft != infinite and soft < need:
        target = need if hard == infinite else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass  # not allowed here: the cap below keeps us within what we have
    if soft == infinite:
        return wanted
    return max(1, min(wanted, soft - FD_RESERVE))


def remove_stale_socket(path: Path) -> None:
    """Remove a socket file left by a crash, but never one a live milter is serving."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ValueError(f"{path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink()
    else:
        raise ValueError(f"{path}: another milter is already listening there")
    finally:
        probe.close()
