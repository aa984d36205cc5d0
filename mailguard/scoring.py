"""Scoring: findings' weights add up to a 0-100 score; thresholds turn it into a verdict.

Kept apart from detection (as SpamAssassin and rspamd do) so that operators can re-weight
any rule, and every point of a score can be traced to one finding. Checks report counts;
the rule file's ``[scoring]`` table says how a count becomes points (:func:`points`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from mailguard import configfile
from mailguard.errors import ConfigError
from mailguard.rules import ScoringSpec


@dataclass(frozen=True, slots=True)
class Scoring:
    """The ``[scoring]`` table: where a score becomes a verdict."""

    warn_at: int = 30
    """Score (0-100) from which a message is ``warn``."""
    block_at: int = 70
    """Score (0-100) from which a message is ``block``."""

    def __post_init__(self) -> None:
        if not 0 <= self.warn_at <= self.block_at <= 100:
            raise ConfigError("scoring: need 0 <= warn_at <= block_at <= 100")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str = "config") -> Scoring:
        """Validate a ``[scoring]`` table; errors start with ``where`` (the file)."""
        table = configfile.integers(cls, data, f"{where}: scoring")
        try:
            return cls(**table)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None


Verdict = Literal["pass", "warn", "block", "error"]
VERDICT_ORDER: dict[str, int] = {"pass": 0, "warn": 1, "block": 2, "error": 3}
EXIT_OK, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2
EXIT_INTERRUPTED = 130  # Ctrl-C: 128 + SIGINT, as shells report it
EXIT_TEMPFAIL = 75  # sysexits.h EX_TEMPFAIL: the scan state is in use; try again later


def exit_status(verdicts: Iterable[str], fail_on: str) -> int:
    """The command-line exit status for these verdicts (linter convention).

    2 if any message could not be checked (an unreadable message is never "clean"), else 1
    if any is at or above ``fail_on``, else 0. ``check`` and ``scan`` share it.
    """
    seen = set(verdicts)
    if "error" in seen:
        return EXIT_ERROR
    threshold = VERDICT_ORDER[fail_on]
    return EXIT_FINDINGS if any(VERDICT_ORDER[v] >= threshold for v in seen) else EXIT_OK


def ramp(count: int, low: int, high: int, low_weight: int, high_weight: int) -> int:
    """Points for ``count`` on a line from ``low_weight`` at ``low`` to ``high_weight`` at ``high``.

    Below ``low`` gives 0 and above ``high`` stays at ``high_weight``: a threshold users can
    reason about ("10 parties is a warning, 50 a block") with a score that still tells 12
    from 45 apart.
    """
    if count < low:
        return 0
    if count >= high or high <= low:
        return high_weight
    return round(low_weight + (high_weight - low_weight) * (count - low) / (high - low))


def points(
    spec: ScoringSpec | None,
    weight: int,
    options: Mapping[str, Any],
    evidence: Mapping[str, Any],
    counts: Mapping[str, Any],
) -> int | None:
    """Points for one finding of a rule, or ``None`` when its count is below the threshold.

    ``weight`` is the rule's configured weight; ``counts`` the recipient analysis' counts.
    A ramping rule whose ramp gives 0 points (a weight of 0 at the threshold) yields no
    finding, as when its check computed the ramp itself.
    """
    if spec is None:
        return weight
    key = spec.recipient_count
    count = _int(counts.get(key) if key else evidence.get(spec.count))
    low = _value(spec.min, options, evidence)
    if count is None or low is None or count < low:
        return None
    if spec.mass is None:
        return weight
    high = _value(spec.mass, options, evidence)
    high_weight = _value(spec.mass_weight, options, evidence)
    if high is None or high_weight is None:
        return weight
    return ramp(count, low, high, weight, high_weight) or None


Gate = tuple[str, int] | None
"""A recipient count and the least it must be for a rule to score; ``None``: always open."""


def gate(spec: ScoringSpec | None, options: Mapping[str, Any]) -> Gate:
    """The rule's gate with these options (computed once per engine, not per message).

    Only a ``recipients.<key>`` count with a known ``floor`` makes one: below it the check
    is not run at all, and a source need not fetch the body for it.
    """
    if spec is None or spec.recipient_count is None or not spec.floor:
        return None
    floors = [f for f in (_value(v, options, {}) for v in spec.floor) if f is not None]
    return (spec.recipient_count, min(floors)) if floors else None


def gate_open(gate: Gate, counts: Mapping[str, Any]) -> bool:
    """Whether a rule with this gate can score with these recipient counts."""
    if gate is None:
        return True
    count = counts.get(gate[0])
    return not isinstance(count, int) or count >= gate[1]


def _value(
    ref: int | str | None, options: Mapping[str, Any], evidence: Mapping[str, Any]
) -> int | None:
    if ref is None or isinstance(ref, int):
        return ref
    prefix, _, field = ref.partition(".")
    return _int(evidence.get(field) if prefix == "evidence" else options.get(ref))


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def total(weights: Iterable[int]) -> int:
    return max(0, min(100, sum(weights)))


def verdict(score: int, scoring: Scoring) -> Verdict:
    if score >= scoring.block_at:
        return "block"
    if score >= scoring.warn_at:
        return "warn"
    return "pass"
