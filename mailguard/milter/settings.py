"""Milter settings: the ``[milter]`` table of ``mailguard.toml``, owned and validated here.

Kept apart from :class:`mailguard.config.Config` because none of this changes *what* a
message is judged to be, only what the mail server does about it: the config file layer
(:mod:`mailguard.configfile`) hands this module its section, and the decision config never
sees it. Strict like the rest of the configuration: a misspelt ``on_block`` must stop the
milter from starting, not turn a gate into a no-op.
"""

from __future__ import annotations

import ipaddress
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from mailguard import configfile
from mailguard.configfile import ConfigFile
from mailguard.errors import ConfigError
from mailguard.remedy import REWRITE_TO

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Loopback and private ranges: the clients that submit mail *out* of an organisation.
DEFAULT_NETWORKS = (
    "127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
    "100.64.0.0/10", "fc00::/7", "fe80::/10",
)  # fmt: skip

MODES = ("enforce", "monitor")
BLOCK_ACTIONS = ("reject", "quarantine", "tempfail", "accept", "rewrite")
FALLBACK_ACTIONS = ("reject", "quarantine", "tempfail", "accept")
ERROR_ACTIONS = ("tempfail", "accept")
HEADER_POLICIES = ("never", "warn", "always")
SCOPES = ("outgoing", "all")


@dataclass(frozen=True, slots=True)
class MilterSettings:
    mode: str = "enforce"
    """``enforce`` acts on verdicts; ``monitor`` only adds headers and logs what it would do."""
    on_block: str = "reject"
    """What a ``block`` verdict does: reject (550 5.7.1), quarantine (hold queue), tempfail,
    or rewrite (move the visible recipients to Bcc by header edits, see ``rewrite_*``)."""
    on_warn: str = "accept"
    """What a ``warn`` verdict does; ``accept`` adds the X-Mailguard headers."""
    on_error: str = "tempfail"
    """Unreadable message, internal error or time budget exceeded: tempfail (4xx) or accept."""
    rewrite_to: str = "undisclosed"
    """``rewrite``: the new To is ``undisclosed-recipients:;`` or (``sender``) the From address."""
    rewrite_fallback: str = "reject"
    """``rewrite`` when header edits cannot cure the message (a finding without a header
    remedy, or the rewritten message would still be at the action's level)."""
    add_headers: str = "warn"
    """Add X-Mailguard-Verdict/-Score to accepted mail: never, for warn and worse, always."""
    scope: str = "outgoing"
    """``outgoing``: only mail from the networks, daemons or authenticated users below."""
    outgoing_networks: tuple[IPNetwork, ...] = field(
        default_factory=lambda: tuple(ipaddress.ip_network(n) for n in DEFAULT_NETWORKS)
    )
    outgoing_daemons: tuple[str, ...] = ("ORIGINATING",)
    """Postfix ``{daemon_name}`` values that mark a submission service."""
    authenticated: bool = True
    """SMTP-authenticated clients (``{auth_authen}`` set) are outgoing."""
    decision_timeout: float = 20.0
    """Seconds a decision may take before ``on_error`` applies."""
    progress_interval: float = 5.0
    """While deciding, tell the MTA we are alive this often (resets its timeouts)."""
    max_body_bytes: int = 1024 * 1024
    """Body bytes kept per message; the rest streams past (rules read only the first text)."""
    inline_header_bytes: int = 64 * 1024
    """Messages whose header block is at most this big (about 2,000 addresses, a few ms at
    worst) are decided at once on the event loop, which is cheaper than a hand-off to a
    worker thread. Bigger ones go to a worker, under ``decision_timeout`` with progress
    frames. 0 sends every message to a worker."""
    inline_time_limit: float = 0.05
    """Seconds an inline decision may hold the event loop (which every other connection is
    waiting on). Past it the decision stops and starts again on a worker, still within
    ``decision_timeout``. 0 sends every message to a worker."""
    max_header_bytes: int = 4 * 1024 * 1024
    """Header bytes kept per message (each field also counts :data:`FIELD_COST` bytes of
    bookkeeping, so a flood of tiny fields is bounded too). Past it no more fields are kept
    and the message is decided on what was kept, with a limits finding: refused as usual
    if that already blocks, otherwise ``on_error``, since the unread part may hold
    recipients."""
    idle_timeout: float = 3600.0
    """Close a connection on which the MTA has sent nothing for this long. Postfix sends a
    message's content only once DATA is complete, so a big message on a slow link leaves
    its connection quiet for minutes: keep this well above such transfers."""
    max_connections: int = 500
    """Connections served at once. One more is closed at once with a log line, and the MTA
    applies its ``milter_default_action`` to that session. Postfix holds one per smtpd
    and cleanup process (``default_process_limit``, 100 per service)."""
    log_addresses: bool = False
    """Put the envelope sender in the decision log line. Off: logs carry counts only."""
    decide_at_headers: bool = True
    """Answer at end-of-headers when the header block settles a message (a single text part
    whose body no rule could make count, or a refusal): the MTA then sends no body. Off:
    every message in scope is read whole and decided at its end, which is also what happens
    while a rule reads every body (the attachment rules: :func:`mailguard.milter.early.
    header_decisions`)."""
    log_flush: bool = False
    """Write each decision line out at once. Off: buffered, out within about a second
    (warnings and errors at once), which saves a system call per message."""

    def is_outgoing_network(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.strip("[]").removeprefix("IPv6:"))
        except ValueError:
            return False
        return any(ip in net for net in self.outgoing_networks)


def off_the_loop(settings: MilterSettings, foreign: Sequence[str]) -> MilterSettings:
    """``settings`` with every decision on a worker thread when ``foreign`` rules (checks
    from ``rule_paths``) run: a deadline stops a decision only at a checkpoint, and a custom
    check owes us none, so one slow call would hold the event loop, and with it every
    connection, for as long as it takes. On a worker, ``decision_timeout`` holds whatever
    the call does. Said in the log, since it overrides ``inline_time_limit``."""
    if not foreign or not settings.inline_time_limit:
        return settings
    logging.getLogger("mailguard.milter").info(
        "rules %s run code from rule_paths, which a deadline cannot stop mid-call: every "
        "decision goes to a worker thread (inline_time_limit = 0)", ",".join(foreign),
    )  # fmt: skip
    return replace(settings, inline_time_limit=0.0)


FIELD_COST = 128
"""Bytes charged per kept header field on top of its size: what Python needs to hold it."""

_CHOICES: dict[str, tuple[str, ...]] = {
    "mode": MODES,
    "on_block": BLOCK_ACTIONS,
    "on_warn": BLOCK_ACTIONS,
    "on_error": ERROR_ACTIONS,
    "rewrite_to": REWRITE_TO,
    "rewrite_fallback": FALLBACK_ACTIONS,
    "add_headers": HEADER_POLICIES,
    "scope": SCOPES,
}


def from_file(file: ConfigFile) -> MilterSettings:
    """The ``[milter]`` section of a config file; the defaults if it has none."""
    return from_mapping(file.section("milter"), f"{file.where}: milter")


def from_mapping(data: Mapping[str, Any], where: str = "milter") -> MilterSettings:
    """Validate a ``[milter]`` table."""
    data = configfile.fields_table(MilterSettings, data, where)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{where}.{key}"
        if key in _CHOICES:
            if value not in _CHOICES[key]:
                raise ConfigError(f"{path}: expected one of {', '.join(_CHOICES[key])}")
            kwargs[key] = value
        elif key == "outgoing_networks":
            kwargs[key] = tuple(_network(v, path) for v in _strings(value, path))
        elif key == "outgoing_daemons":
            kwargs[key] = tuple(_strings(value, path))
        elif key in ("authenticated", "log_addresses", "log_flush", "decide_at_headers"):
            if not isinstance(value, bool):
                raise ConfigError(f"{path}: expected true or false")
            kwargs[key] = value
        elif key in ("decision_timeout", "progress_interval", "idle_timeout", "inline_time_limit"):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{path}: expected a number of seconds")
            if key == "inline_time_limit":
                if not (math.isfinite(value) and value >= 0):
                    raise ConfigError(f"{path}: expected a number of seconds, 0 or more")
            elif not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{path}: expected a positive number of seconds")
            kwargs[key] = float(value)
        elif key in ("max_body_bytes", "inline_header_bytes"):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{path}: expected a non-negative integer")
            kwargs[key] = value
        elif key in ("max_header_bytes", "max_connections"):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{path}: expected a positive integer")
            kwargs[key] = value
    return MilterSettings(**kwargs)


def _strings(value: Any, path: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{path}: expected a list of strings")
    return value


def _network(value: str, path: str) -> IPNetwork:
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ConfigError(f"{path}: {value!r} is not an IP network (e.g. 10.0.0.0/8)") from None
