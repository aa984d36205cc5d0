"""``mailguard scan``: sources to work units, a progress bar, the register, the output file.

The scan's plumbing (IMAP passwords, progress on a terminal, Ctrl-C, exit status), called
by :mod:`mailguard.commands.scan` once the options are checked; kept out of
:mod:`mailguard.cli`, which only parses options.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor
from contextlib import AbstractContextManager
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from mailguard.archive.imap_url import is_imap_url
from mailguard.archive.provenance import provenance
from mailguard.archive.register import SOURCE, ErrorEntry, Register, Tally
from mailguard.archive.scanner import Progress, Scanner, Unit, Window, plan
from mailguard.config import Config
from mailguard.engine import Engine, tune_gc_for_batch
from mailguard.outputs.scan import ScanRenderOptions, render_register, summary_lines
from mailguard.redact import Redactor
from mailguard.resolver import DnsSettings
from mailguard.scoring import EXIT_ERROR, exit_status
from mailguard.sources import Input

if TYPE_CHECKING:
    from mailguard.archive.imap_url import ImapTarget

EXIT_INTERRUPTED = 130
IMAP_UNIT = 100


def run_scan(
    sources: list[str],
    config: Config,
    *,
    fmt: str,
    output: Path | None,
    jobs: int | None,
    since: date | None,
    until: date | None,
    redact: bool,
    show_addresses: bool,
    fail_on: str,
    pattern: str = "*.eml",
    stderr: Callable[[str], None] | None = None,
    quiet: bool = False,
    executor: Executor | None = None,
    dns: DnsSettings | None = None,
    pretty: bool = False,
) -> int:
    """Scan, render, write; return the exit status.

    ``executor`` runs the work units (default: a process pool of ``jobs`` workers); see
    :class:`~mailguard.archive.scanner.Scanner`.
    """
    say = stderr or (lambda text: print(text, file=sys.stderr))
    window = Window(since, until)
    scanner = Scanner(config, jobs=jobs, window=window, executor=executor, dns=dns)
    planned: list[tuple[str, Iterable[Unit]]] = []
    failed: list[ErrorEntry] = []
    total_bytes: int | None = 0
    for source in sources:
        if is_imap_url(source):  # any case of the scheme: IMAPS:// is no local path
            from mailguard.archive import imap

            try:
                target = imap.parse_imap_url(source)
                password = imap.password_from_env_or_prompt(target)
            except (ValueError, imap.ImapError) as exc:
                # The message names the URL with any password masked; the raw one may hold it.
                say(f"mailguard: error: {exc}")
                return EXIT_ERROR
            planned.append((target.label(), _imap_units(target, password, config, window, failed)))
            total_bytes = None
            continue
        units, errors = plan(source, scanner.jobs, pattern)
        failed += errors
        planned.append((source, units))
        if total_bytes is not None:
            total_bytes += sum(u.size for u in units)

    tune_gc_for_batch()  # --jobs 1 judges here; the register's objects are many and long-lived
    register = Register((label for label, _ in planned), keep_addresses=show_addresses or redact)
    register.provenance = provenance(config, mode="archived", since=since, until=until, dns=dns)
    with _NoProgress() if quiet else _progress_bar(total_bytes) as progress:
        scanner.scan(planned, progress=progress, register=register)
    if failed:
        register.merge(_errors(failed))

    options = ScanRenderOptions(show_addresses, Redactor() if redact else None)
    text = render_register(register, fmt, options, pretty=pretty)
    if output is not None:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            say(f"mailguard: error: cannot write {output}: {exc.strerror or exc}")
            return EXIT_ERROR
        if fmt != "text":
            for line in summary_lines(register):
                say(line)
    else:
        sys.stdout.write(text)
    if register.interrupted:
        say("mailguard: interrupted; the register above covers what was scanned so far")
        return EXIT_INTERRUPTED
    verdicts = [v for v, n in register.total.verdicts.items() if n]
    if register.incomplete:
        verdicts.append("error")  # a source or folder not read: the audit is not clean
    return exit_status(verdicts, fail_on)


def _errors(entries: list[ErrorEntry]) -> Tally:
    tally = Tally()
    for entry in entries:
        tally.add_error(entry.source, entry.message, entry.kind)
    return tally


def _imap_units(
    target: ImapTarget, password: str, config: Config, window: Window,
    failed: list[ErrorEntry],
) -> Iterator[Unit]:  # fmt: skip
    """Batches of fetched messages; bodies only for messages whose verdict could need one.

    The rules say what they read: :meth:`Engine.needs_body` judges the header block alone
    and asks for the body only when a rule that reads it could score on this message.
    """
    engine = Engine(config)

    def needs_body(headers: bytes) -> bool:
        return engine.needs_body(headers, mode="archived")

    from mailguard.archive import imap

    batch: list[Input] = []
    try:
        for item in imap.iter_imap(
            target, password, since=window.since, until=window.until, needs_body=needs_body
        ):
            batch.append(item)
            if len(batch) >= IMAP_UNIT:
                yield _inputs_unit(batch)
                batch = []
    except imap.ImapError as exc:
        failed.append(ErrorEntry(target.label(), str(exc), SOURCE))
    except KeyboardInterrupt:
        # Ctrl-C while waiting on the server: the messages already fetched are still
        # judged (the scanner takes no unit after this one), so the register keeps them.
        if batch:
            yield _inputs_unit(batch)
        raise
    if batch:
        yield _inputs_unit(batch)


def _inputs_unit(batch: list[Input]) -> Unit:
    return Unit("inputs", inputs=tuple(batch), size=sum(len(i.data or b"") for i in batch))


class _NoProgress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _progress_bar(total_bytes: int | None) -> AbstractContextManager[Progress | None]:
    """A rich progress bar on a terminal (messages, msg/s, ETA); nothing when piped."""
    if not sys.stderr.isatty():
        return _NoProgress()
    from mailguard.archive.progress import ScanProgress

    return ScanProgress(total_bytes)
