"""Rule MG402's DNS lookups: a 300-recipient message over 60 domains, cold and warm.

Targets (issue 13): decided in under 50 ms with a warm cache, and within the DNS deadline
(1.5 s) with a cold one. The domains are served by a real ``unbound`` on loopback
(``tests/support/dns_servers.py``; installed like the tests install it), never the
internet. Side by side: the same message judged without DNS, the baseline.

    .venv/bin/python benchmarks/bench_dns.py [--quick] [--json]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import _harness as h  # the benchmarks' shared harness (same directory); puts the repo on sys.path

from tests.support.dns_servers import Unbound

DOMAINS = 60
RECIPIENTS = 300
DEADLINE = 1.5


def zone() -> list[str]:
    """60 domains: most with an MX, every tenth a null MX, every fifteenth missing."""
    lines = []
    for i in range(DOMAINS):
        if i % 15 == 14:
            continue  # NXDOMAIN
        exchange = "." if i % 10 == 9 else f"mx.d{i}.example."
        lines.append(f"d{i}.example. 300 IN MX {0 if exchange == '.' else 10} {exchange}")
    return lines


EXPECTED = sum(1 for i in range(DOMAINS) if i % 15 == 14 or i % 10 == 9)
"""Domains MG402 must report: the missing and the null-MX ones."""


def message() -> bytes:
    to = ", ".join(f"p{n}@d{n % DOMAINS}.example" for n in range(RECIPIENTS))
    return (f"From: HR <hr@acme.example>\r\nTo: {to}\r\nSubject: notice\r\n\r\nHello.\r\n").encode()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    h.common_arguments(ap, "fewer rounds (what the tests run)", seed=False)
    args = ap.parse_args()
    out = h.Output(args.json)
    rounds = 3 if args.quick else 10
    warm_runs = 20 if args.quick else 200

    from mailguard import Engine
    from mailguard.resolver import DnsService
    from mailguard.services import Services

    out.say(h.machine())
    out.say(f"dnspython {h.version('dnspython')}; {RECIPIENTS} recipients over {DOMAINS} domains")
    data = message()
    with tempfile.TemporaryDirectory() as tmp:
        server = Unbound(Path(tmp), zone())
        try:
            plain = Engine()
            base = [h.timed(lambda: plain.check(data))[0] for _ in range(warm_runs)]
            cold: list[float] = []
            findings = 0
            for _ in range(rounds):
                service = DnsService([server.server], deadline=DEADLINE)
                engine = Engine(services=Services(dns=service))
                seconds, report = h.timed(lambda e=engine: e.check(data))
                cold.append(seconds)
                hits = [f for f in report.findings if f.code == "MG402"]
                findings = hits[0].evidence["undeliverable"] if hits else 0
                incomplete = [s for s in report.skipped if s.code == "MG402"]
                if incomplete:
                    out.progress(f"cold round incomplete: {incomplete[0].reason}")
                if len(cold) < rounds:
                    service.close()  # the last one stays for the warm runs
            warm = [h.timed(lambda e=engine: e.check(data))[0] for _ in range(warm_runs)]
            service.close()
        finally:
            server.close()
    rows = [
        {"method": "without DNS (baseline)", "median": statistics.median(base) * 1000,
         "worst": max(base) * 1000},
        {"method": "DNS, warm cache", "median": statistics.median(warm) * 1000,
         "worst": max(warm) * 1000},
        {"method": "DNS, cold cache", "median": statistics.median(cold) * 1000,
         "worst": max(cold) * 1000},
    ]  # fmt: skip
    out.say()
    columns = [
        h.Column("method", "method", "<26"),
        h.Column("median ms", "median", ">12,.2f"),
        h.Column("worst ms", "worst", ">12,.2f"),
    ]
    h.table(out.say, columns, rows)
    out.say(f"undeliverable domains found: {findings} (expected {EXPECTED})")
    targets = [
        h.target("warm cache: median decision < 50 ms", round(rows[1]["median"], 2), 50,
                 rows[1]["median"] < 50),
        h.target(f"cold cache: worst decision within {DEADLINE} s deadline",
                 round(max(cold), 3), DEADLINE, max(cold) <= DEADLINE + 0.1),
    ]  # fmt: skip
    h.print_targets(out.say, targets)
    out.finish({"rows": rows, "targets": targets, "undeliverable": findings,
                "expected_undeliverable": EXPECTED, "started": time.time()})  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
