"""What an IMAP source is before any connection: its URL, its target, its password.

Split from :mod:`mailguard.archive.imap` (which connects, lists folders and fetches) so
that naming a source, asking for its password and keeping that password out of every
message can be read, and checked, apart from the protocol. Nothing here touches the
network or imports the IMAP client library.
"""

from __future__ import annotations

import base64
import getpass
import os
import re
import sys
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

PASSWORD_ENV = "MAILGUARD_IMAP_PASSWORD"
DEFAULT_PORTS = {"imaps": 993, "imap": 143}

# URL path parameters that address one message or part (RFC 5092); a scan takes folders.
_MESSAGE_PARAMS = re.compile(r";\s*(uidvalidity|uid|section|partial|urlauth)\s*=", re.IGNORECASE)
# Characters percent-encoded in labels: just enough for a label to parse back to the same
# target (and to survive being pasted), while non-ASCII folder names stay readable.
_LABEL_USER_UNSAFE = re.compile(r"[%@:/;?#\s\x00-\x1f\x7f]")
_LABEL_FOLDER_UNSAFE = re.compile(r"[%;?#\s\x00-\x1f\x7f]")


class ImapError(Exception):
    """The IMAP source cannot be read at all (connection, TLS, login, folder).

    Messages are meant for the user as they are and never contain the password. Failures
    of single messages are not raised: they become ``Input`` entries with ``error`` set.
    """


@dataclass(frozen=True)
class ImapTarget:
    """One IMAP folder to scan, as parsed from ``imaps://user@host[:port]/Folder``.

    ``folder`` is None when the URL names none: the scan then uses the account's ``\\Sent``
    special-use folder. There is no password field on purpose, so a target can be logged,
    printed and stored in a report without care.
    """

    url: str
    tls: bool
    user: str
    host: str
    port: int
    folder: str | None

    @property
    def scheme(self) -> str:
        return "imaps" if self.tls else "imap"

    def label(self) -> str:
        """``imaps://user@host:993/Folder``: always with the port, never with a password.

        Parses back to the same target with :func:`parse_imap_url`, so a source from a report
        (minus its ``;UID=n``) can be pasted into the next scan.
        """
        host = f"[{self.host}]" if ":" in self.host else self.host
        folder = _percent_encode(self.folder, _LABEL_FOLDER_UNSAFE) if self.folder else ""
        user = _percent_encode(self.user, _LABEL_USER_UNSAFE)
        return f"{self.scheme}://{user}@{host}:{self.port}/{folder}"


def is_imap_url(source: str) -> bool:
    """Whether a SOURCE argument is meant as IMAP (the CLI routes it here, not to a file)."""
    return re.match(r"imaps?://", source, re.IGNORECASE) is not None


def parse_imap_url(url: str) -> ImapTarget:
    """Parse ``imaps://user@host[:port][/Folder]`` (or ``imap://``) into an :class:`ImapTarget`.

    User name and folder are percent-decoded as UTF-8 (RFC 5092), so ``alice%40example.com``
    and ``Sent%20Items`` work; an unencoded ``@`` in the user name is accepted too, since
    people type their mail address. Raises ValueError whose message never repeats a
    password, because a password in a URL is refused outright: command lines end up in
    shell history and process lists.
    """
    shown = _redact_url(url)
    usage = "expected imaps://user@host[:port]/Folder or imap://user@host[:port]/Folder"
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ValueError(f"not a valid IMAP URL: {shown!r} ({exc}); {usage}") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not url[len(scheme) :].startswith("://"):
        raise ValueError(f"not an IMAP URL: {shown!r}; {usage}")
    userinfo, at, _hostport = parts.netloc.rpartition("@")
    if ":" in userinfo or shown != url:
        raise ValueError(
            f"the IMAP URL {shown!r} contains a password; never put it on the command line: "
            f"set {PASSWORD_ENV} or type it at the prompt"
        )
    if not at or not userinfo:
        raise ValueError(f"the IMAP URL {shown!r} names no user; {usage}")
    if ";" in userinfo:
        raise ValueError(
            f"the IMAP URL {shown!r} has ';' in its user part (';AUTH=...' is not supported); "
            "percent-encode a ';' that belongs to the user name as %3B"
        )
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise ValueError(
            f"the IMAP URL {shown!r} has a '?' or '#' part, which a scan does not use; "
            "percent-encode them (%3F, %23) if they belong to the folder name"
        )
    host = parts.hostname
    if not host:
        raise ValueError(f"the IMAP URL {shown!r} names no host; {usage}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"the IMAP URL {shown!r} has an invalid port; {usage}") from None
    if port == 0:
        raise ValueError(f"the IMAP URL {shown!r} has an invalid port 0; {usage}")
    raw_folder = parts.path.removeprefix("/").rstrip("/")
    if _MESSAGE_PARAMS.search(raw_folder):
        raise ValueError(
            f"the IMAP URL {shown!r} names a single message (';UID=...'); a scan takes a "
            "folder: remove everything from the ';'"
        )
    return ImapTarget(
        url=url,
        tls=scheme == "imaps",
        user=_percent_decode(userinfo, "user name", shown),
        host=host,
        port=port or DEFAULT_PORTS[scheme],
        folder=_percent_decode(raw_folder, "folder name", shown) or None,
    )


def password_from_env_or_prompt(target: ImapTarget) -> str:
    """The IMAP password from ``MAILGUARD_IMAP_PASSWORD``, else from a terminal prompt.

    Never from the command line (see :func:`parse_imap_url`). Without a terminal (cron, CI) a
    prompt would hang or read garbage, so that case is an error that says what to set.
    """
    password = os.environ.get(PASSWORD_ENV)
    if password:
        return password
    if not sys.stdin.isatty():
        raise ImapError(
            f"no IMAP password for {target.label()}: set {PASSWORD_ENV} "
            "(there is no terminal to prompt on)"
        )
    try:
        return getpass.getpass(f"IMAP password for {target.label()}: ")
    except EOFError:
        raise ImapError(f"no IMAP password for {target.label()}: input ended") from None


# --------------------------------------------------------------------------- small helpers


def _percent_decode(text: str, what: str, shown: str) -> str:
    try:
        return unquote(text, errors="strict")
    except UnicodeDecodeError:
        raise ValueError(
            f"the {what} in the IMAP URL {shown!r} is not UTF-8 after percent-decoding"
        ) from None


def _percent_encode(text: str, unsafe: re.Pattern[str]) -> str:
    return unsafe.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), text)


def _redact_url(url: str) -> str:
    """The URL with anything that may be a password replaced, for error messages.

    Deliberately cruder than URL parsing: a password containing '/' or '?' would end the
    authority early for urlsplit, but must still never be shown.
    """
    scheme, sep, rest = url.partition("://")
    userinfo, at, after = rest.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return url
    return f"{scheme}{sep}{userinfo.split(':', 1)[0]}:***@{after}"


_BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{4,}={0,2}")
_PIECE = 4


def scrub(text: str, password: str, user: str = "") -> str:
    """``text`` without the password in any form a server or library could echo it in.

    Raw, as an IMAP quoted string (LOGIN), and base64-encoded: the AUTHENTICATE PLAIN
    response is ``base64("\\0user\\0password")``, and a server that quotes it in its
    refusal would otherwise hand the password to the error line, a log or a traceback. A
    run of base64 characters is withheld when, read at any of the four character offsets,
    it decodes to something holding a piece of the password (four bytes, or all of a
    shorter one), so a quoted fragment of the response is caught too.
    """
    if not password:
        return text
    for form in _secret_forms(password, user):
        text = text.replace(form, "***")
    secret = password.encode("utf-8")
    n = min(len(secret), _PIECE)
    pieces = {secret[i : i + n] for i in range(len(secret) - n + 1)}

    def withheld(match: re.Match[str]) -> str:
        run = match.group().rstrip("=")
        for offset in range(4):
            usable = (len(run) - offset) // 4 * 4
            if usable < 4:
                break
            decoded = base64.b64decode(run[offset : offset + usable])
            if any(piece in decoded for piece in pieces):
                return "***"
        return match.group()

    return _BASE64_RUN.sub(withheld, text)


def _secret_forms(password: str, user: str) -> list[str]:
    secret = password.encode("utf-8")
    quoted = password.replace("\\", "\\\\").replace('"', '\\"')
    forms = {password, quoted, f'"{quoted}"'}
    for blob in (
        b"\0" + user.encode() + b"\0" + secret,
        user.encode() + b"\0" + user.encode() + b"\0" + secret,
        secret,
    ):
        forms.add(base64.b64encode(blob).decode("ascii"))
    # Longest first, so a form containing another is replaced whole.
    return sorted(forms, key=len, reverse=True)
