"""``mailguard check``: judge message files (or stdin) before they are sent."""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from mailguard.commands import CommandError
from mailguard.commands.check_pool import choose_jobs, judge_all
from mailguard.commands.common import (
    LOST_OUTPUT,
    check_writable,
    echo,
    error_text,
    format_for,
    hold_interrupts,
    warn,
    write_report,
)
from mailguard.commands.settings import ConfigSource, load_settings
from mailguard.engine import Engine, Mode, tune_gc_for_batch
from mailguard.outputs import RenderOptions, render
from mailguard.outputs.words import printable
from mailguard.recipients import Envelope
from mailguard.redact import Redactor
from mailguard.report import Report
from mailguard.scoring import EXIT_ERROR, exit_status
from mailguard.sources import STDIN, Input, iter_planned

FORMATS = ("text", "json", "sarif")


def run_check(
    paths: Sequence[str],
    source: ConfigSource | None = None,
    *,
    mail_from: str | None = None,
    rcpt_to: Sequence[str] = (),
    smtp_data: bool = False,
    fmt: str | None = None,
    output: Path | None = None,
    quiet: bool = False,
    fail_on: str = "block",
    show_addresses: bool = False,
    redact: bool = False,
    mode: Mode = "outgoing",
    pattern: str = "*.eml",
    pretty: bool = False,
    jobs: int | None = None,
) -> int:
    """Check every input, write one report, return the exit status.

    0: nothing at or above ``fail_on``; 1: something is; 2: an input could not be read
    (an unreadable message is never "clean"). ``jobs``: processes judging the files (None:
    every core for a large folder, see :mod:`mailguard.commands.check_pool`).
    """
    fmt = fmt or format_for(output, FORMATS, "text")
    if output is not None:
        check_writable(output)  # before a folder of thousands of messages is judged
    settings = load_settings(source)
    cfg = settings.config
    envelope = Envelope(mail_from, tuple(rcpt_to)) if (mail_from or rcpt_to) else None
    services = settings.services()
    engine = Engine(cfg, services=services)
    tune_gc_for_batch()
    keep_analysis = show_addresses or redact

    def judge(item: Input) -> Report:
        if item.data is None:
            return engine.error_report(item.source, item.error or "cannot read")
        report = engine.check(
            item.data, envelope=envelope, source=item.source, smtp_data=smtp_data, mode=mode
        )
        if not keep_analysis:
            report.analysis = None  # keep memory flat over a large folder
        return report

    max_bytes = cfg.limits.max_message_bytes
    # A batch piped to ``check -`` over the message cap is split from a private file there
    # (mode 0700, removed when the report is out, also on an error or Ctrl-C).
    spool = Path(tempfile.mkdtemp(prefix="mailguard-stdin-")) if STDIN in paths else None
    try:
        planned = list(iter_planned(list(paths), pattern=pattern, max_bytes=max_bytes, spool=spool))
        files = sum(isinstance(item, str) for item in planned)
        fork_safe = services.dns is None and services.history is None
        workers = choose_jobs(jobs, files, fork_safe=fork_safe)
        reports: list[Report] = []
        unread = False
        # One policy for the report and for these lines: under --redact a path is hashed as the
        # report hashes sources (a file or folder name can be an address), and the reason, which
        # may quote a tool's output, is withheld.
        options = RenderOptions(show_addresses or redact, Redactor() if redact else None)
        for outcome in judge_all(planned, judge, max_bytes, workers):
            if isinstance(outcome, Input):  # an input error, not a message verdict
                # A file name is one line here, whatever it holds: shown whole, LF included.
                where, why = options.source(outcome.source), options.error(outcome.error or "")
                warn(f"mailguard: cannot read {printable(where)}: {why}")
                unread = True
                reports.append(unread_report(engine, outcome))
            else:
                reports.append(outcome)
        hold_interrupts()  # judged: from here a Ctrl-C could only lose the reports
        color = output is None and fmt == "text" and sys.stdout.isatty()
        if fmt == "text":
            # Imported here: rich costs ~20 ms of start-up that machine formats do not need.
            from mailguard.outputs.text import render_text

            text = render_text(reports, options, color=color, quiet=quiet)
        else:
            text = render(reports, fmt, options, color=color, rules=cfg.catalog, pretty=pretty)
        if output is not None:
            try:
                write_report(output, text)
            except CommandError as exc:  # it became unwritable while the mail was judged
                warn(f"mailguard: error: {error_text(exc, [output] if redact else None)}; "
                     f"{LOST_OUTPUT}")  # fmt: skip
                echo(text.rstrip("\n"))
                return EXIT_ERROR
        else:
            echo(text.rstrip("\n"))
        return EXIT_ERROR if unread else exit_code(reports, fail_on)
    finally:
        if spool is not None:
            shutil.rmtree(spool, ignore_errors=True)


def unread_report(engine: Engine, item: Input) -> Report:
    """An input that could not be read, as an ``error`` report in its place in the order.

    Why: a pipeline that keeps only the report (``-o report.json``) must see every input
    that failed, counted in the summary, as ``scan`` lists its errors; the stderr line alone
    was lost there. The reason is private (an OS or decompressor message may quote a path),
    so ``--redact`` withholds it like any unreadable-message reason. ``evidence.unreadable``
    tells a script this input was never read, not read and found not to be a message.
    """
    reason = f"cannot read: {item.error or 'unknown reason'}"
    return engine.error_report(item.source, reason, evidence={"unreadable": True})


def exit_code(reports: Iterable[Report], fail_on: str) -> int:
    """The exit status for these reports (see :func:`mailguard.scoring.exit_status`)."""
    return exit_status((r.verdict for r in reports), fail_on)
