"""Scoring: findings' weights add up to a 0-100 score; thresholds turn it into a verdict.

Kept apart from detection (as SpamAssassin and rspamd do) so that operators can re-weight
any rule, and every point of a score can be traced to one finding.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from mailguard import configfile
from mailguard.errors import ConfigError


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


def total(weights: Iterable[int]) -> int:
    return max(0, min(100, sum(weights)))


def verdict(score: int, scoring: Scoring) -> Verdict:
    if score >= scoring.block_at:
        return "block"
    if score >= scoring.warn_at:
        return "warn"
    return "pass"
