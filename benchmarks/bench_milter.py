"""Load benchmark: Postfix with and without the mailguard milter, in one run.

Why this exists: a milter sits in the SMTP transaction, so every message a user sends waits
for it. The issue asks that putting mailguard in front of Postfix costs little:

* with the milter, Postfix passes >= 88 % of the clean-mail throughput it manages without it
  (Postfix's ``smtp-source``, 20 sessions, 2,000 messages per phase);
* the milter decides a message with 300 recipients in Cc in < 5 ms at p99;
* with ``on_block = "rewrite"`` the decision plus the edit (plan, re-check, header frames)
  for that message stays under 5 ms at p99 too: a second milter process with that setting
  serves the rewrite phases, and the rewritten messages must reach the sink with nobody
  in To/Cc.

A third arm puts ``null_milter.py`` in the milter slot: it negotiates what mailguard does and
decides nothing, so Postfix does all of its own milter work. Its throughput is the floor no
milter reading the same frames can beat here, and "mailguard / null milter" is the part of
the cost that is mailguard's own.

One private Postfix instance (``tests/support/postfix.py``: loopback only, relaying to its own
``smtp-sink``) and one ``mailguard milter`` process (default settings, ``--no-config``) serve
the whole run. Postfix is switched between "no milter" and "mailguard" with ``postfix reload``;
the phases alternate (A B, B A, A B, ...) so that drift on a shared machine hits both alike,
and the best and median of ``--rounds`` rounds are reported. A phase's time runs from starting
``smtp-source`` until the last message reached the sink (and smtp-source has exited).

Decision time is the milter's own ``ms=`` field of its per-decision log line: from the end of
the message received to the reply written, i.e. parsing and the rules (plus any wait for a CPU),
under the same 20-session load, and again with one session for comparison. The 300-recipient
message is refused (550 5.7.1) by the milter, which is what it is for; it is still a decision.

Run from the repository root, as root (Postfix needs it)::

    python benchmarks/bench_milter.py             # 3 rounds of 2 x 2,000 messages (~1 min)
    python benchmarks/bench_milter.py --quick     # 200 messages, 1 round: a smoke run
    python benchmarks/bench_milter.py --inet      # milter on 127.0.0.1 TCP, not a unix socket
    python benchmarks/bench_milter.py --json      # table on stderr, figures as JSON on stdout

The exit status is 0 whether or not a target is met (this is a measurement, not a test); it
is 1 when the run itself is invalid (a message missing from the sink, a decision missing or
wrong, the milter died), 2 when the environment cannot run it (not root, no Postfix).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _harness as h  # the benchmarks' shared harness (same directory); puts the repo on sys.path

from tests.support.postfix import PostfixInstance, ensure_postfix_installed
from tests.support.synth import CC300_RECIPIENTS, cc300_message, clean_message

SMTP_SOURCE = Path("/usr/sbin/smtp-source")
POSTCONF = Path("/usr/sbin/postconf")

# Load shape from the issue.
MESSAGES = 2_000
SESSIONS = 20
ROUNDS = 3
CC300_IN_LOAD_DIVISOR = 10
"""300-Cc messages sent (over one session) during a clean load: 1 per 10 clean ones."""
SERIAL_MESSAGES = 200
"""Messages of each kind sent over one session alone: decision time without queueing."""
CC300_BURST = 500
"""300-Cc messages over all sessions at once: decisions queue behind each other."""
WARMUP_MESSAGES = 200
WARMUP_CC300 = 20

# --quick: enough to exercise every phase and check, in a few seconds.
QUICK = {
    "messages": 200, "rounds": 1, "serial": 40, "cc300_burst": 100, "warmup": 20,
    "warmup_cc300": 5,
}  # fmt: skip

MILTER_NICE = -10
"""The milter's share of the CPU, as ``examples/milter/mailguard-milter.service`` gives it
(``CPUWeight=1000``, ``Nice=-10``): here its own session (a service manager starts every
service in one, so it has its own autogroup, as Postfix's master has) at autogroup nice
-10, about the same 9-to-1 weight. ``--no-priority`` runs it as any child of this script."""

# Targets from the issue.
TARGET_RATIO = 0.88
TARGET_CC300_P99_MS = 5.0

SENDER = "alice@example.test"
RECIPIENT = "bob@example.test"
CC300_SENDER = "hr@serviceco.example"
HELO = "client.example.test"

_DECISION = re.compile(r" decision (.*)$", re.MULTILINE)
_FIELD = re.compile(r"(\w+)=('[^']*'|\S+)")
_LISTENING = re.compile(r"listening on inet:127\.0\.0\.1:(\d+)")
_REWRITTEN = b"\nTo: undisclosed-recipients:;\nX-Mailguard-Action: rewritten; "
REWRITE_CONFIG = '[milter]\non_block = "rewrite"\n'
_MILTER_REJECT = re.compile(r"milter-reject: END-OF-MESSAGE .*: 5\.7\.1 mailguard: ")


NO_MILTER, MAILGUARD, REFERENCE = "no milter", "with mailguard", "null milter"
ARMS = (NO_MILTER, MAILGUARD, REFERENCE)
"""What sits in Postfix's milter slot in the throughput rounds: nothing, mailguard, or
``null_milter.py``, which makes Postfix do all its milter work and does none of its own."""


class Broken(Exception):
    """The run is invalid: its figures would not mean what they claim."""


# --------------------------------------------------------------------------------------------
# CPU accounting from /proc
# --------------------------------------------------------------------------------------------


def postfix_cpu(master: int | None) -> float:
    """CPU seconds of a Postfix master and every daemon it ever ran.

    Exited daemons are in the master's cutime/cstime (it reaps them); live ones are read
    directly, so a daemon that exits between two readings is counted once either way.
    """
    if master is None:
        return 0.0
    total = h.process_cpu(master, children=True)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and h.parent_of(int(entry.name)) == master:
            total += h.process_cpu(int(entry.name), children=True)
    return total


def find_pid(needle: str) -> int | None:
    """The live process whose command line contains ``needle`` (smtp-sink: its dump dir)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if needle.encode() in (entry / "cmdline").read_bytes():
                return int(entry.name)
    return None


@dataclass
class CpuMeter:
    """Snapshots of who used the CPU: Postfix, the milter, smtp-sink, smtp-source, the box."""

    master: int | None
    milters: tuple[int | None, ...]
    """mailguard's process and the reference milter's: only the one in use works."""
    sink: int | None

    def snapshot(self) -> dict[str, float]:
        busy, total, irq = h.machine_cpu()
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        me = resource.getrusage(resource.RUSAGE_SELF)
        milter = sum(h.process_cpu(pid) for pid in self.milters)
        loop = sum(h.process_cpu(pid, thread=True) for pid in self.milters)
        return {
            "postfix": postfix_cpu(self.master),
            # The milter's main thread runs the asyncio loop (the protocol); its worker
            # threads run the engine (the rules).
            "milter_loop": loop,
            "milter_rules": milter - loop,
            "smtp_sink": h.process_cpu(self.sink),
            # smtp-source runs are this process's only children reaped during a phase.
            "smtp_source": children.ru_utime + children.ru_stime,
            "kernel_irq": irq,
            "this_script": me.ru_utime + me.ru_stime,
            "machine_busy": busy,
            "machine_total": total,
        }

    @staticmethod
    def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        d = {k: after[k] - before[k] for k in before}
        d["milter"] = d["milter_loop"] + d["milter_rules"]
        d["accounted"] = sum(d[k] for k in CPU_KEYS if k != "other")
        d["other"] = max(0.0, d["machine_busy"] - d["accounted"])
        return d


CPU_KEYS = (
    "postfix", "milter_loop", "milter_rules", "smtp_sink", "smtp_source", "kernel_irq",
    "this_script", "other",
)  # fmt: skip
"""Where a phase's CPU went; ``other`` is the rest of the machine's busy time (noise)."""


# --------------------------------------------------------------------------------------------
# The milter process
# --------------------------------------------------------------------------------------------


class Milter:
    """``mailguard milter`` in a subprocess, default settings, logging to a file."""

    def __init__(
        self,
        workdir: Path,
        *,
        inet: bool,
        config: str = "",
        priority: bool = True,
        reference: bool = False,
    ) -> None:
        self.workdir = workdir
        self.reference = reference
        """``null_milter.py`` (reads the same frames, decides nothing) instead of mailguard."""
        self.priority = priority
        """Run it with the CPU share the shipped unit gives it (:data:`MILTER_NICE`)."""
        self.config = config
        """A mailguard.toml for the rewrite phases; empty: ``--no-config`` (defaults)."""
        name = "null-milter" if reference else "milter"
        self.log_path = workdir / f"{name}.log"
        self.sock_path = workdir / f"{name}.sock"
        self.inet = inet
        self.proc: subprocess.Popen[bytes] | None = None
        self.spec = ""

    def start(self, timeout: float = 20.0) -> None:
        listen = "inet:127.0.0.1:0" if self.inet else f"unix:{self.sock_path}"
        env = {**os.environ, "PYTHONPATH": str(h.REPO)}
        env.pop("MAILGUARD_REDACT_KEY", None)
        argv = [
            sys.executable, "-c", "from mailguard.cli import main; main()",
            "milter", "--listen", listen, "--no-config", "--socket-mode", "666",
            "--log-level", "info",
        ]  # fmt: skip
        if self.reference:
            argv = [sys.executable, str(Path(__file__).with_name("null_milter.py")), listen]
        elif self.config:
            (self.workdir / "mailguard.toml").write_text(self.config)
            argv[argv.index("--no-config")] = f"--config={self.workdir / 'mailguard.toml'}"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                argv, cwd=self.workdir, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=self.priority,
            )  # fmt: skip
        if self.priority:
            raise_priority(self.proc.pid)
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            if time.monotonic() > deadline:
                raise Broken(f"the milter is not listening after {timeout:g} s:\n{self.tail()}")
            if self.inet:
                match = _LISTENING.search(self.log())
                if match:  # port 0: the kernel picked one and the milter logged it
                    self.spec = f"inet:127.0.0.1:{match.group(1)}"
                    return
            elif self.sock_path.exists() and self._connectable():
                self.spec = f"unix:{self.sock_path}"
                return
            time.sleep(0.02)

    def _connectable(self) -> bool:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(self.sock_path))
            except OSError:
                return False
        return True

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def check_alive(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            code = None if self.proc is None else self.proc.returncode
            raise Broken(f"the milter is not running (exit status {code}):\n{self.tail()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def log_size(self) -> int:
        return self.log_path.stat().st_size

    def log_since(self, offset: int) -> str:
        with self.log_path.open("rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def decisions_since(
        self, offset: int, expected: int, timeout: float = 10.0
    ) -> list[dict[str, str]]:
        """Decision log lines written after ``offset``, waiting up to ``timeout`` for
        ``expected`` of them (the line is written just after the reply)."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.log_since(offset)
            found = [dict(_parse_fields(m.group(1))) for m in _DECISION.finditer(text)]
            if len(found) >= expected or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        time.sleep(0.05)  # a line beyond the expected count would be a finding too
        text = self.log_since(offset)
        return [dict(_parse_fields(m.group(1))) for m in _DECISION.finditer(text)]

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def raise_priority(pid: int) -> None:
    """Give the process :data:`MILTER_NICE`: the weight of its autogroup (where the kernel
    groups by session) and its own nice (where it does not; threads started later inherit
    it). Either may be missing from a kernel; both failing makes the run invalid."""
    done = 0
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/autogroup").write_text(f"{MILTER_NICE}\n")
        done += 1
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, pid, MILTER_NICE)
        done += 1
    if not done:
        raise Broken(f"could not raise the milter's priority to {MILTER_NICE}")


def _parse_fields(text: str) -> Iterator[tuple[str, str]]:
    for key, value in _FIELD.findall(text):
        yield key, value.strip("'")


# --------------------------------------------------------------------------------------------
# Phases
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    """One smtp-source process: ``count`` messages of ``kind`` over ``sessions`` sessions."""

    kind: str
    """``clean`` (accepted and delivered) or ``cc300`` (refused by the milter)."""
    count: int
    sessions: int


@dataclass
class Phase:
    """One or more concurrent smtp-source runs and what they produced."""

    label: str
    loads: tuple[Load, ...]
    seconds: float
    """From starting smtp-source until the last message reached the sink and it exited."""
    submit_seconds: float
    """Until smtp-source exited (every message accepted or refused by smtpd)."""
    cpu: dict[str, float]
    delivered: int = 0
    """Messages that reached the sink."""
    decisions: list[dict[str, str]] = field(default_factory=list)

    @property
    def messages(self) -> int:
        return sum(load.count for load in self.loads)

    @property
    def sessions(self) -> int:
        return sum(load.sessions for load in self.loads)

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    @property
    def submit_rate(self) -> float:
        return self.messages / self.submit_seconds

    def count(self, kind: str) -> int:
        return sum(load.count for load in self.loads if load.kind == kind)

    def ms(self, kind: str) -> list[float]:
        """Decision times of one kind of message (told apart by their verdict)."""
        verdict = VERDICT[kind]
        return [float(d["ms"]) for d in self.decisions if d.get("verdict") == verdict]


VERDICT = {"clean": "pass", "cc300": "block"}
EXPECTED = {
    # What the milter's log line must say for each message: the milter really checked it.
    "clean": {"action": "accept", "verdict": "pass", "visible": "1", "rules": "-"},
    "cc300": {
        "action": "reject",
        "verdict": "block",
        "visible": str(CC300_RECIPIENTS + 1),
        "personal": str(CC300_RECIPIENTS),
        "rules": "MG101,MG102",
    },
}


class Bench:
    """Drives one Postfix instance and one milter through the phases."""

    def __init__(
        self,
        pf: PostfixInstance,
        milter: Milter,
        files: dict[str, Path],
        reference: Milter | None = None,
    ) -> None:
        self.pf = pf
        self.milter = milter
        self.reference = reference
        self.files = files
        pids = (milter.pid, reference.pid if reference is not None else None)
        self.meter = CpuMeter(pf.master_pid, pids, find_pid(str(pf.sink_dir)))
        self.in_use: str | None = None
        self.rewrite = bool(milter.config)
        """The milter rewrites 300-Cc messages (delivered, nobody visible) instead of refusing."""

    def use_milter(self, which: str) -> None:
        """Put ``which`` (one of :data:`ARMS`) in Postfix's milter slot."""
        if which != self.in_use:
            chosen = {MAILGUARD: self.milter, REFERENCE: self.reference}.get(which)
            self.pf.set_milter(chosen.spec if chosen is not None else None)
            self.in_use = which

    def _spawn(self, load: Load, errors: Path) -> subprocess.Popen[bytes]:
        argv = [
            str(SMTP_SOURCE), "-4", "-s", str(load.sessions), "-m", str(load.count), "-r", "1",
            "-F", str(self.files[load.kind]),
            "-f", CC300_SENDER if load.kind == "cc300" else SENDER,
            "-t", RECIPIENT, "-M", HELO,
        ]  # fmt: skip
        if load.kind == "cc300":
            argv.append("-A")  # the 5xx reply is expected: carry on with the next message
        argv.append(f"127.0.0.1:{self.pf.smtp_port}")
        with errors.open("wb") as err:
            return subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err
            )

    def run(self, label: str, *loads: Load, milter: str = MAILGUARD) -> Phase:
        """Send the loads at once; check every message was handled as it must be."""
        self.use_milter(milter)
        self.pf.wait_idle(60)
        self.pf.clear_sink()
        log_offset = self.milter.log_size()
        mark = self.pf.log_mark()
        errors = [self.milter.workdir / f"smtp-source.{i}.err" for i in range(len(loads))]
        timeout = 60 + sum(load.count for load in loads) / 20  # 20 msg/s: broken, not slow
        before = self.meter.snapshot()
        start = time.time()
        procs = [self._spawn(load, err) for load, err in zip(loads, errors, strict=True)]
        deadline = time.monotonic() + timeout
        try:
            for proc in procs:
                proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for proc in procs:
                proc.kill()
                proc.wait()
            raise Broken(f"{label}: smtp-source did not finish within {timeout:.0f} s") from None
        submitted = time.time()
        try:
            self.pf.wait_idle(120)
        except TimeoutError as exc:
            raise Broken(f"{label}: the queue did not drain: {exc}") from None
        after = self.meter.snapshot()
        sink = self.pf.sink_files()
        last = max((path.stat().st_mtime for path in sink), default=submitted)
        phase = Phase(
            label, loads, max(submitted, last) - start, submitted - start,
            CpuMeter.delta(before, after), delivered=len(sink),
        )  # fmt: skip
        for proc, err in zip(procs, errors, strict=True):
            if proc.returncode != 0:
                raise Broken(
                    f"{label}: smtp-source exited {proc.returncode}:\n{_tail(err.read_text())}"
                    f"\nmaillog tail:\n{_tail(self.pf.maillog())}"
                )
        refusals = sum(err.read_text().count("end of data rejected: 550 5.7.1") for err in errors)
        self._check(phase, sink, refusals, log_offset, mark, milter=milter)
        return phase

    def _check(
        self,
        phase: Phase,
        sink: list[Path],
        refusals: int,
        log_offset: int,
        mark: int,
        *,
        milter: str,
    ) -> None:
        label = phase.label
        self.milter.check_alive()
        if self.reference is not None:
            self.reference.check_alive()
        queued = self.pf.queue_counts()
        if any(queued.values()):
            raise Broken(f"{label}: mail left in the queue: {queued}")
        clean, cc300 = phase.count("clean"), phase.count("cc300")
        rewritten = cc300 if self.rewrite else 0
        if phase.delivered != clean + rewritten:
            raise Broken(f"{label}: {phase.delivered} messages reached the sink, {clean} expected")
        for path in sink:  # the sink really got our messages, relayed by our Postfix
            data = path.read_bytes()
            if b"Subject: Minutes from Tuesday" in data and b"(Postfix)" in data:
                continue
            head = data.partition(b"\n\n")[0]
            if self.rewrite and _REWRITTEN in head and b"@gmail" not in head:
                continue  # a 300-Cc message with nobody left in To/Cc
            raise Broken(f"{label}: unexpected message in the sink:\n{data[:600]!r}")
        if self.rewrite:
            cc300 = 0  # none refused, none in the maillog's milter-reject lines
        if refusals != cc300:
            raise Broken(f"{label}: smtp-source saw {refusals} refusals, {cc300} expected")
        expected = phase.messages if milter == MAILGUARD else 0
        phase.decisions = self.milter.decisions_since(log_offset, expected)
        if len(phase.decisions) != expected:
            raise Broken(
                f"{label}: {len(phase.decisions)} milter decisions, {expected} expected"
                f" (milter slot: {milter})"
            )
        for d in phase.decisions:
            want = EXPECTED["cc300" if d.get("verdict") == "block" else "clean"]
            if self.rewrite and d.get("verdict") == "block":
                want = {**want, "action": "rewrite", "visible_after": "0"}
            wrong = {k: d.get(k) for k, v in want.items() if d.get(k) != v}
            if wrong:
                raise Broken(f"{label}: decision {d} differs from {want} in {wrong}")
        for kind in ("clean", "cc300"):
            got = sum(1 for d in phase.decisions if d.get("verdict") == VERDICT[kind])
            if milter == MAILGUARD and got != phase.count(kind):
                raise Broken(f"{label}: {got} {kind} decisions, {phase.count(kind)} sent")
        if cc300:  # postlogd writes asynchronously: give the last lines a moment
            deadline = time.monotonic() + 5
            while True:
                rejects = len(_MILTER_REJECT.findall(self.pf.maillog(), mark))
                if rejects >= cc300 or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            if rejects != cc300:
                raise Broken(f"{label}: {rejects} milter-reject lines in the maillog, {cc300} sent")


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------


def latency(phase: Phase, kind: str) -> dict[str, Any]:
    """p50/p99/max of one kind's decision times in one phase."""
    ms = phase.ms(kind)
    return {
        "sent": phase.count(kind),
        "decisions": len(ms),
        "load": ", ".join(f"{ld.count:,} {ld.kind} x {ld.sessions} sessions" for ld in phase.loads),
        "p50_ms": round(h.percentile(ms, 50), 3),
        "p99_ms": round(h.percentile(ms, 99), 3),
        "max_ms": round(max(ms), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
    }


def merged_latency(phases: Sequence[Phase], kind: str) -> dict[str, Any]:
    """Like :func:`latency`, over the decisions of several phases (the A/B rounds)."""
    merged = Phase(
        "merged", phases[0].loads, 1.0, 1.0, {},
        decisions=[d for ph in phases for d in ph.decisions],
    )  # fmt: skip
    result = latency(merged, kind)
    result["load"] = f"{len(phases)} x ({result['load']})"
    return result


def throughput(phases: Sequence[Phase]) -> dict[str, Any]:
    """Rates of the A (or B) phases of every round, and CPU per message."""
    rates = [ph.rate for ph in phases]
    per_msg = {
        k: round(statistics.median(ph.cpu[k] / ph.messages * 1e6 for ph in phases), 1)
        for k in (*CPU_KEYS, "milter", "accounted", "machine_busy")
    }
    busy = [ph.cpu["machine_busy"] / ph.cpu["machine_total"] for ph in phases]
    return {
        "runs_msg_per_s": [round(r, 1) for r in rates],
        "best_msg_per_s": round(max(rates), 1),
        "median_msg_per_s": round(statistics.median(rates), 1),
        "submit_median_msg_per_s": round(statistics.median(ph.submit_rate for ph in phases), 1),
        "median_seconds": round(statistics.median(ph.seconds for ph in phases), 3),
        "cpu_us_per_msg": per_msg,
        "machine_busy_pct": round(100 * statistics.median(busy), 1),
        "sent": [ph.messages for ph in phases],
        "delivered": [ph.delivered for ph in phases],
        "decisions": [len(ph.decisions) for ph in phases],
    }


def cpu_us(phase: Phase, key: str) -> float:
    """CPU microseconds per message of one process (group) in one phase."""
    return round(phase.cpu[key] / phase.messages * 1e6, 1)


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------


def _postfix_version() -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            [str(POSTCONF), "-d", "-h", "mail_version"],
            capture_output=True, text=True, timeout=10, check=False,
        )  # fmt: skip
        return out.stdout.strip() or "?"
    return "?"


@dataclass
class Results:
    """Every phase of one run, for :func:`report`."""

    rounds: dict[str, list[Phase]]
    """Clean-load phases by what was in the milter slot (:data:`ARMS`), in round order."""
    cc300_in_load: Phase
    cc300_alone: Phase
    clean_alone: Phase
    cc300_burst: Phase
    rewrite_in_load: Phase | None = None
    """300-Cc messages rewritten (``on_block = "rewrite"``) amid the clean load."""
    rewrite_alone: Phase | None = None


def measure(
    bench: Bench,
    *,
    rounds: int,
    messages: int,
    sessions: int,
    sizes: dict[str, int],
    progress: Callable[[str], None],
) -> Results:
    """All phases, in an order that keeps drift from favouring either side of the ratio."""
    warm = Load("clean", sizes["warmup"], sessions), Load("cc300", sizes["warmup_cc300"], 1)
    progress(f"warm-up: {warm[0].count} clean and {warm[1].count} 300-Cc messages, milter on")
    bench.run("warm-up", *warm)

    if bench.reference is not None:
        progress(f"warm-up: {warm[0].count} clean messages, null milter")
        bench.run("warm-up, null milter", warm[0], milter=REFERENCE)

    arms = ARMS if bench.reference is not None else (NO_MILTER, MAILGUARD)
    runs: dict[str, list[Phase]] = {arm: [] for arm in arms}
    for r in range(rounds):
        for arm in arms if r % 2 == 0 else arms[::-1]:
            progress(f"round {r + 1}/{rounds}: {arm}, {messages:,} messages")
            load = Load("clean", messages, sessions)
            runs[arm].append(bench.run(f"round {r + 1}, {arm}", load, milter=arm))

    mixed = Load("clean", messages, sessions), Load("cc300", sizes["cc300_in_load"], 1)
    progress(
        f"{mixed[1].count} 300-Cc messages over 1 session during {messages:,} clean ones "
        f"over {sessions}"
    )
    in_load = bench.run("300 Cc during clean load", *mixed)
    progress(f"{sizes['serial']} 300-Cc, then {sizes['serial']} clean messages over 1 session")
    cc_alone = bench.run("300 Cc, 1 session", Load("cc300", sizes["serial"], 1))
    clean_alone = bench.run("clean, 1 session", Load("clean", sizes["serial"], 1))
    progress(f"{sizes['cc300_burst']} 300-Cc messages over {sessions} sessions")
    burst = bench.run("300 Cc burst", Load("cc300", sizes["cc300_burst"], sessions))
    return Results(runs, in_load, cc_alone, clean_alone, burst)


def measure_rewrite(
    pf: PostfixInstance,
    workdir: Path,
    files: dict[str, Path],
    *,
    inet: bool,
    priority: bool,
    messages: int,
    sessions: int,
    sizes: dict[str, int],
    progress: Callable[[str], None],
) -> tuple[Phase, Phase]:
    """The rewrite case: a second milter, ``on_block = "rewrite"``, in Postfix's milter slot.

    The same 300-Cc message, sent the same ways as the refused one; each must now reach the
    sink with ``To: undisclosed-recipients:;`` and no address of the 300 in its header.
    """
    sub = workdir / "rewrite"
    sub.mkdir()
    sub.chmod(0o755)
    milter = Milter(sub, inet=inet, config=REWRITE_CONFIG, priority=priority)
    try:
        milter.start()
        bench = Bench(pf, milter, files)
        progress(f"rewrite: {sizes['warmup_cc300']} 300-Cc messages to warm up, milter on")
        bench.run("rewrite warm-up", Load("cc300", sizes["warmup_cc300"], 1))
        mixed = Load("clean", messages, sessions), Load("cc300", sizes["cc300_in_load"], 1)
        progress(f"rewrite: {mixed[1].count} 300-Cc messages during {messages:,} clean ones")
        in_load = bench.run("300 Cc rewritten during clean load", *mixed)
        progress(f"rewrite: {sizes['serial']} 300-Cc messages over 1 session")
        alone = bench.run("300 Cc rewritten, 1 session", Load("cc300", sizes["serial"], 1),
                          )  # fmt: skip
        milter.check_alive()
    except Broken as exc:
        raise Broken(f"{exc}\nrewrite milter log tail:\n{milter.tail()}") from None
    finally:
        status = milter.stop()
    if status != 0:
        raise Broken(f"the rewrite milter exited {status} on SIGTERM")
    return in_load, alone


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    h.common_arguments(ap, "200 messages, 1 round: a smoke run", seed=False)
    ap.add_argument(
        "--inet", action="store_true", help="milter on TCP 127.0.0.1 instead of a unix socket"
    )
    ap.add_argument("--rounds", type=int, help=f"A/B rounds (default {ROUNDS}; --quick 1)")
    ap.add_argument("--messages", type=int, help=f"clean messages per phase (default {MESSAGES:,})")
    ap.add_argument(
        "--sessions", type=int, default=SESSIONS, help=f"parallel sessions (default {SESSIONS})"
    )
    ap.add_argument(
        "--keep", action="store_true", help="keep the milter log and the maillog (path printed)"
    )
    ap.add_argument(
        "--no-priority",
        action="store_true",
        help=f"run the milter without the CPU share of the shipped unit (nice {MILTER_NICE})",
    )
    args = ap.parse_args(argv)
    quick = QUICK if args.quick else {}
    rounds = args.rounds if args.rounds is not None else quick.get("rounds", ROUNDS)
    messages = args.messages if args.messages is not None else quick.get("messages", MESSAGES)
    sessions = args.sessions
    if min(rounds, messages, sessions) < 1:
        ap.error("--rounds, --messages and --sessions must be at least 1")
    sizes = {
        "warmup": quick.get("warmup", WARMUP_MESSAGES),
        "warmup_cc300": quick.get("warmup_cc300", WARMUP_CC300),
        "cc300_in_load": max(1, messages // CC300_IN_LOAD_DIVISOR),
        "serial": quick.get("serial", SERIAL_MESSAGES),
        "cc300_burst": quick.get("cc300_burst", CC300_BURST),
    }

    output = h.Output(args.json)
    say, progress = output.say, output.progress

    if os.geteuid() != 0:
        print("bench_milter.py needs root: a private Postfix instance does", file=sys.stderr)
        return 2
    try:
        ensure_postfix_installed()
    except RuntimeError as exc:
        print(f"Postfix is not available: {exc}", file=sys.stderr)
        return 2
    if not SMTP_SOURCE.exists():
        print(f"{SMTP_SOURCE} is missing (Debian package postfix)", file=sys.stderr)
        return 2

    # The milter's socket and log live where smtpd (user postfix) can reach them.
    workdir = Path(tempfile.mkdtemp(prefix="mailguard-bench-milter-", dir="/var/tmp"))
    workdir.chmod(0o755)
    texts = {"clean": clean_message(SENDER, RECIPIENT), "cc300": cc300_message(CC300_SENDER)}
    files = {kind: workdir / f"{kind}.eml" for kind in texts}
    for kind, text in texts.items():
        files[kind].write_text(text)
    # On the wire every LF is a CRLF.
    wire = {kind: len(text.encode()) + text.count("\n") for kind, text in texts.items()}
    socket_kind = "TCP socket on 127.0.0.1" if args.inet else "unix socket"

    say(
        f"mailguard milter load benchmark - Postfix {_postfix_version()}, "
        f"Python {platform.python_version()}, {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start"
    )
    say(
        f"smtp-source: {sessions} sessions, {messages:,} clean messages "
        f"({wire['clean'] / 1000:.1f} KB) per phase, {rounds} round{'s' if rounds != 1 else ''}"
        f" alternating no milter / mailguard / a null milter; milter on a {socket_kind},"
        " default settings" + ("; QUICK run" if args.quick else "")
    )
    say(
        "milter CPU share: as this script's other children (--no-priority)"
        if args.no_priority
        else f"milter CPU share: own session, nice {MILTER_NICE} (as the shipped systemd unit:"
        " CPUWeight=1000, Nice=-10)"
    )

    milter = Milter(workdir, inet=args.inet, priority=not args.no_priority)
    reference = Milter(workdir, inet=args.inet, priority=not args.no_priority, reference=True)
    figures: dict[str, Any] = {}
    uvloop = False
    status: int | None = None
    try:
        h.stop_on_sigterm()
        with PostfixInstance() as pf:
            progress(f"Postfix instance {pf.base}, smtpd on 127.0.0.1:{pf.smtp_port}")
            try:
                milter.start()
                progress(f"milter pid {milter.pid} on {milter.spec}")
                # The milter runs on uvloop when this Python has it (mailguard.milter.serving):
                # say which, since the event loop is a good part of the milter's CPU.
                uvloop = "uvloop is not installed" not in milter.log()
                say(f"milter event loop: {'uvloop' if uvloop else 'asyncio (no uvloop)'}")
                reference.start()
                progress(f"null milter pid {reference.pid} on {reference.spec}")
                bench = Bench(pf, milter, files, reference)
                results = measure(
                    bench, rounds=rounds, messages=messages, sessions=sessions, sizes=sizes,
                    progress=progress,
                )  # fmt: skip
                milter.check_alive()
                results.rewrite_in_load, results.rewrite_alone = measure_rewrite(
                    pf, workdir, files, inet=args.inet, priority=not args.no_priority,
                    messages=messages, sessions=sessions, sizes=sizes, progress=progress,
                )  # fmt: skip
            finally:
                if args.keep:
                    with contextlib.suppress(OSError):
                        shutil.copyfile(pf.maillog_path, workdir / "maillog")
    except Broken as exc:
        print(f"BROKEN BENCHMARK: {exc}", file=sys.stderr)
        print(f"milter log tail:\n{milter.tail()}", file=sys.stderr)
        return 1
    finally:
        status = milter.stop()
        reference.stop()
        if args.keep:
            progress(f"milter log, maillog and messages kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if status != 0:
        print(f"BROKEN BENCHMARK: the milter exited {status} on SIGTERM", file=sys.stderr)
        return 1

    figures = report(say, results, quick=args.quick, sessions=sessions, wire=wire)
    figures.update(
        quick=args.quick,
        socket="inet" if args.inet else "unix",
        event_loop="uvloop" if uvloop else "asyncio",
        milter_nice=0 if args.no_priority else MILTER_NICE,
        rounds=rounds,
        messages_per_phase=messages,
        sessions=sessions,
        message_bytes=wire,
    )
    output.finish(figures)
    return 0


def report(
    say: Callable[..., None], res: Results, *, quick: bool, sessions: int, wire: dict[str, int]
) -> dict[str, Any]:
    """Print the tables; return the figures for ``--json``."""
    arms = {arm: throughput(phases) for arm, phases in res.rounds.items()}
    without, with_ = arms[NO_MILTER], arms[MAILGUARD]
    null = arms.get(REFERENCE)
    ratio_median = h.ratio(with_["median_msg_per_s"], without["median_msg_per_s"])
    ratio_best = h.ratio(with_["best_msg_per_s"], without["best_msg_per_s"])
    paired = [
        b.rate / a.rate for a, b in zip(res.rounds[NO_MILTER], res.rounds[MAILGUARD], strict=True)
    ]
    rounds = len(paired)

    say()
    say("Throughput, msg/s (smtp-source start -> last message in the sink):")
    h.table(
        say,
        [
            h.Column("", "name", "<16"),
            *(h.Column(f"round {i + 1}", f"round{i}", ">10,.0f") for i in range(rounds)),
            h.Column("best", "best_msg_per_s", ">10,.0f"),
            h.Column("median", "median_msg_per_s", ">10,.0f"),
            h.Column("submit*", "submit_median_msg_per_s", ">10,.0f"),
            h.Column("CPU busy*", "machine_busy_pct", ">10.0f", "%"),
        ],
        (
            {"name": name, **t, **{f"round{i}": r for i, r in enumerate(t["runs_msg_per_s"])}}
            for name, t in arms.items()
        ),
        indent="  ",
    )
    say(
        f"  with/without: median {ratio_median:.1%}, best/best {ratio_best:.1%}; "
        f"per round {', '.join(f'{p:.1%}' for p in paired)}"
    )
    floor: dict[str, Any] = {}
    if null is not None:
        floor_median = h.ratio(null["median_msg_per_s"], without["median_msg_per_s"])
        floor_paired = [
            b.rate / a.rate
            for a, b in zip(res.rounds[NO_MILTER], res.rounds[REFERENCE], strict=True)
        ]
        of_floor = h.ratio(with_["median_msg_per_s"], null["median_msg_per_s"])
        say(
            f"  null milter/without: median {floor_median:.1%}; per round "
            f"{', '.join(f'{p:.1%}' for p in floor_paired)}: the most any milter reading these "
            "frames keeps here"
        )
        say(f"  with mailguard/null milter: median {of_floor:.1%}: what mailguard's own work costs")
        floor = {
            "null_milter": null,
            "floor_ratio_median": round(floor_median, 4),
            "floor_ratio_per_round": [round(p, 4) for p in floor_paired],
            "mailguard_of_floor_median": round(of_floor, 4),
        }
    say("  * submit: until smtp-source exited; CPU busy: whole machine, all cores, median round")
    cpu_ratio = without["cpu_us_per_msg"]["accounted"] / with_["cpu_us_per_msg"]["accounted"]
    say(
        f"  CPU per message without/with: {cpu_ratio:.1%} - what the ratio tends to when both"
        " sides are CPU-bound"
    )

    say()
    say("CPU per message, microseconds (median round; milter: event loop + rule threads):")
    cols = {
        "postfix": "Postfix", "milter_loop": "m. loop", "milter_rules": "m. rules",
        "smtp_sink": "sink", "smtp_source": "source", "kernel_irq": "irq",
        "this_script": "script", "accounted": "sum", "other": "other*",
    }  # fmt: skip
    say(f"  {'':<16}" + "".join(f"{title:>9}" for title in cols.values()))
    for name, t in arms.items():
        c = t["cpu_us_per_msg"]
        say(f"  {name:<16}" + "".join(f"{c[key]:>9,.0f}" for key in cols))
    cc_cpu = cpu_us(res.cc300_burst, "milter")
    added = with_["cpu_us_per_msg"]["accounted"] - without["cpu_us_per_msg"]["accounted"]
    say(
        f"  with the milter, a clean message costs {added:,.0f} us more CPU in all; "
        f"a 300-Cc message costs it {cc_cpu:,.0f} us"
    )
    say("  * other: CPU used meanwhile by processes outside this benchmark (noise)")

    decisions = {
        "clean": merged_latency(res.rounds[MAILGUARD], "clean"),
        "cc300": latency(res.cc300_in_load, "cc300"),
        "clean_1_session": latency(res.clean_alone, "clean"),
        "cc300_1_session": latency(res.cc300_alone, "cc300"),
        "cc300_burst": latency(res.cc300_burst, "cc300"),
    }
    if res.rewrite_in_load is not None and res.rewrite_alone is not None:
        decisions["cc300_rewrite"] = latency(res.rewrite_in_load, "cc300")
        decisions["cc300_rewrite_1_session"] = latency(res.rewrite_alone, "cc300")
    labels = {
        "clean": f"clean, {sessions} sessions",
        "cc300": "300 Cc amid clean load",
        "clean_1_session": "clean, alone",
        "cc300_1_session": "300 Cc, alone",
        "cc300_burst": f"300 Cc x {sessions} sessions",
        "cc300_rewrite": "300 Cc rewritten, in load",
        "cc300_rewrite_1_session": "300 Cc rewritten, alone",
    }
    say()
    say("Milter decision time, ms (its log's ms=: end of message received -> reply written):")
    say(f"  {'':<26}{'count':>8}{'p50':>9}{'p99':>9}{'max':>9}")
    for key, d in decisions.items():
        say(
            f"  {labels[key]:<26}{d['decisions']:>8,}{d['p50_ms']:>9.2f}{d['p99_ms']:>9.2f}"
            f"{d['max_ms']:>9.2f}"
        )
    say(
        f"  clean: {wire['clean'] / 1000:.1f} KB, accepted; 300 Cc: {wire['cc300'] / 1000:.1f} KB,"
        " refused (550 5.7.1), none delivered."
    )
    say(f"  amid clean load: 1 session of 300-Cc messages while {sessions} send clean ones;")
    say(f"  alone: 1 session and nothing else; x {sessions}: all sessions send 300-Cc messages.")
    say('  rewritten: on_block = "rewrite" (plan, re-check, header edits), delivered to the sink.')
    say(
        f"  a 300-Cc message takes {cc_cpu / 1000:.2f} ms of milter CPU in all (x {sessions}"
        " phase): a decision time above that was spent waiting for a CPU"
    )

    p99 = decisions["cc300"]["p99_ms"]
    targets = [
        h.target("with mailguard >= 88 % of the throughput without it (medians)",
                 round(ratio_median, 4), TARGET_RATIO, ratio_median >= TARGET_RATIO),
        h.target("300-recipient decision p99 < 5 ms (amid the clean load)", p99,
                 TARGET_CC300_P99_MS, p99 < TARGET_CC300_P99_MS),
    ]  # fmt: skip
    if "cc300_rewrite" in decisions:
        p99 = decisions["cc300_rewrite"]["p99_ms"]
        targets.append(h.target("300-recipient rewrite (decision + edit) p99 < 5 ms, in load",
                                p99, TARGET_CC300_P99_MS, p99 < TARGET_CC300_P99_MS))  # fmt: skip
    h.print_targets(say, targets, note="quick run: small samples" if quick else "", width=62)

    return {
        "python": platform.python_version(),
        "postfix": _postfix_version(),
        "cpu_count": os.cpu_count(),
        "throughput": {
            "no_milter": without,
            "with_milter": with_,
            "ratio_median": round(ratio_median, 4),
            "ratio_best": round(ratio_best, 4),
            "ratio_per_round": [round(p, 4) for p in paired],
            "cpu_ratio": round(cpu_ratio, 4),
            **floor,
        },
        "decisions": decisions,
        "refused": {
            name: {"sent": ph.count("cc300"), "delivered": ph.delivered - ph.count("clean")}
            for name, ph in (
                ("cc300", res.cc300_in_load),
                ("cc300_1_session", res.cc300_alone),
                ("cc300_burst", res.cc300_burst),
            )
        },
        "rewritten": {
            name: {"sent": ph.count("cc300"), "delivered": ph.delivered - ph.count("clean")}
            for name, ph in (
                ("cc300_rewrite", res.rewrite_in_load),
                ("cc300_rewrite_1_session", res.rewrite_alone),
            )
            if ph is not None
        },
        "milter_cpu_us_per_msg": {
            "clean": with_["cpu_us_per_msg"]["milter"],
            "cc300": cc_cpu,
        },
        "targets": targets,
        "all_targets_met": all(t["met"] for t in targets),
    }


if __name__ == "__main__":
    sys.exit(main())
