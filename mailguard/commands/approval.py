"""``mailguard keygen`` and ``mailguard approve``: the ops team's side of signed approvals.

``approve`` shows the person approving exactly what they approve (the same report as
``mailguard check``) and asks them on their terminal. It never approves silently: without
a terminal to ask on, it refuses unless ``--yes`` says a script already decided. The key's
secret is read here and handed to :func:`mailguard.approval.sign`; it is never printed,
and errors about the key file name the file, never its content.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import typer

from mailguard.approval import iso, sign, strip
from mailguard.approval_keys import new_key, read_key, write_key
from mailguard.commands import CommandError
from mailguard.commands.common import echo
from mailguard.commands.settings import ConfigSource, load_settings
from mailguard.engine import Engine
from mailguard.errors import InputError
from mailguard.outputs import RenderOptions
from mailguard.outputs.text import render_text
from mailguard.sources import STDIN, iter_inputs, read_file

EXIT_APPROVED, EXIT_DECLINED = 0, 1
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d{1,7})([smhdw])")


def parse_duration(text: str) -> int:
    """Seconds in ``24h``, ``90m``, ``7d``, ``1d12h`` (a unit is required: "24" is ambiguous)."""
    compact = text.strip().lower().replace(" ", "")
    parts = _DURATION.findall(compact)
    if not compact or "".join(n + u for n, u in parts) != compact:
        raise CommandError(
            f"--valid-for: expected a duration such as 24h, 90m, 7d or 1d12h, got {text!r}"
        )
    return sum(int(n) * _UNITS[u] for n, u in parts)


def run_keygen(path: Path, key_id: str | None = None) -> int:
    """Write a new key to ``path`` (never over an existing file) and say what to do next."""
    key = new_key(key_id)
    write_key(path, key)
    echo(f"wrote approval key {key.id} to {path} (mode 0600)")
    echo(
        "next: list it in the config's [approval] keys (keep the old key listed until its "
        "approvals have expired), reload the milter, and sign with "
        f"`mailguard approve MESSAGE --key {path}`"
    )
    return 0


def run_approve(
    message: str,
    key_path: Path,
    source: ConfigSource | None = None,
    *,
    valid_for: str = "24h",
    output: Path | None = None,
    yes: bool = False,
    show_addresses: bool = False,
) -> int:
    """Check ``message``, show the report, confirm, write it with an approval field.

    0: written; 1: the person asked declined; a usage, key or input problem is a
    :class:`CommandError` (exit status 2).
    """
    seconds = parse_duration(valid_for)
    key = read_key(key_path)
    settings = load_settings(source)
    raw = _read_message(message, settings.config.limits.max_message_bytes)
    engine = Engine(settings.config, services=settings.services())
    report = engine.check(strip(raw), source=message)  # the message as the recipients see it
    if report.verdict == "error":
        reason = report.findings[0].message if report.findings else "it could not be checked"
        raise CommandError(f"cannot approve {message}: {reason}")
    color = sys.stderr.isatty()
    shown = render_text([report], RenderOptions(show_addresses), color=color)
    echo(shown.rstrip("\n"), err=True)
    configured = settings.approval.ids
    if configured and key.id not in configured:
        listed = ", ".join(configured)
        echo(
            f"note: key {key.id} is not in this configuration's [approval] keys ({listed}): "
            "a gate using it reports 'unknown key'",
            err=True,
        )
    now = time.time()
    n = report.recipients.get("visible", 0)
    echo(
        f"approval by key {key.id}, valid until {iso(now + seconds)}: binds the {n:,} visible "
        "recipients, From, Subject and body as they are now",
        err=True,
    )
    if not yes:
        if message == STDIN or not sys.stdin.isatty():
            raise CommandError(
                "not approving without confirmation: there is no terminal to ask on; review "
                "the report and pass --yes to approve from a script"
            )
        if not typer.confirm(f"Approve {message}?", default=False, err=True):
            echo("not approved", err=True)
            return EXIT_DECLINED
    try:
        signed = sign(raw, key, seconds, now, settings.config.limits)
    except InputError as exc:
        raise CommandError(f"cannot approve {message}: {exc}") from None
    _write(signed, output)
    where = "standard output" if output is None else str(output)
    echo(f"approved with key {key.id} until {iso(now + seconds)}; written to {where}", err=True)
    return EXIT_APPROVED


def _read_message(message: str, max_bytes: int) -> bytes:
    if message == STDIN:
        item = next(iter(iter_inputs([STDIN], max_bytes=max_bytes)))
    else:
        item = read_file(Path(message), max_bytes)
    if item.data is None:
        raise CommandError(f"cannot read {message}: {item.error}")
    return item.data


def _write(data: bytes, output: Path | None) -> None:
    """The signed message to ``output`` or stdout.

    A regular file (or a new one) is replaced whole through a temporary file beside it, so
    it is never half written. Anything else that exists (``/dev/stdout``, a FIFO, a
    device) is written into, never replaced: renaming over ``/dev/null`` would put a
    regular file in its place for every other program.
    """
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    try:
        special = output.exists() and not output.is_file()
        if special:
            with output.open("wb") as stream:
                stream.write(data)
            return
    except OSError as exc:
        raise CommandError(f"cannot write {output}: {exc.strerror or exc}") from None
    temp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    try:
        temp.write_bytes(data)
        temp.replace(output)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise CommandError(f"cannot write {output}: {exc.strerror or exc}") from None
