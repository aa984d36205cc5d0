"""Proxy benchmark: clean mail through ``mailguard proxy`` vs straight to smtp-sink, one run.

Why this exists: a script pointed at the pre-send gateway instead of its provider should
not notice. The issue's targets:

* with 10 concurrent clients, clean 2 KB messages through the proxy to ``smtp-sink`` reach
  >= 50 % of the throughput the same clients get straight to ``smtp-sink``;
* a 300-recipient message that the proxy splits is delivered, all 300 copies, in < 2 s.

The clients are Postfix's ``smtp-source`` (10 sessions, a new connection per message, as a
script sending one message at a time does; 2 KB payload, one recipient). The sink is the
``smtp-sink`` of a private Postfix instance (``tests/support/postfix.py``), writing one file
per message so that every message is counted where it arrived. The proxy is the real
``mailguard proxy`` command in its own process (``--no-config``, default settings, relay
security ``none`` to the loopback sink; one worker process, the proxy's default: on a
2-core machine ``smtp-source`` and ``smtp-sink`` need most of a core themselves, and a
second worker there cost more CPU per message and moved fewer; ``--workers 2`` measures
it). Phases alternate (direct, proxy, proxy, direct, ...)
so that drift on a shared machine hits both alike; the median and best of ``--rounds`` are
reported. A phase runs from starting ``smtp-source`` until it exited and every message is
in the sink. The split is timed by the client: from ``sendmail`` to the proxy's reply, with
every copy in the sink by then (the proxy replies only after the last copy was accepted).

Run from the repository root, as root (the Postfix instance needs it)::

    python benchmarks/bench_proxy.py           # 3 rounds of 2 x 2,000 messages
    python benchmarks/bench_proxy.py --quick   # 200 messages, 1 round: a smoke run
    python benchmarks/bench_proxy.py --json    # table on stderr, figures as JSON on stdout
    python benchmarks/bench_proxy.py --baseline-ref main   # and main's proxy, same phases

With ``--baseline-ref`` the proxy of that commit (its ``mailguard/`` and ``rules/``, run by
the same interpreter) takes a third phase in every round, so that both builds' CPU per
message and throughput come from one sitting.

Exit status 0 whether or not a target is met (a measurement, not a test); 1 when the run is
invalid (a message missing from the sink, the proxy died); 2 when it cannot run (not root).
"""

from __future__ import annotations

import argparse
import os
import smtplib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import _harness as h
from bench_compiled import baseline_tree

from tests.support.postfix import PostfixInstance, ensure_postfix_installed
from tests.support.procs import free_ports, port_open, wait_until

SMTP_SOURCE = Path("/usr/sbin/smtp-source")
SESSIONS = 10
MESSAGES = 2_000
ROUNDS = 3
SPLIT_RECIPIENTS = 300
QUICK = {"messages": 200, "rounds": 1}
SENDER = "ops@serviceco.example"
RECIPIENT = "partner@othercorp.example"


def smtp_source(port: int, messages: int, sessions: int) -> None:
    argv = [
        str(SMTP_SOURCE), "-4", "-s", str(sessions), "-m", str(messages), "-r", "1",
        "-l", "2048", "-f", SENDER, "-t", RECIPIENT, "-M", "bench.example",
        f"127.0.0.1:{port}",
    ]  # fmt: skip
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, capture_output=True, timeout=600)


def phase(pf: PostfixInstance, port: int, messages: int, sessions: int) -> float:
    """Messages per second from starting smtp-source until every message is in the sink."""
    pf.clear_sink()
    start = time.perf_counter()
    smtp_source(port, messages, sessions)
    if not wait_until(lambda: len(pf.sink_files()) >= messages, 60, 0.005):
        raise RuntimeError(f"only {len(pf.sink_files())} of {messages} messages reached the sink")
    elapsed = time.perf_counter() - start
    if len(pf.sink_files()) != messages:
        raise RuntimeError(f"{len(pf.sink_files())} messages in the sink, {messages} sent")
    return messages / elapsed


class Proxy:
    """``mailguard proxy`` as a user runs it, relaying to the sink."""

    def __init__(
        self, workdir: Path, sink_port: int, workers: int, tree: Path | None = None
    ) -> None:
        """``tree``: another build's ``mailguard/`` and ``rules/`` (``--baseline-ref``)."""
        self.port = free_ports(1)[0]
        workdir = workdir / ("baseline" if tree else "proxy")
        workdir.mkdir(exist_ok=True)
        env = {**os.environ, "PYTHONPATH": str(tree)} if tree else None
        config = workdir / "mailguard.toml"
        config.write_text('[proxy]\non_block = "split"\non_warn = "split"\n')
        self.log = workdir / "proxy.log"
        argv = [
            sys.executable, "-m", "mailguard", "proxy", "--config", str(config),
            "--listen", f"127.0.0.1:{self.port}", "--relay", f"127.0.0.1:{sink_port}",
            "--relay-security", "none", "--journal", str(workdir / "journal.sqlite"),
            "--workers", str(workers),
        ]  # fmt: skip
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         cwd=workdir, env=env)  # fmt: skip
        if not wait_until(lambda: port_open(self.port) or self.proc.poll() is not None, 30):
            raise RuntimeError("the proxy did not start:\n" + self.log.read_text()[-2000:])
        if self.proc.poll() is not None:
            raise RuntimeError("the proxy exited:\n" + self.log.read_text()[-2000:])

    def cpu(self) -> float:
        """CPU seconds of the proxy and its worker processes (with --workers)."""
        pids = [self.proc.pid]
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and h.parent_of(int(entry.name)) == self.proc.pid:
                pids.append(int(entry.name))
        return sum(h.process_cpu(pid) for pid in pids)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)


def split_run(pf: PostfixInstance, proxy: Proxy, n: int) -> float:
    """Seconds from sendmail to the proxy's 250 for one n-recipient message it splits."""
    rcpts = [f"starter{i}@gmail.com" for i in range(n)]
    folded = ",\r\n ".join(rcpts)
    raw = (
        f"From: hr@serviceco.example\r\nTo: {folded}\r\nSubject: welcome\r\n"
        f"Message-ID: <{time.time()}@serviceco.example>\r\n\r\n" + "Welcome aboard.\r\n" * 60
    ).encode()
    pf.clear_sink()
    with smtplib.SMTP("127.0.0.1", proxy.port, timeout=60) as client:
        start = time.perf_counter()
        refused = client.sendmail("hr@serviceco.example", rcpts, raw)
        elapsed = time.perf_counter() - start
    copies = len(pf.sink_files())
    if refused or copies != n:
        raise RuntimeError(f"split: {copies} copies in the sink, {len(refused)} refused")
    return elapsed


def run_phases(
    pf: PostfixInstance, proxies: dict[str, Proxy], rounds: int, messages: int,
    output: h.Output,
) -> tuple[dict[str, list[float]], dict[str, float]]:  # fmt: skip
    """Messages per second of every phase by side, and each proxy's CPU per message (ms)
    over its own phases. The order of the sides turns round by round."""
    sides = ["direct", *proxies]
    rates: dict[str, list[float]] = {side: [] for side in sides}
    cpu_s = dict.fromkeys(proxies, 0.0)
    for running in proxies.values():
        smtp_source(running.port, 20, 2)  # warm-up: imports, the first upstream connections
    for r in range(rounds):
        for side in sides if r % 2 == 0 else sides[::-1]:
            proxy = proxies.get(side)
            before = proxy.cpu() if proxy else 0.0
            rates[side].append(phase(pf, proxy.port if proxy else pf.sink_port, messages,
                                     SESSIONS))  # fmt: skip
            if proxy:
                cpu_s[side] += proxy.cpu() - before
            output.progress(f"round {r + 1} {side}: {rates[side][-1]:,.0f} msg/s")
    return rates, {side: s * 1000 / (rounds * messages) for side, s in cpu_s.items()}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    h.common_arguments(ap, "200 messages, 1 round: a smoke run", seed=False)
    ap.add_argument("--rounds", type=int, help=f"A/B rounds (default {ROUNDS}; --quick 1)")
    ap.add_argument("--messages", type=int, help=f"messages per phase (default {MESSAGES:,})")
    ap.add_argument("--baseline-ref", help="also run this git ref's proxy (e.g. main)")
    ap.add_argument(
        "--workers",
        type=int,
        default=1,
        help="proxy processes (mailguard proxy --workers; default 1, the proxy's own)",
    )
    args = ap.parse_args(argv)
    quick = QUICK if args.quick else {}
    rounds = args.rounds or quick.get("rounds", ROUNDS)
    messages = args.messages or quick.get("messages", MESSAGES)
    workers = max(1, args.workers)
    output = h.Output(args.json)
    say = output.say
    if os.geteuid() != 0:
        print("bench_proxy.py needs root: a private Postfix instance does", file=sys.stderr)
        return 2
    ensure_postfix_installed()
    say(f"mailguard proxy benchmark - {h.machine()}, load average {os.getloadavg()[0]:.2f}")
    say(f"smtp-source: {SESSIONS} sessions, {messages:,} clean 2 KB messages per phase, "
        f"{rounds} round(s) alternating direct / through the proxy ({workers} worker(s))"
        + ("; QUICK run" if args.quick else ""))  # fmt: skip
    workdir = Path(tempfile.mkdtemp(prefix="mailguard-bench-proxy-"))
    base_tree = baseline_tree(args.baseline_ref, workdir / "tree") if args.baseline_ref else None
    h.stop_on_sigterm()
    with PostfixInstance() as pf:
        proxies = {"proxy": Proxy(workdir, pf.sink_port, workers)}
        try:
            if base_tree is not None:
                proxies["baseline"] = Proxy(workdir, pf.sink_port, workers, base_tree)
            rates, cpu = run_phases(pf, proxies, rounds, messages, output)
            proxy = proxies["proxy"]
            split_s = [
                split_run(pf, proxy, SPLIT_RECIPIENTS) for _ in range(3 if not args.quick else 1)
            ]
            if any(p.proc.poll() is not None for p in proxies.values()):
                raise RuntimeError("the proxy died")
        except (RuntimeError, subprocess.SubprocessError, OSError, smtplib.SMTPException) as exc:
            print(f"invalid run: {exc}", file=sys.stderr)
            return 1
        finally:
            for running in proxies.values():
                running.stop()
    direct, proxied, cpu_ms = rates["direct"], rates["proxy"], cpu["proxy"]
    med_direct, med_proxy = statistics.median(direct), statistics.median(proxied)
    share = h.ratio(med_proxy, med_direct)
    say()
    h.table(say, [
        h.Column("", "label", "<34"), h.Column("median msg/s", "median", ">14,.0f"),
        h.Column("best msg/s", "best", ">12,.0f"), h.Column("x direct", "ratio", ">10.2f"),
    ], [
        {"label": "smtp-source -> smtp-sink (direct)", "median": med_direct, "best": max(direct),
         "ratio": 1.0},
        {"label": "smtp-source -> mailguard proxy -> sink", "median": med_proxy,
         "best": max(proxied), "ratio": share},
    ] + ([{"label": f"  the same through {args.baseline_ref}'s proxy",
           "median": statistics.median(rates["baseline"]), "best": max(rates["baseline"]),
           "ratio": h.ratio(statistics.median(rates["baseline"]), med_direct)}]
         if "baseline" in rates else []))  # fmt: skip
    best_share = h.ratio(max(proxied), max(direct))
    say(f"best vs best: {best_share * 100:.0f} % (less sensitive to other work on the machine)")
    say(f"proxy CPU per clean message: {cpu_ms:.2f} ms"
        + (f" ({args.baseline_ref}'s proxy: {cpu['baseline']:.2f} ms)" if "baseline" in cpu
           else ""))  # fmt: skip
    shown = ", ".join(f"{s:.2f}" for s in split_s)
    say(f"{SPLIT_RECIPIENTS}-recipient split, all copies accepted by the sink: "
        f"median {statistics.median(split_s):.2f} s (runs: {shown})")  # fmt: skip
    targets = [
        h.target(">= 50 % of direct throughput (10 clients)", round(share * 100, 1), 50,
                 share >= 0.5),
        h.target(f"{SPLIT_RECIPIENTS}-recipient split delivered in < 2 s",
                 round(statistics.median(split_s), 2), 2, statistics.median(split_s) < 2),
    ]  # fmt: skip
    h.print_targets(say, targets, note="shared 2-core VM" if os.cpu_count() == 2 else "")
    figures: dict[str, Any] = {
        "quick": args.quick, "sessions": SESSIONS, "messages_per_phase": messages,
        "rounds": rounds, "workers": workers, "direct_msg_per_s": direct,
        "proxy_msg_per_s": proxied,
        "ratio_median": share, "ratio_best": best_share, "proxy_cpu_ms_per_msg": cpu_ms,
        "split_recipients": SPLIT_RECIPIENTS, "split_s": split_s, "targets": targets,
    }  # fmt: skip
    if "baseline" in rates:
        figures.update(baseline_ref=args.baseline_ref, baseline_msg_per_s=rates["baseline"],
                       baseline_cpu_ms_per_msg=cpu["baseline"])  # fmt: skip
    output.finish(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
