"""``mailguard scan``: audit archived mail and write an incident register.

The options are checked here; the scan's plumbing (sources to work units, IMAP passwords,
the progress bar, Ctrl-C, the register and its output) is
:func:`mailguard.commands.scan_run.run_scan`, which this calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mailguard.commands import CommandError
from mailguard.commands.common import day, format_for
from mailguard.commands.settings import ConfigSource, load_settings

FORMATS = ("text", "json", "csv", "html")


def run_scan(
    sources: Sequence[str],
    source: ConfigSource | None = None,
    *,
    fmt: str | None = None,
    output: Path | None = None,
    quiet: bool = False,
    jobs: int | None = None,
    since: str | None = None,
    until: str | None = None,
    redact: bool = False,
    show_addresses: bool = False,
    fail_on: str = "warn",
    pattern: str = "*.eml",
    scheduler: str | None = None,
    state: Path | None = None,
    pst_folders: Sequence[str] = (),
    pretty: bool = False,
) -> int:
    """Scan, write the register, return the exit status.

    0: no incident at or above ``fail_on``; 1: incidents; 2: a source or message could not
    be read, or the ``state`` could not be saved (the register is still written); 75:
    another scan is using the ``state``, nothing was read (try again when it ends); 130:
    interrupted (what was found so far is still written).
    """
    from mailguard.commands import scan_run

    window = (day(since, "--since"), day(until, "--until"))
    if window[0] and window[1] and window[0] > window[1]:
        raise CommandError("--since is after --until: no message could match")
    if jobs is not None and jobs < 1:
        raise CommandError("--jobs must be at least 1")
    settings = load_settings(source)
    cfg = settings.config
    return scan_run.run_scan(
        list(sources), cfg, fmt=fmt or format_for(output, FORMATS, "text"), output=output,
        jobs=jobs, since=window[0], until=window[1], redact=redact,
        show_addresses=show_addresses, fail_on=fail_on, pattern=pattern, quiet=quiet,
        dns=settings.dns if settings.dns.enabled else None, scheduler=scheduler, state=state,
        pst_folders=pst_folders, pretty=pretty,
    )  # fmt: skip
