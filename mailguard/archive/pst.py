"""Outlook/Exchange exports (``.pst``, ``.ost``): unpacked by ``readpst`` into mbox folders.

``readpst`` (Debian ``pst-utils``) is the one maintained reader of both formats (ANSI and
Unicode PST, OST). It runs as a subprocess with a timeout, writing every mail folder as an
mbox into a private temporary directory (mode 0700) that :func:`unpacked` removes when the
scan ends, also on Ctrl-C or an error. Each folder then is a source of its own,
``file.pst:Sent Items``, judged as mbox units like any other mbox: the register lists
which folders were read, and ``--pst-folder`` restricts the scan to some.

A PST that ``readpst`` cannot read (truncated, corrupt, not a PST) is a :class:`PstError`,
an error entry for that source while the others are scanned. ``readpst`` missing is
:class:`PstToolMissing`, which names the package: without it no PST can be read, so the
scan does not start.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "pst-utils"
TOOL = "readpst"
MAGIC = b"!BDN"
SUFFIXES = (".pst", ".ost")
TIMEOUT = 6 * 3600.0
"""A multi-gigabyte PST takes minutes; a readpst that hangs still ends."""


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


def label(source: str, folder: str) -> str:
    return f"{source}:{folder}"


@contextlib.contextmanager
def unpacked(source: str, *, timeout: float = TIMEOUT) -> Iterator[list[Folder]]:
    """The PST's mail folders as mbox files, for as long as the context lasts."""
    folder = tempfile.mkdtemp(prefix="mailguard-pst-")  # mode 0700: private
    try:
        yield _unpack(source, Path(folder), timeout)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _unpack(source: str, out: Path, timeout: float) -> list[Folder]:
    argv = [TOOL, "-q", "-r", "-te", "-o", str(out), "--", os.path.abspath(source)]  # noqa: PTH100
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
    folders = []
    for mbox in sorted(p for p in out.rglob("*") if p.is_file() and not p.is_symlink()):
        _steady_boundaries(mbox)
        parts = mbox.relative_to(out).parent.parts
        # readpst writes <store name>/<folder>/.../mbox; the store's own name is no folder.
        name = "/".join(parts[1:]) if len(parts) > 1 else (parts[0] if parts else mbox.name)
        folders.append(Folder(label(source, name), mbox))
    return folders


_RANDOM = re.compile(rb"LibPST-iamunique-(\d+)_-_-")


def _steady_boundaries(mbox: Path) -> None:
    """readpst draws each MIME boundary at random, so two unpackings of one PST differ in
    length and positions: the incremental store finds a PST's incidents again by their byte
    offsets. Each random number becomes its order of first appearance, ten digits wide
    (distinct numbers stay distinct, so nested boundaries still differ)."""
    numbers: dict[bytes, bytes] = {}

    def steady(match: re.Match[bytes]) -> bytes:
        number = numbers.setdefault(match.group(1), b"%010d" % len(numbers))
        return b"LibPST-iamunique-" + number + b"_-_-"

    steady_path = mbox.with_name(mbox.name + ".steady")
    with mbox.open("rb") as src, steady_path.open("wb") as dst:
        for line in src:
            dst.write(_RANDOM.sub(steady, line) if b"LibPST-iamunique-" in line else line)
    steady_path.replace(mbox)


def select(
    source: str, folders: list[Folder], wanted: Sequence[str]
) -> tuple[list[Folder], str | None]:
    """The folders ``--pst-folder`` names (by path or last name, any case), and an error
    when it names none of this PST's: a typo must not look like an empty folder."""
    if not folders:
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
