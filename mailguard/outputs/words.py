"""Counted nouns for human-readable output: "1 message", "2 messages", "1 person"."""

from __future__ import annotations


def count(n: int, singular: str, plural: str | None = None) -> str:
    """``n`` with thousands separators and the noun that agrees with it."""
    return f"{n:,} {singular if n == 1 else (plural or singular + 's')}"
