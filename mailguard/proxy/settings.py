"""Proxy settings: the ``[proxy]`` table of ``mailguard.toml``, owned and validated here.

Like ``[milter]``, none of this changes *what* a message is judged to be, only what the
gateway does about it and where it relays. Strict in the same way: a misspelt ``on_block``
stops the proxy from starting instead of turning a gate into a relay. The relay password
is deliberately not a setting: it comes from ``MAILGUARD_RELAY_PASSWORD`` only, so it is
never in a file others may read nor on a command line (``ps`` shows those to every user).
Relative paths are taken from the config file's directory, as ``rule_paths`` are.
"""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailguard import configfile
from mailguard.configfile import ConfigFile
from mailguard.errors import ConfigError

ACTIONS = ("reject", "rewrite", "split", "accept", "tempfail")
ERROR_ACTIONS = ("tempfail", "accept")
HEADER_POLICIES = ("never", "warn", "always")
SECURITY = ("starttls", "tls", "none")
PASSWORD_ENV = "MAILGUARD_RELAY_PASSWORD"
DEFAULT_LISTEN = "127.0.0.1:2525"


@dataclass(frozen=True, slots=True)
class ProxySettings:
    listen: str = DEFAULT_LISTEN
    """``HOST:PORT`` to accept clients on; loopback unless you say otherwise."""
    relay: str = ""
    """``HOST:PORT`` of the upstream submission server (required to run)."""
    relay_security: str = "starttls"
    """``starttls`` (port 587), ``tls`` (implicit TLS, port 465) or ``none``; certificates
    are verified against the system's CAs or ``relay_ca``."""
    relay_ca: str = ""
    """A PEM file of CA certificates for a private upstream CA."""
    relay_user: str = ""
    """AUTH user at the upstream; the password comes from ``MAILGUARD_RELAY_PASSWORD``."""
    relay_connections: int = 10
    """Upstream connections open at once (each serves one client transaction at a time)."""
    relay_timeout: float = 60.0
    """Seconds to wait for any one upstream reply."""
    relay_idle: float = 30.0
    """An idle upstream connection is closed after this long (Postfix drops them at 300 s)."""
    tls_cert: str = ""
    """Certificate (PEM) offered to clients with STARTTLS; with ``tls_key``."""
    tls_key: str = ""
    users_file: str = ""
    """Client logins, ``user:hash`` lines (``mailguard proxy --hash-password``); when set,
    clients must AUTH, and only over TLS or from loopback."""
    on_block: str = "reject"
    """What a ``block`` verdict does: reject, rewrite, split, accept, tempfail."""
    on_warn: str = "accept"
    """What a ``warn`` verdict does."""
    on_error: str = "tempfail"
    """A message that could not be checked in time or hit an internal error."""
    rewrite_fallback: str = "reject"
    """When ``rewrite`` cannot cure a message: reject, split or tempfail."""
    rewrite_to: str = "undisclosed"
    """The rewritten ``To:``: ``undisclosed-recipients:;`` or the sender's own address."""
    add_headers: str = "warn"
    """X-Mailguard-Verdict/-Score/-Rules on relayed mail: never, warn and worse, always."""
    max_message_bytes: int = 50 * 1024 * 1024
    """Bigger messages get ``552`` (announced in EHLO as SIZE)."""
    max_recipients: int = 10_000
    """RCPTs per message; one more gets ``452 4.5.3`` (RFC 5321 4.5.3.1.10)."""
    idle_timeout: float = 300.0
    """A client silent this long is told ``421`` and disconnected (RFC 5321's 5 minutes)."""
    decision_timeout: float = 20.0
    """Seconds a check may take before ``on_error`` applies."""
    journal: str = ""
    """SQLite file of split copies already delivered (default: the user's state dir)."""
    journal_days: float = 5.0
    """How long a split is remembered for retries (Postfix's default queue lifetime)."""
    log_addresses: bool = False
    """Put the envelope sender in the log line. Off: counts only."""
    workers: int = 1
    """Processes serving the one port (``SO_REUSEPORT``; the kernel spreads connections):
    one event loop is one core, so set it to the cores the proxy may use."""


_CHOICES: dict[str, tuple[str, ...]] = {
    "on_block": ACTIONS,
    "on_warn": ACTIONS,
    "on_error": ERROR_ACTIONS,
    "rewrite_fallback": ("reject", "split", "tempfail"),
    "rewrite_to": ("undisclosed", "sender"),
    "add_headers": HEADER_POLICIES,
    "relay_security": SECURITY,
}
_PATHS = ("relay_ca", "tls_cert", "tls_key", "users_file", "journal")
_SECONDS = ("relay_timeout", "relay_idle", "idle_timeout", "decision_timeout", "journal_days")
_COUNTS = ("relay_connections", "max_message_bytes", "max_recipients", "workers")


def from_file(file: ConfigFile) -> ProxySettings:
    """The ``[proxy]`` section of a config file; the defaults if it has none."""
    base = file.path.parent if file.path else None
    return from_mapping(file.section("proxy"), f"{file.where}: proxy", base)


def from_mapping(
    data: Mapping[str, Any], where: str = "proxy", base: Path | None = None
) -> ProxySettings:
    """Validate a ``[proxy]`` table (also used for the command-line options on top)."""
    data = configfile.fields_table(ProxySettings, data, where)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{where}.{key}"
        if key == "log_addresses":
            if not isinstance(value, bool):
                raise ConfigError(f"{path}: expected true or false")
        elif not isinstance(value, str) and key not in (*_SECONDS, *_COUNTS):
            raise ConfigError(f"{path}: expected a string")
        elif key in _CHOICES and value not in _CHOICES[key]:
            raise ConfigError(f"{path}: expected one of {', '.join(_CHOICES[key])}")
        elif key in _SECONDS:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{path}: expected a number of seconds")
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{path}: expected a positive number")
            value = float(value)
        elif key in _COUNTS:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{path}: expected a positive integer")
        elif key in ("listen", "relay") and value:
            parse_hostport(value, path)
        elif key in _PATHS and value and base is not None:
            value = str(base / Path(value).expanduser())
        kwargs[key] = value
    return ProxySettings(**kwargs)


def parse_hostport(value: str, what: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT``; a wrong one names the option."""
    host, sep, port = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"{what}: expected HOST:PORT (e.g. 127.0.0.1:2525), got {value!r}")
    return host, int(port)


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (an address, or ``localhost``)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def validate_for_run(settings: ProxySettings) -> None:
    """What must hold before the proxy starts (a config may be valid but not runnable)."""
    if not settings.relay:
        raise ConfigError("proxy: no upstream: give --relay HOST:PORT or [proxy] relay")
    if bool(settings.tls_cert) != bool(settings.tls_key):
        raise ConfigError("proxy: --tls-cert and --tls-key go together")
    relay_host, _ = parse_hostport(settings.relay, "relay")
    if settings.relay_user:
        if not os.environ.get(PASSWORD_ENV):
            raise ConfigError(f"proxy: --relay-user needs the password in ${PASSWORD_ENV}")
        if settings.relay_security == "none" and not is_loopback(relay_host):
            raise ConfigError(
                "proxy: refusing to send the relay password unencrypted to "
                f"{relay_host}; use --relay-security starttls or tls"
            )


def default_journal() -> Path:
    """``$XDG_STATE_HOME/mailguard/proxy-journal.sqlite`` (``~/.local/state`` by default)."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "mailguard" / "proxy-journal.sqlite"
