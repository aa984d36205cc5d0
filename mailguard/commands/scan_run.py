"""``mailguard scan``: sources to work units, a progress bar, the register, the output file.

The scan's plumbing (IMAP passwords, progress on a terminal, Ctrl-C, exit status), called
by :mod:`mailguard.commands.scan` once the options are checked; kept out of
:mod:`mailguard.cli`, which only parses options.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from mailguard.archive import pst
from mailguard.archive.imap_url import is_imap_url
from mailguard.archive.mbox import iter_mbox
from mailguard.archive.provenance import provenance
from mailguard.archive.register import SOURCE, ErrorEntry, Register, Tally
from mailguard.archive.scanner import OnTally, Progress, Scanner, Unit, Window, mbox_units, plan
from mailguard.commands import CommandError
from mailguard.commands.common import (
    LOST_OUTPUT,
    check_writable,
    error_text,
    hold_interrupts,
    warn,
    write_report,
)
from mailguard.config import Config
from mailguard.engine import Engine, tune_gc_for_batch
from mailguard.outputs.scan import ScanRenderOptions, render_register, summary_lines
from mailguard.redact import Redactor
from mailguard.resolver import DnsSettings
from mailguard.scoring import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_TEMPFAIL, exit_status
from mailguard.sources import Input

if TYPE_CHECKING:
    from mailguard.archive.imap_resume import ImapResume
    from mailguard.archive.imap_url import ImapTarget
    from mailguard.archive.incremental import Incremental
    from mailguard.archive.state import StateStore

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
    scheduler: str | None = None,
    state: Path | None = None,
    pst_folders: Sequence[str] = (),
    pretty: bool = False,
) -> int:
    """Scan, render, write; return the exit status.

    ``executor`` runs the work units (default: a process pool of ``jobs`` workers; with
    ``scheduler``, the Dask cluster's workers); see :class:`~mailguard.archive.scanner.Scanner`.
    ``state`` is the incremental store (:mod:`mailguard.archive.incremental`).
    """
    say = stderr or warn
    with contextlib.ExitStack() as stack:
        try:
            return _run(
                stack, sources, config, fmt=fmt, output=output, jobs=jobs, since=since,
                until=until, redact=redact, show_addresses=show_addresses, fail_on=fail_on,
                pattern=pattern, say=say, quiet=quiet, executor=executor, dns=dns,
                scheduler=scheduler, state=state, pst_folders=pst_folders, pretty=pretty,
            )  # fmt: skip
        except _Busy as exc:
            say(f"mailguard: state: {exc}")  # no path: it may hold an address (--redact)
            return EXIT_TEMPFAIL
        except _Stop as exc:
            text = error_text(exc, [*sources, state, output] if redact else None)
            say(f"mailguard: error: {text}")
            return EXIT_ERROR


class _Stop(Exception):
    """The scan cannot start (a cluster, the state file, a missing converter)."""


class _Busy(_Stop):
    """Another scan holds the state file: nothing was read, try again later (exit 75)."""


def _run(
    stack: contextlib.ExitStack, sources: list[str], config: Config, *, fmt: str,
    output: Path | None, jobs: int | None, since: date | None, until: date | None,
    redact: bool, show_addresses: bool, fail_on: str, pattern: str,
    say: Callable[[str], None], quiet: bool, executor: Executor | None,
    dns: DnsSettings | None, scheduler: str | None, state: Path | None,
    pst_folders: Sequence[str], pretty: bool,
) -> int:  # fmt: skip
    if output is not None:
        try:
            check_writable(output)
        except CommandError as exc:
            raise _Stop(str(exc)) from None
    window = Window(since, until)
    # The state first: a second scan of the same state must stop before it costs anything,
    # a cluster's connection and workers included.
    store = _open_state(stack, state) if state is not None else None
    client = None
    if scheduler is not None:
        client = _cluster(stack, scheduler, [s for s in sources if not is_imap_url(s)])
        from mailguard.archive.dask_executor import DaskExecutor, worker_threads

        executor, jobs = DaskExecutor(client), worker_threads(client)
    scanner = Scanner(config, jobs=jobs, window=window, executor=executor, dns=dns)
    incremental = None
    if store is not None:
        incremental = _incremental(
            store, config, window, dns, pattern, scanner.jobs, show_addresses or redact
        )
    plan_ = _plan_sources(
        stack, sources, config, window, jobs=scanner.jobs, pattern=pattern,
        pst_folders=pst_folders, incremental=incremental, remote=client is not None,
    )  # fmt: skip
    planned, failed, total_bytes = plan_.planned, plan_.failed, plan_.total_bytes

    tune_gc_for_batch()  # --jobs 1 judges here; the register's objects are many and long-lived
    register = Register((label for label, _ in planned), keep_addresses=show_addresses or redact)
    register.provenance = provenance(config, mode="archived", since=since, until=until, dns=dns)
    on_tally: OnTally | None = incremental.on_tally if incremental is not None else None
    if plan_.interrupted:
        register.interrupted = True  # nothing judged: the register says so rather than nothing
    else:
        with _NoProgress() if quiet else _progress_bar(total_bytes) as progress:
            tokens = incremental.tokens_for(scanner.forks) if incremental is not None else None
            scanner.scan(
                planned, progress=progress, register=register, on_tally=on_tally, tokens=tokens
            )
    hold_interrupts()  # judged: from here a Ctrl-C could only lose the register
    if failed:
        register.merge(_errors(failed))
    options = ScanRenderOptions(show_addresses, Redactor() if redact else None)
    if incremental is not None:
        incremental.finish(register, say, options.source)
    text = render_register(register, fmt, options, pretty=pretty)
    if output is not None:
        try:
            write_report(output, text)
        except CommandError as exc:  # it became unwritable during the scan (a full disk)
            say(f"mailguard: error: {error_text(exc, [output] if redact else None)}; "
                f"{LOST_OUTPUT}")  # fmt: skip
            sys.stdout.write(text)  # hours of scanning are not thrown away
            return EXIT_ERROR
        if fmt != "text":
            for line in summary_lines(register):
                say(line)
    else:
        sys.stdout.write(text)
    if incremental is not None and not _saved(incremental, say):
        return EXIT_ERROR
    if register.interrupted:
        say("mailguard: interrupted; the register above covers what was scanned so far")
        return EXIT_INTERRUPTED
    verdicts = [v for v, n in register.total.verdicts.items() if n]
    if register.incomplete:
        verdicts.append("error")  # a source or folder not read: the audit is not clean
    return exit_status(verdicts, fail_on)


@dataclass
class _Plan:
    """What each source will be read as, what could not be, and whether Ctrl-C came first."""

    planned: list[tuple[str, Iterable[Unit]]] = field(default_factory=list)
    failed: list[ErrorEntry] = field(default_factory=list)
    total_bytes: int | None = 0
    interrupted: bool = False


def _plan_sources(
    stack: contextlib.ExitStack, sources: list[str], config: Config, window: Window, *,
    jobs: int, pattern: str, pst_folders: Sequence[str], incremental: Incremental | None,
    remote: bool,
) -> _Plan:  # fmt: skip
    """Each source planned into work units (``remote``: a cluster's workers will judge them).

    Walking a large tree or unpacking a .pst takes a while: Ctrl-C meanwhile ends the
    planning with what was planned so far and ``interrupted`` set, so the scan still writes
    a register (empty, marked interrupted) as it does for a Ctrl-C once judging began.
    """
    if pst_folders and not any(not is_imap_url(s) and pst.is_pst(s) for s in sources):
        raise _Stop("--pst-folder names folders of .pst/.ost files, and no source is one")
    plan_ = _Plan()
    try:
        for source in sources:
            for label, units, size in _source_units(
                stack, source, config, window, plan_.failed, jobs=jobs, pattern=pattern,
                pst_folders=pst_folders, incremental=incremental, remote=remote,
            ):  # fmt: skip
                plan_.planned.append((label, units))
                if plan_.total_bytes is not None:
                    plan_.total_bytes = None if size is None else plan_.total_bytes + size
    except KeyboardInterrupt:
        plan_.interrupted = True
    return plan_


def _source_units(
    stack: contextlib.ExitStack, source: str, config: Config, window: Window,
    failed: list[ErrorEntry], *, jobs: int, pattern: str, pst_folders: Sequence[str],
    incremental: Incremental | None, remote: bool,
) -> list[tuple[str, Iterable[Unit], int | None]]:  # fmt: skip
    """One source's (label, units, bytes): a PST gives one per mail folder; an IMAP
    mailbox's size is not known before it is fetched."""
    if is_imap_url(source):  # any case of the scheme: IMAPS:// is no local path
        from mailguard.archive import imap

        try:
            target = imap.parse_imap_url(source)
            password = imap.password_from_env_or_prompt(target)
        except (ValueError, imap.ImapError) as exc:
            # The message names the URL with any password masked; the raw one may hold it.
            raise _Stop(str(exc)) from None
        resume = incremental.plan_imap(target.label()) if incremental is not None else None
        mark = incremental.mark_reread if incremental is not None else None
        fetched = _imap_units(target, password, config, window, failed, resume, mark)
        return [(target.label(), fetched, None)]
    if pst.is_pst(source):
        out: list[tuple[str, Iterable[Unit], int | None]] = []
        for label, units in _pst_sources(stack, source, pst_folders, jobs, incremental, failed):
            # Unpacked here, in a private folder the workers of a cluster cannot see: its
            # messages travel to them in batches, as IMAP's do.
            max_bytes = config.limits.max_message_bytes
            read = _read_here(units, max_bytes, incremental) if remote else units
            out.append((label, read, sum(u.size for u in units)))
        return out
    units, errors = plan(source, jobs, pattern)
    failed += errors
    # An mbox found in a folder is a source of its own (its units carry its path as their
    # label): the register counts it apart, and --state knows it as an mbox, so mail
    # appended to it later is read on the next scan.
    groups: dict[str, list[Unit]] = {source: []}
    for unit in units:
        groups.setdefault(unit.label or source, []).append(unit)
    found: list[tuple[str, Iterable[Unit], int | None]] = []
    for label, group in groups.items():
        if incremental is not None and group:
            group = _plan_incremental(incremental, label, group)
        found.append((label, group, sum(u.size for u in group)))
    return found


def _cluster(stack: contextlib.ExitStack, scheduler: str, paths: list[str]) -> object:
    """A client of the scheduler, once every worker was found to see every local source."""
    from mailguard.archive import dask_executor

    try:
        client = dask_executor.connect(scheduler)
    except dask_executor.ClusterError as exc:
        raise _Stop(str(exc)) from None
    stack.callback(client.close)
    missing = dask_executor.missing_on_workers(client, paths)
    if missing:
        lines = [f"{path}: not found on worker(s) {', '.join(w)}" for path, w in missing.items()]
        raise _Stop(
            "the Dask workers read the sources themselves, so each must see the same path "
            "(a shared filesystem; relative paths are relative to each worker's folder):\n  "
            + "\n  ".join(lines)
        )
    return client


def _open_state(stack: contextlib.ExitStack, path: Path) -> StateStore:
    """The ``--state`` store, held by this scan alone until it ends (:class:`_Busy` if
    another scan holds it)."""
    from mailguard.archive.state import StateBusy, StateError, StateStore

    try:
        store = StateStore(path)
    except StateBusy as exc:
        raise _Busy(str(exc)) from None
    except StateError as exc:
        raise _Stop(str(exc)) from None
    stack.callback(store.close)
    return store


def _incremental(
    store: StateStore, config: Config, window: Window, dns: DnsSettings | None,
    pattern: str, jobs: int, addresses: bool,
) -> Incremental:  # fmt: skip
    from mailguard.archive.incremental import Incremental
    from mailguard.archive.state import fingerprint

    made = provenance(config, mode="archived", since=window.since, until=window.until, dns=dns)
    return Incremental(store, fingerprint(made, pattern), jobs, config, addresses=addresses)


def _saved(incremental: Incremental, say: Callable[[str], None]) -> bool:
    """The store updated, once the register is written: a store that cannot be written
    (disk full, an I/O error) loses no finding, and the scan still says it failed."""
    from mailguard.archive.state import StateError

    try:
        incremental.save()
    except StateError as exc:
        # The reason is SQLite's or the system's, without a path (--redact).
        say(f"mailguard: state: not updated ({exc}); the register is complete, and the next "
            "scan with this state reads this run's mail again")  # fmt: skip
        return False
    return True


def _plan_incremental(incremental: Incremental, source: str, units: list[Unit]) -> list[Unit]:
    from mailguard.archive.maildir import is_maildir

    if units[0].kind == "mbox":
        return incremental.plan_mbox(source, Path(units[0].path), units)
    return incremental.plan_files(source, Path(source), units, is_maildir(Path(source)))


def _pst_sources(
    stack: contextlib.ExitStack, source: str, wanted: Sequence[str], jobs: int,
    incremental: Incremental | None, failed: list[ErrorEntry],
) -> list[tuple[str, list[Unit]]]:  # fmt: skip
    """Each chosen mail folder of a PST as a source; a PST that cannot be read is an error
    entry; ``readpst`` missing stops the scan (no PST could be read)."""
    try:
        unpacked = stack.enter_context(pst.unpacked(source))
    except pst.PstToolMissing as exc:
        raise _Stop(str(exc)) from None
    except pst.PstError as exc:
        failed.append(ErrorEntry(source, str(exc), SOURCE))
        return []
    # What readpst skipped or a truncation cut off: read in part, so an error, not silence.
    failed += [
        ErrorEntry(x.source, x.message, SOURCE) for x in pst.relevant(unpacked.losses, wanted)
    ]
    chosen, problem = pst.select(source, unpacked.folders, wanted, unpacked.mail)
    if problem:
        failed.append(ErrorEntry(source, problem, SOURCE))
    digest = pst.file_hash(Path(source)) if incremental is not None and chosen else None
    out: list[tuple[str, list[Unit]]] = []
    if not unpacked.folders and problem is None:
        out.append((source, []))  # read, and no mail in it: listed as read, like an empty mbox
    for folder in chosen:
        units = mbox_units(folder.mbox, jobs, label=folder.label)
        if incremental is not None:
            units = incremental.plan_mbox(folder.label, folder.mbox, units, digest)
        out.append((folder.label, units))
    return out


def _read_here(
    units: list[Unit], max_bytes: int, incremental: Incremental | None
) -> Iterator[Unit]:
    """mbox units read in this process, as batches of messages for remote workers."""
    for unit in units:
        if unit.offsets:
            parts = [iter_mbox(Path(unit.path), at, at + 1, max_bytes, unit.label)
                     for at in unit.offsets]  # fmt: skip
        else:
            parts = [iter_mbox(Path(unit.path), unit.start, unit.end, max_bytes, unit.label)]
        batch: list[Input] = []
        for part in parts:
            for item in part:
                batch.append(item)
                if len(batch) >= IMAP_UNIT:
                    yield _aliased(_inputs_unit(batch), unit, incremental)
                    batch = []
        if batch:
            yield _aliased(_inputs_unit(batch), unit, incremental)


def _aliased(new: Unit, old: Unit, incremental: Incremental | None) -> Unit:
    if incremental is not None:
        incremental.alias(old, new)
    return new


def _errors(entries: list[ErrorEntry]) -> Tally:
    tally = Tally()
    for entry in entries:
        tally.add_error(entry.source, entry.message, entry.kind)
    return tally


def _imap_units(
    target: ImapTarget, password: str, config: Config, window: Window,
    failed: list[ErrorEntry], resume: ImapResume | None = None,
    mark: Callable[[Unit], None] | None = None,
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
    read = 0

    def unit() -> Unit:
        """A batch; the stored positions come first and in batches of their own (``mark``)."""
        made = _inputs_unit(batch)
        if mark is not None and resume is not None and read <= resume.again_count:
            mark(made)
        return made

    try:
        for item in imap.iter_imap(
            target, password, since=window.since, until=window.until, needs_body=needs_body,
            resume=resume,
        ):  # fmt: skip
            batch.append(item)
            read += 1
            if len(batch) >= IMAP_UNIT or (resume is not None and read == resume.again_count):
                yield unit()
                batch = []
    except imap.ImapError as exc:
        failed.append(ErrorEntry(target.label(), str(exc), SOURCE))
    except KeyboardInterrupt:
        # Ctrl-C while waiting on the server: the messages already fetched are still
        # judged (the scanner takes no unit after this one), so the register keeps them.
        if batch:
            yield unit()
        raise
    if batch:
        yield unit()


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
