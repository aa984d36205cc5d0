"""An in-process stand-in for DNS: the rule examples must not touch the network.

It replaces only the wire: :class:`mailguard.resolver.DnsService` runs as in production
(cache, deadline, classification) on dnspython's own record and exception types.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import dns.exception
import dns.name
import dns.resolver
import dns.rrset

from mailguard.resolver import DnsService

#: name -> {rdtype: record text}; a name absent here does not exist.
ZONE: dict[str, dict[str, str]] = {
    "acme.example": {"MX": "10 mail.acme.example."},
    "partner.example": {"MX": "10 mx.partner.example."},
    "a-only.example": {"A": "192.0.2.10"},
    "nomail.example": {"MX": "0 ."},
    "empty.example": {},
}
TIMES_OUT = {"slow.example"}


def fake_resolve(name: str, rdtype: str, lifetime: float) -> Any:
    if name in TIMES_OUT:
        raise dns.exception.Timeout(timeout=lifetime)
    records = ZONE.get(name)
    if records is None:
        raise dns.resolver.NXDOMAIN(qnames=[dns.name.from_text(name)])
    text = records.get(rdtype)
    rrset = dns.rrset.from_text(name, 300, "IN", rdtype, text) if text else None
    return SimpleNamespace(rrset=rrset, response=None)


def fake_service() -> DnsService:
    return DnsService(resolve=fake_resolve, deadline=0.5)
