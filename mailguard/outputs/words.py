"""Counted nouns for human-readable output: "1 message", "2 messages", "1 person"."""

from __future__ import annotations

from typing import Any


def count(n: int, singular: str, plural: str | None = None) -> str:
    """``n`` with thousands separators and the noun that agrees with it."""
    return f"{n:,} {singular if n == 1 else (plural or singular + 's')}"


def dns_text(dns: Any) -> str:
    """The provenance's ``dns`` entry in words (absent in registers made before it)."""
    if not isinstance(dns, dict):
        return "not recorded"
    if not dns.get("enabled"):
        return str(dns.get("note", "off"))
    servers = dns.get("servers")
    shown = ", ".join(servers) if isinstance(servers, list) else str(servers)
    return f"on, asking {shown}; {dns.get('note', '')}".rstrip("; ")
