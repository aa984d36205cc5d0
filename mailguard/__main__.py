"""The ``mailguard`` command and ``python -m mailguard``.

The command's entry point is here, not in :mod:`mailguard.cli`, so that a Ctrl-C pressed
while the CLI and its libraries load and typer builds its parser (half a second on a busy
box) ends with exit status 130, as it does once a command runs, and not with a traceback.
The package's own import is lazy (:mod:`mailguard`) for the same reason.
"""

from __future__ import annotations

import signal
import sys

EXIT_INTERRUPTED = 130  # scoring.EXIT_INTERRUPTED, not imported: nothing heavy before the guard


def main() -> None:
    try:
        from mailguard.cli import main as run

        # typer builds the command line's parser before its own Ctrl-C handling starts
        run(ends_process=True)
    except KeyboardInterrupt:
        sys.stderr.write("mailguard: interrupted\n")
        raise SystemExit(EXIT_INTERRUPTED) from None
    finally:
        _ignore_late_interrupts()
        _forget_handled_interrupt()


def _ignore_late_interrupts() -> None:
    """The command has ended: its output is written and its status decided. A Ctrl-C from
    here on used to land in the interpreter's shutdown, where CPython has put SIGINT back
    to its default action, and kill the process: status -2 after a complete report (5 of
    120 Ctrl-Cs sent around the end of a 0.7 s scan). Ignored, it cannot change the
    outcome; CPython's shutdown leaves an ignored signal ignored. One that arrives while
    this is being done is caught and the ignoring done again. SIGTERM still ends a
    shutdown that hangs."""
    while True:
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            return
        except KeyboardInterrupt:
            continue
        except (ValueError, OSError):  # not the main thread (embedded): leave it be
            return


def _forget_handled_interrupt() -> None:
    """CPython marks a KeyboardInterrupt "unhandled" when it leaves code run from a string
    (``exec``: dataclasses and namedtuples build their methods so, at import time), and
    keeps the mark even once the interrupt is caught. Under ``python -m`` the interpreter
    then kills itself with SIGINT at exit, so the status is -2 and not ours. Running any
    string clears the mark (seen in 3.11: status -2 in one run of three without this)."""
    exec("None")  # a constant: clears the stale mark, runs nothing


if __name__ == "__main__":
    main()
