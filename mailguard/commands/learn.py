"""``mailguard learn`` and ``mailguard history``: build the history store, and describe it.

Learning reads only headers, never keeps a body, and writes addresses only as keyed
hashes. What it prints are counts: the store's purpose is that no address in it can be
read back, and its statistics keep that promise too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mailguard.commands import CommandError
from mailguard.commands.common import echo
from mailguard.commands.settings import ConfigSource, load_settings
from mailguard.history.keys import HistoryError
from mailguard.history.settings import HistorySettings
from mailguard.history.store import HistoryStore, errors
from mailguard.scoring import EXIT_ERROR

if TYPE_CHECKING:
    from mailguard.history.learner import Learner


def _store_path(store: Path | None, settings: HistorySettings) -> Path:
    if store is not None:
        return store
    if settings.store is None:
        raise CommandError("name the history store: --store PATH, or [history] store = PATH")
    return Path(settings.store)


def run_learn(
    sources: Sequence[str],
    store: Path | None,
    source: ConfigSource | None = None,
    *,
    pattern: str = "*.eml",
    say: Callable[[str], None] = echo,
) -> int:
    """Learn from every source into the store (created with its key on first use).

    Exit status 0, or 2 when a source (or messages in it) could not be read or the store
    cannot be used (missing key, corrupt, locked by another writer past ``busy_timeout``).
    """
    from mailguard.history.learner import Learner

    settings = load_settings(source).history
    path = _store_path(store, settings)
    try:
        opened = HistoryStore.open(
            path, write=True, create=True, busy_timeout=settings.busy_timeout
        )
        try:
            with errors(path, "learning"):
                learner = Learner(opened, settings)
                failed = _learn_all(sources, learner, pattern, say)
                tally = learner.finish()
        finally:
            opened.close()
    except HistoryError as exc:
        raise CommandError(str(exc)) from None
    say(
        f"learned {tally.learned:,} messages into {path}: {tally.duplicates:,} already known, "
        f"{tally.mass:,} mass mailings (over {settings.learn_max_recipients} recipients, "
        f"not learned as relationships), {tally.no_sender + tally.no_recipients:,} without "
        f"sender or recipients; {tally.expired:,} relationships expired, "
        f"{tally.capped:,} dropped over the caps"
    )
    return EXIT_ERROR if failed else 0


def _learn_all(
    sources: Sequence[str], learner: Learner, pattern: str, say: Callable[[str], None]
) -> bool:
    """Feed each source, one line each; whether any could not be read (wholly or partly)."""
    from mailguard.archive import imap
    from mailguard.archive.learn_feed import feed

    failed = False
    for name in sources:
        try:
            result = feed(name, learner, pattern=pattern,
                          password=imap.password_from_env_or_prompt)  # fmt: skip
        except (OSError, ValueError, imap.ImapError) as exc:
            say(f"mailguard: error: {_label(name)}: {exc}")
            failed = True
            continue
        if result.error:
            say(f"mailguard: error: {result.error}")
            failed = True
            continue
        failed = failed or result.unreadable > 0
        line = (
            f"{_label(name)} ({result.kind}): {result.read:,} messages read, "
            f"{result.skipped:,} {result.skipped_unit} skipped (read by an earlier run)"
        )
        if result.unreadable:
            line += f", {result.unreadable:,} unreadable"
        say(line + (f"; {result.note}" if result.note else ""))
    return failed


def _label(source: str) -> str:
    """How a source is named in output: an IMAP URL with any password masked."""
    from mailguard.archive.imap_url import is_imap_url, parse_imap_url

    if is_imap_url(source):
        try:
            return parse_imap_url(source).label()
        except ValueError:
            return "(an IMAP URL that cannot be parsed)"
    return source


STAT_LABELS = {
    "schema_version": "schema version",
    "bytes": "size on disk (bytes, with -wal and -shm)",
    "senders": "senders",
    "recipients": "distinct recipients (organisation-wide)",
    "relationships": "sender-recipient relationships",
    "messages": "messages (hashed Message-IDs, for threads)",
    "threads": "threads",
    "mass_mailings": "mass mailings (counted, not learned)",
    "co_recipient_pairs": "co-recipient pairs",
    "near_miss_keys": "near-miss keys",
    "sources": "sources read incrementally",
    "first_day": "first message (day)",
    "last_day": "last message (day)",
}


def run_stats(store: Path | None, source: ConfigSource | None = None) -> int:
    """Print the store's counts and size: never an address, never a hash."""
    import datetime

    settings = load_settings(source).history
    path = _store_path(store, settings)
    try:
        opened = HistoryStore.open(path, busy_timeout=settings.busy_timeout)
        try:
            stats = opened.stats()
        finally:
            opened.close()
    except HistoryError as exc:
        raise CommandError(str(exc)) from None
    for key, label in STAT_LABELS.items():
        value = stats[key]
        if key.endswith("_day"):
            shown = "-" if value < 0 else str(datetime.date(1970, 1, 1) + datetime.timedelta(value))
        else:
            shown = f"{value:,}"
        echo(f"{label:<45} {shown}")
    return 0


def run_migrate(store: Path | None, source: ConfigSource | None = None) -> int:
    """Upgrade the store's schema in place (what ``learn`` also does on its own)."""
    settings = load_settings(source).history
    path = _store_path(store, settings)
    try:
        HistoryStore.open(path, write=True, busy_timeout=settings.busy_timeout).close()
    except HistoryError as exc:
        raise CommandError(str(exc)) from None
    echo(f"{path}: schema is current")
    return 0
