"""Exceptions that cross the library boundary; each maps to exit code 2 in the CLI."""

from __future__ import annotations


class MailguardError(Exception):
    """Base class: anything that stops mailguard from judging input it was given."""


class ConfigError(MailguardError):
    """The configuration is invalid (unknown key, wrong type, bad value)."""


class InputError(MailguardError):
    """Input could not be read or is not an email message at all."""
