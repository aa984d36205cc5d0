"""Reading inputs for ``mailguard check``: files, folders (recursively) and stdin.

Reading is separated from judging so that an unreadable file becomes one ``error`` entry in
the report while the other inputs are still checked.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

STDIN = "-"


@dataclass(frozen=True, slots=True)
class Input:
    source: str
    data: bytes | None
    error: str | None = None


def iter_inputs(
    paths: list[str], *, pattern: str = "*.eml", stdin: BinaryIO | None = None
) -> Iterator[Input]:
    """Yield every message named by ``paths``; folders are searched for ``pattern``."""
    for name in paths:
        if name == STDIN:
            stream = stdin if stdin is not None else sys.stdin.buffer
            yield Input("<stdin>", stream.read())
            continue
        path = Path(name)
        if path.is_dir():
            found = sorted(p for p in path.rglob(pattern) if p.is_file())
            if not found:
                yield Input(name, None, f"no files matching {pattern!r} under {name}")
            for file in found:
                yield read_file(file)
        else:
            yield read_file(path)


def read_file(path: Path) -> Input:
    """One file as an :class:`Input`; a read failure becomes its ``error``."""
    try:
        return Input(str(path), path.read_bytes())
    except FileNotFoundError:
        return Input(str(path), None, "no such file")
    except IsADirectoryError:
        return Input(str(path), None, "is a directory")
    except OSError as exc:
        return Input(str(path), None, f"cannot read: {exc.strerror or exc}")
