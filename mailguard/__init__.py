"""mailguard: catch emails that expose their recipients, before they are sent.

Library use::

    import mailguard

    report = mailguard.check(open("mailout.eml", "rb").read())
    if report.verdict == "block":
        ...

``check`` never raises for bad input: unreadable messages get the ``error`` verdict.
For many messages, create one :class:`Engine` and call its ``check`` method.

The library reads no config file on its own; ``load_config()`` finds and reads
``mailguard.toml`` (or ``[tool.mailguard]`` in ``pyproject.toml``) as the CLI does, so a
script can decide exactly as ``mailguard check`` would::

    config = mailguard.load_config()            # or load_config("/etc/mailguard/mailguard.toml")
    report = mailguard.check(raw, config=config)
"""

from __future__ import annotations

from mailguard.config import Config, Scoring
from mailguard.config import load as load_config
from mailguard.engine import Engine, check
from mailguard.errors import ConfigError, InputError, MailguardError
from mailguard.limits import Limits
from mailguard.recipients import Envelope
from mailguard.report import SCHEMA_VERSION, Finding, Report
from mailguard.services import Services

__version__ = "0.1.0"

__all__ = [
    "SCHEMA_VERSION",
    "Config",
    "ConfigError",
    "Engine",
    "Envelope",
    "Finding",
    "InputError",
    "Limits",
    "MailguardError",
    "Report",
    "Scoring",
    "Services",
    "__version__",
    "check",
    "load_config",
]
