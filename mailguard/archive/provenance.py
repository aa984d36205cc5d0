"""How a register was made: what an auditor needs to reproduce its numbers.

A count of "52 people exposed" depends on which domains were internal, on the score
thresholds, on which rules ran with which options, and on the rule files of the version
that ran them. The register records all of it, so the same archive scanned again with
the same settings must give the same numbers, and a different number can be traced to a
different setting. Internal domains are the organisation's own, not personal data.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import fields
from datetime import date
from pathlib import Path
from typing import Any

from mailguard import __version__
from mailguard.config import Config
from mailguard.resolver import DnsSettings
from mailguard.rules import TAG_OPT_IN, rules_dir
from mailguard.services import Services


def provenance(
    config: Config,
    *,
    mode: str,
    since: date | None,
    until: date | None,
    dns: DnsSettings | None = None,
) -> dict[str, Any]:
    """The ``provenance`` object of the scan JSON contract (plain JSON values only)."""
    settings = config.rule_settings
    enabled = {code: s for code, s in settings.items() if s.enabled}
    return {
        "mailguard_version": __version__,
        "rule_set": {"version": __version__, "digest": rule_set_digest()},
        "mode": mode,
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "config_file": str(config.source) if config.source else None,
        "internal_domains": list(config.internal_domains),
        "internal_domains_default": (
            None if config.internal_domains else "the sender's domain of each message"
        ),
        "scoring": {"warn_at": config.scoring.warn_at, "block_at": config.scoring.block_at},
        "enabled_rules": list(enabled),
        "disabled_rules": [code for code in settings if code not in enabled],
        "rules": {
            code: {
                "severity": s.severity,
                "weight": s.weight,
                "options": {name: _plain(value) for name, value in s.options.items()},
            }
            for code, s in enabled.items()
        },
        "personal_domains": (
            "shipped list" if config.personal_domains is None else "configured list"
        ),
        "extra_personal_domains": list(config.extra_personal_domains),
        "mailing_list_patterns": len(config.mailing_lists),
        "limits": {f.name: getattr(config.limits, f.name) for f in fields(config.limits)},
        "sensitive": {
            f.name: _plain(getattr(config.sensitive_settings, f.name))
            for f in fields(config.sensitive_settings)
        },
        "rule_paths": {str(p): rule_set_digest(p) for p in config.rule_paths},
        "dns": _dns_method(dns),
        "skipped_rules": {
            code: f"needs {', '.join(missing)}, which is not configured"
            for code, s in enabled.items()
            if (missing := Services(dns=dns).missing(s.rule.needs))
            and TAG_OPT_IN not in s.rule.tags
        },
    }


def _dns_method(dns: DnsSettings | None) -> dict[str, Any]:
    """How recipient domains were (not) checked: DNS answers change, old mail's too."""
    if dns is None:
        return {"enabled": False, "note": OFF_NOTE}
    servers = list(dns.servers) or "the system's resolver"
    return {"enabled": True, "servers": servers, "note": "domains looked up at scan time"}


OFF_NOTE = "off: the domains of old mail may have changed since (scan --dns turns it on)"


def rule_set_digest(directory: Path | None = None) -> str:
    """SHA-256 over the shipped rule files and their data (vocabularies, provider lists):
    two scans with the same digest judged by the same definitions."""
    root = directory or rules_dir()
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return "sha256:" + digest.hexdigest()


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted(_plain(v) for v in value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
