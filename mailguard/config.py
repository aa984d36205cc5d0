"""Decision settings: what changes how a message is judged.

The file they come from (``mailguard.toml`` or ``[tool.mailguard]`` in ``pyproject.toml``)
is found and read by :mod:`mailguard.configfile`; this module owns the keys that change a
verdict (domains, mailing lists, ``rules``) and asks ``[scoring]`` and ``[limits]`` of their
owners. What a server does with a verdict (``[milter]``) is not here: the milter owns it.

Strict on purpose: a misspelt key in a data-protection gate silently doing nothing is worse
than a refusal to start, so unknown keys and wrong types raise :class:`ConfigError`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mailguard import configfile
from mailguard.configfile import CONFIG_FILE, MAX_CONFIG_BYTES, ConfigFile, discover
from mailguard.domains import DomainSet, domain_problem
from mailguard.errors import ConfigError
from mailguard.limits import Limits
from mailguard.rules import (
    COMMON_RULE_KEYS,
    SEVERITIES,
    Rule,
    RuleDefinitionError,
    data_path,
    find_rule,
    load_catalog,
    rules_dir,
)
from mailguard.scoring import Scoring
from mailguard.sensitive import SensitiveSettings

__all__ = [
    "CONFIG_FILE",
    "MAX_CONFIG_BYTES",
    "Config",
    "RuleSettings",
    "Scoring",
    "discover",
    "from_file",
    "from_mapping",
    "load",
    "load_file",
]


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


@dataclass
class Config:
    """Everything that changes a decision. All fields have working defaults."""

    internal_domains: tuple[str, ...] = ()
    """Your organisation's domains (subdomains included). Empty: the sender's domain."""
    personal_domains: tuple[str, ...] | None = None
    """Consumer mailbox providers; ``None`` uses the list shipped in rules/data."""
    extra_personal_domains: tuple[str, ...] = ()
    """Added to the provider list (e.g. a local ISP)."""
    partner_domains: tuple[str, ...] = ()
    """Organisations you often write to: a near miss of one is reported as a likely typo."""
    mailing_lists: tuple[str, ...] = ()
    """List addresses or shell patterns (``*@lists.example.org``) whose members are hidden."""
    scoring: Scoring = field(default_factory=Scoring)
    limits: Limits = field(default_factory=Limits)
    rules: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Per-rule overrides keyed by code or name: enabled, severity, weight, options."""
    sensitive: Mapping[str, Any] = field(default_factory=dict)
    """The ``[sensitive]`` section as written; see :attr:`sensitive_settings`."""
    rule_paths: tuple[Path, ...] = ()
    """Directories of extra rule files (custom rules), loaded after the shipped ones."""
    source: Path | None = None
    """File the configuration came from, for messages."""
    derived: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)
    """What a check derives from these settings once and reuses for every message (an
    index), keyed by the check; a copy made by :meth:`with_overrides` starts empty."""
    # Lazy attributes behind the properties below, filled on first use. Explicit rather than
    # functools.cached_property, which a mypyc-compiled class turns into a plain property
    # (recomputed at every access; tests/test_mypyc_safety.py forbids it).
    _catalog: tuple[Rule, ...] | None = field(default=None, init=False, repr=False, compare=False)
    _sensitive: SensitiveSettings | None = field(
        default=None, init=False, repr=False, compare=False
    )
    _rule_settings: dict[str, RuleSettings] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    _override_map: dict[str, Mapping[str, Any]] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    _internal_set: DomainSet | None = field(default=None, init=False, repr=False, compare=False)
    _personal_set: DomainSet | None = field(default=None, init=False, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (to scan workers) without what is derived from the settings: a worker
        derives it again. In the compiled build some of it is compiled objects (frozen
        classes, cached closures), which do not unpickle."""
        state = dict(self.__dict__)
        state.update(dict.fromkeys(_LAZY), derived={})
        return state

    def __post_init__(self) -> None:
        for name in _TOP_KEYS:
            # A bare string would be iterated letter by letter: "example.org" as 11 domains.
            if isinstance(getattr(self, name), str):
                raise ConfigError(f"{name}: expected a list of strings, got one string")
        for name in _DOMAIN_KEYS:
            for entry in getattr(self, name) or ():
                problem = domain_problem(entry)
                if problem:
                    raise ConfigError(f"{name}: {entry!r}: {problem}")
        # Validate rule overrides now so that errors surface at load time, not per message.
        _ = self.rule_settings, self.sensitive_settings

    @property
    def catalog(self) -> tuple[Rule, ...]:
        """Every rule: the shipped ones and those in :attr:`rule_paths`.

        A custom rule file that is malformed, or whose check cannot be imported, is a
        configuration error, reported when the configuration is loaded.
        """
        if self._catalog is not None:
            return self._catalog
        try:
            catalog = load_catalog(tuple(self.rule_paths))
            for rule in catalog:
                if rule.path is not None and rule.path.parent != rules_dir():
                    _ = rule.check
        except RuleDefinitionError as exc:
            raise ConfigError(str(exc)) from None
        self._catalog = catalog
        return catalog

    @property
    def sensitive_settings(self) -> SensitiveSettings:
        """The sensitive-context detection's settings. Options that moved here from a rule
        (``moved_to = "sensitive.…"`` in its file) are still read where the section is silent."""
        if self._sensitive is not None:
            return self._sensitive
        moved: dict[str, Any] = {}
        for code, override in self._overrides.items():
            for name, spec in self.rule_settings[code].rule.options.items():
                section, _, key = (spec.moved_to or "").partition(".")
                if section == "sensitive" and name in override:
                    moved[key] = override[name]
        self._sensitive = SensitiveSettings.from_mapping(self.sensitive, "sensitive", moved)
        return self._sensitive

    @property
    def rule_settings(self) -> dict[str, RuleSettings]:
        """Effective settings of every rule, keyed by code."""
        if self._rule_settings is None:
            overrides = self._overrides
            self._rule_settings = {
                rule.code: _settle_rule(rule, overrides.get(rule.code, {})) for rule in self.catalog
            }
        return self._rule_settings

    @property
    def _overrides(self) -> dict[str, Mapping[str, Any]]:
        if self._override_map is not None:
            return self._override_map
        overrides: dict[str, Mapping[str, Any]] = {}
        for key, value in self.rules.items():
            rule = find_rule(key, self.catalog)
            if rule.code in overrides:
                raise ConfigError(f"rules: {rule.code} is configured twice ({key!r})")
            if not isinstance(value, Mapping):
                raise ConfigError(f"rules.{key}: expected a table")
            overrides[rule.code] = value
        self._override_map = overrides
        return overrides

    @property
    def internal_set(self) -> DomainSet:
        if self._internal_set is None:
            self._internal_set = DomainSet(self.internal_domains)
        return self._internal_set

    @property
    def personal_set(self) -> DomainSet:
        if self._personal_set is None:
            base = self.personal_domains
            if base is None:
                base = tuple(_shipped_personal_domains())
            self._personal_set = DomainSet((*base, *self.extra_personal_domains))
        return self._personal_set

    def with_overrides(self, **changes: Any) -> Config:
        """A copy with fields replaced (used for CLI flags that override the file)."""
        return replace(self, **changes)


_LAZY = (
    "_catalog",
    "_sensitive",
    "_rule_settings",
    "_override_map",
    "_internal_set",
    "_personal_set",
)
"""Config's lazy attributes: derived on first use, never pickled."""


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
    "partner_domains": "list[str]",
    "mailing_lists": "list[str]",
}

_DOMAIN_KEYS = ("internal_domains", "personal_domains", "extra_personal_domains", "partner_domains")
"""The lists of domains (``mailing_lists`` holds addresses and patterns)."""

DECISION_KEYS = (*_TOP_KEYS, "scoring", "limits", "rules", "sensitive", "rule_paths")
"""The top-level keys this module owns; :data:`mailguard.configfile.SECTIONS` are the rest."""


def from_file(file: ConfigFile) -> Config:
    """The decision settings of a config file; other sections are left to their owners.

    Unknown top-level keys are refused here too (not only by the owner of the whole file),
    so ``mailguard.load_config()`` is as strict as ``mailguard check``.
    """
    file.check_keys((*DECISION_KEYS, *configfile.SECTIONS))
    where, data = file.where, file.data
    source = file.path
    kwargs: dict[str, Any] = {"source": source}
    for key in _TOP_KEYS:
        if key in data:
            value = data[key]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{where}: {key} must be a list of strings")
            kwargs[key] = tuple(value)
    kwargs["scoring"] = Scoring.from_mapping(data.get("scoring", {}), where)
    kwargs["limits"] = Limits.from_mapping(data.get("limits", {}), where)
    rules = data.get("rules", {})
    if not isinstance(rules, Mapping):
        raise ConfigError(f"{where}: rules must be a table of rule codes")
    kwargs["rules"] = dict(rules)
    kwargs["sensitive"] = data.get("sensitive", {})
    paths = data.get("rule_paths", [])
    if not isinstance(paths, list) or not all(isinstance(v, str) for v in paths):
        raise ConfigError(f"{where}: rule_paths must be a list of strings")
    base = source.parent if source else Path.cwd()
    kwargs["rule_paths"] = tuple(base / Path(p).expanduser() for p in paths)
    try:
        return Config(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def from_mapping(data: Mapping[str, Any], source: Path | None = None) -> Config:
    """Build a :class:`Config` from parsed TOML, rejecting anything unknown."""
    return from_file(ConfigFile(data, source))


def load_file(path: Path) -> Config:
    """Load ``mailguard.toml`` or the ``[tool.mailguard]`` table of a ``pyproject.toml``."""
    return from_file(configfile.read(path))


def load(
    path: str | os.PathLike[str] | None = None,
    *,
    search_from: str | os.PathLike[str] | None = None,
) -> Config:
    """Load the given file, else the nearest one from ``search_from`` (default: the current
    directory) upwards, else the defaults; exported as ``mailguard.load_config``.

    The library never reads config files by itself (``mailguard.check`` uses the defaults
    unless given a ``config``): this is how a script gets the settings the CLI would use.
    Only the decision settings are read; ``[milter]`` is the milter's to validate.
    """
    found = configfile.locate(path, search_from=search_from)
    return load_file(found) if found else Config()
