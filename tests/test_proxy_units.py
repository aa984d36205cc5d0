"""The proxy's parts without sockets: settings, retry journal, logins, header edits, replies."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailguard.commands.settings import ConfigSource
from mailguard.errors import ConfigError
from mailguard.proxy import edit
from mailguard.proxy.actions import SplitResult
from mailguard.proxy.auth import Users, hash_password, verify_password
from mailguard.proxy.journal import Journal
from mailguard.proxy.settings import ProxySettings, from_mapping, validate_for_run
from tests.test_linear_time import assert_linear

# ------------------------------------------------------------------ settings


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"on_block": "bounce"}, "on_block: expected one of reject, rewrite, split"),
        ({"relay": "smtp.example.org"}, "expected HOST:PORT"),
        ({"max_recipients": 0}, "expected a positive integer"),
        ({"idle_timeout": -1}, "expected a positive number"),
        ({"relay_security": "ssl"}, "expected one of starttls, tls, none"),
        ({"relay_pasword": "x"}, "unknown key(s) ['relay_pasword']"),
    ],
)
def test_bad_proxy_settings_are_refused_with_the_key(table, message):
    with pytest.raises(ConfigError) as error:
        from_mapping(table)
    assert message in str(error.value)


def test_a_typo_in_the_proxy_table_fails_every_command(tmp_path):
    config = tmp_path / "mailguard.toml"
    config.write_text('[proxy]\non_blok = "split"\n')
    with pytest.raises(ConfigError, match="on_blok"):
        ConfigSource(config).load(config)


def test_paths_are_relative_to_the_config_file(tmp_path):
    config = tmp_path / "mailguard.toml"
    config.write_text('[proxy]\nrelay = "127.0.0.1:587"\nusers_file = "users"\non_warn = "split"\n')
    proxy = ConfigSource(config).load(config).proxy
    assert proxy.users_file == str(tmp_path / "users") and proxy.on_warn == "split"


def test_the_relay_password_comes_only_from_the_environment(monkeypatch):
    monkeypatch.delenv("MAILGUARD_RELAY_PASSWORD", raising=False)
    settings = ProxySettings(relay="smtp.example.org:587", relay_user="ops")
    with pytest.raises(ConfigError, match="MAILGUARD_RELAY_PASSWORD"):
        validate_for_run(settings)
    monkeypatch.setenv("MAILGUARD_RELAY_PASSWORD", "pw")
    validate_for_run(settings)
    with pytest.raises(ConfigError, match="unencrypted") as error:
        validate_for_run(ProxySettings(relay="smtp.example.org:25", relay_user="ops",
                                       relay_security="none"))  # fmt: skip
    assert "pw" not in str(error.value)
    with pytest.raises(ConfigError, match="no upstream"):
        validate_for_run(ProxySettings())


# ------------------------------------------------------------------ the retry journal


def test_the_journal_remembers_copies_by_message_and_stores_no_address(tmp_path):
    path = tmp_path / "state" / "journal.sqlite"
    journal = Journal(path)
    key = journal.message_key("ops@serviceco.example", b"the message")
    journal.record(key, "Alice@Example.org")
    journal.record(key, "bob@example.org")
    assert journal.delivered(key, ["alice@example.org", "carol@example.org"]) == {
        "alice@example.org"
    }
    other = journal.message_key("ops@serviceco.example", b"the message, edited")
    assert journal.delivered(other, ["alice@example.org"]) == set()
    journal.close()
    again = Journal(path)  # a restart: same key file, same answers
    assert again.delivered(key, ["bob@example.org"]) == {"bob@example.org"}
    again.close()
    stored = b"".join(p.read_bytes() for p in path.parent.iterdir())
    assert b"example.org" not in stored and b"alice" not in stored.lower()
    assert (path.parent / "journal.sqlite.key").stat().st_mode & 0o077 == 0


def test_the_journal_forgets_after_its_retention(tmp_path):
    journal = Journal(tmp_path / "j.sqlite", retention_days=1)
    key = journal.message_key("a@b.example", b"m")
    journal.record(key, "x@y.example")
    db = sqlite3.connect(tmp_path / "j.sqlite")
    db.execute("UPDATE copies SET at = ?", (time.time() - 2 * 86400,))
    db.commit()
    db.close()
    journal.sweep()
    assert journal.delivered(key, ["x@y.example"]) == set()


# ------------------------------------------------------------------ logins


def test_users_file_holds_hashes_and_checks_them(tmp_path):
    stored = hash_password("correct horse")
    assert stored.startswith("scrypt$") and "correct" not in stored
    assert verify_password(b"correct horse", stored) and not verify_password(b"wrong", stored)
    users_file = tmp_path / "users"
    users_file.write_text(f"script:{stored}\n")
    users = Users.load(users_file)
    assert users.check(b"script", b"correct horse") and users.check(b"script", b"correct horse")
    assert not users.check(b"script", b"nope") and not users.check(b"other", b"correct horse")
    users_file.write_text("script:clear-text-password\n")
    with pytest.raises(ConfigError, match="line 1: expected user:scrypt"):
        Users.load(users_file)


# ------------------------------------------------------------------ header edits and replies


def test_a_split_copy_names_only_its_recipient_and_keeps_the_body():
    raw = (
        b"From: ops@serviceco.example\r\nTo: a@x.example,\r\n b@y.example\r\n"
        b"Cc: c@z.example\r\nBcc: d@w.example\r\nMessage-ID: <1@serviceco.example>\r\n"
        b"X-Mailguard-Verdict: pass\r\nSubject: hi\r\n\r\nbody\r\n.\r\n"
    )
    copy = edit.SplitTemplate(raw, "fallback.example", []).copy("b@y.example")
    head, body = copy.split(b"\r\n\r\n", 1)
    assert body == b"body\r\n.\r\n"
    assert b"a@x.example" not in head and b"c@z.example" not in head and b"d@w" not in head
    assert b"\r\nTo: b@y.example\r\n" in head and b"X-Mailguard-Verdict" not in head
    assert b"Message-ID: <" in head and b"@serviceco.example>" in head
    assert b"<1@serviceco.example>" not in head


def test_building_split_copies_is_linear_in_the_header_block():
    def make(n: int) -> bytes:
        rcpts = ", ".join(f"p{i}@gmail.com" for i in range(n))
        return f"From: a@b.example\r\nTo: {rcpts}\r\nCc: {rcpts}\r\n\r\nhi\r\n".encode()

    assert_linear(make, lambda raw: edit.SplitTemplate(raw, "x", []).copy("p1@gmail.com"),
                  1000, 400_000)  # fmt: skip


def test_partial_split_replies_say_what_happened_without_addresses():
    temporary = SplitResult(copies=20, sent=10, temporary=10,
                            first_failure=(451, "4.4.2 closed for <a@b.example>"))  # fmt: skip
    code, text = temporary.reply()
    assert code == 451 and "10 of 20 copies delivered, 10 not yet" in text and "@" not in text
    code, text = SplitResult(copies=20, sent=17, permanent=3, first_failure=(550, "no")).reply()
    assert code == 554 and "17 of 20" in text and "3 refused" in text
    code, text = SplitResult(copies=20, sent=3, earlier=17).reply()
    assert code == 250 and "20 of 20 copies delivered, 17 of them on an earlier attempt" in text


@pytest.mark.parametrize(
    "arg",
    ["<a@b.example>", "<a@b.example> SIZE=100 BODY=8BITMIME", " <a.b+c@d-e.f>", "<>",
     '<"q x"@b.c>', "a@b.c", "<a..b@c.d>", "<@x,@y:a@b.c>", "<a@[1.2.3.4]>", "<ü@b.c>",
     "<A@B.EXAMPLE>  x", "<a@b.c>x", "<a@b.c>\tSIZE=1", "<.a@b.c>", "<a@b.c> (comment) X",
     "<a@b.c", "a@b.c>", "<a@b.c>>"],
)  # fmt: skip
def test_the_fast_path_parses_smtp_paths_as_aiosmtpd_does(arg):
    import asyncio

    from aiosmtpd.smtp import SMTP

    from mailguard.proxy.handler import ProxySMTP

    loop = asyncio.new_event_loop()
    try:
        assert ProxySMTP(object(), loop=loop)._getaddr(arg) == SMTP(object(), loop=loop)._getaddr(
            arg
        )
    finally:
        loop.close()


class _Transport:
    def __init__(self, peer: tuple[str, int]) -> None:
        self.peer = peer

    def get_extra_info(self, name: str, default: object = None) -> object:
        return self.peer if name == "peername" else default

    def is_closing(self) -> bool:
        return False

    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.mark.parametrize(("peer", "clear_text_auth"), [("127.0.0.1", True), ("::1", True),
                                                       ("192.0.2.7", False)])  # fmt: skip
def test_plain_and_login_without_tls_only_from_loopback(peer, clear_text_auth):
    import asyncio

    from mailguard.proxy.handler import ProxySMTP

    loop = asyncio.new_event_loop()
    try:
        smtp = ProxySMTP(object(), loop=loop, auth_require_tls=True)
        smtp.connection_made(_Transport((peer, 40000)))  # type: ignore[arg-type]
        # aiosmtpd then advertises AUTH without STARTTLS, or answers 538 to AUTH.
        assert smtp._auth_require_tls is not clear_text_auth
        smtp._timeout_handle.cancel()
        smtp._handler_coroutine.cancel()
        loop.run_until_complete(asyncio.sleep(0))  # let the cancelled client task finish
    finally:
        loop.close()


def test_a_split_sends_one_copy_per_person(tmp_path):
    from mailguard.proxy.actions import split

    class Recorder:
        def __init__(self) -> None:
            self.sent: list[str] = []

        async def send_copy(self, sender, options, recipient, data):
            self.sent.append(recipient)
            return 250, "ok"

    upstream = Recorder()
    raw = b"From: a@b.example\r\nTo: x@y.example, X@Y.example\r\n\r\nhi\r\n"
    result = asyncio.run(split(upstream, Journal(tmp_path / "j"), raw, "a@b.example", (),  # type: ignore[arg-type]
                   ["x@y.example", "X@Y.example", "z@y.example"], "b.example"))  # fmt: skip
    assert upstream.sent == ["x@y.example", "z@y.example"] and result.reply()[0] == 250


def test_a_split_stops_when_its_journal_cannot_be_written(tmp_path):
    from mailguard.proxy.actions import split

    class Recorder:
        sent: list[str] = []  # noqa: RUF012

        async def send_copy(self, sender, options, recipient, data):
            self.sent.append(recipient)
            return 250, "ok"

    journal = Journal(tmp_path / "j")
    journal.close()  # every write now fails
    raw = b"From: a@b.example\r\nTo: x@y.example\r\n\r\nhi\r\n"
    journal.delivered = lambda key, rcpts: set()  # type: ignore[method-assign]
    result = asyncio.run(split(Recorder(), journal, raw, "a@b.example", (),  # type: ignore[arg-type]
                               ["x@y.example", "z@y.example"], "b.example"))  # fmt: skip
    assert Recorder.sent == ["x@y.example"]  # not a second copy that could not be recorded
    code, text = result.reply()
    assert code == 451 and "1 of 2 copies delivered" in text


def test_the_cached_introspection_builds_aiosmtpds_own_tables(monkeypatch):
    """aiosmtpd_init hands aiosmtpd cached answers; the tables must be what the real
    ``inspect`` and ``dir`` give, for the proxy's protocol and handler classes."""
    import inspect

    import aiosmtpd.smtp

    from mailguard.proxy import aiosmtpd_init
    from mailguard.proxy.handler import Gateway, ProxySMTP

    class Handler(Gateway):
        def __init__(self) -> None:
            self.users = object()  # type: ignore[assignment]
            self.handle_NOOP = self.handle_RSET  # an object's own attribute counts too

        async def auth_CUSTOM(self, server, args):  # type: ignore[no-untyped-def]
            return None

    def tables() -> list[object]:
        loop = asyncio.new_event_loop()
        try:
            smtp = ProxySMTP(Handler(), loop=loop, hostname="h", authenticator=lambda *a: None)
            return [smtp._auth_methods, smtp._handle_hooks, smtp._smtp_methods,
                    smtp._ehlo_hook_ver]  # fmt: skip
        finally:
            loop.close()

    aiosmtpd_init.install()
    fast = tables()
    monkeypatch.setattr(aiosmtpd.smtp, "inspect", inspect)
    monkeypatch.delattr(aiosmtpd.smtp, "dir")
    careful = tables()
    assert set(fast[1]) >= {"DATA", "RCPT", "MAIL", "EHLO", "NOOP"} and "CUSTOM" in fast[0]

    def shown(tables: list[object]) -> str:  # bound methods by name and kind, not address
        return re.sub(r" at 0x[0-9a-f]+", "", repr(tables))

    assert shown(fast) == shown(careful)


def test_aiosmtpds_log_lines_are_skipped_only_when_nobody_would_see_them(caplog):
    import logging

    import aiosmtpd.smtp

    from mailguard.proxy import aiosmtpd_init

    aiosmtpd_init.install()
    log = logging.getLogger("mail.log")
    with caplog.at_level(logging.WARNING, logger="mail.log"):
        aiosmtpd.smtp.sanitized_log(log.info, "%r >> %r", "peer", b"AUTH PLAIN c2VjcmV0\r\n")
    assert caplog.records == []
    with caplog.at_level(logging.DEBUG, logger="mail.log"):
        aiosmtpd.smtp.sanitized_log(log.info, "%r >> %r", "peer", b"AUTH PLAIN c2VjcmV0\r\n")
    assert [r.getMessage() for r in caplog.records] == ["'peer' >> b'AUTH PLAIN ********\\r\\n'"]


@given(st.integers(200, 599), st.text(st.sampled_from("ab \r\n-"), max_size=12))
def test_one_line_replies_are_formatted_as_the_general_rule_formats_them(code, text):
    from mailguard.proxy.replies import format_reply

    kind = code // 100
    lines = [line.strip(" ") for line in text.replace("\r", " ").split("\n")]
    lines = [line for line in lines if line] or [f"{kind}.0.0" if kind != 3 else ""]
    general = "".join(f"{code}-{line}\r\n" for line in lines[:-1]) + f"{code} {lines[-1]}"
    assert format_reply((code, text)) == general.rstrip(" ")


def _init_state(smtp: object) -> dict[str, str]:
    """Every attribute of a protocol object, bound methods by name and kind, not address."""
    return {k: re.sub(r" at 0x[0-9a-f]+", "", repr(v)) for k, v in vars(smtp).items()
            if k not in ("_stream_reader_wr", "_closed", "_loop")}  # fmt: skip


_AIOSMTPD_OPTIONS = {
    "data_size_limit": st.sampled_from([None, 0, 1000]),
    "enable_SMTPUTF8": st.booleans(),
    "decode_data": st.booleans(),
    "hostname": st.sampled_from(["", "h.example"]),
    "ident": st.sampled_from(["", "x"]),
    "require_starttls": st.booleans(),
    "timeout": st.sampled_from([1, 300]),
    "auth_required": st.booleans(),
    "auth_require_tls": st.booleans(),
    "auth_exclude_mechanism": st.sampled_from([None, ["LOGIN"], ["PLAIN", "NOPE"]]),
    "auth_callback": st.sampled_from([None, len]),
    "authenticator": st.sampled_from([None, print]),
    "command_call_limit": st.sampled_from([None, 5, {"*": 3, "NOOP": 2}]),
    "proxy_protocol_timeout": st.sampled_from([None, 5.0]),
}


@given(
    st.fixed_dictionaries({}, optional=_AIOSMTPD_OPTIONS),
    st.sampled_from(["gateway", "own_hook", "own_auth", "custom_auth", "old_ehlo", "self"]),
)
def test_the_quick_set_up_makes_what_aiosmtpds_own_makes(options, kind):
    """QuickSMTP.__init__ against SMTP.__init__ on the same class: the same attributes
    (tables included), the same warnings, the same errors, over aiosmtpd's options and
    handlers with hooks or AUTH mechanisms of their own or none at all."""
    import warnings

    from aiosmtpd.smtp import SMTP, auth_mechanism

    from mailguard.proxy.handler import Gateway, ProxySMTP

    class Handler(Gateway):
        def __init__(self) -> None:
            self.users = None
            if kind == "own_hook":
                self.handle_NOOP = self.handle_RSET
            if kind == "own_auth":
                self.auth_OWN = self.handle_RSET

        if kind == "custom_auth":

            @auth_mechanism("X-CUSTOM")
            async def auth_CUSTOM(self, server, args):  # type: ignore[no-untyped-def]
                return None

        if kind == "old_ehlo":

            async def handle_EHLO(self, server, session, envelope, hostname):  # type: ignore[no-untyped-def,override]
                return "250 h"

    loop = asyncio.new_event_loop()
    try:
        built = []
        for init in (ProxySMTP.__init__, SMTP.__init__):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    smtp = ProxySMTP.__new__(ProxySMTP)
                    init(smtp, smtp if kind == "self" else Handler(), loop=loop, **options)
                except (RuntimeError, ValueError, TypeError) as exc:
                    built.append(repr(exc))
                    continue
            built.append((_init_state(smtp), [(w.category, str(w.message)) for w in caught]))
        assert built[0] == built[1]
    finally:
        loop.close()
