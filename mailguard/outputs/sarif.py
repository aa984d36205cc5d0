"""SARIF 2.1.0 output, so code-scanning dashboards can show mailguard findings.

The rule list comes from the rule files, like ``mailguard explain``: one source of truth.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from mailguard import __version__
from mailguard.outputs import RenderOptions
from mailguard.report import Report
from mailguard.rules import DOC_TITLES, Rule, load_rules

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
LEVELS = {"info": "note", "low": "note", "medium": "warning", "high": "error", "critical": "error"}


def rule_descriptor(rule: Rule) -> dict[str, Any]:
    help_md = "\n\n".join(f"**{title}**\n\n{rule.doc[key]}" for key, title in DOC_TITLES.items())
    return {
        "id": rule.code,
        "name": rule.name,
        "shortDescription": {"text": rule.summary},
        "fullDescription": {"text": rule.doc["why"]},
        "help": {"text": rule.doc["fix"], "markdown": help_md},
        "defaultConfiguration": {"level": LEVELS[rule.severity]},
        "properties": {"tags": list(rule.tags), "severity": rule.severity, "weight": rule.weight},
    }


def render_sarif(
    reports: Sequence[Report], options: RenderOptions, rules: Sequence[Rule] | None = None
) -> str:
    """``rules``: the configuration's catalog (custom ``rule_paths`` included); default the
    shipped rules."""
    rules = tuple(rules) if rules is not None else load_rules()
    index = {rule.code: i for i, rule in enumerate(rules)}
    results = []
    for report in reports:
        uri = _uri(options.source(report.source))
        message_id = options.message_id(report.message_id)
        approval = _suppressions(report)
        for finding in report.findings:
            results.append({
                "ruleId": finding.code,
                "ruleIndex": index[finding.code],
                "level": LEVELS[finding.severity],
                "message": {"text": options.finding(finding.to_dict())["message"]},
                "locations": [{"physicalLocation": {"artifactLocation": {"uri": uri}}}],
                "properties": {
                    "verdict": report.verdict,
                    "score": report.score,
                    "weight": finding.weight,
                    "messageId": message_id,
                },
            } | approval)  # fmt: skip
    doc = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "mailguard",
                "version": __version__,
                "informationUri": "https://example.invalid/mailguard",
                "rules": [rule_descriptor(r) for r in rules],
            }},
            "invocations": [{"executionSuccessful": all(r.verdict != "error" for r in reports)}],
            "results": results,
        }],
    }  # fmt: skip
    return json.dumps(doc, indent=2, ensure_ascii=False)


def _suppressions(report: Report) -> dict[str, Any]:
    """A validly approved message's findings are accepted, not gone: SARIF's suppression."""
    if report.approval is None:
        return {}
    return {"suppressions": [{
        "kind": "external", "status": "accepted", "justification": report.approval.note(),
        "properties": {"approval": report.approval.to_dict()},
    }]}  # fmt: skip


def _uri(source: str) -> str:
    return "stdin" if source == "<stdin>" else source.replace("\\", "/")
