"""Maildir folders: one message per file in ``cur/`` and ``new/`` (``tmp/`` is unfinished)."""

from __future__ import annotations

import os
from pathlib import Path

from mailguard.sources import Input, is_folder

SUBDIRS = ("cur", "new")


def is_maildir(path: Path) -> bool:
    return all(is_folder(path / sub) for sub in ("", *SUBDIRS))


def maildir_files(path: Path) -> tuple[list[Path], list[Input]]:
    """Every delivered message, ``cur/`` then ``new/``, each sorted by name, and the
    subfolders that could not be listed (as unreadable inputs, so the gap is reported).

    Names start with the delivery time, so this is roughly chronological; dot files are
    left out (some clients keep their own state there). Anything else that is not a
    folder is listed, so a file that cannot be read becomes an error entry, not a gap.
    """
    files: list[Path] = []
    errors: list[Input] = []
    for sub in SUBDIRS:
        folder = path / sub
        try:
            with os.scandir(folder) as entries:
                listed = sorted(
                    (entry for entry in entries if not entry.name.startswith(".")),
                    key=lambda entry: entry.name,
                )
        except OSError as exc:
            errors.append(Input(str(folder), None, exc.strerror or str(exc), unreadable=True))
            continue
        files += [Path(entry.path) for entry in listed if not _is_dir(entry)]
    return files, errors


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False
