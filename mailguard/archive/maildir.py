"""Maildir folders: one message per file in ``cur/`` and ``new/`` (``tmp/`` is unfinished)."""

from __future__ import annotations

from pathlib import Path

SUBDIRS = ("cur", "new")


def is_maildir(path: Path) -> bool:
    return path.is_dir() and all((path / sub).is_dir() for sub in SUBDIRS)


def maildir_files(path: Path) -> list[Path]:
    """Every delivered message, ``cur/`` then ``new/``, each sorted by name.

    Names start with the delivery time, so this is roughly chronological; dot files are
    left out (some clients keep their own state there). Anything else that is not a
    folder is listed, so a file that cannot be read becomes an error entry, not a gap.
    """
    return [
        entry
        for sub in SUBDIRS
        for entry in sorted((path / sub).iterdir())
        if not entry.name.startswith(".") and not entry.is_dir()
    ]
