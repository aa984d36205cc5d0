"""Reading an IMAP folder for ``mailguard scan`` without changing anything in the mailbox.

An auditor points the scan at a live account (``imaps://user@host/Sent``), often one that
belongs to someone else and is still in use. So the scan must leave no trace a user would
notice: the folder is opened with EXAMINE (read-only; RFC 3501 forbids any change to the
mailbox's state through it, ``\\Recent`` included) and every fetch is ``BODY.PEEK``, which
does not set ``\\Seen`` even on servers that would ignore the read-only mode. No STORE,
EXPUNGE, COPY, MOVE or APPEND is ever sent.

Why IMAPClient rather than the standard library's imaplib: imaplib hands back raw response
lines and leaves parsing to the caller, including literals (every message body arrives as
one), FETCH responses that interleave unsolicited updates, modified-UTF-7 folder names and
the special-use attributes in LIST; IMAPClient parses all of that, handles UID commands and
search-date formatting, and is actively maintained. Getting those details wrong is how an
archive scan silently skips or mangles messages.

Cost on a year of Sent mail: headers are fetched first, in batches of UIDs, and a message's
body only when ``needs_body`` says a rule needs it, again batched. Most messages are judged
on their headers alone (recipient counts live there), so most of the bytes never move.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Any

from imapclient import IMAPClient, imap_utf7
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError, LoginError
from imapclient.response_parser import parse_response

from mailguard.archive.imap_resume import ImapResume
from mailguard.archive.imap_url import (
    DEFAULT_PORTS,
    PASSWORD_ENV,
    ImapError,
    ImapTarget,
    is_imap_url,
    parse_imap_url,
    password_from_env_or_prompt,
    scrub,
)
from mailguard.sources import Input

# The URL, target and password half lives in imap_url; its public names are this module's
# too, as before the split.
__all__ = [
    "BODY_FETCH_BYTES",
    "DEFAULT_PORTS",
    "PASSWORD_ENV",
    "SENT",
    "ImapError",
    "ImapResume",
    "ImapTarget",
    "is_imap_url",
    "iter_imap",
    "parse_imap_url",
    "password_from_env_or_prompt",
]


SENT = b"\\Sent"

# One FETCH of full messages asks for at most this many bytes (by RFC822.SIZE), whatever
# the batch size: a batch of 200 large attachments would otherwise be one huge response
# held in memory at once.
BODY_FETCH_BYTES = 32 * 1024 * 1024

_HEADER_KEY = b"BODY[HEADER]"
_BODY_KEY = b"BODY[]"
_SIZE_KEY = b"RFC822.SIZE"

_log = logging.getLogger(__name__)


def iter_imap(
    target: ImapTarget,
    password: str,
    *,
    since: date | None = None,
    until: date | None = None,
    needs_body: Callable[[bytes], bool] = lambda headers: True,
    batch: int = 200,
    ssl_context: ssl.SSLContext | None = None,
    timeout: float = 60,
    resume: ImapResume | None = None,
) -> Iterator[Input]:
    """Yield every message of the folder (``since``/``until`` inclusive, by internal date).

    Each ``Input`` has source ``<label>;UID=<uid>`` (the label names the folder actually
    scanned, also when it was found by special use) and as data the whole message, or only
    its header block (ending in the blank line) when ``needs_body(header_block)`` is false.
    The internal date is the server's arrival time; for Sent mail that is when the message
    was sent. IMAP compares dates only, without times.

    It connects when iteration starts and raises :class:`ImapError` for anything that stops
    the whole scan (connection, TLS, login, folder, a connection lost midway); a message the
    server will not deliver becomes an ``Input`` with ``error`` set and the scan goes on.
    """
    if batch < 1:
        raise ValueError(f"batch must be at least 1, not {batch}")
    if since is not None and until is not None and _as_date(since) > _as_date(until):
        raise ValueError(f"since ({since}) is after until ({until})")
    with _secret_kept_out_of_logs(password, target.user):
        yield from _iter_folder(target, password, since, until, needs_body, batch, ssl_context,
                                timeout, resume)  # fmt: skip


def _iter_folder(
    target: ImapTarget,
    password: str,
    since: date | None,
    until: date | None,
    needs_body: Callable[[bytes], bool],
    batch: int,
    ssl_context: ssl.SSLContext | None,
    timeout: float,
    resume: ImapResume | None = None,
) -> Iterator[Input]:
    where = f"{target.host}:{target.port}"
    client = _connect(target, ssl_context, timeout)
    try:
        _login(client, target, password)
        with _imap_errors(where, "opening the folder"):
            folder = target.folder if target.folder is not None else _find_sent(client, target)
            opened = _examine(client, target, folder)
            uids = sorted(client.search(_search_criteria(since, until)))
        if resume is not None:
            validity = opened.get(b"UIDVALIDITY")
            uids = resume.choose(int(validity) if validity is not None else None, uids)
        label = replace(target, folder=folder).label()
        for start in range(0, len(uids), batch):
            chunk = uids[start : start + batch]
            with _imap_errors(where, f"reading messages ({start} of {len(uids)} done)"):
                messages = _fetch_batch(client, chunk, needs_body)
            for uid in chunk:
                message = messages[uid]
                yield Input(f"{label};UID={uid}", message.data, message.error)
    finally:
        _logout(client)


# --------------------------------------------------------------------------- connecting


def _connect(target: ImapTarget, ssl_context: ssl.SSLContext | None, timeout: float) -> Any:
    """Open the connection, with TLS from the start (imaps) or via STARTTLS when offered.

    Certificates are always verified: the default context uses the system trust store, and
    ``SSL_CERT_FILE`` points it at a private CA without code changes.
    """
    where = f"{target.host}:{target.port}"
    context = ssl_context if ssl_context is not None else ssl.create_default_context()
    with _imap_errors(where, "connecting"):
        client = IMAPClient(
            target.host,
            port=target.port,
            ssl=target.tls,
            ssl_context=context if target.tls else None,
            timeout=timeout,
        )
    if target.tls:
        return client
    try:
        with _imap_errors(where, "STARTTLS"):
            if client.has_capability("STARTTLS"):
                client.starttls(context)
            else:
                _log.warning(
                    "%s offers no STARTTLS: the password and the mail travel unencrypted", where
                )
    except BaseException:
        _logout(client)
        raise
    return client


def _login(client: Any, target: ImapTarget, password: str) -> None:
    """Log in, preferring AUTHENTICATE PLAIN, which (unlike LOGIN) carries UTF-8 passwords.

    The server's refusal is passed on with the password scrubbed from it, and without the
    chained exception, so no traceback can show it either.
    """
    where = f"{target.host}:{target.port}"
    with _imap_errors(where, "logging in"):
        capabilities = set(client.capabilities())
    try:
        if b"AUTH=PLAIN" in capabilities:
            client.plain_login(target.user, password)
        elif b"LOGINDISABLED" in capabilities:
            raise ImapError(
                f"{where} refuses to log in over an unencrypted connection (LOGINDISABLED) "
                "and offers no STARTTLS: use imaps://"
            )
        elif not password.isascii():
            raise ImapError(
                f"{where} offers only IMAP LOGIN, which cannot send a password with non-ASCII "
                "characters"
            )
        else:
            client.login(target.user, password)
    except LoginError as exc:
        reason = scrub(str(exc), password, target.user)
        raise ImapError(f"login as {target.user!r} on {where} failed: {reason}") from None
    except IMAPClientAbortError as exc:
        reason = scrub(str(exc), password, target.user)
        raise ImapError(f"{where} closed the connection while logging in: {reason}") from None
    except OSError as exc:
        reason = scrub(str(exc), password, target.user)
        raise ImapError(f"connection to {where} failed while logging in: {reason}") from None


@contextmanager
def _imap_errors(where: str, stage: str) -> Iterator[None]:
    """Turn socket, TLS and protocol failures into ImapError with a message a user can act on.

    Used around everything except the login itself (see :func:`_login`), whose errors may
    carry the password. ``stage`` says how far the scan got, for a connection lost midway.
    """
    try:
        yield
    except ImapError:
        raise
    except ssl.SSLCertVerificationError as exc:
        raise ImapError(
            f"the TLS certificate of {where} failed verification ({exc.verify_message}); "
            "if the server uses a private CA, point SSL_CERT_FILE at its certificate"
        ) from exc
    except ssl.SSLError as exc:
        raise ImapError(f"TLS with {where} failed while {stage}: {exc.reason or exc}") from exc
    except TimeoutError as exc:
        raise ImapError(f"{where} did not answer in time while {stage}") from exc
    except OSError as exc:
        reason = exc.strerror or exc
        raise ImapError(f"connection to {where} failed while {stage}: {reason}") from exc
    except IMAPClientAbortError as exc:
        raise ImapError(f"{where} broke off the connection while {stage}: {exc}") from exc
    except IMAPClientError as exc:
        raise ImapError(f"{where} failed while {stage}: {exc}") from exc


def _logout(client: Any) -> None:
    with suppress(Exception):
        client.logout()
    with suppress(Exception):
        client.shutdown()


# --------------------------------------------------------------------------- folders


def _find_sent(client: Any, target: ImapTarget) -> str:
    """The folder carrying the ``\\Sent`` special-use attribute (RFC 6154), never a guess.

    Folder names are localised ("Gesendete Elemente", "Éléments envoyés") and an account can
    hold a stale folder literally called "Sent", so guessing by name could audit the wrong
    mail. Servers put the attribute in plain LIST replies (Dovecot, Gmail, Exchange); the
    ``LIST (SPECIAL-USE)`` selection is asked for when a server only answers that, and XLIST
    covers servers from before RFC 6154.
    """
    folders = client.list_folders()
    found = _with_flag(folders, SENT)
    if found is None and client.has_capability("SPECIAL-USE"):
        found = _with_flag(_list_special_use(client), SENT)
    if found is None and client.has_capability("XLIST"):
        found = _with_flag(client.xlist_folders(), SENT)
    if found is not None:
        return found
    names = [name for _flags, _delimiter, name in folders]
    raise ImapError(
        f"{target.label()}: the account has no folder marked as \\Sent (special-use), so name "
        f"the folder to scan in the URL, e.g. {_example(target, names)}. "
        f"Its folders: {_name_list(names)}"
    )


def _list_special_use(client: Any) -> list[tuple[tuple[bytes, ...], bytes, str]]:
    """``LIST (SPECIAL-USE) "" "*"``: IMAPClient has no call for LIST selection options.

    So the command goes through IMAPClient's imaplib connection (``_imap``) with imaplib's
    public ``xatom``/``response``, and the reply through IMAPClient's parser.
    """
    imap = client._imap
    try:
        typ, _tagged = imap.xatom("LIST", "(SPECIAL-USE)", '""', '"*"')
    except IMAPClientAbortError:
        raise
    except IMAPClientError:  # advertised but refused: same as no attribute found
        return []
    _typ, lines = imap.response("LIST")
    if typ != "OK":
        return []
    items = parse_response([line for line in lines if line not in (b"", None)])
    folders = []
    for index in range(0, len(items) - 2, 3):
        flags, delimiter, name = items[index : index + 3]
        if isinstance(name, int):  # a purely numeric name comes back as a number
            name = str(name).encode()
        folders.append((tuple(flags), delimiter, imap_utf7.decode(name)))
    return folders


def _with_flag(folders: Sequence[tuple[Sequence[bytes], Any, str]], flag: bytes) -> str | None:
    for flags, _delimiter, name in folders:
        if any(f.lower() == flag.lower() for f in flags):
            return name
    return None


def _examine(client: Any, target: ImapTarget, folder: str) -> dict[bytes, Any]:
    """Open the folder with EXAMINE and make sure the server really made it read-only."""
    try:
        response = client.select_folder(folder, readonly=True)
    except IMAPClientAbortError:
        raise
    except IMAPClientError as exc:
        names = [name for _flags, _delimiter, name in client.list_folders()]
        raise ImapError(
            f"cannot open folder {folder!r} on {target.host}:{target.port} ({exc}). "
            f"Its folders: {_name_list(names)}"
        ) from None
    if response.get(b"READ-WRITE"):
        raise ImapError(
            f"{target.host}:{target.port} opened {folder!r} read-write although it was asked "
            "for read-only access (EXAMINE); not scanning it"
        )
    return dict(response)


def _example(target: ImapTarget, names: list[str]) -> str:
    likely = [name for name in names if "sent" in name.lower() or "gesendet" in name.lower()]
    return replace(target, folder=(likely or ["Sent"])[0]).label()


def _name_list(names: list[str]) -> str:
    return ", ".join(repr(name) for name in sorted(names)) or "(none)"


# --------------------------------------------------------------------------- fetching


def _search_criteria(since: date | None, until: date | None) -> list[Any]:
    """SINCE is inclusive; BEFORE is exclusive, so an inclusive ``until`` is BEFORE until+1."""
    criteria: list[Any] = []
    if since is not None:
        criteria += [b"SINCE", _as_date(since)]
    if until is not None:
        criteria += [b"BEFORE", _as_date(until) + timedelta(days=1)]
    return criteria or [b"ALL"]


@dataclass(frozen=True, slots=True)
class _Fetched:
    data: bytes | None
    error: str | None = None
    size: int | None = None


def _fetch_batch(
    client: Any, uids: list[int], needs_body: Callable[[bytes], bool]
) -> dict[int, _Fetched]:
    """Headers of one batch, then the full messages that ``needs_body`` asks for.

    Returns a result for every UID asked for. A message whose header block is all of it
    (RFC822.SIZE equals the header size: there is no body) is not fetched a second time.
    """
    heads = _fetch_each(client, uids, [b"BODY.PEEK[HEADER]", b"RFC822.SIZE"], _HEADER_KEY)
    result: dict[int, _Fetched] = {}
    wanted: list[tuple[int, int]] = []
    for uid in uids:
        head = heads[uid]
        if head.data is None or not needs_body(head.data):
            result[uid] = head
        elif head.size is not None and head.size <= len(head.data):
            result[uid] = head  # the header block is the whole message
        else:
            wanted.append((uid, head.size or 0))
    for group in _by_size(wanted):
        result.update(_fetch_each(client, group, [b"BODY.PEEK[]"], _BODY_KEY))
    return result


def _by_size(wanted: list[tuple[int, int]]) -> Iterator[list[int]]:
    """Split body fetches so one response stays under BODY_FETCH_BYTES (at least one each)."""
    group: list[int] = []
    total = 0
    for uid, size in wanted:
        if group and total + size > BODY_FETCH_BYTES:
            yield group
            group, total = [], 0
        group.append(uid)
        total += size
    if group:
        yield group


def _fetch_each(
    client: Any, uids: list[int], items: list[bytes], key: bytes
) -> dict[int, _Fetched]:
    """One UID FETCH for the group; if the server refuses it, one per message to isolate
    the message it cannot serve. A broken connection is not caught here: it ends the scan.
    """
    try:
        response = client.fetch(uids, items)
    except IMAPClientAbortError:
        raise
    except IMAPClientError as exc:
        if len(uids) == 1:
            return {uids[0]: _Fetched(None, f"the server refused to deliver it: {exc}")}
        result: dict[int, _Fetched] = {}
        for uid in uids:
            result.update(_fetch_each(client, [uid], items, key))
        return result
    result = {}
    for uid in uids:
        # Unsolicited FETCH replies (another session changed flags) may add entries or keys.
        fields = response.get(uid, {})
        data = fields.get(key)
        size = fields.get(_SIZE_KEY)
        if isinstance(data, bytes):
            result[uid] = _Fetched(data, None, size if isinstance(size, int) else None)
        else:
            result[uid] = _Fetched(None, "the server returned nothing for it (deleted meanwhile?)")
    return result


# --------------------------------------------------------------------------- small helpers


def _as_date(value: date) -> date:
    """A plain date also when given a datetime (a date subclass that would keep its time)."""
    return date(value.year, value.month, value.day)


class _SecretFilter(logging.Filter):
    """Scrubs the password from every record of the IMAP libraries' loggers while attached:
    IMAPClient logs each line the server sends at DEBUG, including an echoed refusal."""

    def __init__(self, password: str, user: str) -> None:
        super().__init__()
        self._password, self._user = password, user

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = scrub(message, self._password, self._user)
        if scrubbed != message:
            record.msg, record.args = scrubbed, ()
        return True


_SECRET_LOGGERS = ("imapclient", "imapclient.imapclient", "imapclient.imaplib", __name__)


@contextmanager
def _secret_kept_out_of_logs(password: str, user: str) -> Iterator[None]:
    secret_filter = _SecretFilter(password, user)
    loggers = [logging.getLogger(name) for name in _SECRET_LOGGERS]
    for logger in loggers:
        logger.addFilter(secret_filter)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(secret_filter)
