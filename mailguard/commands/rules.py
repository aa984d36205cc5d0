"""``mailguard rules`` and ``mailguard explain``: the rule catalogue, from the rule files."""

from __future__ import annotations

from mailguard.rules import DOC_TITLES, SEVERITIES, Rule, find_rule, load_rules


def rules_table() -> list[str]:
    """One line per rule: code, name, severity, weight and summary."""
    return [
        f"{rule.code}  {rule.name:<32} {rule.severity:<8} {rule.weight:>3}  {rule.summary}"
        for rule in load_rules()
    ]


def explain(code: str) -> str:
    """The documentation of the rule with this code, name or alias (``ConfigError`` if none)."""
    return explain_text(find_rule(code))


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
    return "\n".join(lines)
