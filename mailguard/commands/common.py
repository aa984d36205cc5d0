"""What several commands share: output-format choice, echo, dates."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from pathlib import Path

import typer

from mailguard.commands import CommandError


def format_for(output: Path | None, choices: Iterable[str], default: str) -> str:
    """The format an output file's extension names (``report.html``), else ``default``."""
    if output is not None:
        suffix = output.suffix.lower().lstrip(".")
        suffix = {"htm": "html", "txt": "text"}.get(suffix, suffix)
        if suffix in set(choices):
            return suffix
    return default


def echo(text: str, *, err: bool = False) -> None:
    """One line to stdout (or stderr), as the CLI always wrote it (``typer.echo`` strips
    terminal escape sequences when the stream is not a terminal)."""
    typer.echo(text, err=err)


def day(value: str | None, option: str) -> date | None:
    """A ``--since``/``--until`` date; a wrong one names the option."""
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"{option}: expected a date as YYYY-MM-DD, got {value!r}") from None


def write_report(output: Path, text: str) -> None:
    """Write a report file; a failure is a :class:`CommandError` naming the file."""
    try:
        output.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot write {output}: {exc.strerror or exc}") from None
