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

import importlib

TYPE_CHECKING = False  # not typing's: importing typing would cost what laziness saves
if TYPE_CHECKING:
    from mailguard.config import Config, Scoring
    from mailguard.config import load as load_config
    from mailguard.engine import Engine, check
    from mailguard.errors import ConfigError, InputError, MailguardError
    from mailguard.limits import Limits
    from mailguard.recipients import Envelope
    from mailguard.report import SCHEMA_VERSION, Finding, Report
    from mailguard.services import Services

#: Public name -> (module, name there). Imported on first use (PEP 562), so that importing
#: the package costs nothing: the command's entry point (:mod:`mailguard.__main__`) can then
#: catch a Ctrl-C pressed while the rest is still loading, which a Python traceback would
#: otherwise report.
_LAZY = {
    "Config": ("mailguard.config", "Config"),
    "Scoring": ("mailguard.config", "Scoring"),
    "load_config": ("mailguard.config", "load"),
    "Engine": ("mailguard.engine", "Engine"),
    "check": ("mailguard.engine", "check"),
    "ConfigError": ("mailguard.errors", "ConfigError"),
    "InputError": ("mailguard.errors", "InputError"),
    "MailguardError": ("mailguard.errors", "MailguardError"),
    "Limits": ("mailguard.limits", "Limits"),
    "Envelope": ("mailguard.recipients", "Envelope"),
    "SCHEMA_VERSION": ("mailguard.report", "SCHEMA_VERSION"),
    "Finding": ("mailguard.report", "Finding"),
    "Report": ("mailguard.report", "Report"),
    "Services": ("mailguard.services", "Services"),
}


def __getattr__(name: str) -> object:
    try:
        module, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'mailguard' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # once: later lookups are plain module attributes
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


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
