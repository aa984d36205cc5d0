"""What a report may show: the one place that decides redaction for every output format.

Keyed hashing: an HMAC with a per-report random key keeps addresses unlinkable across
reports (a plain hash of an email address is trivially reversed by hashing a list of
candidates) while the same address still hashes the same way within one report, so counts
and duplicates remain checkable. Set ``MAILGUARD_REDACT_KEY`` to link reports on purpose.

Under ``--redact`` a report names no person and quotes nothing from the mail, so every value
that comes from the messages or their locations is hashed or withheld as a whole, never
searched for the parts that look like addresses: a Message-ID, a file name or an IMAP folder
can carry an address (or a name) in any form, and a search that has to guess is a search
that misses. What stays readable is mailguard's own words and counts, domains (they name
organisations and providers, not people), sensitive-context labels and rule codes.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, overload

KEY_ENV = "MAILGUARD_REDACT_KEY"
WITHHELD = "[redacted]"
REASON_WITHHELD = "[reason withheld under --redact: it may quote the message or its location]"
MESSAGE_WITHHELD = "[message withheld under --redact: it may quote the message]"
REDACTED_KEY = "redacted"
"""Where a finding dict carries its redaction-safe variant (see ``report.Finding.to_dict``)."""

STDIN = "<stdin>"
_POSITIONS = ("@", ";UID=", "#")
"""How sources name a message inside a container (``box.mbox@1234``, ``imaps://…/Sent;UID=7``,
``box.mbox#12``): the number is mailguard's, so it stays readable after the container's
hash and messages of one container stay recognisable as such."""


class Redactor:
    def __init__(self, key: bytes | None = None) -> None:
        if key is None:
            env = os.environ.get(KEY_ENV)
            key = env.encode("utf-8") if env else secrets.token_bytes(32)
        self._key = key

    def address(self, addr: str) -> str:
        return self._hash(addr.lower())

    def value(self, kind: str, text: str) -> str:
        """Any other value, as given (Message-IDs and paths are case-sensitive); ``kind``
        separates the domains, so a Message-ID equal to an address does not hash alike."""
        return self._hash(f"{kind}\0{text}")

    def locator(self, source: str) -> str:
        """A source: the container hashed, the position of the message in it kept."""
        if source == STDIN:
            return source
        for sep in _POSITIONS:
            container, found, position = source.rpartition(sep)
            if found and container and position.isascii() and position.isdigit():
                return self.value("source", container) + sep + position
        return self.value("source", source)

    def _hash(self, text: str) -> str:
        digest = hmac.new(self._key, text.encode("utf-8", "surrogatepass"), hashlib.sha256)
        return "hmac:" + digest.hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Privacy:
    """The address and redaction policy of one report: every format of ``check`` and
    ``scan`` asks this object what it may show, and none decides it on its own.

    ``show_addresses``: the user asked for the exposed addresses (``--show-addresses``).
    ``redactor`` (``--redact``): everything that may identify a person or quote a message
    is hashed or withheld.
    """

    show_addresses: bool = False
    redactor: Redactor | None = None

    @property
    def redacting(self) -> bool:
        return self.redactor is not None

    @property
    def list_addresses(self) -> bool:
        """Whether a data output (text, JSON, CSV, SARIF) lists exposed addresses: on
        request, and always under ``--redact``, where they are hashes, so whoever receives a
        redacted report can still count and link the people in it."""
        return self.show_addresses or self.redacting

    @property
    def print_addresses(self) -> bool:
        """Whether a document written for people (the HTML register) lists them: only on
        request. Its counts already give the distinct people, and the JSON register carries
        the hashes for whoever needs to link them."""
        return self.show_addresses

    def describe(self) -> str:
        """This policy in words, for a document that must say what it leaves out."""
        if self.redactor is not None:
            listed = "exposed addresses listed" if self.print_addresses else "not listed"
            return (
                "redacted: addresses, sources and Message-IDs as keyed hashes; subjects, error "
                f"texts and words quoted from messages withheld; {listed}"
            )
        return "listed per incident" if self.print_addresses else "not listed (counts only)"

    @overload
    def address(self, addr: str) -> str: ...
    @overload
    def address(self, addr: None) -> None: ...
    def address(self, addr: str | None) -> str | None:
        if addr is None or self.redactor is None:
            return addr
        return self.redactor.address(addr)

    @overload
    def source(self, source: str) -> str: ...
    @overload
    def source(self, source: None) -> None: ...
    def source(self, source: str | None) -> str | None:
        """A file path, ``mbox@offset`` or IMAP URL: file and folder names name people."""
        if source is None or self.redactor is None:
            return source
        return self.redactor.locator(source)

    def message_id(self, message_id: str | None) -> str | None:
        """Message-IDs are often ``<…@host>`` built from a person's address or name."""
        if not message_id or self.redactor is None:
            return message_id
        return self.redactor.value("message-id", message_id)

    def subject(self, subject: str | None) -> str | None:
        """Withheld, not hashed: subjects name people and matters, and nobody links by them."""
        return WITHHELD if self.redactor is not None and subject is not None else subject

    def error(self, text: str) -> str:
        """Error texts come from parsers, the OS and IMAP servers and may quote a path, a
        folder list, a login name or a header: no structure to redact them by, so withheld."""
        return REASON_WITHHELD if self.redactor is not None else text

    def provenance(self, provenance: Mapping[str, Any]) -> dict[str, Any]:
        """A register's record of settings: its one path, the config file's, is a source
        (a home directory names its owner)."""
        out = dict(provenance)
        if out.get("config_file"):
            out["config_file"] = self.source(out["config_file"])
        return out

    def finding(self, finding: Mapping[str, Any]) -> dict[str, Any]:
        """A finding dict (``Finding.to_dict()``) as this report may show it."""
        out = {k: v for k, v in finding.items() if k != REDACTED_KEY}
        if self.redactor is None:
            return out
        safe = finding.get(REDACTED_KEY)
        if isinstance(safe, Mapping):
            out["message"] = str(safe.get("message", ""))
            out["evidence"] = dict(safe.get("evidence") or {})
            return out
        # A check that quotes the message must say so with a Redacted variant; should one
        # ever forget, an address in its words must still not get through.
        if _holds_at(out.get("message")):
            out["message"] = MESSAGE_WITHHELD
        if _holds_at(out.get("evidence")):
            out["evidence"] = {}
        return out


def _holds_at(value: object) -> bool:
    if isinstance(value, str):
        return "@" in value
    if isinstance(value, Mapping):
        return any(_holds_at(k) or _holds_at(v) for k, v in value.items())
    if isinstance(value, list | tuple | set | frozenset):
        return any(_holds_at(v) for v in value)
    return False


def hide_names(text: str, names: Iterable[str | os.PathLike[str] | None]) -> str:
    """An error line under ``--redact``: each of ``names`` (the files and sources the user
    gave: a folder or file name can be an address) replaced whole by its hash, longest
    first, and then any other word holding an ``@`` (a path the error resolved, a key file
    beside a store). Errors are mailguard's words around those names, so the names are
    known and replaced as a whole; the ``@`` words are only a second net."""
    redactor = Redactor()
    given = {os.fspath(n) for n in names if n is not None}
    for name in sorted((n for n in given if n), key=len, reverse=True):
        text = text.replace(name, redactor.locator(name))
    words = _GAPS.split(text)  # linear: a regex for "a word with an @" backtracks
    return "".join(redactor.value("word", w) if "@" in w else w for w in words)


_GAPS = re.compile(r"([\s'\"`]+)")
