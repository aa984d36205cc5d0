"""What several commands share: output-format choice, echo, dates."""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import sys
import tempfile
from collections.abc import Iterable
from datetime import date
from pathlib import Path
from typing import Any

import typer

from mailguard.commands import CommandError
from mailguard.outputs.words import printable


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


def warn(text: str) -> None:
    """A message of ours on stderr. It names files and quotes what was read, so their
    control characters are shown, not obeyed by the terminal (a newline in a file name
    could forge a line, ESC could rewrite the screen)."""
    print(printable(text, lines=True), file=sys.stderr)


def day(value: str | None, option: str) -> date | None:
    """A ``--since``/``--until`` date; a wrong one names the option."""
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"{option}: expected a date as YYYY-MM-DD, got {value!r}") from None


#: How text that UTF-8 cannot encode is written: the lone surrogates by which Python keeps
#: the bytes of a file name that is not UTF-8 (``b"\\xff.eml"`` is ``"\\udcff.eml"``).
#: ``backslashreplace`` writes them as ``\\udcff``: readable, and in JSON a valid escape.
UNENCODABLE = "backslashreplace"


def error_text(exc: Exception, redact: Iterable[str | os.PathLike[str] | None] | None) -> str:
    """An error's line; under ``--redact`` (``redact``: the files and sources the user gave)
    with each of them, and any word holding an ``@``, as its hash."""
    if redact is None:
        return str(exc)
    from mailguard.redact import hide_names

    return hide_names(str(exc), redact)


def check_writable(output: Path) -> None:
    """Refuse, before any mail is read, an output that cannot be written: a scan of an
    archive can run for hours, and a typo in ``-o`` found only at the end lost it all.
    Checks what can be known without creating the file: an existing file may be written
    (its folder need not be: ``-o /dev/stdout``, a file in a read-only folder), a new one's
    folder exists and may be written, and it is not a folder itself."""
    folder = output.parent  # "." for a bare file name
    if output.is_dir():
        raise CommandError(f"cannot write {output}: it is a folder")
    if output.exists():
        if not os.access(output, os.W_OK):
            raise CommandError(f"cannot write {output}: permission denied")
        return
    if not folder.is_dir():
        raise CommandError(f"cannot write {output}: its folder does not exist")
    if not os.access(folder, os.W_OK):
        raise CommandError(f"cannot write {output}: permission denied")


LOST_OUTPUT = "the report is written to standard output instead"
"""Said when ``-o`` could not be written at the end: the report is not thrown away."""


def write_report(output: Path, text: str) -> None:
    """Write a report file whole or not at all; a failure is a :class:`CommandError`
    naming the file.

    A regular file is written beside itself and renamed over: a write that fails half way
    (a full disk at the end of a long scan) used to leave a cut-off register where the
    last complete one was, which a reader could take for complete. Its mode is kept (a new
    file's is what ``open`` would give). What is not a regular file (``/dev/stdout``, a
    FIFO) and a file whose folder cannot be written are written in place.
    """
    data = (text if text.endswith("\n") else text + "\n").encode("utf-8", UNENCODABLE)
    target = Path(os.path.realpath(output))  # a symbolic link's file, not the link
    try:
        try:
            info: os.stat_result | None = target.stat()
        except FileNotFoundError:
            info = None
        if info is not None and not stat.S_ISREG(info.st_mode):
            _write_in_place(target, data)
            return
        try:
            fd, name = tempfile.mkstemp(".part", f".{target.name}.", target.parent)
            temporary = Path(name)
        except PermissionError:
            if info is None:
                raise
            _write_in_place(target, data)  # a writable file in a read-only folder
            return
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fchmod(f.fileno(), stat.S_IMODE(info.st_mode) if info else 0o666 & ~_umask())
                os.fsync(f.fileno())  # on disk before it replaces the old report
            temporary.replace(target)
        except BaseException:
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise
    except OSError as exc:
        raise CommandError(f"cannot write {output}: {exc.strerror or exc}") from None


def _write_in_place(target: Path, data: bytes) -> None:
    with target.open("wb") as f:
        f.write(data)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_LATE_NOTE = "mailguard: Ctrl-C: the report is complete and being written; Ctrl-C again stops it"
_late_interrupts = 0
_holding = False
_held_from: Any = None  # what signal.signal returned: a function, SIG_DFL, SIG_IGN or None


def _late_interrupt(signum: int, frame: object) -> None:
    global _late_interrupts
    _late_interrupts += 1
    if _late_interrupts > 1:  # the user insists: stop now, the output may be cut short
        raise KeyboardInterrupt
    # Straight to the descriptor: the handler may run inside a write to sys.stderr (a
    # blocked write interrupted by the signal), where writing to it again raises
    # "reentrant call". A closed stderr loses only the courtesy.
    with contextlib.suppress(OSError):
        os.write(2, (_LATE_NOTE + "\n").encode())


def hold_interrupts() -> None:
    """Every message has been judged: what remains (rendering the report, writing it,
    saving a ``--state`` store) cannot change the result, only lose it.

    A Ctrl-C from here used to raise wherever it landed: during the render it threw away a
    whole scan's work, and once the report was written it still made the exit status 130
    and said "interrupted" after a report that says it is complete (seen in CI: a scan's
    JSON with ``"interrupted": false`` and status 130). The first Ctrl-C is now noted on
    stderr and the command finishes; a second one stops it (status 130, the output perhaps
    cut short), so a write that blocks can still be abandoned. Undone by
    :func:`release_interrupts` when the command returns in-process; a process that ends with
    the command keeps it to the end (:mod:`mailguard.__main__` then ignores SIGINT)."""
    global _late_interrupts, _held_from, _holding
    try:
        previous = signal.signal(signal.SIGINT, _late_interrupt)
    except ValueError:  # not the main thread (embedded): signals are not ours to handle
        return
    if not _holding:
        _held_from, _holding = previous, True
    _late_interrupts = 0


def release_interrupts() -> None:
    """Put back the SIGINT handler :func:`hold_interrupts` replaced, if it did."""
    global _held_from, _holding
    if not _holding:
        return
    previous, _held_from, _holding = _held_from, None, False
    # None: the handler was set from C, which Python cannot put back; its default then.
    with contextlib.suppress(ValueError):
        signal.signal(signal.SIGINT, signal.default_int_handler if previous is None else previous)
