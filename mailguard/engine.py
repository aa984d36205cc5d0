"""The engine: parse once, analyse recipients once, run the enabled rules, score.

Nothing else decides pass/warn/block. Every failure on the way becomes an ``error`` report
with a finding of the rule tagged ``engine-error`` instead of an exception, so one hostile
message in a folder of thousands (or on a mail server) never stops the rest.

Checks report facts; the engine scores them with each rule's ``[scoring]`` table. Services
(DNS, a history store, a clock) are injected, never module globals; a rule whose service
is missing is not run and the report lists it under ``skipped``.
"""

from __future__ import annotations

import email.message
import gc
import logging
import traceback
from typing import Literal, NamedTuple

from mailguard.approval import settle
from mailguard.attachments import EMPTY, might_attach, uuencoded
from mailguard.checks.base import CheckContext, Hit
from mailguard.config import Config, RuleSettings
from mailguard.deadline import DeadlineExceeded, checkpoint, limit
from mailguard.errors import InputError
from mailguard.headers import HeaderProblem, decode_rfc2047
from mailguard.message import decode_smtp_data, parse_message, split_smtp_data
from mailguard.recipients import Envelope, analyse
from mailguard.redact import REASON_WITHHELD
from mailguard.report import EMPTY_RECIPIENTS, Finding, Redacted, Report, Skipped
from mailguard.rules import (
    BODY_PARTS,
    TAG_APPROVAL,
    TAG_ENGINE_ERROR,
    TAG_INPUT,
    TAG_OPT_IN,
    TAG_PARTIAL,
    Rule,
    ScoringSpec,
)
from mailguard.scoring import Gate, gate, gate_open, points, total, verdict
from mailguard.services import Services

log = logging.getLogger("mailguard")

Mode = Literal["outgoing", "archived"]
MessageInput = bytes | bytearray | memoryview | str | email.message.Message
OUT_OF_TIME = "the decision ran out of time (deadline reached)"
"""The engine error's reason when a decision was stopped at its deadline (see
:func:`ran_out_of_time`)."""


class Engine:
    """A configured checker. Reuse one for many messages: rules are resolved once.

    ``services`` carries what some checks need (``needs`` in their rule files); the default
    has a clock and nothing else, so rules needing DNS or history are skipped.
    """

    def __init__(self, config: Config | None = None, *, services: Services | None = None) -> None:
        self.config = config or Config()
        self.services = services if services is not None else Services()
        settings = self.config.rule_settings
        (self._unreadable,) = (s for s in settings.values() if TAG_ENGINE_ERROR in s.rule.tags)
        self._rules: dict[str, list[RuleSettings]] = {}
        self._skipped: dict[str, list[Skipped]] = {}
        self._gates: dict[str, Gate] = {
            code: gate(s.rule.scoring, s.options) for code, s in settings.items()
        }
        for mode in ("outgoing", "archived"):
            active = [
                s for s in settings.values()
                if s.enabled and mode in s.rule.modes and s.rule.check is not None
            ]  # fmt: skip
            self._skipped[mode] = [
                Skipped(s.code, s.rule.name, f"needs {', '.join(missing)}, which is not configured")
                for s in active
                if (missing := self.services.missing(s.rule.needs))
                and TAG_OPT_IN not in s.rule.tags
            ]
            skipped = {s.code for s in active if self.services.missing(s.rule.needs)}
            self._rules[mode] = [s for s in active if s.code not in skipped]
        self._plan: dict[str, tuple[_Step, ...]] = {
            mode: tuple(
                _Step(s, self._gates[s.code], s.rule, s.rule.scoring)
                for s in rules
                if s.rule.check is not None
            )
            for mode, rules in self._rules.items()
        }
        """Per mode, each rule that runs with its gate and scoring, resolved once: the
        per-message loop does no lookups by code."""
        # Rules that read attachments and not the body find nothing in a message that
        # cannot carry a file: not run for those (deciding that is one header look).
        self._plain_plan: dict[str, tuple[_Step, ...]] = {
            mode: tuple(
                step for step in plan
                if "attachments" not in step.rule.reads or "body" in step.rule.reads
            )
            for mode, plan in self._plan.items()
        }  # fmt: skip
        self._early: dict[str, tuple[tuple[Gate, ...], int]] = {
            mode: _early_terms(rules, self._gates) for mode, rules in self._rules.items()
        }
        """Per mode, what :meth:`body_could_change` weighs: worked out once, not per message."""

    def reads(self, mode: Mode = "outgoing") -> frozenset[str]:
        """The message parts the rules that run in ``mode`` read (``headers``, ``body``, …)."""
        return frozenset(part for s in self._rules[mode] for part in s.rule.reads)

    def foreign_rules(self, mode: Mode = "outgoing") -> tuple[str, ...]:
        """Codes of the rules that run in ``mode`` with a check from outside mailguard (a
        custom rule's own module, ``rule_paths``). A deadline stops a decision only at a
        checkpoint, and such code owes us none: one call may take any time, so a caller
        that must stay responsive (the milter's event loop) runs them where it can stop
        waiting instead."""
        return tuple(
            s.code for s in self._rules[mode] if not s.rule.check_ref.startswith("mailguard.")
        )

    def needs_body(self, headers: MessageInput, mode: Mode = "archived") -> bool:
        """Whether a message whose header block is ``headers`` should be fetched whole.

        True when a rule that reads the body or attachments could score on it: its
        ``[scoring]`` gate (a recipient count the headers already tell) is open. Sources
        that can fetch headers first (IMAP) decide from this, never from rule codes.
        """
        rules = [s for s in self._rules[mode] if BODY_PARTS & set(s.rule.reads)]
        if not rules:
            return False
        report = self.check(headers, mode=mode)
        if report.analysis is None:
            return False  # unreadable headers: the body cannot make them readable
        rules = [s for s in rules if gate_open(self._gates[s.code], report.recipients)]
        if any("body" in s.rule.reads for s in rules):
            return True
        # Rules that read only attachments: not for a message whose type carries no file.
        return bool(rules) and might_attach(parse_message(_to_bytes(headers)).get("content-type"))

    def body_could_change(self, report: Report, mode: Mode = "outgoing") -> bool:
        """Whether the body of a single-text-part message could change the verdict of
        ``report``, made from its header block alone (the milter then answers at
        end-of-headers and the MTA stops streaming the body).

        It could when a rule that reads the body or attachments has its gate open (a
        single text part may carry files: uuencoded ``begin 644 name`` blocks, which is how
        ``uuencode patients.csv | mail`` sends one), or when the input rules (tag
        ``input``: limits reached, undecodable text, which read what the body walk found)
        could add enough weight to reach the next verdict. The MIME limits (tag
        ``partial-read``) cannot be reached by a single text part.
        """
        if report.analysis is None:
            return True
        gates, input_weight = self._early[mode]
        if any(gate_open(g, report.recipients) for g in gates):
            return True
        return verdict(min(report.score + input_weight, 100), self.config.scoring) != report.verdict

    def body_always_counts(self, mode: Mode = "outgoing") -> tuple[str, ...]:
        """Codes of the rules whose reading of the body no recipient count can shut (no
        ``[scoring]`` gate): while one runs, :meth:`body_could_change` holds for every
        message, so no ``pass`` can be settled from the header block. The input rules'
        weight counts too when it alone would lift any ``pass`` to the next verdict."""
        input_weight = self._early[mode][1]
        always = tuple(
            s.code
            for s in self._rules[mode]
            if TAG_APPROVAL not in s.rule.tags
            and BODY_PARTS & set(s.rule.reads)
            and _always_open(self._gates[s.code])
        )
        if not always and verdict(min(input_weight, 100), self.config.scoring) != "pass":
            always = tuple(
                s.code
                for s in self._rules[mode]
                if TAG_INPUT in s.rule.tags and TAG_PARTIAL not in s.rule.tags
            )
        return always

    def body_could_change_careful(self, report: Report, mode: Mode = "outgoing") -> bool:
        """:meth:`body_could_change` rule by rule, as it was before its terms were worked
        out once per engine: the reference of tests/test_fast_paths.py."""
        if report.analysis is None:
            return True
        ceiling = report.score
        for s in self._rules[mode]:
            if TAG_APPROVAL in s.rule.tags:
                continue
            if BODY_PARTS & set(s.rule.reads):
                if gate_open(self._gates[s.code], report.recipients):
                    return True
            elif TAG_INPUT in s.rule.tags and TAG_PARTIAL not in s.rule.tags:
                ceiling += s.weight
        return verdict(min(ceiling, 100), self.config.scoring) != report.verdict

    def check(
        self,
        data: MessageInput,
        *,
        envelope: Envelope | None = None,
        source: str = "<message>",
        smtp_data: bool = False,
        mode: Mode = "outgoing",
        deadline: float | None = None,
        incomplete: str = "",
    ) -> Report:
        """Judge one message. Never raises for bad input: see the ``error`` verdict.

        ``deadline`` (a :func:`time.monotonic` instant) stops the decision at the next
        checkpoint once passed; the report is then an ``error`` whose reason is
        :data:`OUT_OF_TIME`. ``incomplete`` says what the caller could not hand over (the
        milter's header cap): it becomes a header problem, reported as a limit of our own would be.
        """
        if mode not in self._rules:
            raise ValueError(f"mode must be 'outgoing' or 'archived', not {mode!r}")
        try:
            raw = _to_bytes(data)
        except InputError as bad:
            return self.error_report(source, str(bad))
        try:
            with limit(deadline):
                return self._judge(raw, envelope, source, smtp_data, mode, incomplete)
        except DeadlineExceeded:
            return self.error_report(
                source, OUT_OF_TIME, private=False, evidence={"deadline": True}
            )
        except InputError as bad:  # not `exc`: mypyc types a name by its first handler
            return self.error_report(source, str(bad))
        except Exception as exc:  # a bug must not take the mail flow down with it
            where = traceback.extract_tb(exc.__traceback__)[-1]
            # Type and code location only: an exception's text may quote message content, and
            # the source may be a file named after a person (the error finding names it).
            log.error(
                "internal error checking a message: %s at %s:%s",
                type(exc).__name__, where.filename, where.lineno,
            )  # fmt: skip
            return self.error_report(
                source, f"internal error ({type(exc).__name__}); please report it", private=False
            )

    def _judge(
        self,
        raw: bytes,
        envelope: Envelope | None,
        source: str,
        smtp_data: bool,
        mode: str,
        incomplete: str = "",
    ) -> Report:
        checkpoint()  # a decision that waited past its deadline for a worker does no work
        if smtp_data:
            raw, after = split_smtp_data(raw)
            if after.strip():
                return self.error_report(
                    source,
                    f"the SMTP DATA section ends at its first '.' line, and {len(after):,} more "
                    "bytes follow it: a server would read them as SMTP commands, which can send "
                    "another message unchecked (SMTP smuggling)",
                    private=False,
                )
            raw = decode_smtp_data(raw)
        message = parse_message(raw, self.config.limits)
        if incomplete:
            message.problems.append(HeaderProblem("header-block-truncated", incomplete))
        checkpoint()
        recipients = analyse(message, self.config, envelope)
        counts = recipients.summary()
        # A text message carries a file only uuencoded in its text: one find tells, and a
        # message without a file is given the empty analysis (the limits rule asks for caps
        # reached), so the body is not searched twice.
        files = might_attach(message.get("content-type")) or uuencoded(
            message.raw, message.body_offset
        )
        ctx = CheckContext(message, recipients, self.config, envelope, mode, self.services,
                           _attachments=None if files else EMPTY)  # fmt: skip
        findings: list[Finding] = []
        checkpoint()  # once for the rules: the loops inside them that the input controls check
        for settings, gate_, rule, scoring in (self._plan if files else self._plain_plan)[mode]:
            if gate_ is not None and not gate_open(gate_, counts):
                continue  # cannot score: not even run (its body reading is saved)
            check_ = rule.check  # read per message: tests inject faults at Rule.check
            assert check_ is not None
            for hit in check_(ctx, settings):
                weight = points(scoring, settings.weight, settings.options, hit.evidence, counts)
                if weight is not None:
                    findings.append(self._finding(settings, hit, weight))
        score = total(f.weight for f in findings)
        findings.sort(key=lambda f: (-f.weight, f.code))
        report = Report(
            source=source,
            verdict=verdict(score, self.config.scoring),
            score=score,
            findings=findings,
            recipients=counts,
            message_id=report_message_id(message.get("message-id")),
            analysis=recipients,
            date=message.get("date"),
            subject=report_subject(message.get("subject")),
            skipped=[*self._skipped[mode], *ctx.notes],
        )
        return settle(report, ctx.approval())  # a valid signed approval: verdict pass

    def _finding(self, settings: RuleSettings, hit: Hit, weight: int) -> Finding:
        return Finding(
            settings.code, settings.rule.name, settings.severity, hit.message, weight, hit.evidence,
            hit.redacted, settings.rule,
        )  # fmt: skip

    def error_report(
        self,
        source: str,
        reason: str,
        *,
        private: bool = True,
        evidence: dict[str, object] | None = None,
    ) -> Report:
        """An ``error`` report with the engine's own finding, e.g. for a file that cannot be read.

        ``private``: the reason may quote the message or its location (a parser's or the
        operating system's words), so ``--redact`` withholds it.
        """
        s = self._unreadable
        safe = Redacted(f"message could not be checked: {REASON_WITHHELD}") if private else None
        finding = Finding(
            s.code, s.rule.name, s.severity, f"message could not be checked: {reason}", s.weight,
            evidence or {}, safe, s.rule,
        )  # fmt: skip
        return Report(source, "error", total([s.weight]), [finding], dict(EMPTY_RECIPIENTS))


BATCH_GC_THRESHOLD = 50_000


def _always_open(gate: Gate) -> bool:
    """Whether no recipient count can shut ``gate`` (counts are never negative)."""
    return gate is None or gate[1] <= 0


def _early_terms(rules: list[RuleSettings], gates: dict[str, Gate]) -> tuple[tuple[Gate, ...], int]:
    """For :meth:`Engine.body_could_change`: the gates of the rules that read the body or
    attachments (a single text part may hold uuencoded files), and the weight the input
    rules (limits reached, undecodable text, which read what the body walk found) could
    still add. Rules that need an approval field are left out (such mail is never decided
    early); the MIME limits (tag ``partial-read``) cannot be reached by a single text part."""
    body_gates: list[Gate] = []
    weight = 0
    for s in rules:
        if TAG_APPROVAL in s.rule.tags:
            continue
        if BODY_PARTS & set(s.rule.reads):
            body_gates.append(gates[s.code])
        elif TAG_INPUT in s.rule.tags and TAG_PARTIAL not in s.rule.tags:
            weight += s.weight
    return tuple(body_gates), weight


def tune_gc_for_batch() -> None:
    """Let the cyclic garbage collector run less often in a process that judges a batch.

    Judging a message allocates thousands of short-lived dicts, lists and tuples that
    reference counting frees; with the default threshold (700) the collector still walks
    them every few hundred allocations, and every live object (the rules, the reports so
    far) now and then: about 7 % of a ``check`` over 5,000 files. Objects alive now are
    frozen out of its walks, and it runs every 50,000 allocations instead. For the CLI's
    batch commands and scan workers only: a library caller's process is left as it is.
    """
    gc.freeze()
    gc.set_threshold(BATCH_GC_THRESHOLD, *gc.get_threshold()[1:])


def ran_out_of_time(report: Report) -> bool:
    """Whether ``report`` is the ``error`` of a decision stopped at its deadline."""
    return report.verdict == "error" and any(
        TAG_ENGINE_ERROR in f.tags and f.evidence.get("deadline") for f in report.findings
    )


class _Step(NamedTuple):
    """One rule of an engine's plan for a mode (see ``Engine._plan``)."""

    settings: RuleSettings
    gate: Gate
    rule: Rule
    scoring: ScoringSpec | None


def _to_bytes(data: MessageInput) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    if isinstance(data, str):
        return data.encode("utf-8", "surrogateescape")
    if isinstance(data, email.message.Message):
        try:
            return data.as_bytes()
        except (UnicodeError, LookupError, ValueError, TypeError) as exc:
            raise InputError(f"cannot serialise the email.message.Message: {exc}") from exc
    raise TypeError(f"expected bytes, str or email.message.Message, not {type(data).__name__}")


def report_subject(value: str | None) -> str | None:
    """The Subject as reports show it: decoded, whitespace collapsed, at most 200 characters."""
    if value is None:
        return None
    return " ".join(decode_rfc2047(value).split())[:200]


def report_message_id(value: str | None) -> str | None:
    """The Message-ID as reports keep it (the incremental store compares it too)."""
    if not value:
        return None
    return value.strip()[:998] or None


_default_engine: Engine | None = None


def check(
    data: MessageInput,
    *,
    envelope: Envelope | None = None,
    config: Config | None = None,
    source: str = "<message>",
    smtp_data: bool = False,
    mode: Mode = "outgoing",
) -> Report:
    """Check one message and return its :class:`Report`.

    ``data`` is the raw message (bytes, or an ``email.message.Message``). Give ``envelope``
    when you know the SMTP recipients; ``smtp_data=True`` when ``data`` is a dot-stuffed
    SMTP DATA section; ``mode="archived"`` for mail that was already sent (Sent folders),
    where a Bcc header is a record, not a leak. For many messages, reuse an :class:`Engine`.
    """
    global _default_engine
    if config is None:
        if _default_engine is None:
            _default_engine = Engine()
        engine = _default_engine
    else:
        engine = Engine(config)
    return engine.check(data, envelope=envelope, source=source, smtp_data=smtp_data, mode=mode)
