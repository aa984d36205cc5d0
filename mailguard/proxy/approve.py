"""Approvals at the proxy: check with the approval keys, strip the field before relaying.

Placeholder until :mod:`mailguard.approval` (branch i11-approval) is merged: no approval
keys are read, every message is judged as ``mailguard check`` judges it.
"""

from __future__ import annotations

from typing import Any

from mailguard.engine import Engine
from mailguard.recipients import Envelope
from mailguard.report import Report


def check(engine: Engine, raw: bytes, envelope: Envelope, deadline: float, extras: Any) -> Report:
    return engine.check(raw, envelope=envelope, source="proxy", deadline=deadline)


def strip(raw: bytes, report: Report, extras: Any) -> tuple[bytes, dict[str, object]]:
    return raw, {}
