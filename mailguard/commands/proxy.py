"""``mailguard proxy``: the pre-send gateway, with the settings every command uses.

The decision settings and ``[proxy]`` come from the shared loader
(:mod:`mailguard.commands.settings`); command-line options go on top of ``[proxy]`` and are
validated by the same code, so ``--relay-security tls`` and ``relay_security = "tls"`` fail
the same way. ``--hash-password`` makes a users-file line without starting anything.
"""

from __future__ import annotations

import getpass
import logging
import sys
from collections.abc import Mapping
from dataclasses import asdict

from mailguard.commands import CommandError
from mailguard.commands.common import echo
from mailguard.commands.settings import ConfigSource
from mailguard.proxy import settings as proxy_settings
from mailguard.proxy.settings import parse_hostport

LOG_FORMAT = "%(asctime)s mailguard-proxy[%(process)d] %(levelname)s %(message)s"


def run_proxy(
    source: ConfigSource | None = None,
    overrides: Mapping[str, object] | None = None,
    *,
    log_level: str = "info",
) -> int:
    """Serve until SIGTERM/SIGINT; ``overrides`` are ``[proxy]`` keys from the command line."""
    from mailguard.milter import logline
    from mailguard.proxy.server import ProxyServer, run, run_workers

    level = getattr(logging, log_level.upper(), None)
    if not isinstance(level, int):
        raise CommandError(f"unknown log level {log_level!r}")
    logline.configure(level, fmt=LOG_FORMAT)  # buffered, caller-free: one line per message
    settings = (source or ConfigSource()).load((source or ConfigSource()).locate())
    table = {**asdict(settings.proxy), **{k: v for k, v in (overrides or {}).items() if v}}
    proxy = proxy_settings.from_mapping(table, "command line")
    if proxy.workers > 1:
        if parse_hostport(proxy.listen, "--listen")[1] == 0:
            raise CommandError("proxy: --workers needs a fixed --listen port, not 0")
        # Fails here, once, if the settings cannot run; its journal is closed before the fork.
        ProxyServer(settings.config, proxy).journal.close()
        return run_workers(
            lambda: ProxyServer(settings.config, proxy, services=settings.services()),
            proxy.workers,
        )
    server = ProxyServer(settings.config, proxy, services=settings.services())
    try:
        run(server)
    except OSError as exc:
        raise CommandError(f"proxy: {exc.strerror or exc}") from None
    return 0


def hash_password_line(user: str) -> int:
    """Print ``user:scrypt$...`` for the users file; the password is read, never an option."""
    from mailguard.proxy.auth import hash_password

    if not user or ":" in user:
        raise CommandError("--hash-password: give a user name without ':'")
    if sys.stdin.isatty():
        password = getpass.getpass(f"password for {user}: ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise CommandError("--hash-password: empty password")
    echo(f"{user}:{hash_password(password)}")
    return 0
