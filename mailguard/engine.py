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
import logging
import traceback
from collections.abc import Iterable
from typing import Literal

from mailguard.approval import settle
from mailguard.checks.base import CheckContext, Hit
from mailguard.config import Config, RuleSettings
from mailguard.deadline import DeadlineExceeded, checkpoint, limit
from mailguard.errors import InputError
from mailguard.headers import HeaderProblem, decode_rfc2047
from mailguard.message import decode_smtp_data, parse_message
from mailguard.recipients import Envelope, analyse
from mailguard.redact import REASON_WITHHELD
from mailguard.report import EMPTY_RECIPIENTS, Finding, Redacted, Report, Skipped
from mailguard.rules import BODY_PARTS, TAG_ENGINE_ERROR, TAG_OPT_IN
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

    def reads(self, mode: Mode = "outgoing") -> frozenset[str]:
        """The message parts the rules that run in ``mode`` read (``headers``, ``body``, …)."""
        return frozenset(part for s in self._rules[mode] for part in s.rule.reads)

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
        return any(gate_open(self._gates[s.code], report.recipients) for s in rules)

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
        except InputError as exc:
            return self.error_report(source, str(exc))
        try:
            with limit(deadline):
                return self._judge(raw, envelope, source, smtp_data, mode, incomplete)
        except DeadlineExceeded:
            return self.error_report(
                source, OUT_OF_TIME, private=False, evidence={"deadline": True}
            )
        except InputError as exc:
            return self.error_report(source, str(exc))
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
            raw = decode_smtp_data(raw)
        message = parse_message(raw, self.config.limits)
        if incomplete:
            message.problems.append(HeaderProblem("header-block-truncated", incomplete))
        checkpoint()
        recipients = analyse(message, self.config, envelope)
        counts = recipients.summary()
        ctx = CheckContext(message, recipients, self.config, envelope, mode, self.services)
        findings: list[Finding] = []
        for settings in self._rules[mode]:
            checkpoint()
            if not gate_open(self._gates[settings.code], counts):
                continue  # cannot score: not even run (its body reading is saved)
            for hit in _run(settings, ctx):
                weight = points(
                    settings.rule.scoring, settings.weight, settings.options, hit.evidence, counts
                )
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
            message_id=_message_id(message.get("message-id")),
            analysis=recipients,
            date=message.get("date"),
            subject=_subject(message.get("subject")),
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


def ran_out_of_time(report: Report) -> bool:
    """Whether ``report`` is the ``error`` of a decision stopped at its deadline."""
    return report.verdict == "error" and any(
        TAG_ENGINE_ERROR in f.tags and f.evidence.get("deadline") for f in report.findings
    )


def _run(settings: RuleSettings, ctx: CheckContext) -> Iterable[Hit]:
    check = settings.rule.check
    assert check is not None
    return check(ctx, settings)


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


def _subject(value: str | None) -> str | None:
    if value is None:
        return None
    return " ".join(decode_rfc2047(value).split())[:200]


def _message_id(value: str | None) -> str | None:
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
