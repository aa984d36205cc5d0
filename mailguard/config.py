"""Configuration: ``mailguard.toml`` or ``[tool.mailguard]`` in ``pyproject.toml``.

Strict on purpose: a misspelt key in a data-protection gate silently doing nothing is worse
than a refusal to start, so unknown keys and wrong types raise :class:`ConfigError`.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from mailguard.domains import DomainSet
from mailguard.errors import ConfigError
from mailguard.limits import Limits
from mailguard.milter import settings as milter_settings
from mailguard.milter.settings import MilterSettings
from mailguard.rules import COMMON_RULE_KEYS, SEVERITIES, Rule, data_path, find_rule, load_rules

CONFIG_FILE = "mailguard.toml"

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RuleSettings:
    """A rule as configured: the definition plus the user's overrides, validated."""

    rule: Rule
    enabled: bool
    severity: str
    weight: int
    options: Mapping[str, Any]

    @property
    def code(self) -> str:
        return self.rule.code


@dataclass(frozen=True, slots=True)
class Scoring:
    warn_at: int = 30
    """Score (0-100) from which a message is ``warn``."""
    block_at: int = 70
    """Score (0-100) from which a message is ``block``."""


@dataclass
class Config:
    """Everything that changes a decision. All fields have working defaults."""

    internal_domains: tuple[str, ...] = ()
    """Your organisation's domains (subdomains included). Empty: the sender's domain."""
    personal_domains: tuple[str, ...] | None = None
    """Consumer mailbox providers; ``None`` uses the list shipped in rules/data."""
    extra_personal_domains: tuple[str, ...] = ()
    """Added to the provider list (e.g. a local ISP)."""
    mailing_lists: tuple[str, ...] = ()
    """List addresses or shell patterns (``*@lists.example.org``) whose members are hidden."""
    scoring: Scoring = field(default_factory=Scoring)
    limits: Limits = field(default_factory=Limits)
    rules: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Per-rule overrides keyed by code or name: enabled, severity, weight, options."""
    milter: MilterSettings = field(default_factory=MilterSettings)
    """What ``mailguard milter`` does with verdicts (``[milter]``); no effect on decisions."""
    source: Path | None = None
    """File the configuration came from, for messages."""

    def __post_init__(self) -> None:
        for name in _TOP_KEYS:
            # A bare string would be iterated letter by letter: "example.org" as 11 domains.
            if isinstance(getattr(self, name), str):
                raise ConfigError(f"{name}: expected a list of strings, got one string")
        if not 0 <= self.scoring.warn_at <= self.scoring.block_at <= 100:
            raise ConfigError("scoring: need 0 <= warn_at <= block_at <= 100")
        # Validate rule overrides now so that errors surface at load time, not per message.
        _ = self.rule_settings

    @functools.cached_property
    def rule_settings(self) -> dict[str, RuleSettings]:
        """Effective settings of every rule, keyed by code."""
        overrides: dict[str, Mapping[str, Any]] = {}
        for key, value in self.rules.items():
            rule = find_rule(key)
            if rule.code in overrides:
                raise ConfigError(f"rules: {rule.code} is configured twice ({key!r})")
            if not isinstance(value, Mapping):
                raise ConfigError(f"rules.{key}: expected a table")
            overrides[rule.code] = value
        return {
            rule.code: _settle_rule(rule, overrides.get(rule.code, {})) for rule in load_rules()
        }

    @functools.cached_property
    def internal_set(self) -> DomainSet:
        return DomainSet(self.internal_domains)

    @functools.cached_property
    def personal_set(self) -> DomainSet:
        base = self.personal_domains
        if base is None:
            base = tuple(_shipped_personal_domains())
        return DomainSet((*base, *self.extra_personal_domains))

    def with_overrides(self, **changes: Any) -> Config:
        """A copy with fields replaced (used for CLI flags that override the file)."""
        return replace(self, **changes)


def _settle_rule(rule: Rule, override: Mapping[str, Any]) -> RuleSettings:
    where = f"rules.{rule.code}"
    unknown = set(override) - set(COMMON_RULE_KEYS) - set(rule.options)
    if unknown:
        known = ", ".join([*COMMON_RULE_KEYS, *rule.options])
        raise ConfigError(f"{where}: unknown option(s) {sorted(unknown)}; known: {known}")
    enabled = override.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigError(f"{where}.enabled: expected true or false")
    severity = override.get("severity", rule.severity)
    if severity not in SEVERITIES:
        raise ConfigError(f"{where}.severity: expected one of {', '.join(SEVERITIES)}")
    weight = override.get("weight", rule.weight)
    if not isinstance(weight, int) or isinstance(weight, bool) or not 0 <= weight <= 100:
        raise ConfigError(f"{where}.weight: expected an integer from 0 to 100")
    options = rule.defaults()
    for name, spec in rule.options.items():
        if name in override:
            options[name] = spec.validate(override[name], f"{where}.{name}")
    return RuleSettings(rule, enabled, severity, weight, options)


@functools.cache
def _shipped_personal_domains() -> tuple[str, ...]:
    text = data_path("personal_domains.txt").read_text(encoding="utf-8")
    return tuple(
        line.split("#", 1)[0].strip() for line in text.splitlines() if line.split("#", 1)[0].strip()
    )


# ---------------------------------------------------------------------------- loading

_TOP_KEYS = {
    "internal_domains": "list[str]",
    "personal_domains": "list[str]",
    "extra_personal_domains": "list[str]",
    "mailing_lists": "list[str]",
}


def from_mapping(data: Mapping[str, Any], source: Path | None = None) -> Config:
    """Build a :class:`Config` from parsed TOML, rejecting anything unknown."""
    where = str(source) if source else "config"
    allowed = {*_TOP_KEYS, "scoring", "limits", "rules", "milter"}
    unknown = set(data) - allowed
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(allowed)}")
    kwargs: dict[str, Any] = {"source": source}
    for key in _TOP_KEYS:
        if key in data:
            value = data[key]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{where}: {key} must be a list of strings")
            kwargs[key] = tuple(value)
    kwargs["scoring"] = _dataclass_from(Scoring, data.get("scoring", {}), f"{where}: scoring")
    kwargs["limits"] = _dataclass_from(Limits, data.get("limits", {}), f"{where}: limits")
    rules = data.get("rules", {})
    if not isinstance(rules, Mapping):
        raise ConfigError(f"{where}: rules must be a table of rule codes")
    kwargs["rules"] = dict(rules)
    kwargs["milter"] = milter_settings.from_mapping(data.get("milter", {}), f"{where}: milter")
    try:
        return Config(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _dataclass_from(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a table")
    known = {f.name: f for f in fields(cls)}
    unknown = set(data) - set(known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(known)}")
    for key, value in data.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"{where}.{key}: expected a non-negative integer, got {value!r}")
    return cls(**data)


MAX_CONFIG_BYTES = 16 * 1024 * 1024
"""A config file larger than this is refused (a list of many domains stays far below)."""

# Whether a pyproject.toml that is not valid TOML meant to configure mailguard: any table
# header or dotted key naming tool.mailguard, however spaced or quoted.
_MAILGUARD_TABLE = re.compile(r"""\btool\s*\.\s*(?:mailguard|"mailguard"|'mailguard')(?![\w-])""")


def load_file(path: Path) -> Config:
    """Load ``mailguard.toml`` or the ``[tool.mailguard]`` table of a ``pyproject.toml``."""
    data = _parse(path, _read(path))
    if path.name == "pyproject.toml":
        tool = data.get("tool", {})
        if not isinstance(tool, Mapping):
            raise ConfigError(f"{path}: tool must be a table")
        if "mailguard" not in tool:
            raise ConfigError(f"{path}: no [tool.mailguard] table")
        data = tool["mailguard"]
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path}: tool.mailguard must be a table")
    return from_mapping(data, path)


def _read(path: Path) -> bytes:
    """The file's bytes: a regular file only, at most :data:`MAX_CONFIG_BYTES`.

    Opened non-blocking so that a FIFO named as the config cannot hang a start-up or a
    milter's reload, and checked with ``fstat`` so that ``/dev/zero`` is not read forever.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise ConfigError(f"cannot read config {path}: Is a directory")
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"cannot read config {path}: not a regular file")
        if info.st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES // 2**20} MiB")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_CONFIG_BYTES:  # grew while being read
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES // 2**20} MiB")
    return data


def _parse(path: Path, data: bytes) -> dict[str, Any]:
    """TOML from UTF-8 bytes (TOML requires UTF-8); any defect names the file and line."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"{path}: not UTF-8 (line {line}, byte {data[exc.start]:#04x}); "
            "TOML files must be saved as UTF-8"
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def discover(start: Path | None = None) -> Path | None:
    """Find the nearest ``mailguard.toml`` or ``pyproject.toml`` with ``[tool.mailguard]``.

    A file that cannot be examined (a directory that may not be searched, an unreadable
    ``pyproject.toml``) is a :class:`ConfigError`: it may hold the settings, and falling
    back to the defaults would silently weaken the gate.
    """
    try:
        here = (start or Path.cwd()).resolve()
    except OSError as exc:
        raise ConfigError(f"cannot search for {CONFIG_FILE}: {exc.strerror or exc}") from None
    for directory in (here, *here.parents):
        candidate = directory / CONFIG_FILE
        pyproject = directory / "pyproject.toml"
        try:
            if candidate.is_file():
                return candidate
            if pyproject.is_file() and _has_tool_table(pyproject):
                return pyproject
        except OSError as exc:
            where = exc.filename or directory
            raise ConfigError(
                f"cannot search for {CONFIG_FILE} in {where}: {exc.strerror or exc} "
                "(name a file with --config, or use --no-config)"
            ) from None
    return None


def _has_tool_table(path: Path) -> bool:
    """Whether ``path`` configures mailguard; a broken file counts if it names our table.

    A broken ``pyproject.toml`` that never mentions ``tool.mailguard`` belongs to some other
    tool and is skipped (logged at debug level); one that does is loaded, so that its error
    is reported rather than the defaults used.
    """
    data = _read(path)
    try:
        parsed = _parse(path, data)
    except ConfigError as exc:
        if _MAILGUARD_TABLE.search(data.decode("utf-8", errors="replace")):
            return True
        log.debug("ignoring %s: %s; it has no [tool.mailguard] table", path, exc)
        return False
    tool = parsed.get("tool", {})
    return isinstance(tool, Mapping) and "mailguard" in tool


def load(
    path: str | os.PathLike[str] | None = None,
    *,
    search_from: str | os.PathLike[str] | None = None,
) -> Config:
    """Load the given file, else the nearest one from ``search_from`` (default: the current
    directory) upwards, else the defaults; exported as ``mailguard.load_config``.

    The library never reads config files by itself (``mailguard.check`` uses the defaults
    unless given a ``config``): this is how a script gets the settings the CLI would use.
    """
    found = Path(path) if path is not None else discover(_path(search_from))
    return load_file(found) if found else Config()


def _path(value: str | os.PathLike[str] | None) -> Path | None:
    return None if value is None else Path(value)
