"""A local history of who writes to whom, holding no address in clear.

Wrong-recipient mistakes (autocomplete picked the wrong "Bob", a reply-all pulled an
outsider into an internal case) are visible only against what a sender usually does.
This package keeps that memory on the machine, in one SQLite file, with every address,
Message-ID and source name reduced to a keyed hash (HMAC-SHA-256, 64 bits kept) whose key
lives in a 0600 file beside the store:

* :mod:`~mailguard.history.keys` — the key file and the hashing;
* :mod:`~mailguard.history.schema` — the versioned schema and its migrations;
* :mod:`~mailguard.history.store` — opening (read-only by default), queries and writes;
* :mod:`~mailguard.history.near` — near-miss lookups on hashed data (a deletion
  neighbourhood) and the "did you mean" reconstruction;
* :mod:`~mailguard.history.extract` — the fast header reading used when learning;
* :mod:`~mailguard.history.learner` — turning messages into bounded relationships;
* :mod:`~mailguard.history.service` — what the history rules call through
  ``Services(history=...)``; it degrades to "no history" rather than fail a decision.
"""

from __future__ import annotations

from mailguard.history.keys import HistoryError

__all__ = ["HistoryError"]
