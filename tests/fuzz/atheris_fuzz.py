"""Coverage-guided fuzzing of mailguard with atheris (libFuzzer) — the long campaign.

Usage, from the repository root (``pip install -e '.[fuzz]'`` first)::

    python -m tests.fuzz.atheris_fuzz TARGET [libFuzzer options] [CORPUS_DIR ...]

TARGET is ``check``, ``mbox``, ``milter`` or ``config``; the promises each one checks are in
:mod:`tests.fuzz.targets`. For example::

    mkdir -p /tmp/corpus-check
    python -m tests.fuzz.atheris_fuzz check -max_total_time=3600 -rss_limit_mb=4096 \\
        /tmp/corpus-check tests/fuzz/seeds/check

A crash leaves ``crash-<sha1>`` in the working directory; replay it with the same command
and the file name instead of the corpus directories. See tests/fuzz/README.md.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["mailguard"]):
    from tests.fuzz import targets

_TMP = Path(tempfile.mkdtemp(prefix="mailguard-fuzz-"))


def _mbox(data: bytes) -> None:
    targets.split_mbox(data, _TMP)


def _milter(data: bytes) -> None:
    # The first byte picks the read size, so partial frames are exercised too.
    chunk = data[0] if data else 0
    targets.milter_stream(data[1:], chunk)


def _config(data: bytes) -> None:
    targets.load_config(data, _TMP)
    table = targets.toml_text(data)
    if table is not None:
        targets.config_mapping(table)


TARGETS: dict[str, Callable[[bytes], object]] = {
    "check": targets.check_message,
    "mbox": _mbox,
    "milter": _milter,
    "config": _config,
}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: python -m tests.fuzz.atheris_fuzz {{{','.join(TARGETS)}}} [options]")
    target = TARGETS[sys.argv.pop(1)]
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
