"""Learning from an IMAP Sent folder on the private Dovecot: only new mail on a second run,
everything again (without double counting) when the folder's UIDVALIDITY changes, and the
mailbox left exactly as it was."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from mailguard.cli import app
from mailguard.history.store import HistoryStore
from tests.support.dovecot import DovecotInstance, Mailbox, ensure_dovecot_installed

SENT = "Sent"
runner = CliRunner()


def message(i: int) -> bytes:
    return (
        "From: auditor@example.test\r\n"
        f"To: contact{i % 3}@partner.example, colleague@example.test\r\n"
        f"Subject: learn {i}\r\nMessage-ID: <learn-{i}@example.test>\r\n"
        "Date: Mon, 6 May 2024 10:00:00 +0000\r\n\r\nbody\r\n"
    ).encode()


@pytest.fixture(scope="module")
def dovecot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DovecotInstance]:
    ensure_dovecot_installed()
    with DovecotInstance(
        tmp_path_factory.mktemp("dovecot"), mailboxes={SENT: Mailbox(r"\Sent", auto="no")}
    ) as instance:
        instance.create(SENT)
        instance.append_many(SENT, [(message(i), (), None) for i in range(5)])
        yield instance


def learn(dovecot: DovecotInstance, store: str) -> str:
    url = f"imaps://auditor@127.0.0.1:{dovecot.imaps_port}/{SENT}"
    result = runner.invoke(app, ["learn", "--no-config", "--store", store, url])
    assert result.exit_code == 0, result.output
    return result.output


def test_imap_learning_is_incremental_and_starts_over_on_a_new_uidvalidity(
    dovecot: DovecotInstance, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(dovecot.ca_file))
    monkeypatch.setenv("MAILGUARD_IMAP_PASSWORD", dovecot.password)
    store = str(tmp_path / "h.db")
    first = learn(dovecot, store)
    assert "(imap): 5 messages read, 0 messages skipped" in first
    dovecot.append_many(SENT, [(message(i), (), None) for i in (5, 6)])
    second = learn(dovecot, store)
    assert "2 messages read, 5 messages skipped" in second and "learned 2 messages" in second
    third = learn(dovecot, store)
    assert "0 messages read, 7 messages skipped" in third

    with dovecot.imap() as conn:  # the folder is deleted and made again: new UIDVALIDITY
        conn.delete(f'"{SENT}"')
    dovecot.create(SENT)
    dovecot.append_many(SENT, [(message(i), (), None) for i in (0, 1, 2, 7)])
    fourth = learn(dovecot, store)
    assert "UIDVALIDITY changed" in fourth and "4 messages read" in fourth
    assert "learned 1 messages" in fourth and "3 already known" in fourth
    assert HistoryStore.open(store).stats()["messages"] == 8
    # Read through EXAMINE and BODY.PEEK: nothing marked as read.
    assert all(not flags for flags in dovecot.flags(SENT).values())
    # Neither the account nor the password is in the store.
    blob = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("h.db"))
    assert b"auditor" not in blob and dovecot.password.encode() not in blob
