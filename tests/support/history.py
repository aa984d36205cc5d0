"""Building a real history store from a few sent messages, for tests and rule examples."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from mailguard.history.extract import observe
from mailguard.history.learner import Learner
from mailguard.history.service import HistoryService
from mailguard.history.settings import HistorySettings
from mailguard.history.store import HistoryStore


def learn_messages(path: Path, messages: Iterable[str | bytes], **settings: object) -> Path:
    """Learn ``messages`` into the store at ``path`` (created with its key if needed)."""
    store = HistoryStore.open(path, create=True)
    try:
        learner = Learner(store, HistorySettings(**settings))  # type: ignore[arg-type]
        for message in messages:
            raw = message.encode() if isinstance(message, str) else message
            learner.add(observe(raw))
        learner.finish()
    finally:
        store.close()
    return path


def history_service(path: Path, messages: Iterable[str | bytes]) -> HistoryService:
    learn_messages(path, messages)
    return HistoryService.open(HistorySettings(), path)
