"""What the command-line modules share: option types, enums, and how a command's errors
become exit status 2 (a usage or configuration problem) with one line on stderr."""

from __future__ import annotations

import enum
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from mailguard.commands import CommandError
from mailguard.commands.settings import ConfigSource
from mailguard.errors import ConfigError
from mailguard.scoring import EXIT_ERROR

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="Config file (default: nearest mailguard.toml/pyproject)."),
]
NoConfigOption = Annotated[
    bool, typer.Option("--no-config", help="Ignore config files; use the defaults.")
]
QuietOption = Annotated[
    bool,
    typer.Option("--quiet", "-q", help="Only problems and the summary (text output)."),
]
InternalDomainOption = Annotated[
    list[str] | None,
    typer.Option("--internal-domain", help="Your organisation's domain; repeat. Overrides config."),
]
DnsOption = Annotated[
    bool, typer.Option("--dns", help="Look recipient domains up in DNS (rules that need dns).")
]
DnsServerOption = Annotated[
    list[str] | None,
    typer.Option(
        "--dns-server", help="DNS server HOST[:PORT] to ask instead of the system's; repeat."
    ),
]
PrettyOption = Annotated[
    bool, typer.Option("--pretty", help="Indent JSON and SARIF for reading (default: compact).")
]


class Format(enum.StrEnum):
    text = "text"
    json = "json"
    sarif = "sarif"


class FailOn(enum.StrEnum):
    warn = "warn"
    block = "block"


class Mode(enum.StrEnum):
    outgoing = "outgoing"
    archived = "archived"


def fail(message: str) -> typer.Exit:
    typer.echo(f"mailguard: error: {message}", err=True)
    return typer.Exit(EXIT_ERROR)


def run(command: Callable[[], int]) -> NoReturn:
    """Run a command; its usage and configuration errors are exit status 2 with a message."""
    try:
        code = command()
    except (CommandError, ConfigError) as exc:
        raise fail(str(exc)) from None
    raise typer.Exit(code)


def config_source(
    path: Path | None,
    no_config: bool,
    internal: list[str] | None,
    mode: str | None = None,
    dns: bool | None = None,
    dns_servers: list[str] | None = None,
) -> ConfigSource:
    return ConfigSource(path, no_config, tuple(internal or ()), mode, dns, tuple(dns_servers or ()))
