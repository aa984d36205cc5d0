"""Rules as data: each rule is one TOML file in ``rules/``; this module loads and validates them.

A rule file carries everything a user or a tool needs to know about a rule — code, name,
severity, weight, options with types and docs, the documentation sections, and examples
that must and must not trigger — and names the check function that implements it. Docs,
``mailguard explain``, the SARIF rule list and the example-driven tests all come from the
same file, so they cannot drift apart. Adding a rule means adding a file; there is no
registry to edit.
"""

from __future__ import annotations

import functools
import importlib
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from mailguard.errors import ConfigError, MailguardError

SEVERITIES = ("info", "low", "medium", "high", "critical")
MODES = ("outgoing", "archived")
DOC_SECTIONS = ("what", "why", "example", "fix")
DOC_TITLES = {
    "what": "What it does",
    "why": "Why it matters",
    "example": "Example",
    "fix": "How to fix",
}
OPTION_TYPES: dict[str, type | tuple[type, ...]] = {
    "int": int,
    "float": (int, float),
    "bool": bool,
    "str": str,
    "list[str]": list,
}

# Keys a user may set for any rule in config, besides the rule's own options.
COMMON_RULE_KEYS = ("enabled", "severity", "weight")


class RuleDefinitionError(MailguardError):
    """A file in rules/ is malformed: a bug in mailguard or in a user's custom rule."""


@dataclass(frozen=True, slots=True)
class OptionSpec:
    name: str
    type: str
    default: Any
    doc: str
    min: float | None = None
    max: float | None = None

    def validate(self, value: Any, where: str) -> Any:
        """Return ``value`` if it fits this option, else raise :class:`ConfigError`."""
        expected = OPTION_TYPES[self.type]
        ok = isinstance(value, expected) and not (
            self.type in ("int", "float") and isinstance(value, bool)
        )
        if ok and self.type == "list[str]":
            ok = all(isinstance(v, str) for v in value)
        if not ok:
            raise ConfigError(f"{where}: expected {self.type}, got {value!r}")
        if self.min is not None and value < self.min:
            raise ConfigError(f"{where}: must be at least {self.min:g}, got {value!r}")
        if self.max is not None and value > self.max:
            raise ConfigError(f"{where}: must be at most {self.max:g}, got {value!r}")
        return tuple(value) if self.type == "list[str]" else value


@dataclass(frozen=True, slots=True)
class Example:
    name: str
    triggers: bool
    message: str
    config: Mapping[str, Any] = field(default_factory=dict)
    envelope: Mapping[str, Any] | None = None
    mode: str = "outgoing"
    smtp_data: bool = False
    weight: int | None = None


@dataclass(frozen=True)
class Rule:
    code: str
    name: str
    summary: str
    severity: str
    weight: int
    check_ref: str
    modes: tuple[str, ...]
    options: Mapping[str, OptionSpec]
    doc: Mapping[str, str]
    examples: tuple[Example, ...]
    aliases: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    path: Path | None = None

    @functools.cached_property
    def check(self) -> Callable[..., Iterable[Any]] | None:
        """The detection function; ``None`` for findings the engine itself raises."""
        if self.check_ref == "engine":
            return None
        module, _, attr = self.check_ref.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise RuleDefinitionError(f"{self.code}: cannot load check {self.check_ref!r}") from exc

    def defaults(self) -> dict[str, Any]:
        return {name: spec.default for name, spec in self.options.items()}


def rules_dir() -> Path:
    """Where the rule files are: inside the installed wheel, else the source checkout."""
    packaged = resources.files("mailguard") / "_rules"
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / "rules"


def data_path(name: str) -> Path:
    """A data file shipped beside the rules (vocabularies, provider lists)."""
    return rules_dir() / "data" / name


@functools.cache
def load_rules(directory: Path | None = None) -> tuple[Rule, ...]:
    """Load and validate every ``*.toml`` rule file, sorted by code."""
    directory = directory or rules_dir()
    rules = [load_rule_file(p) for p in sorted(directory.glob("*.toml"))]
    seen: dict[str, str] = {}
    for rule in rules:
        for key in (rule.code, rule.name, *rule.aliases):
            if key in seen:
                raise RuleDefinitionError(f"{key!r} is used by both {seen[key]} and {rule.code}")
            seen[key] = rule.code
    return tuple(sorted(rules, key=lambda r: r.code))


def rule_index(rules: Iterable[Rule] | None = None) -> dict[str, Rule]:
    """Map code, name and aliases to the rule, so users may use any of them."""
    index: dict[str, Rule] = {}
    for rule in rules if rules is not None else load_rules():
        for key in (rule.code, rule.name, *rule.aliases):
            index[key] = rule
            index[key.lower()] = rule
    return index


def find_rule(key: str) -> Rule:
    rule = rule_index().get(key) or rule_index().get(key.lower())
    if rule is None:
        raise ConfigError(f"unknown rule {key!r} (see 'mailguard rules')")
    return rule


def load_rule_file(path: Path) -> Rule:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RuleDefinitionError(f"{path.name}: {exc}") from exc
    return _build_rule(data, path)


_RULE_KEYS = {
    "code", "name", "summary", "severity", "weight", "check", "modes", "options", "doc",
    "examples", "aliases", "tags",
}  # fmt: skip
_EXAMPLE_KEYS = {"name", "triggers", "message", "config", "envelope", "mode", "smtp_data", "weight"}


def _build_rule(data: dict[str, Any], path: Path) -> Rule:
    where = path.name

    def need(key: str, kind: type) -> Any:
        if not isinstance(data.get(key), kind):
            raise RuleDefinitionError(f"{where}: '{key}' must be a {kind.__name__}")
        return data[key]

    unknown = set(data) - _RULE_KEYS
    if unknown:
        raise RuleDefinitionError(f"{where}: unknown keys {sorted(unknown)}")
    code = need("code", str)
    if path.stem != code:
        raise RuleDefinitionError(f"{where}: file name must be the rule code ({code}.toml)")
    severity = need("severity", str)
    if severity not in SEVERITIES:
        raise RuleDefinitionError(f"{where}: severity must be one of {SEVERITIES}")
    modes = tuple(data.get("modes", MODES))
    if not set(modes) <= set(MODES):
        raise RuleDefinitionError(f"{where}: modes must be among {MODES}")
    options = {}
    for name, spec in data.get("options", {}).items():
        if not isinstance(spec, dict) or spec.get("type") not in OPTION_TYPES:
            raise RuleDefinitionError(
                f"{where}: option {name} needs a type in {list(OPTION_TYPES)}"
            )
        if not spec.get("doc"):
            raise RuleDefinitionError(f"{where}: option {name} needs a doc")
        if name in COMMON_RULE_KEYS:
            raise RuleDefinitionError(f"{where}: option name {name!r} is reserved")
        opt = OptionSpec(name, spec["type"], spec.get("default"), spec["doc"],
                         spec.get("min"), spec.get("max"))  # fmt: skip
        try:
            default = opt.validate(opt.default, f"{where}: default of {name}")
        except ConfigError as exc:
            raise RuleDefinitionError(str(exc)) from exc
        options[name] = replace(opt, default=default)
    doc = need("doc", dict)
    missing = [s for s in DOC_SECTIONS if not str(doc.get(s, "")).strip()]
    if missing:
        raise RuleDefinitionError(f"{where}: doc sections missing: {missing}")
    examples = []
    for i, ex in enumerate(data.get("examples", [])):
        unknown = set(ex) - _EXAMPLE_KEYS
        if unknown or "message" not in ex or "triggers" not in ex:
            raise RuleDefinitionError(f"{where}: example {i} needs message/triggers, no {unknown}")
        examples.append(Example(
            name=ex.get("name", f"example {i}"), triggers=bool(ex["triggers"]),
            message=ex["message"], config=ex.get("config", {}), envelope=ex.get("envelope"),
            mode=ex.get("mode", "outgoing"), smtp_data=bool(ex.get("smtp_data", False)),
            weight=ex.get("weight"),
        ))  # fmt: skip
    return Rule(
        code=code,
        name=need("name", str),
        summary=need("summary", str),
        severity=severity,
        weight=need("weight", int),
        check_ref=need("check", str),
        modes=modes,
        options=options,
        doc={k: str(v).strip() for k, v in doc.items()},
        examples=tuple(examples),
        aliases=tuple(data.get("aliases", ())),
        tags=tuple(data.get("tags", ())),
        path=path,
    )
