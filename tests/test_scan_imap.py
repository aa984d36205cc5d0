"""``mailguard scan imap(s)://``: the IMAP reader against a real Dovecot on loopback.

What matters most for an audit of a live mailbox is that the scan changes nothing, so the
flag tests compare the server's view (flags via a separate session) and the disk's view
(Maildir file names, where Dovecot keeps ``\\Seen`` as ``S``) before and after. The \\Sent
folder is deliberately not called "Sent" and a decoy "Sent" without the attribute exists, so
the default-folder tests prove the special-use lookup and not a guess by name. The tests fail
(never skip) without Dovecot: the harness installs it or raises.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import email
import email.policy
import getpass
import json
import logging
import os
import re
import subprocess
import sys
import traceback
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote

import pytest
from imapclient import IMAPClient

from mailguard.archive.imap import (
    ImapError,
    ImapTarget,
    is_imap_url,
    iter_imap,
    parse_imap_url,
    password_from_env_or_prompt,
)
from mailguard.sources import Input
from tests.support.dovecot import (
    DovecotInstance,
    Mailbox,
    ensure_dovecot_installed,
    free_ports,
    processes_named,
)

SENT = "Éléments envoyés"  # the \Sent special-use folder (Outlook's French name)
DECOY = "Sent"  # a plain folder that a guess by name would pick
NOSENT_USER = "nosent"  # an account without any \Sent folder
NOSENT_PASSWORD = "pässwörd ü"  # non-ASCII: only AUTHENTICATE PLAIN can send it
COUNT = 25
FIRST_DAY = dt.date(2024, 3, 1)


def day(i: int) -> dt.date:
    return FIRST_DAY + dt.timedelta(days=i)


def message(i: int) -> bytes:
    recipients = ", ".join(f"person{n}@example.test" for n in range(i % 4 + 2))
    return (
        "From: auditor@example.test\r\n"
        f"To: {recipients}\r\n"
        f"Subject: scan test {i}\r\n"
        f"Message-ID: <scan-{i}@example.test>\r\n"
        f"X-Needs-Body: {'yes' if i % 2 else 'no'}\r\n"
        "\r\n"
        f"body-marker-{i}\r\n"
        "second line of the body\r\n"
    ).encode()


def initial_flags(i: int) -> tuple[str, ...]:
    """Mostly unseen, some seen, some flagged: the scan must leave every one as it was."""
    return tuple(f for f, on in ((r"\Seen", i % 5 == 0), (r"\Flagged", i % 7 == 0)) if on)


@pytest.fixture(scope="module")
def dovecot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DovecotInstance]:
    ensure_dovecot_installed()
    mailboxes = {SENT: Mailbox(r"\Sent", auto="no"), DECOY: Mailbox()}
    with DovecotInstance(
        tmp_path_factory.mktemp("dovecot"),
        users={NOSENT_USER: NOSENT_PASSWORD},
        mailboxes=mailboxes,
    ) as instance:
        instance.create(SENT)  # only the auditor has the \Sent folder
        noon = dt.time(12, tzinfo=dt.UTC)  # far from midnight in any server time zone
        instance.append_many(
            SENT,
            [
                (message(i), initial_flags(i), dt.datetime.combine(day(i), noon))
                for i in range(COUNT)
            ],
        )
        instance.append(DECOY, b"Subject: decoy\r\n\r\ndecoy body\r\n")
        instance.append(DECOY, b"Subject: decoy\r\n\r\ndecoy body\r\n", user=NOSENT_USER)
        yield instance
    assert not processes_named(instance.instance_name)


@pytest.fixture
def trusted(dovecot: DovecotInstance, monkeypatch: pytest.MonkeyPatch) -> None:
    """Trust the instance's CA the way a user would: SSL_CERT_FILE, no code changes."""
    monkeypatch.setenv("SSL_CERT_FILE", str(dovecot.ca_file))


def imaps(dovecot: DovecotInstance, folder: str | None = SENT, user: str = "auditor") -> str:
    path = f"/{folder.replace(' ', '%20')}" if folder is not None else ""
    return f"imaps://{user}@127.0.0.1:{dovecot.imaps_port}{path}"


def imap(dovecot: DovecotInstance, folder: str | None = SENT, user: str = "auditor") -> str:
    path = f"/{folder.replace(' ', '%20')}" if folder is not None else ""
    return f"imap://{user}@localhost:{dovecot.imap_port}{path}"


def scan(url: str, password: str, **kwargs) -> list[Input]:
    return list(iter_imap(parse_imap_url(url), password, **kwargs))


def uid_of(item: Input) -> int:
    return int(item.source.rsplit(";UID=", 1)[1])


def marker(item: Input) -> int:
    assert item.data is not None
    found = re.search(rb"Subject: scan test (\d+)", item.data)
    assert found, item.data
    return int(found.group(1))


# --------------------------------------------------------------------------- URL parsing


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("imaps://alice@mail.example.test/Sent", (True, "alice", "mail.example.test", 993, "Sent")),
        ("imap://alice@mail.example.test/Sent", (False, "alice", "mail.example.test", 143, "Sent")),
        (
            "imaps://alice@mail.example.test:10993/Sent",
            (True, "alice", "mail.example.test", 10993, "Sent"),
        ),
        ("IMAPS://alice@Mail.Example.Test", (True, "alice", "mail.example.test", 993, None)),
        ("imaps://alice@mail.example.test/", (True, "alice", "mail.example.test", 993, None)),
        (
            "imaps://alice%40example.test@mail.example.test/Sent%20Items",
            (True, "alice@example.test", "mail.example.test", 993, "Sent Items"),
        ),
        (
            "imaps://alice@example.test@mail.example.test/Sent",
            (True, "alice@example.test", "mail.example.test", 993, "Sent"),
        ),
        (
            "imaps://bob@h.test/%C3%89l%C3%A9ments%20envoy%C3%A9s",
            (True, "bob", "h.test", 993, SENT),
        ),
        ("imaps://bob@h.test/Éléments envoyés", (True, "bob", "h.test", 993, SENT)),
        (
            "imaps://bob@h.test/INBOX/Archive/2024/",
            (True, "bob", "h.test", 993, "INBOX/Archive/2024"),
        ),
        ("imaps://bob@[::1]:1993/Sent", (True, "bob", "::1", 1993, "Sent")),
        ("imaps://bob@h.test/100%25%20sure", (True, "bob", "h.test", 993, "100% sure")),
    ],
)
def test_parse_imap_url(url: str, expected: tuple) -> None:
    target = parse_imap_url(url)
    assert (target.tls, target.user, target.host, target.port, target.folder) == expected
    assert target.url == url
    # The label names the port, and parses back to the same target.
    assert f":{target.port}/" in target.label()
    assert replace(parse_imap_url(target.label()), url=url) == target


def test_label_is_readable_and_round_trips() -> None:
    target = ImapTarget("x", True, "alice@example.test", "h.test", 993, SENT)
    assert target.label() == "imaps://alice%40example.test@h.test:993/Éléments%20envoyés"
    assert ImapTarget("x", False, "bob", "::1", 143, None).label() == "imap://bob@[::1]:143/"


@pytest.mark.parametrize(
    "url",
    [
        "imaps://alice:s3cret-pw@mail.example.test/Sent",
        "imap://alice:s3cret-pw@mail.example.test",
        "imaps://alice:s3cret-pw/with/slashes@mail.example.test/Sent",
        "imaps://alice:s3cret-pw?x@mail.example.test/Sent",
        "imapx://alice:s3cret-pw@mail.example.test/Sent",
    ],
)
def test_password_in_url_is_refused_without_repeating_it(url: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_imap_url(url)
    assert "s3cret-pw" not in str(info.value)
    if url.startswith(("imap://", "imaps://")):
        assert "MAILGUARD_IMAP_PASSWORD" in str(info.value)
    else:
        assert "not an IMAP URL" in str(info.value)


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("http://alice@mail.example.test/Sent", "not an IMAP URL"),
        ("pop3://alice@mail.example.test", "not an IMAP URL"),
        ("imapx://alice@mail.example.test", "not an IMAP URL"),
        ("imap:/alice@mail.example.test", "not an IMAP URL"),
        ("mail.example.test/Sent", "not an IMAP URL"),
        ("imaps://mail.example.test/Sent", "names no user"),
        ("imaps://@mail.example.test/Sent", "names no user"),
        ("imaps://alice@/Sent", "names no host"),
        ("imaps://alice@mail.example.test:imap/Sent", "invalid port"),
        ("imaps://alice@mail.example.test:70000/Sent", "invalid port"),
        ("imaps://alice@mail.example.test:0/Sent", "invalid port"),
        ("imaps://alice@mail.example.test/Sent;UID=7", "single message"),
        ("imaps://alice@mail.example.test/Sent;UIDVALIDITY=3/;UID=7", "single message"),
        ("imaps://alice@mail.example.test/Sent?x", "'?' or '#'"),
        ("imaps://alice@mail.example.test/#news", "'?' or '#'"),
        ("imaps://alice;AUTH=*@mail.example.test/Sent", "AUTH="),
        ("imaps://alice@mail.example.test/%FF", "not UTF-8"),
    ],
)
def test_bad_urls_are_refused_clearly(url: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=re.escape(complaint)):
        parse_imap_url(url)


def test_is_imap_url() -> None:
    assert is_imap_url("imaps://a@h/Sent")
    assert is_imap_url("IMAP://a@h")
    assert not is_imap_url("archive.mbox")
    assert not is_imap_url("imaps.mbox")
    assert not is_imap_url("/home/a/imap://x")


# --------------------------------------------------------------------------- password


def test_password_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILGUARD_IMAP_PASSWORD", "from-env")
    assert password_from_env_or_prompt(parse_imap_url("imaps://a@h.test")) == "from-env"


def test_password_prompt_needs_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MAILGUARD_IMAP_PASSWORD", raising=False)
    monkeypatch.setattr(sys, "stdin", _Stdin(tty=False))
    with pytest.raises(ImapError, match="MAILGUARD_IMAP_PASSWORD"):
        password_from_env_or_prompt(parse_imap_url("imaps://a@h.test"))


def test_password_prompt_names_the_target(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MAILGUARD_IMAP_PASSWORD", raising=False)
    monkeypatch.setattr(sys, "stdin", _Stdin(tty=True))
    prompts = []
    monkeypatch.setattr(getpass, "getpass", lambda prompt: prompts.append(prompt) or "typed")
    assert password_from_env_or_prompt(parse_imap_url("imaps://a@h.test/Sent")) == "typed"
    assert prompts == ["IMAP password for imaps://a@h.test:993/Sent: "]


class _Stdin:
    def __init__(self, *, tty: bool) -> None:
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


# --------------------------------------------------------------------------- reading


@pytest.mark.usefixtures("trusted")
def test_imaps_reads_every_message_of_the_folder(dovecot: DovecotInstance) -> None:
    items = scan(imaps(dovecot), dovecot.password)
    assert [marker(item) for item in items] == list(range(COUNT))
    assert all(item.error is None for item in items)
    prefix = f"imaps://auditor@127.0.0.1:{dovecot.imaps_port}/Éléments%20envoyés;UID="
    assert all(item.source.startswith(prefix) for item in items)
    assert len({uid_of(item) for item in items}) == COUNT
    # Whole messages, byte for byte as appended.
    assert [item.data for item in items] == [message(i) for i in range(COUNT)]


def test_imap_uses_starttls_when_offered(dovecot: DovecotInstance) -> None:
    mark = dovecot.log_mark()
    items = scan(imap(dovecot), dovecot.password, ssl_context=dovecot.ssl_context())
    assert [item.data for item in items] == [message(i) for i in range(COUNT)]
    assert all(
        item.source.startswith(f"imap://auditor@localhost:{dovecot.imap_port}/") for item in items
    )
    (login,) = dovecot.wait_for_log(r"imap-login: Info: Login: user=<auditor>", since=mark)
    assert ", TLS," in login  # Dovecot says "secured" for an unencrypted loopback login


def test_imap_without_starttls_falls_back_to_plain(
    dovecot: DovecotInstance, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    original = IMAPClient.has_capability
    monkeypatch.setattr(
        IMAPClient,
        "has_capability",
        lambda self, name: name != "STARTTLS" and original(self, name),
    )
    mark = dovecot.log_mark()
    with caplog.at_level(logging.WARNING, logger="mailguard.archive.imap"):
        items = scan(imap(dovecot, DECOY), dovecot.password)
    assert [item.data for item in items] == [b"Subject: decoy\r\n\r\ndecoy body\r\n"]
    assert "no STARTTLS" in caplog.text
    (login,) = dovecot.wait_for_log(r"imap-login: Info: Login: user=<auditor>", since=mark)
    assert ", secured," in login


@pytest.mark.usefixtures("trusted")
def test_default_folder_is_the_special_use_sent_folder(dovecot: DovecotInstance) -> None:
    items = scan(imaps(dovecot, folder=None), dovecot.password)
    assert [marker(item) for item in items] == list(range(COUNT))
    # The source names the folder that was found, so it can be scanned again by name.
    label = items[0].source.rsplit(";UID=", 1)[0]
    assert parse_imap_url(label).folder == SENT


@pytest.mark.usefixtures("trusted")
def test_special_use_found_via_list_selection_when_plain_list_omits_it(
    dovecot: DovecotInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Servers may report special use only for ``LIST (SPECIAL-USE)``: drop it from LIST."""
    original = IMAPClient.list_folders

    def without_special_use(self, *args, **kwargs):
        return [
            (tuple(f for f in flags if f != rb"\Sent"), delimiter, name)
            for flags, delimiter, name in original(self, *args, **kwargs)
        ]

    monkeypatch.setattr(IMAPClient, "list_folders", without_special_use)
    items = scan(imaps(dovecot, folder=None), dovecot.password)
    assert [marker(item) for item in items] == list(range(COUNT))


@pytest.mark.usefixtures("trusted")
def test_account_without_sent_folder_is_a_clear_error(dovecot: DovecotInstance) -> None:
    with pytest.raises(ImapError) as info:
        scan(imaps(dovecot, folder=None, user=NOSENT_USER), NOSENT_PASSWORD)
    text = str(info.value)
    assert r"no folder marked as \Sent" in text
    assert "'INBOX', 'Sent'" in text  # the folders it does have
    assert NOSENT_PASSWORD not in text
    # Naming the folder works for that account (and its non-ASCII password got through).
    items = scan(imaps(dovecot, folder=DECOY, user=NOSENT_USER), NOSENT_PASSWORD)
    assert [item.data for item in items] == [b"Subject: decoy\r\n\r\ndecoy body\r\n"]


@pytest.mark.usefixtures("trusted")
def test_missing_folder_lists_the_folders(dovecot: DovecotInstance) -> None:
    with pytest.raises(ImapError, match=r"cannot open folder 'Outbox'.*'Éléments envoyés'"):
        scan(imaps(dovecot, folder="Outbox"), dovecot.password)


@pytest.mark.usefixtures("trusted")
@pytest.mark.parametrize(
    ("since", "until", "expected"),
    [
        (day(4), day(8), range(4, 9)),  # both ends inclusive
        (day(20), None, range(20, COUNT)),
        (None, day(2), range(3)),
        (day(3), day(3), range(3, 4)),
        (dt.datetime.combine(day(23), dt.time(18)), None, range(23, COUNT)),  # time ignored
        (day(COUNT), None, range(0)),
    ],
)
def test_since_until_select_by_internal_date(
    dovecot: DovecotInstance, since: dt.date | None, until: dt.date | None, expected: range
) -> None:
    items = scan(imaps(dovecot), dovecot.password, since=since, until=until)
    assert [marker(item) for item in items] == list(expected)


def test_since_after_until_is_refused(dovecot: DovecotInstance) -> None:
    with pytest.raises(ValueError, match="after until"):
        scan(imaps(dovecot), dovecot.password, since=day(5), until=day(4))


@pytest.mark.usefixtures("trusted")
def test_headers_only_unless_a_rule_needs_the_body(dovecot: DovecotInstance) -> None:
    seen: list[bytes] = []

    def needs_body(headers: bytes) -> bool:
        seen.append(headers)
        return b"X-Needs-Body: yes" in headers

    mark = dovecot.log_mark()
    items = scan(imaps(dovecot), dovecot.password, needs_body=needs_body)
    # needs_body saw each header block once, and only the header block.
    assert len(seen) == COUNT
    assert all(h.endswith(b"\r\n\r\n") and b"body-marker" not in h for h in seen)
    for i, item in enumerate(items):
        assert item.data is not None
        if i % 2:
            assert item.data == message(i)
        else:
            head = message(i).split(b"\r\n\r\n")[0] + b"\r\n\r\n"
            assert item.data == head
            parsed = email.message_from_bytes(item.data, policy=email.policy.default)
            assert parsed["Subject"] == f"scan test {i}"
            assert parsed.get_content().strip() == ""
    # Dovecot's own accounting: every header fetched, only the needed bodies.
    (summary,) = dovecot.wait_for_log(r"imap\(auditor\).*Logged out", since=mark)
    assert re.search(rf"\bhdr_count={COUNT}\b", summary)
    assert re.search(rf"\bbody_count={COUNT // 2}\b", summary)


@pytest.mark.usefixtures("trusted")
def test_nothing_but_headers_when_no_body_is_needed(dovecot: DovecotInstance) -> None:
    items = scan(imaps(dovecot), dovecot.password, needs_body=lambda headers: False)
    assert len(items) == COUNT
    assert all(item.data is not None and b"body-marker" not in item.data for item in items)


@pytest.mark.usefixtures("trusted")
def test_batches_cross_boundaries(
    dovecot: DovecotInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    fetches: list[tuple[int, tuple[str, ...]]] = []
    original = IMAPClient.fetch

    def spy(self, messages, data, modifiers=None):
        fetches.append((len(messages), tuple(d.decode() for d in data)))
        return original(self, messages, data, modifiers)

    monkeypatch.setattr(IMAPClient, "fetch", spy)
    items = scan(imaps(dovecot), dovecot.password, batch=10)
    assert [marker(item) for item in items] == list(range(COUNT))
    uids = [uid_of(item) for item in items]
    assert uids == sorted(set(uids))
    headers = ("BODY.PEEK[HEADER]", "RFC822.SIZE")
    body = ("BODY.PEEK[]",)
    assert fetches == [
        (10, headers),
        (10, body),
        (10, headers),
        (10, body),
        (5, headers),
        (5, body),
    ]


@pytest.mark.usefixtures("trusted")
def test_scans_change_no_flags(dovecot: DovecotInstance) -> None:
    flags_before = dovecot.flags(SENT)
    files_before = dovecot.maildir_files(SENT)
    assert Counter(frozenset(f) for f in flags_before.values()) == Counter(
        frozenset(initial_flags(i)) for i in range(COUNT)
    )

    scan(imaps(dovecot), dovecot.password)
    scan(imap(dovecot), dovecot.password)
    scan(imaps(dovecot, folder=None), dovecot.password, needs_body=lambda h: False, batch=7)

    assert dovecot.flags(SENT) == flags_before
    # Dovecot keeps flags in Maildir file names ("...:2,FS"): not one file renamed or moved,
    # and the unseen messages have no S on disk.
    assert dovecot.maildir_files(SENT) == files_before
    unseen_files = [p for p in files_before if "S" not in p.name.partition(":2,")[2]]
    assert len(unseen_files) == sum(r"\Seen" not in initial_flags(i) for i in range(COUNT))


@pytest.mark.usefixtures("trusted")
def test_a_message_the_server_will_not_deliver_is_an_error_entry(
    dovecot: DovecotInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Simulated (Dovecot serves everything): a refused body FETCH, a vanished message."""
    uids = sorted(dovecot.flags(SENT))
    refused, vanished = uids[3], uids[12]
    original = IMAPClient.fetch

    def flaky(self, messages, data, modifiers=None):
        if b"BODY.PEEK[]" in data and refused in messages:
            raise IMAPClient.Error("FETCH command error: NO [b'[SERVERBUG] Internal error']")
        response = original(self, messages, data, modifiers)
        response.pop(vanished, None)
        return response

    monkeypatch.setattr(IMAPClient, "fetch", flaky)
    items = scan(imaps(dovecot), dovecot.password, batch=10)
    assert [uid_of(item) for item in items] == uids  # every message has an entry, in order
    errors = {uid_of(item): item.error for item in items if item.error}
    assert set(errors) == {refused, vanished}
    assert "refused" in errors[refused] and "SERVERBUG" in errors[refused]
    assert "returned nothing" in errors[vanished]
    assert all(item.data is None for item in items if item.error)
    # The rest of the refused message's batch was fetched one by one and is complete.
    assert sum(item.data == message(i) for i, item in enumerate(items)) == COUNT - 2


@pytest.mark.usefixtures("trusted")
def test_stopping_early_logs_out(dovecot: DovecotInstance) -> None:
    mark = dovecot.log_mark()
    items = iter_imap(parse_imap_url(imaps(dovecot)), dovecot.password, batch=5)
    first = next(items)
    assert first.error is None
    items.close()  # what a consumer's `break` does
    dovecot.wait_for_log(r"imap\(auditor\).*Disconnected: Logged out", since=mark)


# --------------------------------------------------------------------------- failures


@pytest.mark.usefixtures("trusted")
@pytest.mark.parametrize("mechanism", ["AUTHENTICATE PLAIN", "LOGIN"])
def test_wrong_password_is_an_imap_error_without_the_password(
    dovecot: DovecotInstance, monkeypatch: pytest.MonkeyPatch, mechanism: str
) -> None:
    if mechanism == "LOGIN":  # a server without AUTH=PLAIN gets the LOGIN command
        original = IMAPClient.capabilities
        monkeypatch.setattr(
            IMAPClient,
            "capabilities",
            lambda self: tuple(c for c in original(self) if c != b"AUTH=PLAIN"),
        )
    used: list[str] = []
    for method in ("login", "plain_login"):
        real = getattr(IMAPClient, method)
        monkeypatch.setattr(
            IMAPClient, method, lambda self, *a, _m=method, _r=real: used.append(_m) or _r(self, *a)
        )
    wrong = "Wr0ng-Pa55word"
    with pytest.raises(ImapError) as info:
        scan(imaps(dovecot), wrong)
    assert used == (["login"] if mechanism == "LOGIN" else ["plain_login"])
    assert "login as 'auditor'" in str(info.value)
    assert "Authentication failed" in str(info.value)
    assert wrong not in "".join(traceback.format_exception(info.value))


@pytest.mark.parametrize("scheme", ["imaps", "imap"])
def test_untrusted_certificate_is_an_imap_error(
    dovecot: DovecotInstance, monkeypatch: pytest.MonkeyPatch, scheme: str
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    url = imaps(dovecot) if scheme == "imaps" else imap(dovecot)
    with pytest.raises(ImapError, match="certificate") as info:
        scan(url, dovecot.password)
    assert "SSL_CERT_FILE" in str(info.value)
    assert dovecot.password not in str(info.value)


def test_nothing_listening_is_an_imap_error() -> None:
    (port,) = free_ports(1)
    with pytest.raises(ImapError, match=f"connection to 127.0.0.1:{port} failed while connecting"):
        scan(f"imaps://auditor@127.0.0.1:{port}/Sent", "pw", timeout=5)


# --------------------------------------------------------------------------- the harness


def test_harness_instances_coexist_and_leave_nothing_behind(dovecot: DovecotInstance) -> None:
    """A second instance next to the module's one: own ports and base dir, clean stop."""
    with DovecotInstance() as other:
        assert {other.imap_port, other.imaps_port}.isdisjoint(
            {dovecot.imap_port, dovecot.imaps_port}
        )
        other.append("Sent", b"Subject: x\r\n\r\ny\r\n")
        assert other.flags("Sent") == {1: set()}
        assert processes_named(other.instance_name)
        name, base = other.instance_name, other.base
    assert not processes_named(name)
    pgrep = subprocess.run(["pgrep", "-f", name], capture_output=True, text=True, check=False)
    assert pgrep.stdout == ""
    assert not base.exists()
    assert dovecot.flags(DECOY)  # the module's instance is unaffected


def test_cli_scan_of_an_imap_folder_gives_the_known_register(
    dovecot: DovecotInstance,
) -> None:
    """``mailguard scan imaps://...`` end to end: same answers as the mbox of the archive."""
    from tests.scan_archive import EXPECTED, MESSAGES

    folder = "Audit 2020"
    dovecot.create(folder)
    for _, raw in MESSAGES:
        dovecot.append(folder, raw)
    flags_before = dovecot.flags(folder)
    env = {
        **os.environ,
        "MAILGUARD_IMAP_PASSWORD": dovecot.password,
        "SSL_CERT_FILE": str(dovecot.ca_file),
    }
    url = f"imaps://auditor@127.0.0.1:{dovecot.imaps_port}/Audit%202020"
    result = subprocess.run(
        [sys.executable, "-m", "mailguard", "scan", url, "--format", "json", "--no-config",
         "--jobs", "2"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert dovecot.password not in result.stderr + result.stdout
    data = json.loads(result.stdout)
    assert {k: data["summary"][k] for k in EXPECTED} == EXPECTED
    assert result.returncode == 2  # the junk message is an error entry
    assert all(i["source"].startswith(url + ";UID=") for i in data["incidents"])
    assert dovecot.flags(folder) == flags_before
    # No password: a clear error, not a prompt that would hang a script.
    env.pop("MAILGUARD_IMAP_PASSWORD")
    result = subprocess.run(
        [sys.executable, "-m", "mailguard", "scan", url, "--no-config"],
        capture_output=True, text=True, env=env, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 2 and "MAILGUARD_IMAP_PASSWORD" in result.stderr


# --------------------------------------------------------------------------- password never shown


def _password_forms(password: str, user: str) -> list[str]:
    """The password as typed and as AUTHENTICATE PLAIN sends it (base64), plus fragments
    of that encoding long enough to carry several characters of it."""
    blob = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
    start = len(base64.b64encode(f"\0{user}\0".encode()).decode().rstrip("="))
    return [password, blob, blob[start : start + 12], base64.b64encode(password.encode()).decode()]


@pytest.mark.parametrize(
    "echo",
    [
        lambda pw, blob: f"[AUTHENTICATIONFAILED] bad response {blob}",
        lambda pw, blob: f"rejected '{blob[3:]}' (Failure)",
        lambda pw, blob: 'LOGIN "auditor" "' + pw.replace('"', '\\"') + '" failed',
        lambda pw, blob: f"NO {blob[10:30]}",
    ],
)
def test_login_error_never_carries_the_password(echo: object) -> None:
    """A server quoting the client's AUTHENTICATE data (or LOGIN arguments) in its refusal:
    the error line shows neither the password nor its base64 encoding, whole or in part."""
    from imapclient.exceptions import LoginError

    from mailguard.archive import imap as imap_module

    password, user = 'c0rrect "horse" battery', "auditor"
    blob = base64.b64encode(f"\0{user}\0{password}".encode()).decode()

    class Refusing:
        def capabilities(self) -> tuple[bytes, ...]:
            return (b"IMAP4REV1", b"AUTH=PLAIN")

        def plain_login(self, identity: str, secret: str) -> None:
            raise LoginError(echo(secret, blob))  # type: ignore[operator]

    target = parse_imap_url(f"imaps://{user}@mail.example.test/Sent")
    with pytest.raises(ImapError) as info:
        imap_module._login(Refusing(), target, password)
    text = "".join(traceback.format_exception(info.value))
    assert "login as 'auditor' on mail.example.test:993 failed" in str(info.value)
    for form in _password_forms(password, user):
        assert form not in text, form
    assert "horse" not in text  # nor as an IMAP quoted string
    assert "Authentication failed" not in text  # (the refusals above do not say it)


class _EchoingServer:
    """A loopback IMAP server that offers only AUTH=PLAIN (no TLS) and refuses every
    login by quoting the client's AUTHENTICATE response, as a buggy server might."""

    def __init__(self) -> None:
        import socket
        import threading

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn, conn.makefile("rwb", buffering=0) as f:
            f.write(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready\r\n")
            while line := f.readline():
                tag, _, command = line.decode().strip().partition(" ")
                if command.upper() == "CAPABILITY":
                    f.write(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n")
                    f.write(tag.encode() + b" OK done\r\n")
                elif command.upper().startswith("AUTHENTICATE"):
                    f.write(b"+ \r\n")
                    data = f.readline().strip()
                    f.write(tag.encode() + b" NO [AUTHENTICATIONFAILED] cannot decode " + data
                            + b"\r\n")  # fmt: skip
                elif command.upper() == "LOGOUT":
                    f.write(b"* BYE bye\r\n" + tag.encode() + b" OK done\r\n")
                    return
                else:
                    f.write(tag.encode() + b" BAD unknown\r\n")

    def close(self) -> None:
        self.sock.close()
        self.thread.join(5)


def test_echoing_server_puts_the_password_in_no_error_and_no_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Over a real socket with the real IMAP client: IMAPClient logs every server line at
    DEBUG, so the echoed AUTHENTICATE data would reach the log as well as the error."""
    server = _EchoingServer()
    password = "s3cret-Pa55word-xyz"
    caplog.set_level(1)
    try:
        with pytest.raises(ImapError) as info:
            scan(f"imap://auditor@127.0.0.1:{server.port}/Sent", password, timeout=10)
    finally:
        server.close()
    assert "login as 'auditor' on 127.0.0.1" in str(info.value)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "cannot decode" in logged  # the refusal was logged, with the echo withheld
    everything = "".join(traceback.format_exception(info.value)) + logged
    for form in _password_forms(password, "auditor"):
        assert form not in everything, form


@pytest.mark.usefixtures("trusted")
def test_wrong_password_against_dovecot_leaks_nowhere(
    dovecot: DovecotInstance, tmp_path: Path
) -> None:
    """End to end: the CLI against the real Dovecot with a wrong password. Not in the
    error line, the register, the IMAP libraries' debug log, nor any process's argv."""
    wrong = "Wr0ng-but-real-L00king"
    url = imaps(dovecot).replace(SENT.replace(" ", "%20"), quote(SENT))
    out = tmp_path / "register.json"
    code = (
        "import logging, sys; logging.basicConfig(level=1, stream=sys.stderr); "
        "from mailguard.cli import main; sys.argv[0] = 'mailguard'; main()"
    )
    env = {**os.environ, "MAILGUARD_IMAP_PASSWORD": wrong}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "scan", url, "--format", "json", "-o", str(out),
         "--no-config"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    argv_seen = []
    while proc.poll() is None:
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    argv_seen.append((entry / "cmdline").read_bytes())
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2, stderr[-2000:]
    assert "imapclient" in stderr  # the debug log was on
    register = out.read_text()
    data = json.loads(register)
    assert data["failed_sources"][0]["source"].startswith("imaps://auditor@")
    assert data["summary"]["messages"] == 0  # a failed source is not a message
    for form in _password_forms(wrong, "auditor"):
        assert form not in stdout + stderr + register, form
        assert not [a for a in argv_seen if form.encode() in a]
    for secret in dovecot.passwords.values():  # the harness's own processes
        assert not [a for a in argv_seen if secret.encode() in a]


@pytest.mark.parametrize("scheme", ["imaps", "IMAPS", "Imap"])
def test_password_in_url_is_never_echoed_by_the_cli(scheme: str) -> None:
    """Any case of the scheme is IMAP (not a missing local path, whose error would quote
    the URL with its password into the register)."""
    from typer.testing import CliRunner

    from mailguard.cli import app

    result = CliRunner().invoke(
        app, ["scan", "--no-config", f"{scheme}://alice:hunter2-secret@mail.example.test/Sent"]
    )
    assert result.exit_code == 2
    assert "hunter2-secret" not in result.output
    assert "contains a password" in result.output
    assert "no such file" not in result.output.lower()


def test_uppercase_imap_scheme_is_routed_to_imap(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from mailguard.cli import app

    monkeypatch.delenv("MAILGUARD_IMAP_PASSWORD", raising=False)
    result = CliRunner().invoke(
        app, ["scan", "--no-config", "IMAPS://alice@mail.example.test/Sent"]
    )
    assert result.exit_code == 2
    assert "no IMAP password for imaps://alice@mail.example.test:993/Sent" in result.output


def test_a_custom_rule_that_reads_the_body_gets_the_bodies(
    dovecot: DovecotInstance, tmp_path: Path
) -> None:
    """The IMAP scanner fetches bodies from rule metadata (``reads``), not rule codes: a
    custom rule from ``rule_paths`` that reads the body gets every body; without it these
    internal-only messages are judged on their headers alone."""
    from tests.support.custom_rule import CODE, write_config, write_rule

    write_rule(tmp_path / "rules")
    config = write_config(tmp_path)
    config.write_text(
        config.read_text() + f'[rules.{CODE}]\nword = "body-marker"\n', encoding="utf-8"
    )
    env = {
        **os.environ,
        "MAILGUARD_IMAP_PASSWORD": dovecot.password,
        "SSL_CERT_FILE": str(dovecot.ca_file),
    }
    counts = {}
    for name, flags in (("custom", ["--config", str(config)]), ("shipped", ["--no-config"])):
        mark = dovecot.log_mark()
        result = subprocess.run(
            [sys.executable, "-m", "mailguard", "scan", imaps(dovecot), "--format", "json",
             "--jobs", "2", *flags],
            capture_output=True, text=True, env=env, timeout=120,
        )  # fmt: skip
        assert result.returncode in (0, 1), result.stderr
        (summary,) = dovecot.wait_for_log(r"imap\(auditor\).*Logged out", since=mark)
        body_count = re.search(r"\bbody_count=(\d+)\b", summary)
        assert body_count is not None, summary
        incidents = json.loads(result.stdout)["incidents"]
        counts[name] = (int(body_count[1]), len(incidents))
        if name == "custom":
            assert all([f["code"] for f in i["findings"]] == [CODE] for i in incidents)
    assert counts == {"custom": (COUNT, COUNT), "shipped": (0, 0)}
