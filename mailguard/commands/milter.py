"""``mailguard milter``: serve the milter protocol with the settings the other commands use.

The settings come from the shared loader (:mod:`mailguard.commands.settings`); SIGHUP
reads the same file again through it, so a reload validates exactly what a start does.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace

from mailguard.commands import CommandError
from mailguard.commands.settings import ConfigSource
from mailguard.config import Config
from mailguard.milter.logline import LOG_FORMAT as LOG_FORMAT  # re-exported
from mailguard.milter.settings import MilterSettings
from mailguard.services import Services


def run_milter(
    listen: str,
    source: ConfigSource | None = None,
    *,
    socket_mode: str = "660",
    socket_group: str | None = None,
    log_level: str = "info",
) -> int:
    """Listen on ``listen`` (``unix:/path`` or ``inet:HOST:PORT``) until SIGTERM/SIGINT."""
    from mailguard.milter import logline
    from mailguard.milter.server import ListenSpec, MilterServer
    from mailguard.milter.serving import run

    try:
        spec = ListenSpec.parse(listen)
        perms = int(socket_mode, 8)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    level = getattr(logging, log_level.upper(), None)
    if not isinstance(level, int):
        raise CommandError(f"unknown log level {log_level!r}")
    source = source or ConfigSource()
    load = source.loader()

    def reload() -> tuple[Config, MilterSettings, Services]:
        settings = load()  # approval keys are read again: a reload rotates them
        return (
            settings.config,
            settings.milter,
            replace(server.services, approval=settings.approval_keys),
        )

    settings = load()
    # Buffered, caller-free logging for the per-message line (mailguard.milter.logline).
    logline.configure(level, flush_each=settings.milter.log_flush)
    server = MilterServer(
        settings.config, spec, settings=settings.milter, socket_mode=perms,
        socket_group=socket_group, reload=reload, services=settings.services(),
    )  # fmt: skip
    try:
        run(server)
    except (OSError, ValueError, KeyError) as exc:
        raise CommandError(f"cannot serve {listen}: {exc}") from None
    if server.workers.given_up:
        # Python joins the pool's threads at exit, and these return when a custom check
        # stuck in one call does, if ever: the stop (a restart) would wait that long.
        log = logging.getLogger("mailguard.milter")
        log.warning("not waiting for %d decision(s) given up at their deadline",
                    len(server.workers.given_up))  # fmt: skip
        logline.flush()
        os._exit(0)
    return 0
