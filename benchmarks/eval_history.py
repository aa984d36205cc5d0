"""How well the history rules catch wrong recipients, on a synthetic organisation's mail.

The organisation of ``gen_org_mail.py`` sends mail for a year. The first 80 % of it is
learned; the rest is the test period, replayed day by day: each message is checked as it
would be at sending time (against what was learned until the night before, as with a
nightly ``mailguard learn`` or the milter's ``learn = true``), and so is a copy of some of
them with a wrong recipient injected:

* **typo**: a known external recipient with one slip (a letter left out, doubled, swapped,
  a neighbouring key, in the name or the domain);
* **random (added)**: a random external address added to a message to familiar people;
* **random (alone)**: a random external address replacing the only recipient — by
  construction indistinguishable from a first contact, shown for honesty;
* **another user's contact** (the hard case): a recipient replaced by a contact of a user
  in another team, an address the organisation knows but this sender never wrote to.

It prints the detection rate per kind (MG403 or MG404 fired) and the share of clean
messages flagged, with MG403's defaults (familiar = the sender's own contacts) and with
``organisation = true`` (anyone's contacts).

    .venv/bin/python benchmarks/eval_history.py [--quick] [--json] [--seed N]
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import _harness as h  # the benchmarks' shared harness (same directory); puts the repo on sys.path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gen_org_mail as gen  # (beside this script)

KINDS = ("typo", "random (added)", "random (alone)", "another user's contact")
ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
HISTORY_CODES = frozenset({"MG403", "MG404"})


def neighbours(c: str) -> str:
    for r, row in enumerate(ROWS):
        i = row.find(c)
        if i >= 0:
            near = row[max(0, i - 1) : i] + row[i + 1 : i + 2]
            for other in (r - 1, r + 1):
                if 0 <= other < len(ROWS):
                    near += ROWS[other][max(0, i - 1) : i + 1]
            return near
    return "aeiou"


def typo(rng: random.Random, address: str) -> str:
    local, _, domain = address.rpartition("@")
    in_domain = rng.random() < 0.3
    name, suffix = domain.split(".", 1) if in_domain else (local, "")
    for _ in range(20):
        i = rng.randrange(len(name))
        op = rng.randrange(5)
        if op == 0 and len(name) > 2:
            word = name[:i] + name[i + 1 :]  # a letter left out
        elif op == 1:
            word = name[:i] + name[i] + name[i:]  # doubled
        elif op == 2 and i + 1 < len(name) and name[i] != name[i + 1]:
            word = name[:i] + name[i + 1] + name[i] + name[i + 2 :]  # swapped
        elif op == 3 and name[i].isalpha():
            word = name[:i] + rng.choice(neighbours(name[i])) + name[i + 1 :]  # slipped
        elif name[i].isalpha():
            word = name[:i] + rng.choice(neighbours(name[i])) + name[i:]  # extra key
        else:
            continue
        if word != name:
            return f"{local}@{word}.{suffix}" if in_domain else f"{word}@{domain}"
    return f"{local}x@{domain}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    h.common_arguments(ap, "a small organisation and a short period (what the tests run)")
    ap.add_argument("--messages", type=int, default=None)
    args = ap.parse_args()
    out = h.Output(args.json)
    total = args.messages or (3000 if args.quick else 40000)

    from mailguard import Engine
    from mailguard.config import from_mapping
    from mailguard.history.extract import observe
    from mailguard.history.learner import Learner
    from mailguard.history.service import HistoryService
    from mailguard.history.settings import HistorySettings
    from mailguard.history.store import HistoryStore
    from mailguard.services import Services

    out.say(h.machine())
    rng = random.Random(args.seed + 1)
    org = gen.Organisation(args.seed, users=30 if args.quick else 60)
    messages = list(org.messages(total, 19723, 365))
    cut = int(len(messages) * 0.8)
    train, test = messages[:cut], messages[cut:]
    tmp = tempfile.TemporaryDirectory(prefix="mailguard-eval-")
    path = Path(tmp.name) / "history.db"
    store = HistoryStore.open(path, create=True)
    learner = Learner(store, HistorySettings())
    for m in train:
        learner.add(observe(m.to_bytes(False)))
    learner.finish()
    store.close()
    out.progress(f"learned {len(train):,} messages; testing {len(test):,}")

    service = HistoryService.open(HistorySettings(learn=True), path)
    settings = {
        "sender only": Engine(from_mapping({"internal_domains": [gen.ORG]}),
                              services=Services(history=service)),
        "organisation": Engine(from_mapping({
            "internal_domains": [gen.ORG], "rules": {"MG403": {"organisation": True}}}),
            services=Services(history=service)),
    }  # fmt: skip
    contacts = {u.address: set(u.contacts) for u in org.users}
    teams = {u.address: u.team for u in org.users}
    written: dict[str, set[str]] = defaultdict(set)
    for m in train:
        written[m.sender].update(m.recipients)
    clean = dict.fromkeys(settings, 0)
    clean_total = 0
    found = {(k, name): 0 for k in KINDS for name in settings}
    injected = dict.fromkeys(KINDS, 0)
    day = test[0].day
    pending: list[gen.Message] = []

    why: dict[str, int] = defaultdict(int)
    """What flagged the clean messages (the default), by finding kind."""

    def flagged(engine: Engine, msg: gen.Message, note: bool = False) -> bool:
        report = engine.check(msg.to_bytes(False))
        hits = [f for f in report.findings if f.code in HISTORY_CODES]
        for f in hits[:1] if note else ():
            why[f"{f.code} {f.evidence.get('kind')}"] += 1
        return bool(hits)

    for i, msg in enumerate(test):
        if msg.day != day:  # the night: learn the day's mail
            learner_store = service.store
            night = Learner(learner_store, HistorySettings())
            for m in pending:
                night.add(observe(m.to_bytes(False)))
                written[m.sender].update(m.recipients)
            night.finish()
            pending, day = [], msg.day
        pending.append(msg)
        external = [r for r in msg.recipients if not r.endswith("@" + gen.ORG)]
        if len(msg.recipients) > 50:
            continue
        clean_total += 1
        for name, engine in settings.items():
            clean[name] += flagged(engine, msg, note=name == "sender only")
        if not external:
            continue
        kind = KINDS[i % len(KINDS)]
        known = [r for r in external if r in written[msg.sender]]
        victim = rng.choice(known or external)
        if kind == "typo":
            if not known:
                continue
            wrong = typo(rng, victim)
            if wrong in org.people:
                continue
            rcpts = [wrong if r == victim else r for r in msg.recipients]
        elif kind == "random (added)":
            if not known:
                continue
            rcpts = [*msg.recipients, org.new_external()]
        elif kind == "random (alone)":
            if len(msg.recipients) != 1:
                continue
            rcpts = [org.new_external()]
        else:
            others = [c for u, cs in contacts.items() if teams[u] != teams.get(msg.sender)
                      for c in cs if c not in written[msg.sender]]  # fmt: skip
            if not others:
                continue
            other = rng.choice(sorted(set(others)))
            rcpts = [other if r == victim else r for r in msg.recipients]
        wrong_msg = dataclasses.replace(
            msg, to=rcpts[:1], cc=rcpts[1:], message_id="x" + msg.message_id
        )
        injected[kind] += 1
        for name, engine in settings.items():
            found[(kind, name)] += flagged(engine, wrong_msg)
    service.close()
    tmp.cleanup()

    rows = []
    for kind in KINDS:
        row = {"kind": kind, "n": injected[kind]}
        for name in settings:
            row[name] = 100 * found[(kind, name)] / injected[kind] if injected[kind] else 0.0
        rows.append(row)
    rows.append({"kind": "clean messages flagged", "n": clean_total,
                 **{name: 100 * clean[name] / clean_total for name in settings}})  # fmt: skip
    out.say()
    h.table(out.say, [
        h.Column("wrong recipient", "kind", "<28"), h.Column("messages", "n", ">10,"),
        h.Column("sender only (default)", "sender only", ">23.1f", " %"),
        h.Column("organisation = true", "organisation", ">21.1f", " %"),
    ], rows)  # fmt: skip
    out.say(
        "  clean messages flagged, by finding: "
        + (", ".join(f"{k} {n}" for k, n in sorted(why.items())) or "none")
    )
    on = {r["kind"]: r["sender only"] for r in rows}
    targets = [
        h.target("typos detected >= 90 %", round(on["typo"], 1), 90, on["typo"] >= 90),
        h.target("random externals (added) >= 80 %", round(on["random (added)"], 1), 80,
                 on["random (added)"] >= 80),
        h.target("clean messages flagged <= 2 %", round(on["clean messages flagged"], 2), 2,
                 on["clean messages flagged"] <= 2),
    ]  # fmt: skip
    h.print_targets(out.say, targets, note="MG403 defaults: familiar = the sender's own contacts")
    out.say(
        "  the hard case (another user's contact) and random (alone) have no target: see the table"
    )
    out.finish({"train": len(train), "test": len(test), "rows": rows, "targets": targets})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
