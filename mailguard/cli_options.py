"""What the command-line modules share: option types, enums, and how a command's errors
become exit status 2 (a usage or configuration problem) with one line on stderr."""

from __future__ import annotations

import contextlib
import enum
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from mailguard.commands import CommandError
from mailguard.commands.common import error_text, release_interrupts, warn
from mailguard.commands.settings import ConfigSource
from mailguard.errors import ConfigError
from mailguard.scoring import EXIT_ERROR, EXIT_INTERRUPTED

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
    warn(f"mailguard: error: {message}")
    return typer.Exit(EXIT_ERROR)


def run(
    command: Callable[[], int], redact: Iterable[str | os.PathLike[str] | None] | None = None
) -> NoReturn:
    """Run a command; its usage and configuration errors are exit status 2 with a message.

    ``redact``: under ``--redact``, the files and sources the user gave (the config, the
    output, the inputs): an error naming one shows its hash
    (:func:`~mailguard.commands.common.error_text`).
    Ctrl-C is exit status 130 with a line saying so (typer's own handling is silent); a scan
    catches it itself first, to write what it found so far.
    """
    global _interrupt_said
    try:
        code = command()
    except (CommandError, ConfigError) as exc:
        raise fail(error_text(exc, redact)) from None
    except KeyboardInterrupt:
        _interrupt_said = True
        typer.echo("mailguard: interrupted", err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    finally:
        if not _ends_process:  # in-process (a script, a test): the caller's Ctrl-C again
            release_interrupts()
    _interrupt_said = code == EXIT_INTERRUPTED  # the command said so itself (a scan does)
    raise typer.Exit(code)


_interrupt_said = False
_ends_process = False


@contextlib.contextmanager
def interrupts_said(*, ends_process: bool = False) -> Iterator[None]:
    """Around one run of the command line: a Ctrl-C before :func:`run` took over (typer
    parsing, a command's imports) ends in typer's own exit status 130, which says nothing;
    say it, as every other Ctrl-C does, and only once.

    ``ends_process``: the process ends with this command (the ``mailguard`` script), so a
    command's :func:`~mailguard.commands.common.hold_interrupts` stays in force to the end:
    putting the old handler back would open a gap in which a Ctrl-C after a complete
    report still turned into status 130."""
    global _interrupt_said, _ends_process
    _interrupt_said, _ends_process = False, ends_process
    try:
        yield
    except SystemExit as exc:
        if exc.code == EXIT_INTERRUPTED and not _interrupt_said:
            typer.echo("mailguard: interrupted", err=True)
        raise
    finally:
        _ends_process = False


def config_source(
    path: Path | None,
    no_config: bool,
    internal: list[str] | None,
    mode: str | None = None,
    dns: bool | None = None,
    dns_servers: list[str] | None = None,
) -> ConfigSource:
    return ConfigSource(path, no_config, tuple(internal or ()), mode, dns, tuple(dns_servers or ()))
