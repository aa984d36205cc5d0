"""MG401 on messages with very many distinct recipient domains (a fuzzer's 200,000
``xn--`` domains cost 72 s): each domain is decoded once, the shortcuts give the same
answers as the full lookups, and past ``limits.max_lookalike_domains`` the rest are left
out and MG002 says so."""

from __future__ import annotations

import random
from collections.abc import Callable

import idna
import pytest

from mailguard import Engine, typos
from mailguard.config import Config
from mailguard.limits import Limits
from mailguard.lookalike import Index
from tests.support.doubling import assert_doubling_linear
from tests.test_lookalike import _config, _index


class _Everything(frozenset[str]):
    """A set that contains every string: turns the index's shortcuts off."""

    def __contains__(self, item: object) -> bool:
        return True


def _forget_decoded() -> None:
    cached = getattr(typos, "_decoded", None)  # the decode memo, if there is one
    if cached is not None:
        cached.cache_clear()


def _domains(seed: int, n: int) -> list[str]:
    """Typos of the candidates (one or two random edits), numbered families, IDNs."""
    rng = random.Random(seed)
    base = [
        *_index(_config()).known,
        "brightline-consulting.com", "d12.example", "xn--bcher-kva.example", "ex\u0430mple.org",
    ]  # fmt: skip
    letters = "abcdefghijklmnopqrstuvwxyz0123456789.-"
    found = []
    for _ in range(n):
        d = rng.choice(base)
        for _ in range(rng.randint(0, 2)):
            i = rng.randrange(len(d))
            op = rng.randrange(3)
            c = rng.choice(letters)
            d = (
                d[:i] + c + d[i + 1 :]
                if op == 0
                else d[:i] + c + d[i:]
                if op
                else d[:i] + d[i + 1 :]
            )
        found.append(d)
    return found


@pytest.mark.parametrize("seed", range(4))
def test_shortcuts_give_the_answers_of_the_full_lookup(seed):
    """The index skips splitting a domain (two PSL lookups) when no candidate shares its
    first letter or first label: with those shortcuts off, every answer is the same."""
    domains = _domains(seed, 3000)
    fast = _index(_config())
    careful = Index(
        [(d, s) for d, s in fast.known.items()], fast.never._domains, fast.options
    )  # fmt: skip
    careful._long_firsts = _Everything()
    careful._heads = _Everything()
    assert [fast.classify(d) for d in domains] == [careful.classify(d) for d in domains]


@pytest.mark.parametrize("seed", range(4))
def test_either_near_is_near_both_ways(seed):
    index = _index(_config())
    domains = sorted(set(_domains(seed, 400)))
    rng = random.Random(seed)
    pairs = [(a, b) for a in domains for b in rng.sample(domains, 20) if a != b]
    for a, b in pairs:
        assert index.either_near(a, b) == bool(index.near(a, b) or index.near(b, a)), (a, b)


def _xn_groups(n: int, start: int = 0) -> dict[str, list[str]]:
    return {f"xn--{i}-zzzzz.example": [f"u@{i}"] for i in range(start, start + n)}


def test_each_idn_is_decoded_once(monkeypatch):
    """Decoding an ``xn--`` domain is ~120 µs in the ``idna`` package; the index asked
    for it three times per new domain (its lookup, the sender's and the table of seen)."""
    calls = []
    real = idna.decode
    monkeypatch.setattr(idna, "decode", lambda s, *a, **k: calls.append(s) or real(s, *a, **k))
    _forget_decoded()
    index = _index(_config())
    index._clear()
    groups = _xn_groups(500, start=10**6)
    index.scan(groups, "org.example")
    assert len(calls) <= len(groups) + 1


def test_scan_cost_is_linear_in_distinct_domains():
    index = _index(_config())

    def prepare(n: int) -> Callable[[], object]:
        groups = _xn_groups(n, start=n * 10)

        def work() -> None:
            index._clear()
            _forget_decoded()
            index.scan(groups, "org.example")

        return work

    assert_doubling_linear(prepare, (1000, 2000), what="the distinct domains")


def _message(domains: list[str]) -> str:
    to = ", ".join(f"u{i}@{d}" for i, d in enumerate(domains))
    return f"From: o@acme.example\r\nTo: {to}\r\nSubject: x\r\n\r\nhi\r\n"


def _found(config: Config, message: str) -> tuple[list[str], list[str]]:
    report = Engine(config).check(message)
    lookalikes = [f.evidence["domain"] for f in report.findings if f.code == "MG401"]
    limits = [f.message for f in report.findings if f.code == "MG002"]
    return lookalikes, limits


def test_domains_past_the_cap_are_not_compared_and_mg002_says_so():
    domains = [f"org{i}.example" for i in range(120)]
    domains[10], domains[100] = "gmial.com", "hotmial.com"
    message = _message(domains)
    everything, limits = _found(Config(), message)
    assert everything == ["gmial.com", "hotmial.com"]
    assert limits == []
    # At the cap, nothing changes; one domain past it, the rest are left out, and said so.
    assert _found(Config(limits=Limits(max_lookalike_domains=120)), message) == (everything, [])
    capped, limits = _found(Config(limits=Limits(max_lookalike_domains=50)), message)
    assert capped == ["gmial.com"]
    (said,) = limits
    assert "120 distinct recipient domains: only the first 50 were compared" in said


def test_the_cap_is_not_reported_when_mg401_is_off():
    config = Config(limits=Limits(max_lookalike_domains=5)).with_overrides(
        rules={"MG401": {"enabled": False}}
    )
    message = _message([f"org{i}.example" for i in range(20)])
    assert _found(config, message) == ([], [])
