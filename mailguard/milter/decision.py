"""From a :class:`~mailguard.report.Report` to what the MTA is told, and the log line.

The verdict comes from the same engine as ``mailguard check``; this module only maps it to
an SMTP outcome chosen by the operator (``[milter]`` settings) and words the refusal for
the *sender*, who has to understand it without reading our docs. Replies and log lines
carry counts and rule codes, never an address or a word of the message.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mailguard.approval import HEADER as APPROVAL_HEADER
from mailguard.approval import TAG_INVALID as APPROVAL_INVALID
from mailguard.approval import header_indexes as approval_indexes
from mailguard.milter import protocol as p
from mailguard.milter.session import Capabilities, Transaction
from mailguard.milter.settings import MilterSettings
from mailguard.remedy import ACTION_FIELD, Edit, Rewritten
from mailguard.report import Report
from mailguard.rules import MOVE_TO_BCC

ERROR_REPLY = "451 4.7.1", "mailguard could not check this message; please try again later"
OUR_HEADERS = (
    "X-Mailguard-Verdict",
    "X-Mailguard-Score",
    "X-Mailguard-Rules",
    "X-Mailguard-Action",
)


@dataclass(frozen=True, slots=True)
class Outcome:
    """The frames for the end-of-message reply, and what they mean, for the log."""

    action: str
    """accept | reject | quarantine | tempfail | rewrite."""
    frames: list[bytes]
    planned: str = ""
    """In monitor mode: the action enforce mode would have taken. After a rewrite: the
    action the message would have got without one (``rewrite_fallback``)."""
    headers: list[tuple[str, str]] = field(default_factory=list)
    rewrite: Rewritten | None = None
    """When ``rewrite`` was the configured action: what it came to (for the log line)."""


def configured_action(verdict: str, settings: MilterSettings) -> str:
    if verdict == "block":
        return settings.on_block
    if verdict == "warn":
        return settings.on_warn
    if verdict == "error":
        return settings.on_error
    return "accept"


def outcome_for(
    report: Report, settings: MilterSettings, caps: Capabilities, txn: Transaction | None = None
) -> Outcome:
    planned = configured_action(report.verdict, settings)
    rewrite = txn.rewrite if txn is not None and planned == "rewrite" else None
    if planned == "rewrite":
        planned = _rewrite_or_fallback(rewrite, settings, caps)
        if planned == "rewrite" and settings.mode == "enforce":
            assert rewrite is not None and txn is not None and rewrite.after is not None
            return _rewritten(rewrite, rewrite.after, settings, caps, txn)
    if planned == "quarantine" and not caps.can_quarantine:
        planned = "reject"  # the MTA cannot hold mail: refusing is the safe side
    action = "accept" if settings.mode == "monitor" and planned != "accept" else planned
    headers = verdict_headers(report, settings, action, planned)
    frames: list[bytes] = []
    if txn is not None and action in ("accept", "quarantine") and caps.can_change_headers:
        # The approval token is for this gate, not for the recipients: it goes (valid or
        # not), deleted before any field is added.
        frames += [p.delete_header(i, APPROVAL_HEADER) for i in approval_indexes(txn.headers)]
    if headers and action in ("accept", "quarantine") and caps.can_add_headers:
        if txn is not None and caps.can_change_headers:
            frames += _remove_forged(txn)
        value = (lambda v: " " + v) if caps.leading_space else (lambda v: v)
        frames += [p.add_header(name, value(text)) for name, text in headers]
    else:
        headers = []
    if action == "reject":
        frames.append(p.reply_code("550 5.7.1", refusal_reason(report)))
    elif action == "tempfail":
        if report.verdict == "error":
            frames.append(p.reply_code(*ERROR_REPLY))
        else:
            frames.append(p.reply_code("451 4.7.1", refusal_reason(report)))
    elif action == "quarantine":
        frames.append(p.quarantine(refusal_reason(report)))
        frames.append(p.SIMPLE[p.ACCEPT])
    else:
        frames.append(p.SIMPLE[p.CONTINUE])
    return Outcome(action, frames, planned if planned != action else "", headers, rewrite)


def _rewrite_or_fallback(
    rewrite: Rewritten | None, settings: MilterSettings, caps: Capabilities
) -> str:
    """``rewrite`` if the plan held up under the re-check and the MTA lets us edit headers."""
    if rewrite is None or not rewrite.ok:
        return settings.rewrite_fallback
    if not (caps.can_add_headers and caps.can_change_headers):
        return settings.rewrite_fallback
    return "rewrite"


def _rewritten(
    rewrite: Rewritten,
    after: Report,
    settings: MilterSettings,
    caps: Capabilities,
    txn: Transaction,
) -> Outcome:
    """The edits of the plan, then our headers as the rewritten message earned them.

    Every delete goes before every add (ours included), so no index ever counts a field we
    added; see :mod:`mailguard.remedy` for why each name is deleted from its highest index.
    """
    headers = verdict_headers(after, settings, "rewrite", "rewrite")
    frames = _remove_forged(txn, skip=ACTION_FIELD)  # we always add X-Mailguard-Action
    frames += [_frame(edit, caps) for edit in rewrite.plan.edits]
    frames += [_frame(Edit("add", name, text), caps) for name, text in headers]
    frames.append(p.SIMPLE[p.CONTINUE])
    action_value = next(e.value for e in rewrite.plan.edits if e.name == ACTION_FIELD)
    shown = [*headers, (ACTION_FIELD, action_value)]
    return Outcome("rewrite", frames, settings.rewrite_fallback, shown, rewrite)


def _frame(edit: Edit, caps: Capabilities) -> bytes:
    if edit.action == "delete":
        return p.delete_header(edit.index, edit.name)
    return p.add_header(edit.name, " " + edit.value if caps.leading_space else edit.value)


def _remove_forged(txn: Transaction, skip: str = "") -> list[bytes]:
    """Delete X-Mailguard-* fields the sender wrote, so that ours can be trusted downstream.

    Only done when we add our own: a message we were not asked to mark is left as it came.
    Highest index first, so each deletion leaves the lower indexes where they were.
    ``skip``: a name the caller deletes itself (a rewrite plan deletes X-Mailguard-Action).
    """
    return [
        p.delete_header(index, name)
        for name in OUR_HEADERS
        if name != skip
        for index in range(txn.header_count(name), 0, -1)
    ]


def failure_outcome(settings: MilterSettings) -> Outcome:
    """No report at all (internal error, time budget exceeded): ``on_error``, no edits.

    Monitor mode never refuses, not even here: it is what an admin turns on to find out
    whether enforcing is safe, so it must not change delivery in any case.
    """
    if settings.on_error == "accept":
        return Outcome("accept", [p.SIMPLE[p.CONTINUE]])
    if settings.mode == "monitor":
        return Outcome("accept", [p.SIMPLE[p.CONTINUE]], planned=settings.on_error)
    return Outcome("tempfail", [p.reply_code(*ERROR_REPLY)])


def verdict_headers(
    report: Report, settings: MilterSettings, action: str, planned: str
) -> list[tuple[str, str]]:
    """The X-Mailguard-* fields ``add_headers`` asks for (the milter and the proxy add the same)."""
    policy = settings.add_headers
    if policy == "never" or (policy == "warn" and report.verdict == "pass"):
        return []
    headers = [("X-Mailguard-Verdict", report.verdict), ("X-Mailguard-Score", str(report.score))]
    if report.findings:
        headers.append(("X-Mailguard-Rules", " ".join(report.codes)))
    if planned != action:
        headers.append((ACTION_FIELD, f"monitor; enforce mode would {planned}"))
    return headers


def refusal_reason(report: Report) -> str:
    """One line a sender understands: what is wrong and what to do instead.

    Decided from rule metadata: a finding cured by moving the visible recipients to Bcc
    gets the counts of who would be exposed; otherwise the first finding whose rule has a
    ``[doc].sender`` line gives that line.
    """
    r = report.recipients
    sender = next((f.rule.sender for f in report.findings if f.rule and f.rule.sender), "")
    approval = next((f for f in report.findings if APPROVAL_INVALID in f.tags), None)
    if approval is not None:  # the sender tried to get it approved: say why that failed
        text = f"{approval.message} - have it approved again as it is now"
    elif any(f.remedy == MOVE_TO_BCC for f in report.findings):
        n = int(r.get("visible_external", 0))
        text = f"would expose {n:,} external recipient{'s' if n != 1 else ''} in To/Cc"
        personal = int(r.get("personal", 0))
        if personal:
            text += f" ({personal:,} personal address{'es' if personal != 1 else ''})"
        text += " - use Bcc or a mail-merge tool"
    elif sender:
        text = sender
    elif report.findings:
        text = f"failed the data-protection check ({report.findings[0].name})"
    else:
        text = "failed the data-protection check"
    return f"mailguard: {text} [{' '.join(report.codes)}; score {report.score}]"


def log_fields(report: Report | None, outcome: Outcome) -> dict[str, object]:
    """Counts and codes for the one log line per decision (no addresses, no content)."""
    fields: dict[str, object] = {"action": outcome.action}
    if outcome.planned:
        fields["would"] = outcome.planned
    rewrite = outcome.rewrite
    if rewrite is not None:
        fields["visible_before"] = rewrite.plan.visible_before
        if rewrite.ok and outcome.action != "reject":
            fields["visible_after"] = rewrite.plan.visible_after
        else:
            fields["rewrite"] = f"fallback:{rewrite.why}"
    if report is None:
        return fields
    if report.approval is not None:
        fields["approved"] = report.approval.key_id
    r = report.recipients
    fields.update(
        verdict=report.verdict,
        score=report.score,
        visible=r.get("visible", 0),
        external=r.get("visible_external", 0),
        personal=r.get("personal", 0),
        parties=r.get("exposed_parties", 0),
        bcc=r.get("bcc", 0),
        rcpt=r.get("envelope_recipients", 0),
        rules=",".join(report.codes) or "-",
    )
    return fields
