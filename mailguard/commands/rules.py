"""``mailguard rules`` and ``mailguard explain``: the rule catalogue, from the rule files."""

from __future__ import annotations

from mailguard.commands.settings import ConfigSource, load_settings
from mailguard.rules import DOC_TITLES, REMEDIES, SEVERITIES, Rule, find_rule


def rules_table(source: ConfigSource | None = None) -> list[str]:
    """One line per rule, custom ones (``rule_paths``) included: code, name, severity,
    weight and summary."""
    return [
        f"{rule.code}  {rule.name:<32} {rule.severity:<8} {rule.weight:>3}  {rule.summary}"
        for rule in load_settings(source).config.catalog
    ]


def explain(code: str, source: ConfigSource | None = None) -> str:
    """The documentation of the rule with this code, name or alias (``ConfigError`` if none),
    custom rules from the config's ``rule_paths`` included."""
    return explain_text(find_rule(code, load_settings(source).config.catalog))


def explain_text(rule: Rule) -> str:
    lines = [f"{rule.code} {rule.name} ({rule.severity}, weight {rule.weight})", "", rule.summary]
    if rule.aliases:
        lines += ["", "Also known as: " + ", ".join(rule.aliases)]
    for key, title in DOC_TITLES.items():
        lines += ["", title, "-" * len(title), rule.doc[key]]
    lines += ["", "Options", "-------"]
    if rule.options:
        for opt in rule.options.values():
            lines.append(f"{opt.name} ({opt.type}, default {opt.default!r}): {opt.doc}")
    lines.append(
        f"Every rule also takes: enabled (bool), severity ({'/'.join(SEVERITIES)}), weight (0-100)."
    )
    lines += ["", f"Configure in mailguard.toml as [rules.{rule.code}] or [rules.{rule.name}]."]
    if set(rule.modes) != {"outgoing", "archived"}:
        lines.append(f"Applies to {' and '.join(rule.modes)} mail only.")
    lines.append(f"Reads: {', '.join(rule.reads)}. Needs: {', '.join(rule.needs) or 'no service'}.")
    cure = f"{rule.remedy}: {REMEDIES[rule.remedy]}" if rule.remedy else "none"
    lines.append(f"Remedy: {cure}.")
    return "\n".join(lines)
