"""Rules as data: each rule is one TOML file in ``rules/``; this module loads and validates them.

A rule file carries everything a user or a tool needs to know about a rule — code, name,
severity, weight, options with types and docs, the documentation sections, and examples
that must and must not trigger — and names the check function that implements it. Docs,
``mailguard explain``, the SARIF rule list and the example-driven tests all come from the
same file, so they cannot drift apart. Adding a rule means adding a file; there is no
registry to edit.

A rule file also declares what the rest of the system needs to know about it, so that no
other module names a rule code: which parts of a message it ``reads`` (the IMAP scanner
and the milter fetch or keep bodies from this), which services it ``needs`` (a rule whose
service is not configured is skipped, and the report says so), the ``remedy`` that cures
its finding, the ``[doc].sender`` line used in SMTP replies, ``tags`` the reports use, and
the ``[scoring]`` that turns what its check found into points. Extra rule files come from
the ``rule_paths`` config key (see :func:`load_catalog`).
"""

from __future__ import annotations

import functools
import importlib
import importlib.machinery
import importlib.util
import sys
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
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

READS = ("headers", "body", "attachments")
"""What a check may read. Sources decide from this what to fetch or keep (``headers``
alone: the IMAP scanner fetches no body, the milter keeps none)."""
BODY_PARTS = frozenset({"body", "attachments"})
SERVICES = ("dns", "history", "approval", "clock")
"""Services a check may need; they are injected into the engine (:mod:`mailguard.services`)."""
REMEDIES: dict[str, str] = {
    "move-visible-recipients-to-bcc": "move the visible recipients to Bcc (or send one copy each)",
    "remove-bcc-header": "remove the Bcc header before sending",
}
"""What can cure a finding, as a closed vocabulary: the milter (and later a pre-send
proxy) decide from it whether and how a message can be fixed."""
MOVE_TO_BCC, REMOVE_BCC_HEADER = REMEDIES

# Tags with a meaning to the rest of the system (other tags are free-form, for people).
TAG_ENGINE_ERROR = "engine-error"
"""The rule the engine itself raises when a message cannot be checked (exactly one)."""
TAG_PARTIAL = "partial-read"
"""The finding says reading stopped at a limit: counts in the report are lower bounds."""
TAG_INPUT = "input"
"""The rule judges how the message could be read (limits, decoding), the body included,
whatever its ``reads`` says: a decision made without the body counts its weight as possible."""
TAG_SENSITIVE = "sensitive-context"
"""The finding's evidence names the sensitive categories (``labels``, ``legal_basis``)."""
TAG_ATTACHMENT = "attachment-data"
"""Attachment findings: the evidence counts ``people`` and names the ``data``, for the register."""
TAG_APPROVAL = "approval"
"""The rule judges an ``X-Mailguard-Approval`` field: without one it cannot fire."""
TAG_OPT_IN = "opt-in"
"""The rule needs a service that is off unless asked for (DNS): without it the rule is off,
not "skipped", so reports do not list it on every message."""

RECIPIENT_COUNTS = (
    "to", "cc", "bcc", "visible", "visible_internal", "visible_external", "external_domains",
    "personal", "exposed_parties", "mailing_lists", "invalid_entries", "envelope_recipients",
    "envelope_recipients_visible",
)  # fmt: skip
"""Counts of the recipient analysis a ``[scoring]`` table may name as ``recipients.<key>``:
known from the headers alone, before any check runs."""


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
    moved_to: str | None = None
    """``section.key`` of the config where this option now lives; a value set here is
    still accepted and used there when that section does not set it."""

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
class ScoringSpec:
    """How the engine turns a check's facts into points (the rule's ``[scoring]`` table).

    ``count`` names the number the points depend on: an evidence field of the check's
    finding, or ``recipients.<key>`` (a count of the recipient analysis, known before the
    check runs: the engine then does not run the check below ``min``, and the IMAP scanner
    fetches no body for it). ``min``, ``mass`` and ``mass_weight`` are each an integer, the
    name of one of the rule's options, or ``evidence.<field>``. Below ``min`` there is no
    finding; from ``min`` the finding is worth the rule's weight, growing linearly to
    ``mass_weight`` at ``mass`` when those are given (:func:`mailguard.scoring.ramp`).

    ``floor`` is the lowest ``min`` the rule can use (the smallest of these integers or
    options); it defaults to ``min`` and must be given when ``min`` comes from evidence
    (a check that lowers its threshold in a sensitive context) for the gate to work.
    """

    count: str
    min: int | str
    mass: int | str | None = None
    mass_weight: int | str | None = None
    floor: tuple[int | str, ...] = ()

    @property
    def recipient_count(self) -> str | None:
        """The recipient-analysis key of ``count``, if it is one."""
        prefix, _, key = self.count.partition(".")
        return key if prefix == "recipients" and key else None


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
    sent: tuple[str, ...] = ()
    """Messages sent before, learned into a history store for rules that need ``history``."""


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
    reads: tuple[str, ...] = ("headers",)
    needs: tuple[str, ...] = ()
    remedy: str | None = None
    scoring: ScoringSpec | None = None

    @property
    def sender(self) -> str:
        """The one line for the person who sent the message (SMTP replies); may be empty."""
        return self.doc.get("sender", "")

    _check: tuple[Callable[..., Iterable[Any]] | None] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    """The resolved check, boxed (it may be ``None``); lazy by hand because mypyc compiles
    functools.cached_property to a plain property."""

    @property
    def check(self) -> Callable[..., Iterable[Any]] | None:
        """The detection function; ``None`` for findings the engine itself raises."""
        if self._check is None:
            object.__setattr__(self, "_check", (self._load_check(),))
            assert self._check is not None
        return self._check[0]

    def _load_check(self) -> Callable[..., Iterable[Any]] | None:
        if self.check_ref == "engine":
            return None
        module, _, attr = self.check_ref.partition(":")
        try:
            _import_beside(module, self.path.parent if self.path else None)
            check: Callable[..., Iterable[Any]] = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise RuleDefinitionError(f"{self.code}: cannot load check {self.check_ref!r}") from exc
        return check

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without the resolved check: a worker process resolves it again."""
        state = dict(self.__dict__)
        state["_check"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def defaults(self) -> dict[str, Any]:
        return {name: spec.default for name, spec in self.options.items()}


def _import_beside(module: str, directory: Path | None) -> None:
    """Import a custom rule's check module from the rule file's own directory.

    The directory is not put on ``sys.path``: only the named module is loaded from it, and
    only if that name is not importable from anywhere else, so a rule directory can never
    shadow the standard library or mailguard (a ``json.py`` beside a rule is an error).
    """
    top = module.split(".", 1)[0]
    if directory is None or top in sys.modules:
        return
    spec = importlib.machinery.PathFinder.find_spec(top, [str(directory)])
    if spec is None or spec.loader is None:
        return
    if importlib.util.find_spec(top) is not None:
        raise ImportError(f"module {top!r} beside the rule is also importable from elsewhere")
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[top] = loaded
    try:
        spec.loader.exec_module(loaded)
    except BaseException:
        del sys.modules[top]
        raise


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


@functools.cache
def load_catalog(extra_dirs: tuple[Path, ...] = ()) -> tuple[Rule, ...]:
    """The shipped rules plus the rule files in ``extra_dirs`` (config ``rule_paths``).

    Codes, names and aliases must stay unique across all of them, and exactly one rule is
    the engine's own error (tag ``engine-error``).
    """
    rules = list(load_rules())
    for directory in extra_dirs:
        if not directory.is_dir():
            raise ConfigError(f"rule_paths: {directory} is not a directory")
        rules += load_rules(directory)
    seen: dict[str, str] = {}
    for rule in rules:
        for key in {k.lower() for k in (rule.code, rule.name, *rule.aliases)}:
            if key in seen:
                raise RuleDefinitionError(
                    f"{key!r} is used by both {seen[key]} and {rule.code}"
                    + (f" ({rule.path})" if rule.path else "")
                )
            seen[key] = rule.code
    errors = [r.code for r in rules if TAG_ENGINE_ERROR in r.tags]
    if len(errors) != 1:
        raise RuleDefinitionError(f"exactly one rule must be tagged {TAG_ENGINE_ERROR!r}: {errors}")
    return tuple(sorted(rules, key=lambda r: r.code))


def rule_index(rules: Iterable[Rule] | None = None) -> dict[str, Rule]:
    """Map code, name and aliases to the rule, so users may use any of them."""
    index: dict[str, Rule] = {}
    for rule in rules if rules is not None else load_rules():
        for key in (rule.code, rule.name, *rule.aliases):
            index[key] = rule
            index[key.lower()] = rule
    return index


def find_rule(key: str, rules: Sequence[Rule] | None = None) -> Rule:
    """The rule with this code, name or alias among ``rules`` (default: the shipped ones)."""
    index = rule_index(rules)
    rule = index.get(key) or index.get(key.lower())
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
    "examples", "aliases", "tags", "reads", "needs", "remedy", "scoring",
}  # fmt: skip
_DOC_KEYS = {*DOC_SECTIONS, "sender"}
_SCORING_KEYS = {"count", "min", "mass", "mass_weight", "floor"}
_EXAMPLE_KEYS = {
    "name", "triggers", "message", "config", "envelope", "mode", "smtp_data", "weight", "sent",
}  # fmt: skip


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
        moved = spec.get("moved_to")
        if moved is not None and (not isinstance(moved, str) or moved.count(".") != 1):
            raise RuleDefinitionError(f"{where}: option {name}: moved_to must be 'section.key'")
        opt = OptionSpec(name, spec["type"], spec.get("default"), spec["doc"],
                         spec.get("min"), spec.get("max"), moved)  # fmt: skip
        try:
            default = opt.validate(opt.default, f"{where}: default of {name}")
        except ConfigError as exc:
            raise RuleDefinitionError(str(exc)) from exc
        options[name] = replace(opt, default=default)
    doc = need("doc", dict)
    missing = [s for s in DOC_SECTIONS if not str(doc.get(s, "")).strip()]
    if missing:
        raise RuleDefinitionError(f"{where}: doc sections missing: {missing}")
    if set(doc) - _DOC_KEYS:
        raise RuleDefinitionError(f"{where}: unknown doc sections {sorted(set(doc) - _DOC_KEYS)}")
    sender = doc.get("sender", "")
    if not isinstance(sender, str) or "\n" in sender.strip() or len(sender) > 200:
        raise RuleDefinitionError(f"{where}: doc.sender must be one line (at most 200 characters)")
    reads = _words(data, "reads", READS, where, ["headers"])
    if not reads:
        raise RuleDefinitionError(f"{where}: 'reads' must name at least one of {READS}")
    needs = _words(data, "needs", SERVICES, where, [])
    remedy = data.get("remedy")
    if remedy is not None and remedy not in REMEDIES:
        raise RuleDefinitionError(f"{where}: remedy must be one of {list(REMEDIES)}")
    tags = _words(data, "tags", None, where, [])
    examples = []
    for i, ex in enumerate(data.get("examples", [])):
        unknown = set(ex) - _EXAMPLE_KEYS
        if unknown or "message" not in ex or "triggers" not in ex:
            raise RuleDefinitionError(f"{where}: example {i} needs message/triggers, no {unknown}")
        examples.append(Example(
            name=ex.get("name", f"example {i}"), triggers=bool(ex["triggers"]),
            message=ex["message"], config=ex.get("config", {}), envelope=ex.get("envelope"),
            mode=ex.get("mode", "outgoing"), smtp_data=bool(ex.get("smtp_data", False)),
            weight=ex.get("weight"), sent=tuple(ex.get("sent", ())),
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
        tags=tags,
        path=path,
        reads=reads,
        needs=needs,
        remedy=remedy,
        scoring=_scoring(data.get("scoring"), options, where),
    )


def _words(
    data: Mapping[str, Any], key: str, allowed: Sequence[str] | None, where: str,
    default: list[str],
) -> tuple[str, ...]:  # fmt: skip
    value = data.get(key, default)
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise RuleDefinitionError(f"{where}: '{key}' must be a list of strings")
    if allowed is not None and not set(value) <= set(allowed):
        raise RuleDefinitionError(f"{where}: '{key}' must be among {list(allowed)}, got {value}")
    return tuple(dict.fromkeys(value))


def _scoring(table: Any, options: Mapping[str, OptionSpec], where: str) -> ScoringSpec | None:
    if table is None:
        return None
    if not isinstance(table, dict) or set(table) - _SCORING_KEYS or "count" not in table:
        raise RuleDefinitionError(
            f"{where}: [scoring] needs 'count' and 'min' and takes only {sorted(_SCORING_KEYS)}"
        )
    count = table["count"]
    if not isinstance(count, str) or not count:
        raise RuleDefinitionError(f"{where}: scoring.count must name an evidence field")
    prefix, _, key = count.partition(".")
    if prefix == "recipients" and key not in RECIPIENT_COUNTS:
        raise RuleDefinitionError(f"{where}: scoring.count: recipients has no count {key!r}")
    if ("mass" in table) != ("mass_weight" in table):
        raise RuleDefinitionError(f"{where}: scoring.mass and scoring.mass_weight go together")
    values: dict[str, int | str | None] = {}
    for name in ("min", "mass", "mass_weight"):
        value = table.get(name)
        if name == "min" and value is None:
            raise RuleDefinitionError(f"{where}: scoring.min is required")
        if isinstance(value, str) and not value.startswith("evidence."):
            spec = options.get(value)
            if spec is None or spec.type != "int":
                raise RuleDefinitionError(
                    f"{where}: scoring.{name} = {value!r} is no int option of this rule"
                )
        elif value is not None and not _is_evidence(value) and not _is_int(value):
            raise RuleDefinitionError(
                f"{where}: scoring.{name} must be an integer, an option or evidence.<field>"
            )
        values[name] = value
    minimum = values["min"]
    assert minimum is not None
    floor = table.get("floor", [] if _is_evidence(minimum) else [minimum])
    if not isinstance(floor, list) or not all(
        _is_int(v) or (isinstance(v, str) and getattr(options.get(v), "type", "") == "int")
        for v in floor
    ):
        raise RuleDefinitionError(f"{where}: scoring.floor must list integers or int options")
    return ScoringSpec(count, minimum, values["mass"], values["mass_weight"], tuple(floor))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_evidence(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("evidence.")
