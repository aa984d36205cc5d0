"""The history store: keys, schema and migration, learning (mbox, Maildir, bounds), the
rules in ``check``, and failures (missing, corrupt, locked, foreign key) — on real files."""

from __future__ import annotations

import itertools
import json
import os
import sqlite3
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mailguard import Engine
from mailguard.cli import app
from mailguard.config import from_mapping
from mailguard.history import near, schema
from mailguard.history.extract import observe
from mailguard.history.keys import Hasher, HistoryError, key_path, read_key
from mailguard.history.learner import Learner
from mailguard.history.service import HistoryService
from mailguard.history.settings import HistorySettings
from mailguard.history.store import HistoryStore
from mailguard.services import Services
from tests.support.history import learn_messages
from tests.test_linear_time import assert_linear

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import gen_org_mail as gen  # the synthetic organisation (benchmarks/)

runner = CliRunner()
ANN = "ann@example.org"


def sent(i: int, to: str, day: int = 6, extra: str = "") -> str:
    return (
        f"From: Ann <{ANN}>\nTo: {to}\nMessage-ID: <m{i}@example.org>\n"
        f"Date: Mon, {day} May 2024 10:00:00 +0000\n{extra}Subject: s{i}\n\nHello\n"
    )


def mbox_of(messages: list[str]) -> bytes:
    return b"".join(
        b"From ann@example.org Mon May  6 10:00:00 2024\n" + m.encode() + b"\n" for m in messages
    )


def cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


REGULAR = [sent(i, "dave@partner.example, bob@partner.example") for i in range(25)]
CHECK = ("check", "--no-config", "--internal-domain", "example.org")


# ---------------------------------------------------------------------------- keys


def test_the_key_is_created_private_and_a_readable_one_is_refused(tmp_path):
    store = learn_messages(tmp_path / "h.db", REGULAR[:1])
    key = key_path(store)
    assert key.stat().st_mode & 0o777 == 0o600
    assert store.stat().st_mode & 0o777 == 0o600
    secret = key.read_text().strip()
    key.chmod(0o644)
    with pytest.raises(HistoryError) as refused:
        HistoryStore.open(store)
    assert "chmod 600" in str(refused.value) and secret not in str(refused.value)
    code, output = cli(*CHECK, "--history", str(store), "-")
    assert code == 2 and "may be read by others" in output and secret not in output
    key.chmod(0o600)
    assert secret not in repr(HistoryStore.open(store).hash)


def test_a_key_from_another_store_is_refused(tmp_path):
    one = learn_messages(tmp_path / "one.db", REGULAR[:1])
    two = learn_messages(tmp_path / "two.db", REGULAR[:1])
    key_path(one).write_bytes(key_path(two).read_bytes())
    with pytest.raises(HistoryError, match="does not belong to the history store"):
        HistoryStore.open(one)


def test_malformed_or_missing_key(tmp_path):
    store = learn_messages(tmp_path / "h.db", REGULAR[:1])
    key_path(store).write_text("not hex\n")
    with pytest.raises(HistoryError, match="malformed"):
        read_key(key_path(store))
    key_path(store).unlink()
    with pytest.raises(HistoryError, match="cannot read the history key"):
        HistoryStore.open(store)


# ---------------------------------------------------------------------------- store failures


def test_missing_store_is_a_clear_error_at_start(tmp_path):
    code, output = cli(*CHECK, "--history", str(tmp_path / "nope.db"), "-")
    assert code == 2 and "does not exist" in output and "mailguard learn" in output
    assert not (tmp_path / "nope.db").exists()  # a reader never creates one


@pytest.mark.parametrize(
    "garbage", [b"not a database at all" * 100, b"SQLite format 3\0" + b"\xff" * 4000]
)
def test_corrupt_store_is_a_clear_error_at_start(tmp_path, garbage):
    store = learn_messages(tmp_path / "h.db", REGULAR[:2])
    store.write_bytes(garbage)
    code, output = cli(*CHECK, "--history", str(store), "-")
    assert code == 2 and "corrupt or not a mailguard history store" in output
    assert "Traceback" not in output
    code, output = cli("history", "stats", "--no-config", "--store", str(store))
    assert code == 2 and "corrupt" in output


def test_a_foreign_sqlite_file_is_refused(tmp_path):
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    learn_messages(tmp_path / "h.db", REGULAR[:1])
    key_path(tmp_path / "h.db").rename(key_path(other))
    with pytest.raises(HistoryError, match="not a mailguard history store"):
        HistoryStore.open(other)


def test_locked_store_makes_learn_fail_clearly_after_the_busy_timeout(tmp_path):
    store = learn_messages(tmp_path / "h.db", REGULAR[:2])
    (tmp_path / "mailguard.toml").write_text("[history]\nbusy_timeout = 0.2\n")
    (tmp_path / "sent.mbox").write_bytes(mbox_of(REGULAR[2:4]))
    holder = sqlite3.connect(store, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    try:
        started = time.monotonic()
        code, output = cli("learn", "--config", str(tmp_path / "mailguard.toml"),
                           "--store", str(store), str(tmp_path / "sent.mbox"))  # fmt: skip
        assert code == 2 and "is locked by another process" in output, output
        assert time.monotonic() - started < 10
        # Readers are not blocked by a writer (WAL): check still works meanwhile.
        (tmp_path / "m.eml").write_text(sent(50, "dave@partner.example"))
        code, output = cli(*CHECK, "--history", str(store), str(tmp_path / "m.eml"))
        assert code == 0 and "PASS" in output, output
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_a_store_that_goes_bad_mid_flow_only_switches_the_history_rules_off(tmp_path):
    store = learn_messages(tmp_path / "h.db", REGULAR)
    service = HistoryService.open(HistorySettings(), store)
    engine = Engine(from_mapping({"internal_domains": ["example.org"]}),
                    services=Services(history=service))  # fmt: skip
    typo = sent(99, "daev@partner.example").encode()
    assert "MG403" in engine.check(typo).codes and service.state == "ok"
    service.store.db.close()  # the file became unusable under a running milter
    report = engine.check(typo)
    assert report.verdict == "pass" and "MG403" not in report.codes
    assert any(s.code == "MG403" and "could not be read" in s.reason for s in report.skipped)
    assert service.state == "unavailable"


# ---------------------------------------------------------------------------- schema


def test_version_1_store_is_migrated_and_keeps_its_threads(tmp_path):
    path = tmp_path / "old.db"
    store = HistoryStore.open(path, create=True)
    check = next(v for k, v in store.db.execute("SELECT key, value FROM meta") if k == "key_check")
    store.close()
    path.unlink()
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    db = sqlite3.connect(path, isolation_level=None)
    schema.create_version_1(db, check)
    h = HistoryStore.open  # the key beside it is still the right one
    hasher = Hasher(read_key(key_path(path)))
    root = hasher(Hasher.MESSAGE_ID, "case-1@example.org")
    dave = hasher(Hasher.ADDRESS, "dave@partner.example")
    db.execute("INSERT INTO messages VALUES (?, ?, ?)", (root, root, 19849))
    db.execute("INSERT INTO members VALUES (?, ?)", (root, dave))
    db.close()
    with pytest.raises(HistoryError, match="history migrate"):
        h(path)  # a reader does not change the file
    code, output = cli("history", "migrate", "--no-config", "--store", str(path))
    assert code == 0, output
    store = h(path)
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == schema.VERSION
    thread = store.thread([root])
    assert thread is not None and schema.short(dave) in thread.members
    assert store.db.execute(
        "SELECT count(*) FROM sqlite_master WHERE name = 'members'"
    ).fetchone() == (0,)


def test_a_newer_schema_is_refused(tmp_path):
    store = learn_messages(tmp_path / "h.db", REGULAR[:1])
    db = sqlite3.connect(store)
    db.execute(f"PRAGMA user_version = {schema.VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(HistoryError, match="newer than this mailguard"):
        HistoryStore.open(store)


# ---------------------------------------------------------------------------- learning


def test_mbox_learning_is_incremental_and_survives_a_rewrite(tmp_path):
    mbox, store = tmp_path / "sent.mbox", tmp_path / "h.db"
    mbox.write_bytes(mbox_of(REGULAR[:10]))
    code, first = cli("learn", "--no-config", "--store", str(store), str(mbox))
    assert code == 0 and "10 messages read, 0 bytes skipped" in first
    last = mbox.read_bytes().rindex(b"From ann@")  # where the last message starts
    with mbox.open("ab") as f:
        f.write(mbox_of(REGULAR[10:13]))
    code, second = cli("learn", "--no-config", "--store", str(store), str(mbox))
    assert code == 0 and f"4 messages read, {last:,} bytes skipped" in second
    assert "learned 3 messages" in second and "1 already known" in second
    mbox.write_bytes(mbox_of(REGULAR[5:13]))  # compacted: the first five deleted
    code, third = cli("learn", "--no-config", "--store", str(store), str(mbox))
    assert "rewritten since the last run" in third and "8 messages read" in third
    assert "learned 0 messages" in third and "8 already known" in third  # no double count
    stats = HistoryStore.open(store).stats()
    assert stats["messages"] == 13 and stats["relationships"] == 2


def test_a_message_still_being_written_is_read_next_time(tmp_path):
    mbox, store = tmp_path / "sent.mbox", tmp_path / "h.db"
    whole = mbox_of(REGULAR[:3])
    mbox.write_bytes(whole[:-5])  # the last one cut off
    _, output = cli("learn", "--no-config", "--store", str(store), str(mbox))
    assert "2 messages read" in output and "incomplete" in output
    mbox.write_bytes(whole)
    _, output = cli("learn", "--no-config", "--store", str(store), str(mbox))
    assert "1 messages read" in output and "learned 1 messages" in output


def test_an_mbox_that_shrinks_while_learned_is_read_on_next_time(tmp_path, monkeypatch):
    """A client compacting the folder mid-run: the run says reading stopped, keeps what it
    learned, and the next run reads on from the last message read (no double count)."""
    from mailguard.archive import learn_feed

    pad = "x" * 70 + "\n"
    big = [sent(i, "dave@partner.example") + pad * 4000 for i in range(8)]
    mbox, store = tmp_path / "sent.mbox", tmp_path / "h.db"
    whole = mbox_of(big)  # 8 messages of ~280 KB: the reader's 1 MB window holds 3 or 4
    mbox.write_bytes(whole)
    real = learn_feed.iter_mbox

    def compacted_after_the_first(path, *args):
        items = real(path, *args)
        yield next(items)
        os.truncate(path, len(whole) // 2)
        yield from items

    monkeypatch.setattr(learn_feed, "iter_mbox", compacted_after_the_first)
    code, output = cli("learn", "--no-config", "--store", str(store), str(mbox))
    assert "reading stopped before the end" in output, output
    learned = HistoryStore.open(store).stats()["messages"]
    assert 1 <= learned < 8
    monkeypatch.setattr(learn_feed, "iter_mbox", real)
    mbox.write_bytes(whole)  # the folder as it is after the client's rewrite
    code, output = cli("learn", "--no-config", "--store", str(store), str(mbox))
    assert code == 0, output
    assert HistoryStore.open(store).stats()["messages"] == 8  # each once
    assert "1 already known" in output and "bytes skipped" in output


def test_maildir_learning_reads_only_new_files_and_ignores_flag_renames(tmp_path):
    box = tmp_path / "Sent"
    for sub in ("cur", "new", "tmp"):
        (box / sub).mkdir(parents=True)
    for i in range(5):
        (box / "cur" / f"17000000{i}.M1P1.host:2,S").write_text(REGULAR[i])
    store = tmp_path / "h.db"
    code, output = cli("learn", "--no-config", "--store", str(store), str(box))
    assert code == 0 and "(maildir): 5 messages read, 0 messages skipped" in output
    (box / "new" / "170000009.M1P1.host").write_text(REGULAR[9])
    (box / "cur" / "170000000.M1P1.host:2,S").rename(box / "cur" / "170000000.M1P1.host:2,RS")
    code, output = cli("learn", "--no-config", "--store", str(store), str(box))
    assert "1 messages read, 5 messages skipped" in output


def test_mass_mailings_are_not_learned_as_relationships(tmp_path):
    many = ", ".join(f"p{i}@gmail.com" for i in range(51))
    store = learn_messages(tmp_path / "h.db", [sent(1, many), sent(2, "x@partner.example")])
    stats = HistoryStore.open(store).stats()
    assert stats["mass_mailings"] == 1 and stats["relationships"] == 1
    assert stats["near_miss_keys"] < 60  # the mailout's recipients were not even hashed


def test_per_sender_cap_and_expiry(tmp_path):
    messages = [sent(i, f"c{i}@partner.example", day=1 + i % 28) for i in range(30)]
    store = learn_messages(tmp_path / "h.db", messages, max_per_sender=10)
    stats = HistoryStore.open(store).stats()
    assert stats["relationships"] == 10  # the least recently used went first
    old = "Date: Mon, 6 May 2019 10:00:00 +0000"
    expired = [
        sent(100, "old@partner.example").replace("Date: Mon, 6 May 2024 10:00:00 +0000", old)
    ]
    store = learn_messages(tmp_path / "e.db", [*expired, *REGULAR[:3]], expire_days=365)
    db = HistoryStore.open(store)
    assert db.familiar(
        db.hash(Hasher.ADDRESS, ANN), [db.hash(Hasher.ADDRESS, "old@partner.example")]
    ) == (set(), set())


def test_learning_time_grows_linearly(tmp_path):
    org = gen.Organisation(7, users=10)
    raws = [m.to_bytes(False) for m in org.messages(16000, 19723, 200)]
    stores = itertools.count()

    def learn(batch: list[bytes]) -> None:
        store = HistoryStore.open(tmp_path / f"t{next(stores)}.db", create=True)
        try:
            learner = Learner(store, HistorySettings())
            for raw in batch:
                learner.add(observe(raw))
            learner.finish()
        finally:
            store.close()

    assert_linear(lambda n: raws[:n], learn, 2000, 16000)


# ---------------------------------------------------------------------------- near misses


@pytest.mark.parametrize(
    ("typed", "familiar", "kind"),
    [
        ("daev@partner.example", "dave@partner.example", near.LOCAL_EDIT),
        ("dave.smiht@partner.example", "dave.smith@partner.example", near.LOCAL_EDIT),
        ("dave@partner.exmaple", "dave@partner.example", near.DOMAIN_EDIT),
        ("dave@partnerr.example", "dave@partner.example", near.DOMAIN_EDIT),
        ("dave.smith@gmail.com", "dave.smith@partner.example", near.SAME_LOCAL),
        ("dave@p\u0430rtner.example", "dave@partner.example", near.HOMOGLYPH),
    ],
)
def test_near_misses_are_found_on_hashed_data_and_named(tmp_path, typed, familiar, kind):
    from mailguard.addresses import address_key

    typed = address_key(typed) or typed
    service = HistoryService.open(
        HistorySettings(), learn_messages(tmp_path / "h.db", [sent(1, familiar)])
    )
    miss = service.near_miss(typed, ANN, org_wide=False)
    assert miss is not None and miss.kind == kind and miss.own
    domains = ["partner.example", "gmail.com"]
    assert service.suggest(typed, miss, domains) == familiar
    assert familiar.encode() not in (tmp_path / "h.db").read_bytes()


def test_unrelated_and_role_addresses_are_no_near_miss(tmp_path):
    service = HistoryService.open(HistorySettings(), learn_messages(
        tmp_path / "h.db", [sent(1, "dave@partner.example, info@partner.example")]))  # fmt: skip
    for typed in ("zed@partner.example", "info@other.example", "robert@zzz.example"):
        assert service.near_miss(typed, ANN, org_wide=True) is None


def test_a_long_address_has_a_bounded_neighbourhood():
    hasher = Hasher(b"k" * 32)
    long_local = "x" * 5000
    assert len(near.variants(hasher, long_local, "partner.example")) <= 2 * (near.MAX_PART + 1) + 1


# ---------------------------------------------------------------------------- the rules in check


def test_check_names_the_familiar_address_only_in_the_senders_own_report(tmp_path):
    store = learn_messages(tmp_path / "h.db", REGULAR)
    (tmp_path / "typo.eml").write_text(sent(99, "daev@partner.example"))
    code, text = cli(*CHECK, "--history", str(store), str(tmp_path / "typo.eml"))
    assert code == 0 and "MG403" in text and "did you mean dave@partner.example?" in text
    _, text = cli(*CHECK, "--history", str(store), "--redact", str(tmp_path / "typo.eml"))
    assert "MG403" in text and "dave@partner.example" not in text and "daev" not in text
    _, out = cli(*CHECK, "--history", str(store), "--format", "json", str(tmp_path / "typo.eml"))
    (finding,) = [f for f in json.loads(out)["messages"][0]["findings"] if f["code"] == "MG403"]
    assert finding["evidence"]["kind"] == near.LOCAL_EDIT


def test_history_from_the_config_file_and_off_without_it(tmp_path):
    learn_messages(tmp_path / "h.db", REGULAR)
    (tmp_path / "typo.eml").write_text(sent(99, "daev@partner.example"))
    (tmp_path / "mailguard.toml").write_text(
        'internal_domains = ["example.org"]\n[history]\nstore = "h.db"\n'
    )
    code, text = cli("check", str(tmp_path / "typo.eml"))
    assert "did you mean dave@partner.example?" in text
    (tmp_path / "mailguard.toml").write_text('[history]\nstore = "h.db"\nlern = true\n')
    code, text = cli("check", str(tmp_path / "typo.eml"))
    assert code == 2 and "lern" in text
    code, text = cli(*CHECK, "--format", "json", str(tmp_path / "typo.eml"))
    # Without a store the history rules are off (opt-in, like DNS), not "skipped" each time.
    report = json.loads(text)["messages"][0]
    assert not {s["code"] for s in report["skipped"]} & {"MG403", "MG404"}
    assert "MG403" not in [f["code"] for f in report["findings"]]


# ---------------------------------------------------------------------------- no address in clear


def test_no_address_or_message_id_of_the_corpus_is_stored_or_printed_in_clear(tmp_path):
    org = gen.Organisation(3, users=12)
    messages = list(org.messages(1500, 19723, 60))
    (tmp_path / "sent.mbox").write_bytes(b"".join(m.to_bytes() + b"\n" for m in messages))
    store = tmp_path / "h.db"
    code, learned = cli("learn", "--no-config", "--store", str(store), str(tmp_path / "sent.mbox"))
    assert code == 0, learned
    code, stats = cli("history", "stats", "--no-config", "--store", str(store))
    # A writer still open: the -wal and -shm files exist while it works.
    live = HistoryStore.open(store, write=True)
    extra = Learner(live, HistorySettings())
    for m in org.messages(200, 19800, 5):
        extra.add(observe(m.to_bytes(False)))
        messages.append(m)
    extra.flush()
    files = sorted(p for p in tmp_path.iterdir() if p.name.startswith("h.db"))
    assert {p.name for p in files} >= {"h.db", "h.db-wal", "h.db-shm", "h.db.key"}
    blob = b"".join(p.read_bytes() for p in files) + (learned + stats).encode()
    live.close()
    words = {a for m in messages for a in [m.sender, *m.recipients]}
    words |= {m.message_id for m in messages}
    leaked = [w for w in words if w.encode() in blob or w.encode("utf-16-le") in blob]
    assert len(words) > 300 and not leaked, leaked[:5]
    locals_ = {w.split("@")[0] for w in words if "@" in w and len(w.split("@")[0]) > 8}
    assert not [w for w in locals_ if w.encode() in blob][:1]


def test_a_huge_recipient_list_costs_no_more_than_a_small_one(tmp_path):
    service = HistoryService.open(HistorySettings(), learn_messages(tmp_path / "h.db", REGULAR))
    engine = Engine(from_mapping({"internal_domains": ["example.org"],
                                  "rules": {"MG403": {"min_sender_messages": 1}}}),
                    services=Services(history=service))  # fmt: skip

    def message(n: int) -> bytes:  # near misses of familiar addresses, every one of them
        return sent(1, ", ".join(f"dave{i}@partner.example" for i in range(n))).encode()

    assert_linear(message, engine.check, 1000, 64000)
    small = sent(1, "dave1@partner.example, daev@partner.example").encode()
    assert "MG403" in engine.check(small).codes


def test_a_reply_naming_only_its_parent_joins_the_thread(tmp_path):
    first = sent(1, "bob@example.org, carol@partner.example")
    reply = sent(2, "bob@example.org", extra="In-Reply-To: <m1@example.org>\n")
    later = sent(3, "bob@example.org", extra="In-Reply-To: <m2@example.org>\n")
    service = HistoryService.open(
        HistorySettings(), learn_messages(tmp_path / "h.db", [first, reply, later])
    )
    thread = service.thread(["m3@example.org"])
    assert thread is not None and service.on_thread(thread, "carol@partner.example")
    assert service.store.stats()["threads"] == 1
