"""Reading inputs for ``mailguard check`` and ``mailguard scan``: files, folders, stdin.

Reading is separated from judging so that an unreadable file becomes one ``error`` entry in
the report while the other inputs are still checked.

Every read here is bounded, because the paths come from archives and trees nobody vetted:
only regular files are read (a symlink to ``/dev/zero`` would fill memory, a FIFO would
block forever), each up to a size cap, and a folder that cannot be listed is reported, not
skipped, so that "0 unreadable" is never said of a tree that was only half read.
"""

from __future__ import annotations

import os
import re
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import BinaryIO

from mailguard import compressed, msgfile
from mailguard.limits import Limits

STDIN = "-"
DEFAULT_PATTERN = "*.eml"
"""Also takes Outlook ``*.msg`` files in folders (converted, see :mod:`mailguard.msgfile`)."""
MAX_BYTES = Limits().max_message_bytes
_CHUNK = 1024 * 1024
_SPOOL_CHUNK = 4 * 1024 * 1024
BOM = b"\xef\xbb\xbf"
"""A UTF-8 byte-order mark, which some Windows tools put before an mbox's first line."""
_ONE_READ = 256 * 1024
_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
"""How a message file is opened: a FIFO or a terminal put in its place cannot block or
become our controlling terminal (the type is then checked on the descriptor)."""


@dataclass(frozen=True, slots=True)
class Input:
    source: str
    data: bytes | None
    error: str | None = None
    unreadable: bool = False
    """The path itself could not be read (``error`` is the reason): an input error, not a
    message that failed to parse."""
    incomplete: str = ""
    """Why ``data`` may be only part of the message (an mbox that ends inside it): the
    message is judged as it is, and this becomes a finding that says so."""


def is_folder(path: Path) -> bool:
    """``Path.is_dir`` without its exception for a folder we may not look into (3.11 raises
    PermissionError there): what cannot be looked at is found out, and reported, on reading."""
    try:
        return stat.S_ISDIR(path.stat().st_mode)
    except (OSError, ValueError):
        return False


def matches(name: str, pattern: str) -> bool:
    """Shell-pattern match ignoring case: ``MESSAGE.EML`` is as much a message as ``a.eml``."""
    return fnmatchcase(name.casefold(), pattern.casefold())


def find_files(root: Path, pattern: str) -> tuple[list[Path], list[Input]]:
    """:func:`find_names` as paths."""
    names, errors = find_names(root, pattern)
    return [Path(name) for name in names], errors


def find_names(
    root: Path | str, pattern: str, *, maildirs: list[str] | None = None
) -> tuple[list[str], list[Input]]:
    """Entries under ``root`` whose name matches ``pattern``, sorted, and what could not be
    walked (as unreadable inputs), so a gap in the tree is reported, not skipped.

    Names are kept as strings and sorted by their components, which is the order of
    sorting them as ``Path`` objects (``a/b`` before ``a-b/c``) at a third of the cost.

    Folders that cannot be listed are such gaps, and so are symbolic links to folders: they
    are not followed (a link to ``/`` would walk the whole machine, a loop forever), and
    their target can be named as a source of its own. Matching entries that are not
    folders are returned whatever their type, so a FIFO or a device named ``x.eml`` is
    reported by :func:`read_file`.

    ``maildirs``: a scan's walk. A folder with ``cur/`` and ``new/`` (``root`` too) is a
    Maildir, whose message files match no pattern: it is appended to ``maildirs`` for
    :func:`~mailguard.archive.maildir.maildir_files` to list, its ``cur/``, ``new/`` and
    ``tmp/`` are not searched, nor are the files beside them (a mail server's index and
    state files); its other folders are (Maildir++ folders such as ``.Sent``, the nested
    folders of Dovecot's ``LAYOUT=fs``). Telling it from the listing costs nothing more.
    """
    found: list[str] = []
    errors: list[Input] = []
    stack = [os.fspath(Path(root))]  # normalised once, as Path(entry.path) would be
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as entries:
                listed = list(entries)
        except OSError as exc:
            errors.append(Input(folder, None, _reason(exc), unreadable=True))
            continue
        folders: list[tuple[str, str]] = []
        files: list[str] = []
        for entry in listed:
            try:
                is_dir = entry.is_dir()
                is_link = is_dir and entry.is_symlink()
            except OSError:
                is_dir = is_link = False
            if is_link:
                errors.append(Input(entry.path, None, _LINKED_FOLDER, unreadable=True))
            elif is_dir:
                folders.append((entry.name, entry.name if folder == "." else entry.path))
            elif matches(entry.name, pattern) or (
                pattern == DEFAULT_PATTERN and entry.name.lower().endswith(_ALSO_BY_DEFAULT)
            ):
                files.append(entry.name if folder == "." else entry.path)  # as Path() spells it
        if maildirs is not None and {"cur", "new"} <= {name for name, _ in folders}:
            maildirs.append(folder)
            stack += (path for name, path in folders if name not in _MAILDIR_PARTS)
            continue
        stack += (path for _, path in folders)
        found += files
    found.sort(key=_components)
    errors.sort(key=lambda i: i.source)
    return found, errors


_MAILDIR_PARTS = frozenset(("cur", "new", "tmp"))
_ALSO_BY_DEFAULT = (".msg", ".mbox")
"""Found with the default pattern too: Outlook messages and mbox files (each of whose
messages is judged: an mbox judged as one message would hide all but its first)."""


def _components(name: str) -> list[str]:
    return name.split(os.sep)  # noqa: PTH206 - Path.parts is what this avoids building


_LINKED_FOLDER = "a symbolic link to a folder, not followed; name its target as a source to read it"


def iter_inputs(
    paths: list[str],
    *,
    pattern: str = "*.eml",
    stdin: BinaryIO | None = None,
    max_bytes: int = MAX_BYTES,
) -> Iterator[Input]:
    """Yield every message named by ``paths``; folders are searched for ``pattern``."""
    for item in iter_planned(paths, pattern=pattern, stdin=stdin, max_bytes=max_bytes):
        yield read_file(item, max_bytes) if isinstance(item, str) else item


class Spooled(str):
    """The name of a file holding what came on stdin: read as a file, reported as
    ``<stdin>`` (its messages ``<stdin>@offset``), never by the file's name."""

    label = "<stdin>"


def iter_planned(
    paths: list[str],
    *,
    pattern: str = "*.eml",
    stdin: BinaryIO | None = None,
    max_bytes: int = MAX_BYTES,
    spool: Path | None = None,
) -> Iterator[Input | str]:
    """:func:`iter_inputs` before the files are read: a file's name, or an :class:`Input`
    for what is not a file to read (stdin, already read; a folder that cannot be walked).

    Stdin over ``max_bytes`` that starts like an mbox (``cat outbox.mbox | mailguard check
    -``) is copied into a file in the folder ``spool`` (private, and removed by the caller)
    and planned as a :class:`Spooled` file, which an mbox of any size is split from, as a
    named one is; anything else over the cap is one "too large" error.

    The order is :func:`iter_inputs`'s, so ``check --jobs N`` can hand the names to other
    processes to read and still report in the order a single process would.
    """
    for name in paths:
        if name == STDIN:
            stream = stdin if stdin is not None else sys.stdin.buffer
            parts = _read_capped(stream, max_bytes)
            if isinstance(parts, bytes):
                yield _converted("<stdin>", parts, max_bytes)
            elif spool is not None and b"".join(parts[:2]).lstrip(BOM).startswith(b"From "):
                yield _spooled(parts, stream, spool)
            else:
                yield Input("<stdin>", None, too_large(None, max_bytes), unreadable=True)
            continue
        if is_folder(Path(name)):
            found, errors = find_names(name, pattern)
            yield from errors
            if not found and not errors:
                yield Input(name, None, f"no files matching {pattern!r} under {name}")
            yield from found
        else:
            yield os.fspath(Path(name))  # as the report has always spelled it: ./a -> a


def read_file(path: Path | str, max_bytes: int = MAX_BYTES) -> Input:
    """One regular file of at most ``max_bytes`` as an :class:`Input`; anything else (no
    such file, a folder, a FIFO, a device, too large) becomes its ``error``.

    The type is checked on the open descriptor (``fstat``), not on the name beforehand, so
    a file swapped for a FIFO in between cannot block the read: ``O_NONBLOCK`` makes the
    open itself return at once.
    """
    name = str(path)
    try:
        fd = os.open(path, _READ_FLAGS)
    except OSError as exc:
        return Input(name, None, _reason(exc), unreadable=True)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return Input(name, None, not_regular(info.st_mode), unreadable=True)
        if info.st_size > max_bytes:
            return Input(name, None, too_large(info.st_size, max_bytes), unreadable=True)
        data = b""
        if 0 < info.st_size <= _ONE_READ:
            # Most messages: one system call and no buffered reader (half the cost).
            data = os.read(fd, info.st_size + 1)
            if len(data) <= info.st_size:
                return _converted(name, data, max_bytes)
        with os.fdopen(fd, "rb", closefd=False) as f:
            if not data:
                data = f.read(info.st_size + 1)
            if len(data) > info.st_size:  # grew since fstat, or a size-0 /proc-like file
                rest = _read_capped(f, max_bytes - len(data))
                if not isinstance(rest, bytes):
                    return Input(name, None, too_large(None, max_bytes), unreadable=True)
                data += rest
        return _converted(name, data, max_bytes)
    except OSError as exc:
        return Input(name, None, _reason(exc), unreadable=True)
    finally:
        os.close(fd)


_HEAD_CHUNK = 64 * 1024
_HEAD_END = re.compile(rb"\n\r?\n")


def read_head(path: Path | str, max_bytes: int = MAX_BYTES) -> Input:
    """A file's header block (to its first blank line) as an :class:`Input`, read in
    chunks that stop there; :func:`read_file`'s answer for anything else (an Outlook
    ``.msg``, which must be converted whole, and every error).

    Why: a ``--state`` re-scan rebuilds each stored incident from its record and four
    header fields. Reading the whole file for them cost a 2 MB read per message with a
    2 MB attachment (an mbox's re-scan already stopped at the blank line).
    """
    name = str(path)
    try:
        fd = os.open(path, _READ_FLAGS)
    except OSError:
        return read_file(path, max_bytes)  # its error entry, worded as every other
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > max_bytes:
            return read_file(path, max_bytes)
        data = bytearray()
        while len(data) < max_bytes and (chunk := os.read(fd, _HEAD_CHUNK)):
            if not data and (msgfile.is_msg(chunk) or compressed.kind(chunk) is not None):
                return read_file(path, max_bytes)  # its header block is not where it lies
            searched = max(0, len(data) - 2)  # a blank line split between two chunks
            data += chunk
            end = _HEAD_END.search(data, searched)
            if end is not None:
                return Input(name, bytes(data[: end.end()]))
        return Input(name, bytes(data[:max_bytes]))
    except OSError:
        return read_file(path, max_bytes)
    finally:
        os.close(fd)


def _converted(name: str, data: bytes, max_bytes: int) -> Input:
    """The message itself: a compressed file unpacked (:mod:`mailguard.compressed`), an
    Outlook .msg converted (an error entry if either cannot be)."""
    if compressed.kind(data) is not None:
        try:
            data = compressed.decompress(data, max_bytes)
        except compressed.CompressedError as exc:
            return Input(name, None, str(exc), unreadable=True)
    if not msgfile.is_msg(data):
        return Input(name, data)
    try:
        return Input(name, msgfile.convert(data, max_bytes))
    except msgfile.MsgError as exc:
        return Input(name, None, str(exc), unreadable=True)


def _read_capped(stream: BinaryIO, max_bytes: int) -> bytes | list[bytes]:
    """Everything left in ``stream``, or the chunks read so far once it exceeds
    ``max_bytes``; read in chunks, since one ``read(max_bytes + 1)`` allocates the whole cap
    whatever the input's size."""
    parts: list[bytes] = []
    total = 0
    while chunk := stream.read(_CHUNK):
        parts.append(chunk)
        total += len(chunk)
        if total > max_bytes:
            return parts
    return b"".join(parts)


def _spooled(parts: list[bytes], stream: BinaryIO, spool: Path) -> Input | Spooled:
    """``parts`` and the rest of ``stream`` in a new file of ``spool`` (mode 0600)."""
    path = spool / f"stdin-{sum(1 for _ in spool.iterdir())}.mbox"
    try:
        with path.open("xb") as f:
            os.fchmod(f.fileno(), 0o600)
            for part in parts:
                f.write(part)
            parts.clear()
            while chunk := stream.read(_SPOOL_CHUNK):
                f.write(chunk)
    except OSError as exc:
        path.unlink(missing_ok=True)
        why = f"could not keep it on disk to split it ({exc.strerror or exc})"
        return Input("<stdin>", None, why, unreadable=True)
    return Spooled(path)


def not_regular(mode: int) -> str:
    kinds = [
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ]
    kind = next((label for test, label in kinds if test(mode)), "not a regular file")
    return f"not a regular file ({kind}); only regular files are read"


def too_large(size: int | None, max_bytes: int) -> str:
    what = f"{size:,} bytes" if size is not None else "more bytes"
    return f"{what}, over the size cap of {max_bytes:,} bytes (limits.max_message_bytes); not read"


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)
