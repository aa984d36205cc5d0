"""Services a check may need (``needs`` in a rule file), injected into the engine.

A DNS resolver or a recipient-history store holds network or disk state; kept in a module
global, it would be shared by every engine, every test and every forked worker. So the
caller builds them and hands them to :class:`~mailguard.engine.Engine`; a check reaches
them through its context (``ctx.services``). A rule whose service was not given does not
run, and the report lists it under ``skipped`` with the reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Services:
    dns: Any | None = None
    """The DNS resolver (:class:`mailguard.resolver.DnsService`), when lookups are on."""
    history: Any | None = None
    """The store of past recipients (``mailguard.history.service.HistoryService``), when
    one is named."""
    approval: Any | None = None
    """The approval keys (a :class:`mailguard.approval_keys.Keyring`); none: no approval
    verifies, and one a message carries is reported as signed with an unknown key."""
    clock: Callable[[], float] | None = time.time
    """Wall-clock seconds; tests pass a fixed one."""

    def missing(self, names: tuple[str, ...]) -> list[str]:
        """Which of ``names`` were not given."""
        return [name for name in names if getattr(self, name) is None]
