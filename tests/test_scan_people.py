"""Exposed people are counted the same whether workers send addresses or tokens.

Unless a scan shows addresses (or a hook such as the incremental store needs them), its
workers send a token per exposed person instead of the address
(:mod:`mailguard.archive.people`). These tests hold the register's figures (distinct
people, members of the public, distinct people per domain) equal across the three forms,
prove the grouped fast path equal to the careful one on generated recipient lists, and
check that no exposed address leaves a worker when none is to be kept.
"""

from __future__ import annotations

import hmac
import json
import pickle
import sqlite3
import subprocess
import sys
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from mailguard import Engine
from mailguard.archive.people import Tokens, domain_of, domains_of
from mailguard.archive.register import Incident, Register, Tally
from mailguard.archive.scanner import Scanner, plan
from mailguard.archive.workers import StopFlag, Window, WorkSpec, judge_unit
from mailguard.config import Config
from tests.conftest import ROOT
from tests.scan_archive import write_mbox

EXAMPLES = sorted((ROOT / "examples" / "incidents").glob("*.eml"))
KINDS = [Tokens(), Tokens.for_scan(addresses=False, forked=True)]
KINDS.append(Tokens.for_scan(addresses=False, forked=False))
KINDS.append(Tokens("stored", b"k" * 32))  # scan --state with our own workers


def figures(register: Register) -> tuple[dict[str, Any], Counter[str]]:
    summary = {k: v for k, v in register.summary().items() if k != "seconds"}
    return summary, register.distinct_by_domain()


def register_of(tokens: Tokens, keep: bool) -> Register:
    engine = Engine(Config())
    register = Register(keep_addresses=keep)
    for path in EXAMPLES:
        tally = Tally()
        tally.add_report(engine.check(path.read_bytes(), mode="archived"), tokens=tokens)
        register.merge(tally)
    return register


def test_every_form_of_person_gives_the_same_register_figures() -> None:
    full = register_of(Tokens(), keep=True)
    assert full.unique_people == len(full.exposed) > 2000  # the examples expose 2,136 people
    assert sum(full.distinct_by_domain().values()) == full.unique_people
    for tokens in KINDS:
        lean = register_of(tokens, keep=False)
        assert figures(lean) == figures(full), tokens
        assert lean.exposed == set()
        assert all(i.exposed == [] and i.people is None for i in lean.total.incidents)
    assert all(i.exposed_count for i in lean.total.incidents)


def test_the_register_counts_hand_made_incidents_from_their_addresses() -> None:
    """An incident made without an analysis (exposed list only) counts as a worker's."""
    made = Incident(
        source="x", message_id=None, date=None, sender=None, subject=None, verdict="block",
        score=90, findings=[], recipients={}, exposed=["a@x.nhs.uk", "b@mail.x.nhs.uk",
        "c@gmail.com"], personal=["c@gmail.com"], domains={},
    )  # fmt: skip
    register = Register()
    register.merge(Tally(incidents=[made]))
    assert register.distinct_by_domain() == Counter({"x.nhs.uk": 2, "gmail.com": 1})
    assert (register.unique_people, len(register.public)) == (3, 1)


LOCALS = st.sampled_from(["ann", "Bob", "bob", "c.d", "e+tag", "f_g", "zoë"])
DOMAINS = st.sampled_from([
    "gmail.com", "GMAIL.com", "serviceco.example", "mail.serviceco.example", "nhs.net",
    "x.nhs.uk", "y.x.nhs.uk", "lists.example.org", "[192.0.2.1]", "example.co.uk",
])  # fmt: skip
ADDRESS = st.builds(lambda local, domain: f"{local}@{domain}", LOCALS, DOMAINS)


@settings(max_examples=150, deadline=None)
@given(st.lists(ADDRESS, max_size=25), st.lists(ADDRESS, max_size=25))
def test_grouped_people_equal_the_careful_path(to: list[str], cc: list[str]) -> None:
    raw = (
        "From: Ops <ops@serviceco.example>\r\nTo: " + ", ".join(to or ["x@serviceco.example"])
        + "\r\nCc: " + ", ".join(cc or ["y@serviceco.example"])
        + "\r\nList-Id: <news.lists.example.org>\r\nSubject: s\r\n\r\nHello.\r\n"
    ).encode()  # fmt: skip
    report = Engine(Config()).check(raw, mode="archived")
    r = report.analysis
    assert r is not None
    exposed = [k for k in r.visible if k not in r.internal and k not in r.lists]
    personal = [k for k in exposed if k in r.personal]
    assert domains_of(r, exposed) == [domain_of(a) for a in exposed]
    for tokens in KINDS:
        made = Incident.from_report(report, None, tokens)
        token = tokens.function() or (lambda a: a)
        assert made.people == [token(a) for a in exposed]
        assert made.public == [token(a) for a in personal]
        assert made.where == [domain_of(a) for a in exposed]
        assert (made.exposed_count, made.personal_count) == (len(exposed), len(personal))
        assert made.exposed == (exposed if tokens.keeps_addresses else [])
    lean, careful = Register(keep_addresses=False), Register()
    lean.merge(Tally(incidents=[Incident.from_report(report, None, KINDS[1])]))
    hand = Incident.from_report(report, None)
    hand.people = hand.where = hand.public = None  # counted from the addresses alone
    careful.merge(Tally(incidents=[hand]))
    assert figures(lean) == figures(careful)


def test_no_exposed_address_leaves_a_worker_unless_asked(tmp_path: Path) -> None:
    mbox = write_mbox(tmp_path / "a.mbox")
    units, _ = plan(str(mbox), 1)
    full = [judge_unit(spec, unit) for spec in [WorkSpec.build(Config(), Window(), StopFlag())]
            for unit in units]  # fmt: skip
    exposed = {a for t in full for i in t.incidents for a in i.exposed}
    assert len(exposed) > 40
    for tokens in KINDS[1:]:
        spec = WorkSpec.build(Config(), Window(), StopFlag(), tokens=tokens)
        sent = pickle.dumps([judge_unit(spec, unit) for unit in units], pickle.HIGHEST_PROTOCOL)
        leaked = [a for a in exposed if a.encode() in sent]
        assert leaked == [], (tokens, leaked[:3])
    assert b"@gmail.com" in pickle.dumps(full)  # what the check above would catch


class Recording(ThreadPoolExecutor):
    """A caller's own executor (as a Dask client is): records the specs it is handed."""

    def __init__(self) -> None:
        super().__init__(2)
        self.specs: list[WorkSpec] = []

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.specs.append(args[0])
        return super().submit(fn, *args, **kwargs)


def test_a_foreign_executor_gets_keyed_tokens_and_the_same_figures(tmp_path: Path) -> None:
    mbox = write_mbox(tmp_path / "a.mbox")
    sources: list[tuple[str, Any]] = [(str(mbox), plan(str(mbox), 2)[0])]
    alone = Scanner(Config(), jobs=1).scan(sources, register=Register(keep_addresses=True))
    with Recording() as executor:
        lean = Scanner(Config(), jobs=2, executor=executor).scan(
            sources, register=Register(keep_addresses=False)
        )
    assert {s.tokens.kind for s in executor.specs} == {"keyed"}
    assert len({s.tokens.key for s in executor.specs}) == 1  # one key for the whole scan
    assert figures(lean) == figures(alone)
    assert "key" not in repr(executor.specs[0].tokens).replace("keyed", "")


def scan_html_domains(*args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "mailguard", "scan", "--no-config", "-q", "-f", "html", *args],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert "Traceback" not in out.stderr, out.stderr
    page = out.stdout
    start = page.index('<section id="domains">')
    return page[start : page.index("</section>", start)]


def test_distinct_people_per_domain_survive_the_incremental_store(tmp_path: Path) -> None:
    """The store keeps keyed hashes, not addresses: its re-runs must still count distinct
    people per domain (they once showed 0 for every domain), also from records written
    before each hash carried its domain (those messages are judged again)."""
    examples = str(ROOT / "examples" / "incidents")
    state = str(tmp_path / "s.db")
    plain = scan_html_domains("--jobs", "2", examples)
    assert '<td class="num">655</td>' in plain  # gmail.com: 655 distinct people
    assert scan_html_domains("--state", state, "--jobs", "2", examples) == plain
    assert scan_html_domains("--state", state, examples) == plain  # all carried over
    with sqlite3.connect(state) as db:
        rows = db.execute("SELECT rowid, record FROM found WHERE record IS NOT NULL").fetchall()
        assert rows
        for rowid, record in rows:
            old = json.loads(record)
            old["exposed"] = [h for who in old.pop("people").values() for h in who]
            old["personal"] = old.pop("public")
            db.execute("UPDATE found SET record = ? WHERE rowid = ?", (json.dumps(old), rowid))
    assert scan_html_domains("--state", state, examples) == plain
    assert scan_html_domains("--show-addresses", examples) == plain


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=40))
def test_workers_hash_as_the_store_does(text: str) -> None:
    """``--state`` with local workers: what they send is what the store would have made of
    the address (surrogates included: addresses read from 8-bit headers carry them)."""
    store_key = b"s" * 32
    token = Tokens("stored", store_key).function()
    assert token is not None
    assert token(text) == hmac.new(store_key, text.encode("utf-8", "surrogateescape"),
                                   "sha256").hexdigest()[:32]  # fmt: skip


def test_the_store_gets_its_own_hashes_from_forked_workers_only(tmp_path: Path) -> None:
    from mailguard.archive.incremental import Incremental
    from mailguard.archive.state import StateStore

    for addresses, forked, kind in ((False, True, "stored"), (False, False, "addresses"),
                                    (True, True, "addresses")):  # fmt: skip
        store = StateStore(tmp_path / f"{addresses}{forked}.db")
        incremental = Incremental(store, "f", 2, Config(), addresses=addresses)
        tokens = incremental.tokens_for(forked)
        assert tokens.kind == kind
        report = Engine(Config()).check(EXAMPLES[0].read_bytes(), mode="archived")
        made = Incident.from_report(report, None, tokens)
        record = json.loads(incremental._record(made) or "{}")
        hashed = sorted(h for who in record["people"].values() for h in who)
        assert hashed == sorted(store.hash(a) for a in Incident.from_report(report, None).exposed)
        assert len(hashed) > 40
        store.close()
