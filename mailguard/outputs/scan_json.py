"""The incident register as JSON: the stable contract (``schema_version`` 1) for scripts.

Records list exposed addresses when the policy does (:attr:`Privacy.list_addresses`), as
keyed hashes under ``--redact``, so "unique people exposed" stays checkable.
"""

from __future__ import annotations

from typing import Any

from mailguard import __version__
from mailguard.archive.register import Incident, Register, isoformat_utc
from mailguard.outputs import dump_json
from mailguard.redact import Privacy
from mailguard.report import SCHEMA_VERSION


def incident_dict(incident: Incident, options: Privacy) -> dict[str, Any]:
    """One incident of the JSON contract."""
    item: dict[str, Any] = {
        "source": options.source(incident.source),
        "message_id": options.message_id(incident.message_id),
        "date": isoformat_utc(incident.date),
        "sender": options.address(incident.sender),
        "subject": options.subject(incident.subject),
        "verdict": incident.verdict,
        "score": incident.score,
        "rules": incident.codes,
        "recipients": incident.recipients,
        "sensitive_context": incident.sensitive,
        "exposed_domains": incident.domains,
        "findings": [options.finding(f) for f in incident.findings],
    }
    if incident.listed:
        item["attachments"] = {"people": incident.listed, "data": incident.listed_data}
    if options.list_addresses:
        item["exposed_addresses"] = [options.address(a) for a in incident.exposed]
        item["exposed_personal_addresses"] = [options.address(a) for a in incident.personal]
    return item


def render_json(register: Register, options: Privacy, *, pretty: bool = False) -> str:
    data: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "mailguard", "version": __version__},
        "sources": [options.source(s) for s in register.sources],
        "since": register.since.isoformat() if register.since else None,
        "until": register.until.isoformat() if register.until else None,
        "redacted": options.redactor is not None,
        "summary": register.summary(),
        "exposed_domains": dict(register.domains.most_common()),
        "worst": [options.source(i.source) for i in register.worst()],
        "incidents": [incident_dict(i, options) for i in register.incidents],
        "errors": [
            {
                "source": options.source(e.source),
                "message": options.error(e.message),
                "kind": e.kind,
            }
            for e in register.errors
        ],
        "failed_sources": [
            {"source": options.source(e.source), "message": options.error(e.message)}
            for e in register.failed_sources
        ],
        "provenance": options.provenance(register.provenance),
    }
    if options.list_addresses:
        data["exposed_addresses"] = sorted(str(options.address(a)) for a in register.exposed)
    return dump_json(data, pretty) + "\n"
