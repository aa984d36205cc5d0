"""The engine: parse once, analyse recipients once, run the enabled rules, score.

Nothing else decides pass/warn/block. Every failure on the way becomes an ``error`` report
with an MG001 finding instead of an exception, so one hostile message in a folder of
thousands (or on a mail server) never stops the rest.
"""

from __future__ import annotations

import email.message
import logging
import traceback
from collections.abc import Iterable
from typing import Literal

from mailguard.checks.base import CheckContext, Hit
from mailguard.config import Config, RuleSettings
from mailguard.deadline import DeadlineExceeded, checkpoint, limit
from mailguard.errors import InputError
from mailguard.headers import HeaderProblem, decode_rfc2047
from mailguard.message import decode_smtp_data, parse_message
from mailguard.recipients import Envelope, analyse
from mailguard.redact import REASON_WITHHELD
from mailguard.report import EMPTY_RECIPIENTS, Finding, Redacted, Report
from mailguard.scoring import total, verdict

log = logging.getLogger("mailguard")

Mode = Literal["outgoing", "archived"]
MessageInput = bytes | bytearray | memoryview | str | email.message.Message
UNREADABLE = "MG001"
OUT_OF_TIME = "the decision ran out of time (deadline reached)"
"""MG001's reason when a decision was stopped at its deadline (see :func:`ran_out_of_time`)."""


class Engine:
    """A configured checker. Reuse one for many messages: rules are resolved once."""

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or Config()
        settings = self.config.rule_settings
        self._unreadable = settings[UNREADABLE]
        self._rules: dict[str, list[RuleSettings]] = {
            mode: [
                s for s in settings.values()
                if s.enabled and mode in s.rule.modes and s.rule.check is not None
            ]
            for mode in ("outgoing", "archived")
        }  # fmt: skip

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
        checkpoint once passed; the report is then an ``error`` whose MG001 reason is
        :data:`OUT_OF_TIME`. ``incomplete`` says what the caller could not hand over (the
        milter's header cap): it becomes an MG002 finding, as a limit of our own would.
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
            # the source may be a file named after a person (the MG001 entry names it).
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
        ctx = CheckContext(message, recipients, self.config, envelope, mode)
        findings: list[Finding] = []
        for settings in self._rules[mode]:
            checkpoint()
            for hit in _run(settings, ctx):
                findings.append(self._finding(settings, hit))
        score = total(f.weight for f in findings)
        findings.sort(key=lambda f: (-f.weight, f.code))
        return Report(
            source=source,
            verdict=verdict(score, self.config.scoring),
            score=score,
            findings=findings,
            recipients=recipients.summary(),
            message_id=_message_id(message.get("message-id")),
            analysis=recipients,
            date=message.get("date"),
            subject=_subject(message.get("subject")),
        )

    def _finding(self, settings: RuleSettings, hit: Hit) -> Finding:
        weight = settings.weight if hit.weight is None else hit.weight
        return Finding(
            settings.code, settings.rule.name, settings.severity, hit.message, weight, hit.evidence,
            hit.redacted,
        )  # fmt: skip

    def error_report(
        self,
        source: str,
        reason: str,
        *,
        private: bool = True,
        evidence: dict[str, object] | None = None,
    ) -> Report:
        """An ``error`` report with an MG001 finding, e.g. for a file that cannot be read.

        ``private``: the reason may quote the message or its location (a parser's or the
        operating system's words), so ``--redact`` withholds it.
        """
        s = self._unreadable
        safe = Redacted(f"message could not be checked: {REASON_WITHHELD}") if private else None
        finding = Finding(
            s.code, s.rule.name, s.severity, f"message could not be checked: {reason}", s.weight,
            evidence or {}, safe,
        )  # fmt: skip
        return Report(source, "error", total([s.weight]), [finding], dict(EMPTY_RECIPIENTS))


def ran_out_of_time(report: Report) -> bool:
    """Whether ``report`` is the ``error`` of a decision stopped at its deadline."""
    return report.verdict == "error" and any(
        f.code == UNREADABLE and f.evidence.get("deadline") for f in report.findings
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
