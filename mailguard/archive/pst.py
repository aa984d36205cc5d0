"""Outlook/Exchange exports (``.pst``, ``.ost``): unpacked by ``readpst`` into mbox folders.

``readpst`` (Debian ``pst-utils``) is the one maintained reader of both formats (ANSI and
Unicode PST, OST). It runs as a subprocess with a timeout, writing every mail folder as an
mbox into a private temporary directory (mode 0700) that :func:`unpacked` removes when the
scan ends, also on Ctrl-C or an error. Each folder then is a source of its own,
``file.pst:Sent Items``, judged as mbox units like any other mbox: the register lists
which folders were read, and ``--pst-folder`` restricts the scan to some.

A PST that ``readpst`` cannot read (truncated, corrupt, not a PST) is a :class:`PstError`,
an error entry for that source while the others are scanned. A PST it reads only in part is
worse, since readpst still exits 0. So what it wrote is checked against a second reader's
count (:mod:`mailguard.archive.pst_census`, libpff): a folder whose mbox holds fewer
messages than the PST's folder holds mail becomes a :class:`Loss` entry (the register's
errors), and the scan ends with status 2 saying how many of which folder went unread,
instead of reporting fewer messages. Without libpff installed, readpst's own "items
skipped" counts stand in, with their false alarms (empty folders, tasks). ``-D`` makes
readpst descend into folders named "Deleted Items" too, which it otherwise leaves out
without a word: mail deleted but still in the file is mail sent.

``readpst`` missing is :class:`PstToolMissing`, which names the package: without it no PST
can be read, so the scan does not start.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import struct
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from mailguard.archive import pst_census
from mailguard.archive.mbox import is_from_line

PACKAGE = "pst-utils"
TOOL = "readpst"
MAGIC = b"!BDN"
SUFFIXES = (".pst", ".ost")
TIMEOUT = 6 * 3600.0
"""A multi-gigabyte PST takes minutes; a readpst that hangs still ends."""


CENSUS_GRACE = 60.0
"""Seconds the census may run on after readpst is done (or twice readpst's time)."""


class PstError(Exception):
    """This PST cannot be read; the scan goes on with the other sources."""


class PstToolMissing(Exception):
    """``readpst`` is not installed: no PST can be read."""


def is_pst(source: str) -> bool:
    """A regular file named ``*.pst``/``*.ost`` or starting with the PST signature."""
    path = Path(source)
    if not path.is_file():
        return False
    if path.suffix.lower() in SUFFIXES:
        return True
    try:
        with path.open("rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def file_hash(path: Path) -> str:
    """SHA-256 of the file: the incremental store's "has this PST changed"."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class Folder:
    label: str
    """``file.pst:Sent Items`` (subfolders as ``Inbox/Projects``)."""
    mbox: Path
    """The unpacked folder, in the private temporary directory."""


@dataclass(frozen=True, slots=True)
class Loss:
    """Mail readpst did not deliver although it exited 0: an error entry of the register.
    ``source`` is the PST (a truncated file) or a folder's label; ``message`` holds only
    mailguard's words and counts, so under ``--redact`` the hashed source is all it shows."""

    source: str
    message: str
    folder: str | None = None
    """readpst's name of the folder (its last path part), for ``--pst-folder``."""


@dataclass(frozen=True, slots=True)
class Unpacked:
    folders: list[Folder]
    losses: list[Loss]
    mail: int | None = None
    """Messages of a mail class the census counted in the file; ``None`` without one."""


def label(source: str, folder: str) -> str:
    return f"{source}:{folder}"


@contextlib.contextmanager
def unpacked(source: str, *, timeout: float = TIMEOUT) -> Iterator[Unpacked]:
    """The PST's mail folders as mbox files, for as long as the context lasts, and what
    could not be read of it."""
    folder = tempfile.mkdtemp(prefix="mailguard-pst-")  # mode 0700: private
    try:
        truncated = _truncation(source)
        done = _unpack(source, Path(folder), timeout)
        yield Unpacked(done.folders, truncated + done.losses, done.mail)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


_EOF_FIELD = {"ansi": (0xA8, "<I"), "unicode": (0xB8, "<Q")}
"""``ibFileEof`` in the header's ROOT structure (MS-PST 2.2.2.5, 2.2.2.6): the size the
writer left the file at. Checked against go-pst's support.pst (Unicode) and 32-bit.pst
(ANSI), whose fields equal their sizes."""


def _truncation(source: str) -> list[Loss]:
    """A file shorter than its header says lost its tail: readpst reads what is left and
    skips what pointed beyond the end, and a cut that falls between folders would not show
    in its counts at all. One read of 192 bytes; a header it cannot make sense of is left
    to readpst to judge."""
    try:
        with Path(source).open("rb") as f:
            head = f.read(0xC0)
            size = os.fstat(f.fileno()).st_size
    except OSError:
        return []
    if len(head) < 0xC0 or not head.startswith(MAGIC):
        return []
    (version,) = struct.unpack_from("<H", head, 10)  # wVer: 14/15 ANSI, 23 and up Unicode
    kind = "ansi" if version in (14, 15) else "unicode" if version >= 23 else None
    if kind is None:
        return []
    offset, fmt = _EOF_FIELD[kind]
    (eof,) = struct.unpack_from(fmt, head, offset)
    if size >= eof:
        return []
    return [Loss(source, f"the file is {size} bytes, its header says {eof}: truncated; "
                 "mail stored in the missing part is not in this scan")]  # fmt: skip


def _unpack(source: str, out: Path, timeout: float) -> Unpacked:
    # Not -q: the per-folder counts of skipped items are only on its standard output.
    # -teajc: every kind readpst converts, so a calendar or contact it writes (and mailguard
    # ignores) is not counted among the skipped items with the corrupt ones. -D: "Deleted
    # Items" too (see the module's docstring).
    argv = [TOOL, "-r", "-D", "-teajc", "-o", str(out), "--", os.path.abspath(source)]  # noqa: PTH100
    counting = pst_census.start(source)  # beside readpst: both mostly wait on the disk
    began = time.monotonic()
    try:
        done = _run(argv, source, timeout)
        folders, found = _folders(source, out)
        # The census reads what readpst read and writes nothing: a census still running
        # long after readpst is done is stuck on this file, and the fallback is better than
        # waiting.
        grace = max(CENSUS_GRACE, 2 * (time.monotonic() - began))
        counted = pst_census.finish(counting, grace) if counting is not None else None
    except BaseException:
        if counting is not None and counting.returncode is None:
            counting.kill()
            counting.wait()
        raise
    if counted is None:
        return Unpacked(folders, skipped(source, done.stdout))
    mail = sum(f.kinds[pst_census.MAIL] + f.kinds[pst_census.UNREADABLE] for f in counted)
    return Unpacked(folders, shortfall(source, counted, found), mail)


def _folders(source: str, out: Path) -> tuple[list[Folder], Counter[str]]:
    """The mail folders readpst wrote, and how many messages each directory holds."""
    folders = []
    found: Counter[str] = Counter()
    # readpst writes <store>/<folder>/.../mbox, and beside it calendar, contacts, journal;
    # a second folder of the same name (same directory) gets mbox00000001, and so on.
    for mbox in sorted(
        p for p in out.rglob("mbox*")
        if _MBOX.fullmatch(p.name) and p.is_file() and not p.is_symlink()
    ):  # fmt: skip
        messages = _steady_boundaries(mbox)
        parts = mbox.relative_to(out).parent.parts
        found["/".join(parts[1:])] += messages
        # The store's own name is no folder.
        name = "/".join(parts[1:]) if len(parts) > 1 else (parts[0] if parts else mbox.name)
        if mbox.name != "mbox":
            name += f" ({int(mbox.name[4:]) + 1})"
        folders.append(Folder(label(source, name), mbox))
    return folders, found


def _run(argv: list[str], source: str, timeout: float) -> subprocess.CompletedProcess[bytes]:
    try:
        done = subprocess.run(
            argv, capture_output=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL
        )
    except FileNotFoundError:
        raise PstToolMissing(
            f"reading {source} needs {TOOL}: install the Debian package {PACKAGE} "
            f"(apt-get install {PACKAGE})"
        ) from None
    except subprocess.TimeoutExpired:
        raise PstError(f"{TOOL} did not finish within {timeout:g} s") from None
    if done.returncode != 0:
        lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
        why = lines[-1][:200] if lines else f"exit status {done.returncode}"
        raise PstError(f"not a readable PST/OST file ({TOOL}: {why})")
    return done


_MBOX = re.compile(r"mbox(?:\d{8})?")


def _dir_name(folder: str) -> str:
    """readpst's directory for a folder name (its ``check_filename``)."""
    return folder.replace("/", "_").replace("\\", "_").replace(":", "_")


def shortfall(
    source: str, counted: list[pst_census.FolderCount], found: Counter[str]
) -> list[Loss]:
    """A loss for each folder whose mail the census counted but readpst did not write.

    Folders are matched by readpst's directory path below the store (the census path below
    the IPM subtree). A name the two read differently (an ANSI file's
    code page) cannot hide a loss, as losses are looked for only when the file's totals
    fall short, and then every short folder is named."""
    expected: Counter[str] = Counter()
    for folder in counted:
        wanted = folder.kinds[pst_census.MAIL] + folder.kinds[pst_census.UNREADABLE]
        if wanted:
            expected["/".join(_dir_name(n) for n in folder.path[1:])] += wanted
    short = sum(expected.values()) - sum(found.values())
    if short <= 0:
        return []
    losses = []
    for key in sorted(expected):
        missing = expected[key] - found[key]
        if missing > 0:
            name = key.rsplit("/", 1)[-1]
            losses.append(Loss(label(source, key or "(top of the file)"), (
                f"{missing} of the {expected[key]} message(s) the file holds in this folder "
                f"were not unpacked by {TOOL} and are not in this scan (unreadable, or in a "
                f"folder {TOOL} does not read)"
            ), name or None))  # fmt: skip
    if not losses:  # only names matched differently: the count is all there is to say
        losses.append(Loss(source, (
            f"{short} message(s) the file holds were not unpacked by {TOOL} and are not in "
            "this scan"
        )))  # fmt: skip
    return losses


_ANNOUNCED = re.compile(rb'^Processing Folder "(.*)"$', re.MULTILINE)
_SUMMARY = re.compile(rb'^\t"(.*)" - (\d+) items done, (\d+) items skipped\.$', re.MULTILINE)


def skipped(source: str, stdout: bytes) -> list[Loss]:
    """readpst's ``"Drafts" - 5 items done, 1 items skipped.`` lines as losses.

    Its skip count lumps together items it could not parse (a damaged or cut-off file) and
    items of a kind it does not convert (tasks, notes, unknown types): it does not tell them
    apart (its debug log tells some, at twice the PST's size and more), so the message says
    both. The store's own line is left out: its entries are the message store record and
    folders readpst cannot classify, 15 of them in an intact support.pst. The store is the
    one line without a ``Processing Folder`` announcement (matched by count, not by order,
    which readpst does not keep). Names are matched whole, greedily to the line's fixed
    tail, so a quote or dash in a folder name does not break the count."""
    announced = Counter(m.group(1) for m in _ANNOUNCED.finditer(stdout))
    lines = [(m.group(1), int(m.group(3))) for m in _SUMMARY.finditer(stdout)]
    summed = Counter(name for name, _ in lines)
    unannounced = [name for name in summed if summed[name] > announced[name]]
    # The store's line is excused only when it cannot be a folder's: should a folder share
    # the store's name, both are reported (a false alarm rather than a silent loss).
    store = unannounced[0] if len(unannounced) == 1 and summed[unannounced[0]] == 1 else None
    losses = []
    for name, lost in lines:
        if lost and name != store:
            folder = name.decode("utf-8", "replace")
            losses.append(Loss(label(source, folder), (
                f"{lost} item(s) readpst skipped in this folder were not scanned: corrupt or "
                "unreadable, or of a kind readpst does not convert (tasks, notes)"
            ), folder))  # fmt: skip
    return losses


_RANDOM = re.compile(rb"LibPST-iamunique-(\d+)_-_-")


def _steady_boundaries(mbox: Path) -> int:
    """readpst draws each MIME boundary at random, so two unpackings of one PST differ in
    length and positions: the incremental store finds a PST's incidents again by their byte
    offsets. Each random number becomes its order of first appearance, ten digits wide
    (distinct numbers stay distinct, so nested boundaries still differ).

    Returns the number of messages, counted by the separator lines the mbox reader splits
    at, so that the count is what the scan reads."""
    numbers: dict[bytes, bytes] = {}
    messages = 0

    def steady(match: re.Match[bytes]) -> bytes:
        number = numbers.setdefault(match.group(1), b"%010d" % len(numbers))
        return b"LibPST-iamunique-" + number + b"_-_-"

    steady_path = mbox.with_name(mbox.name + ".steady")
    with mbox.open("rb") as src, steady_path.open("wb") as dst:
        for line in src:
            if line.startswith(b"From ") and is_from_line(line.rstrip(b"\n")):
                messages += 1
            dst.write(_RANDOM.sub(steady, line) if b"LibPST-iamunique-" in line else line)
    steady_path.replace(mbox)
    return messages


def select(
    source: str, folders: list[Folder], wanted: Sequence[str], mail: int | None = None
) -> tuple[list[Folder], str | None]:
    """The folders ``--pst-folder`` names (by path or last name, any case), and an error
    when it names none of this PST's: a typo must not look like an empty folder.

    A PST with no mail folder at all is an error too (readpst may have read nothing of it)
    unless the census confirms it holds no mail (``mail == 0``: a calendar or contacts
    file), and no folder was asked for: then it is read, and empty."""
    if not folders:
        if mail == 0 and not wanted:
            return [], None
        return [], "no folder with mail in it"
    if not wanted:
        return folders, None
    keys = {w.casefold().strip("/") for w in wanted}
    chosen = [
        f
        for f in folders
        if (name := f.label[len(source) + 1 :].casefold()) in keys
        or name.rsplit("/", 1)[-1] in keys
    ]
    if chosen:
        return chosen, None
    names = ", ".join(f.label[len(source) + 1 :] for f in folders)
    return [], f"no folder named {', '.join(sorted(wanted))} (its folders: {names})"


def relevant(losses: list[Loss], wanted: Sequence[str]) -> list[Loss]:
    """The losses within what ``--pst-folder`` asked for: the file's own always, a folder's
    when its name is the last part of one asked for (readpst names a folder, not its path,
    so a same-named folder elsewhere is reported too: better than one missed)."""
    if not wanted:
        return losses
    names = {w.casefold().strip("/").rsplit("/", 1)[-1] for w in wanted}
    return [x for x in losses if x.folder is None or x.folder.casefold() in names]
