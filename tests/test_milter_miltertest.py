"""The milter from the MTA's side, with a client we did not write.

Debian's ``miltertest`` (OpenDKIM's Lua-scripted MTA side of the milter protocol) drives a
real ``mailguard milter`` process over TCP and over a unix socket. The scripts live in
``tests/milter_scripts``; ``common.lua`` there holds the shared helpers and the miltertest
quirks they work around. A script raises a Lua error on anything unexpected (its ``run``
wrapper prints it on stderr -- miltertest itself would exit 1 silently) and echoes its
observations, which the tests here check together with the milter's log: exactly one
``decision`` line per judged message, and never an address or a word of the message.

One test fails on purpose, because the milter has a bug:
``test_monitor_mode_never_refuses_when_the_decision_times_out``.

miltertest is a test dependency (``apt-get install miltertest``): without it these tests
fail, they do not skip.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import ROOT

SCRIPTS = Path(__file__).resolve().parent / "milter_scripts"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0

SENDER = "hr@serviceco.example"
COLLEAGUE = "colleague@serviceco.example"
SUBJECT = "SUBJECT-MARKER quarterly update"
BODY = "Hello all,\r\nBODY-MARKER the payroll details follow.\r\n"

#: Never in the milter's log: addresses, names, subject and body of the test messages.
PRIVATE = (
    "@",
    "gmail",
    "serviceco",
    "p1@",
    "colleague",
    "SUBJECT-MARKER",
    "quarterly",
    "BODY-MARKER",
    "payroll",
    "alice",
    "bob",
    "Not A Header",
)


@dataclass(frozen=True)
class Setup:
    config: str = "# defaults\n"
    """The mailguard.toml the milter is started with."""
    args: tuple[str, ...] = ()
    """Extra ``mailguard milter`` arguments."""
    unix: bool = False
    """Listen on a unix socket in the work directory instead of a TCP port."""
    slow: float = 0.0
    """Make every decision take this many seconds longer (to see progress frames)."""


#: The scripts drive whole messages to their end; ``early`` (defaults, but the attachment
#: rules off: with them on, no clean message can be settled by its header block, as a
#: single text part may hold a uuencoded file) is where decisions at end-of-headers are
#: tested (early.lua, negotiate_default.lua).
EOM = "[milter]\ndecide_at_headers = false\n"
NO_FILE_RULES = "".join(f"[rules.{c}]\nenabled = false\n" for c in ("MG601", "MG602", "MG603"))
SETUPS: dict[str, Setup] = {
    "early": Setup(NO_FILE_RULES),
    "default": Setup(EOM),
    "monitor": Setup(EOM, ("--mode", "monitor"), unix=True),
    "quarantine": Setup(EOM + 'on_block = "quarantine"\n'),
    "tempfail": Setup(EOM + 'on_block = "tempfail"\n'),
    "scope_all": Setup(EOM + 'scope = "all"\n'),
    "warn_reject": Setup(EOM + 'on_warn = "reject"\nadd_headers = "always"\n'),
    "monitor_timeout": Setup(
        EOM + 'mode = "monitor"\ndecision_timeout = 0.000001\ninline_header_bytes = 0\n'
    ),
    "slow": Setup(EOM + "progress_interval = 0.01\ninline_header_bytes = 0\n", slow=0.06),
}

#: Runs the CLI; with a delay, each decision first sleeps (test-only, in this subprocess).
_LAUNCH = """
import sys, time
delay = float(sys.argv.pop(1))
if delay:
    from mailguard.milter import server
    judge = server.MilterServer.judge
    def slow_judge(self, *args):
        time.sleep(delay)
        return judge(self, *args)
    server.MilterServer.judge = slow_judge
from mailguard.cli import main
main()
"""

_DECISION = re.compile(r" decision (.*)$")
_FIELD = re.compile(r"(\w+)=('[^']*'|\S+)")
_LISTENING = re.compile(r"listening on inet:127\.0\.0\.1:(\d+)")


def miltertest() -> str:
    path = shutil.which("miltertest")
    assert path is not None, "miltertest is not installed: apt-get install miltertest"
    return path


def decision_fields(line: str) -> dict[str, str]:
    match = _DECISION.search(line)
    assert match, line
    return {k: v.strip("'") for k, v in _FIELD.findall(match.group(1))}


def assert_private(text: str, where: str) -> None:
    for word in PRIVATE:
        assert word not in text, f"{word!r} appears in the milter log ({where}):\n{text}"


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    log: str
    """The milter's log lines written during this run."""

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()

    @property
    def decisions(self) -> list[dict[str, str]]:
        return [decision_fields(line) for line in self.log.splitlines() if " decision " in line]

    def expect_lines(self, *expected: str) -> None:
        """Each line appears in stdout, in this order."""
        lines = self.lines
        pos = 0
        for want in expected:
            assert want in lines[pos:], f"{want!r} not echoed (after line {pos}):\n{self.stdout}"
            pos = lines.index(want, pos) + 1


@dataclass
class Milter:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    config_path: Path
    sock_path: Path | None
    defines: dict[str, str] = field(default_factory=dict)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def run(
        self,
        script: str,
        *,
        decisions: int,
        check: bool = True,
        verbose: bool = False,
        **defines: str,
    ) -> Run:
        """Run one script; wait until the milter has logged ``decisions`` decisions for it."""
        assert self.proc.poll() is None, f"milter {self.name} died:\n{self.log()}"
        start = self.log_path.stat().st_size
        args = [miltertest(), "-s", str(SCRIPTS / script), "-D", f"scripts={SCRIPTS}"]
        if verbose:  # -vv: miltertest also prints every frame it reads ("cmd p, len 0")
            args.append("-vv")
        for key, value in {**self.defines, **defines}.items():
            args += ["-D", f"{key}={value}"]
        result = subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)
        # The milter writes the log line right after the reply: give it a moment to land.
        deadline = time.monotonic() + 3.0
        while True:
            with self.log_path.open("rb") as f:
                f.seek(start)
                new = f.read().decode("utf-8", "replace")
            if new.count(" decision ") >= decisions or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        time.sleep(0.05)
        with self.log_path.open("rb") as f:
            f.seek(start)
            new = f.read().decode("utf-8", "replace")
        run = Run(result.returncode, result.stdout, result.stderr, new)
        if check:
            assert result.returncode == 0, (
                f"miltertest -s {script} exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}\nmilter log:\n{new}"
            )
            assert f"PASS {Path(script).stem}" in run.lines, result.stdout
        assert self.proc.poll() is None, f"milter {self.name} died during {script}:\n{new}"
        assert len(run.decisions) == decisions, (
            f"expected {decisions} decision line(s) for {script}, got:\n{new}"
        )
        assert_private(new, script)
        return run

    def stop(self) -> int:
        """SIGTERM; the exit status (the milter must be gone within STOP_TIMEOUT)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return -9


def start_milter(name: str, workdir: Path, setup: Setup) -> Milter:
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "mailguard.toml"
    config_path.write_text(setup.config, encoding="utf-8")
    log_path = workdir / "milter.log"
    sock_path = workdir / "milter.sock"
    unix = setup.unix
    listen = f"unix:{sock_path}" if unix else "inet:127.0.0.1:0"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MAILGUARD_REDACT_KEY", None)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable, "-c", _LAUNCH, str(setup.slow),
                "milter", "--listen", listen, "--config", str(config_path),
                "--log-level", "info", *setup.args,
            ],
            cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
        )  # fmt: skip
    milter = Milter(name, proc, log_path, config_path, sock_path if unix else None)
    try:
        _wait_until_listening(milter)
    except BaseException:
        milter.stop()
        raise
    return milter


def _wait_until_listening(milter: Milter) -> None:
    proc, name, sock_path = milter.proc, milter.name, milter.sock_path
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        assert proc.poll() is None, f"milter {name} exited {proc.returncode}:\n{milter.log()}"
        assert time.monotonic() < deadline, f"milter {name} not listening:\n{milter.log()}"
        address: str | tuple[str, int]
        if sock_path is not None:
            family, address = socket.AF_UNIX, str(sock_path)
            milter.defines = {"sock": str(sock_path)}
        else:
            # Port 0: the kernel picks a free port and the milter logs it (no race).
            match = _LISTENING.search(milter.log())
            if match is None:
                time.sleep(0.02)
                continue
            family, address = socket.AF_INET, ("127.0.0.1", int(match.group(1)))
            milter.defines = {"port": match.group(1)}
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(address)
            except OSError:
                time.sleep(0.02)
                continue
        return


@pytest.fixture(scope="module")
def milters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Milter]]:
    """``milters(name)``: the running milter for ``SETUPS[name]``, started on first use."""
    base = tmp_path_factory.mktemp("milters")
    started: dict[str, Milter] = {}

    def get(name: str) -> Milter:
        if name not in started:
            started[name] = start_milter(name, base / name, SETUPS[name])
        return started[name]

    yield get
    problems = []
    for milter in started.values():
        status = milter.stop()
        log = milter.log()
        if status != 0:
            problems.append(f"milter {milter.name} exited {status} on SIGTERM:\n{log}")
        elif "INFO stopped" not in log:
            problems.append(f"milter {milter.name} did not log its shutdown:\n{log}")
        elif milter.sock_path is not None and milter.sock_path.exists():
            problems.append(f"milter {milter.name} left its socket {milter.sock_path} behind")
        try:
            assert_private(log, f"whole log of {milter.name}")
        except AssertionError as exc:
            problems.append(str(exc))
    assert not problems, "\n".join(problems)


def actions(run: Run) -> list[tuple[str, str]]:
    return [(d["queue_id"], d["action"]) for d in run.decisions]


def test_miltertest_is_installed():
    """The whole file depends on it; say so plainly instead of failing obscurely."""
    result = subprocess.run([miltertest(), "-V"], capture_output=True, text=True, check=False)
    assert result.returncode == 0
    assert "milter test facility" in result.stdout


# ---------------------------------------------------------------------------- 1 negotiation


def test_negotiation_asks_for_what_it_needs(milters):
    run = milters("early").run("negotiate_default.lua", decisions=1)
    wanted_actions = {"SMFIF_ADDHDRS", "SMFIF_CHGHDRS", "SMFIF_QUARANTINE", "SMFIF_SETSYMLIST"}
    # End-of-headers keeps its reply: it is where a settled message is decided, and where
    # out-of-scope mail is accepted, so MAIL needs none.
    wanted_options = {
        "SMFIP_NOHELO", "SMFIP_NOUNKNOWN", "SMFIP_NODATA", "SMFIP_NR_CONN", "SMFIP_NR_HELO",
        "SMFIP_NR_MAIL", "SMFIP_NR_RCPT", "SMFIP_NR_DATA", "SMFIP_NR_UNKN", "SMFIP_NR_HDR",
        "SMFIP_NR_BODY", "SMFIP_HDR_LEADSPC",
    }  # fmt: skip
    seen = {}
    for line in run.lines:
        kind, _, rest = line.partition(" ")
        if kind in ("action", "option"):
            name, value = rest.split()
            seen[name] = value == "true"
    assert len(seen) == 29, run.stdout
    requested = {name for name, on in seen.items() if on}
    assert requested == wanted_actions | wanted_options
    run.expect_lines("clean accept at end of headers", "PASS negotiate_default")
    assert actions(run) == [("QNEG1", "accept")]
    assert run.decisions[0]["at"] == "headers"


def test_negotiation_without_no_reply_flags_answers_every_step(milters):
    run = milters("default").run("negotiate_minimal.lua", decisions=2)
    run.expect_lines(
        "negotiated nothing that was not offered",
        "eom warn continue verdict=[warn]",
        "eom block replycode",
    )
    assert actions(run) == [("QMIN1", "accept"), ("QMIN2", "reject")]


def test_negotiation_takes_only_the_intersection_of_an_offer(milters):
    run = milters("default").run("negotiate_partial.lua", decisions=1)
    run.expect_lines("negotiated the intersection", "eom block replycode")
    assert actions(run) == [("QPART1", "reject")]


# ---------------------------------------------------------------------------- 2-5 verdicts


def test_block_is_rejected_without_edits(milters):
    run = milters("default").run("block.lua", decisions=1)
    run.expect_lines("eom block replycode", "PASS block")
    (d,) = run.decisions
    expected = {"queue_id": "QBLOCK1", "mode": "enforce", "action": "reject", "verdict": "block"}
    expected |= {"score": "85", "personal": "40", "rcpt": "41", "rules": "MG101,MG102,MG103"}
    assert {k: d[k] for k in expected} == expected


def test_several_messages_on_one_connection_are_independent(milters):
    run = milters("default").run("several_messages.lua", decisions=5)
    run.expect_lines(
        "message 1 clean continue",
        "message 2 block replycode",
        "message 3 clean continue",
        "message 4 warn continue",
        "message 5 clean continue",
    )
    assert actions(run) == [
        ("QSEV1", "accept"),
        ("QSEV2", "reject"),
        ("QSEV3", "accept"),
        ("QSEV4", "accept"),
        ("QSEV5", "accept"),
    ]
    assert [d["verdict"] for d in run.decisions] == ["pass", "block", "pass", "warn", "pass"]


def test_abort_in_the_middle_of_a_risky_message(milters):
    run = milters("default").run("abort_midway.lua", decisions=2)
    run.expect_lines(
        "aborted risky message after its headers",
        "eom clean continue",
        "eom clean-after-unfinished continue",
    )
    # Only the finished messages were judged; the aborted ones left no trace.
    assert actions(run) == [("QABORT2", "accept"), ("QABORT4", "accept")]
    assert [d["verdict"] for d in run.decisions] == ["pass", "pass"]


def test_warn_is_accepted_with_headers(milters):
    run = milters("default").run("warn.lua", decisions=1)
    # HDR_LEADSPC is negotiated, so the values carry the space after the colon.
    run.expect_lines(
        "X-Mailguard-Verdict: warn",
        "X-Mailguard-Score: 57",
        "X-Mailguard-Rules: MG101 MG102 MG103",
        "eom warn continue",
    )
    (d,) = run.decisions
    assert (d["action"], d["verdict"], d["score"]) == ("accept", "warn", "57")


def test_unreadable_message_gets_on_error_tempfail(milters):
    run = milters("default").run("unreadable.lua", decisions=1)
    run.expect_lines("eom unreadable replycode")
    (d,) = run.decisions
    assert (d["action"], d["verdict"], d["rules"]) == ("tempfail", "error", "MG001")


def test_queue_id_from_any_message_stage(milters):
    run = milters("default").run("queue_id.lua", decisions=3)
    run.expect_lines("eom block replycode, clean continue, clean continue")
    assert actions(run) == [("QEOM1", "reject"), ("-", "accept"), ("QEOH3", "accept")]


# ---------------------------------------------------------------------------- 6-8 settings


def test_monitor_mode_never_refuses(milters):
    milter = milters("monitor")
    assert milter.sock_path is not None
    assert milter.sock_path.stat().st_mode & 0o777 == 0o660  # --socket-mode default
    run = milter.run("monitor.lua", decisions=4)  # over the unix socket
    run.expect_lines(
        "message 1 block continue action=[ monitor; enforce mode would reject]",
        "message 2 warn continue",
        "message 3 clean continue",
        "message 4 unreadable continue",
    )
    assert [(d["mode"], d["action"], d["verdict"], d.get("would")) for d in run.decisions] == [
        ("monitor", "accept", "block", "reject"),
        ("monitor", "accept", "warn", None),
        ("monitor", "accept", "pass", None),
        ("monitor", "accept", "error", "tempfail"),
    ]


def test_monitor_mode_never_refuses_when_the_decision_times_out(milters):
    """FAILS: a bug in the milter. In monitor mode a decision that exceeds
    ``decision_timeout`` (or raises) gets ``failure_outcome(settings)``, which applies
    ``on_error`` = tempfail without looking at ``mode``: the message is refused with 451,
    although monitor mode promises never to refuse (``--mode`` help), and an unreadable
    message (verdict ``error``, same ``on_error``) *is* accepted in monitor mode."""
    run = milters("monitor_timeout").run("monitor_timeout.lua", decisions=1, check=False)
    (d,) = run.decisions
    assert run.returncode == 0 and d["action"] == "accept", (
        "BUG: monitor mode refused a message whose decision ran out of time: miltertest saw "
        f"{run.lines[:1]}; milter logged action={d['action']} ({d.get('error')}).\n"
        f"miltertest stderr: {run.stderr}"
    )


def test_on_block_quarantine(milters):
    run = milters("quarantine").run("quarantine.lua", decisions=2)
    run.expect_lines("eom block accept quarantined", "eom clean continue")
    assert actions(run) == [("QQUAR1", "quarantine"), ("QQUAR2", "accept")]


def test_on_block_quarantine_when_the_mta_cannot_quarantine(milters):
    run = milters("quarantine").run("quarantine_not_offered.lua", decisions=1)
    run.expect_lines("eom block replycode")
    assert actions(run) == [("QNOQ1", "reject")]


def test_on_block_tempfail(milters):
    run = milters("tempfail").run("tempfail.lua", decisions=1)
    run.expect_lines("eom block replycode 451 4.7.1")
    assert actions(run) == [("QTEMP1", "tempfail")]


def test_on_warn_reject_and_headers_always(milters):
    run = milters("warn_reject").run("warn_reject.lua", decisions=2)
    run.expect_lines("eom warn replycode", "eom clean continue verdict=[ pass]")
    assert actions(run) == [("QWR1", "reject"), ("QWR2", "accept")]


# ---------------------------------------------------------------------------- 9 scope


@pytest.mark.parametrize(
    ("milter", "defines", "expect"),
    [
        pytest.param("default", {"ip": "203.0.113.5"}, "accept", id="outside-no-auth"),
        pytest.param("default", {"ip": "203.0.113.5", "auth": "alice"}, "reject", id="auth"),
        pytest.param(
            "default", {"ip": "203.0.113.5", "daemon": "ORIGINATING"}, "reject", id="daemon"
        ),
        pytest.param(
            "default", {"ip": "203.0.113.5", "daemon": "smtpd"}, "accept", id="other-daemon"
        ),
        pytest.param("default", {"ip": "10.1.2.3"}, "reject", id="private-network"),
        pytest.param("default", {"ip": "::1"}, "reject", id="ipv6-loopback"),
        pytest.param("default", {"ip": "2001:db8::5"}, "accept", id="ipv6-outside"),
        pytest.param("default", {"ip": "unspec"}, "accept", id="unknown-address"),
        pytest.param(
            "default",
            {"ip": "unspec", "client_addr": "127.0.0.1"},
            "reject",
            id="unknown-family-client-addr-macro",
        ),
        pytest.param(
            "default",
            {"ip": "203.0.113.5", "offer": "minimal"},
            "accept",
            id="outside-every-step-answered",
        ),
        pytest.param("scope_all", {"ip": "203.0.113.5"}, "reject", id="scope-all"),
    ],
)
def test_scope(milters, milter, defines, expect):
    run = milters(milter).run(
        "scope.lua", decisions=1 if expect == "reject" else 0, outcome=expect, **defines
    )
    if expect == "accept":
        # Accepted at MAIL; miltertest still streams the message (a real MTA would not) and
        # the milter answers continue at its end without judging it: no decision line.
        run.expect_lines("mail accept eom continue")
    else:
        run.expect_lines("mail continue eom replycode")
        assert actions(run) == [("QSCOPE1", "reject")]


def test_scope_is_decided_per_message(milters):
    run = milters("default").run("scope_per_message.lua", decisions=2)
    run.expect_lines(
        "message 1 accept continue",
        "message 2 reject replycode",
        "message 3 accept continue",
        "message 4 reject replycode",
    )
    assert actions(run) == [("QPER2", "reject"), ("QPER4", "reject")]


# ---------------------------------------------------------------------------- 10-12


def test_bcc_bulk_passes(milters):
    run = milters("default").run("bcc_bulk.lua", decisions=1)
    run.expect_lines("eom bcc continue rcpts=300")
    (d,) = run.decisions
    assert (d["action"], d["verdict"], d["visible"], d["rcpt"]) == ("accept", "pass", "0", "300")


def test_concurrent_connections_are_judged_separately(milters):
    run = milters("default").run("concurrent.lua", decisions=5)
    run.expect_lines(
        "eom b continue, a replycode, c continue+warn", "round 2 a continue, b replycode"
    )
    assert actions(run) == [
        ("QCONB", "accept"),
        ("QCONA", "reject"),
        ("QCONC", "accept"),
        ("QCONA2", "accept"),
        ("QCONB2", "reject"),
    ]


def test_abrupt_disconnect_mid_message(milters):
    run = milters("default").run("abrupt_disconnect.lua", decisions=2)
    run.expect_lines(
        "dropped connection mid-message", "new connection clean continue, risky replycode"
    )
    assert actions(run) == [("QDROP4", "accept"), ("QDROP5", "reject")]
    assert "protocol error" not in run.log and "Traceback" not in run.log


def test_folded_header_fields(milters):
    run = milters("default").run("folded.lua", decisions=2)
    run.expect_lines("message 1 folded replycode", "message 2 folded replycode")
    assert [(d["verdict"], d["score"], d["personal"]) for d in run.decisions] == [
        ("block", "85", "40"),
        ("block", "85", "40"),
    ]


def test_slow_decisions_send_progress_and_one_final_reply(milters):
    """A decision slower than progress_interval keeps the MTA waiting with progress frames;
    the final reply still comes exactly once, and later messages stay in step."""
    run = milters("slow").run("several_messages.lua", decisions=5, verbose=True)
    progress = [line for line in run.lines if "mt_milter_read" in line and "cmd p," in line]
    assert len(progress) >= 5, run.stdout  # 60 ms per decision, progress every 10 ms
    run.expect_lines("message 1 clean continue", "message 2 block replycode")
    assert [a for _, a in actions(run)] == ["accept", "reject", "accept", "accept", "accept"]


# ---------------------------------------------------------------------------- same engine


def _eml(kind: str) -> tuple[bytes, list[str]]:
    """The message ``common.lua``'s ``message(kind)`` streams, as a file, and its envelope."""
    cc: list[str] = []
    to = COLLEAGUE
    rcpts = [COLLEAGUE]
    if kind == "warn":
        cc = [f"p{i}@gmail.com" for i in range(1, 13)]
    elif kind == "block":
        cc = [f"p{i}@gmail.com" for i in range(1, 41)]
    elif kind == "bcc":
        to = "undisclosed-recipients:;"
        rcpts = [f"p{i}@gmail.com" for i in range(1, 301)]
    rcpts += [] if kind == "bcc" else cc
    lines = [f"From: HR <{SENDER}>", f"To: {to}", f"Subject: {SUBJECT}"]
    lines.append(f"Message-ID: <{kind}.QVER-{kind}@serviceco.example>")
    lines += [f"Cc: {', '.join(cc[k : k + 20])}" for k in range(0, len(cc), 20)]
    return ("\r\n".join(lines) + "\r\n\r\n" + BODY).encode(), rcpts


def test_milter_verdicts_match_mailguard_check(milters, tmp_path):
    run = milters("default").run("verdicts.lua", decisions=4)
    logged = {d["queue_id"].removeprefix("QVER-"): d for d in run.decisions}
    assert list(logged) == ["clean", "warn", "block", "bcc"]
    for kind, decision in logged.items():
        raw, rcpts = _eml(kind)
        path = tmp_path / f"{kind}.eml"
        path.write_bytes(raw)
        args = [sys.executable, "-c", "from mailguard.cli import main; main()", "check"]
        args += ["--no-config", "--format", "json", "--mail-from", SENDER, str(path)]
        for rcpt in rcpts:
            args += ["--rcpt-to", rcpt]
        result = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, check=False)
        (report,) = json.loads(result.stdout)["messages"]
        codes = ",".join(f["code"] for f in report["findings"]) or "-"
        assert (decision["verdict"], decision["score"], decision["rules"]) == (
            report["verdict"],
            str(report["score"]),
            codes,
        ), kind
    assert [logged[k]["verdict"] for k in logged] == ["pass", "warn", "block", "pass"]


# ---------------------------------------------------------------------------- lifecycle


def test_sighup_reload_and_sigterm(tmp_path):
    """New settings apply from the next message; a broken edit keeps the old ones; SIGTERM
    with an MTA connection still open ends the milter promptly with status 0."""
    milter = start_milter("reload", tmp_path / "reload", Setup(EOM))
    idle = socket.create_connection(("127.0.0.1", int(milter.defines["port"])))
    try:
        assert actions(milter.run("block.lua", decisions=1)) == [("QBLOCK1", "reject")]
        milter.config_path.write_text(EOM + 'on_block = "quarantine"\n', encoding="utf-8")
        milter.proc.send_signal(signal.SIGHUP)
        _wait_for_log(milter, "configuration reloaded")
        run = milter.run("quarantine.lua", decisions=2)
        assert actions(run) == [("QQUAR1", "quarantine"), ("QQUAR2", "accept")]
        milter.config_path.write_text(EOM + 'on_block = "shrug"\n', encoding="utf-8")
        milter.proc.send_signal(signal.SIGHUP)
        _wait_for_log(milter, "reload failed, keeping the previous configuration")
        run = milter.run("quarantine.lua", decisions=2)
        assert actions(run) == [("QQUAR1", "quarantine"), ("QQUAR2", "accept")]
    finally:
        stopping = time.monotonic()
        status = milter.stop()
        took = time.monotonic() - stopping
        idle.close()
    assert status == 0, milter.log()
    assert took < 3, f"SIGTERM took {took:.1f} s with an idle MTA connection open"
    assert milter.log().rstrip().endswith("INFO stopped"), milter.log()
    assert_private(milter.log(), "reload milter")


def _wait_for_log(milter: Milter, text: str) -> None:
    deadline = time.monotonic() + 5
    while text not in milter.log():
        assert time.monotonic() < deadline, f"{text!r} not logged:\n{milter.log()}"
        time.sleep(0.02)


# ---------------------------------------------------------------------------- end of headers


def test_a_message_settled_by_its_headers_is_answered_at_end_of_headers(milters):
    run = milters("early").run("early.lua", decisions=5)
    run.expect_lines(
        "clean accept at end of headers verdict=[nil]",
        "block replycode at end of headers verdict=[nil]",
        "warn continue at end of message verdict=[ warn]",
        "multipart continue at end of message verdict=[nil]",
        "nested continue at end of message verdict=[ warn]",
        "PASS early",
    )
    stage = {d["queue_id"]: (d["action"], d.get("at", "end")) for d in run.decisions}
    assert stage == {
        "QEARLY1": ("accept", "headers"),
        "QEARLY2": ("reject", "headers"),
        "QEARLY3": ("accept", "end"),
        "QEARLY4": ("accept", "end"),
        "QEARLY5": ("accept", "end"),
    }
    # The limits rule is honoured: the nesting it reports is in the body, read to its end.
    nested = next(d for d in run.decisions if d["queue_id"] == "QEARLY5")
    assert "MG002" in nested["rules"]
