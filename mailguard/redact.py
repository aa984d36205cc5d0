"""Keyed hashing of addresses for reports that must not carry them.

An HMAC with a per-report random key keeps addresses unlinkable across reports (a plain
hash of an email address is trivially reversed by hashing a list of candidates) while the
same address still hashes the same way within one report, so counts and duplicates remain
checkable. Set ``MAILGUARD_REDACT_KEY`` to link reports on purpose.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets

KEY_ENV = "MAILGUARD_REDACT_KEY"


class Redactor:
    def __init__(self, key: bytes | None = None) -> None:
        if key is None:
            env = os.environ.get(KEY_ENV)
            key = env.encode("utf-8") if env else secrets.token_bytes(32)
        self._key = key

    def address(self, addr: str) -> str:
        digest = hmac.new(self._key, addr.lower().encode("utf-8", "surrogatepass"), hashlib.sha256)
        return "hmac:" + digest.hexdigest()[:16]
