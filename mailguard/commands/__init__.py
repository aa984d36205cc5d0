"""The commands behind ``mailguard``'s command line, as importable functions.

:mod:`mailguard.cli` only parses options and calls these; everything a command does (load
the settings through the one shared loader, read the inputs, run the engine or the scanner
or the milter, write the output, choose the exit status) happens here, so a script or a test
can run a command without a command-line parser. A command returns its exit status and
raises :class:`CommandError` (or :class:`~mailguard.errors.ConfigError`) for a usage or
configuration error, which the CLI prints and turns into exit status 2.

Submodules are imported by whoever needs them: ``mailguard check`` should not pay for
importing the milter or the archive scanner.
"""

from __future__ import annotations

from mailguard.errors import MailguardError


class CommandError(MailguardError):
    """A command cannot start or finish: bad option values, an output that cannot be
    written. The message is for the user; the CLI adds ``mailguard: error:``."""
