"""A private, loopback-only Postfix instance for end-to-end milter tests and benchmarks.

Why a real Postfix: the milter protocol as Postfix speaks it (macro sets, the ``A`` abort after
every transaction, several messages on one milter connection, what a dead milter does to the
SMTP client) is what mailguard has to survive in production, and a hand-written fake MTA would
only encode our own assumptions. The recipe and its pitfalls are in
``/work/shared/notes/postfix-milter.md``; this module turns it into something a pytest fixture
or a benchmark can start, reconfigure, inspect and tear down in well under a second.

Layout of one instance (``base`` is a fresh directory, removed again on exit)::

    base/etc/main.cf, master.cf   own configuration, used via ``postfix -c base/etc``
    base/spool/                   queue_directory (own master.pid lock, so instances never clash)
    base/data/                    data_directory (owned by postfix)
    base/sink/                    one file per message that reached smtp-sink
    base/maillog                  Postfix's log (there is no syslog here)

Postfix relays everything it accepts to a local ``smtp-sink``, so nothing leaves the machine.
Everything here needs root: ``postfix start`` refuses to run otherwise.

Behaviour worth knowing (Postfix 3.7, checked on Debian 12):

* With a milter that cannot be reached and ``milter_default_action = tempfail`` the client gets
  ``451 4.7.1 Service unavailable - try again later`` at MAIL FROM, not at end of DATA: smtpd
  connects to the milter when the client connects and, with ``smtpd_delay_reject = yes``,
  answers the first command that can be refused (smtplib raises ``SMTPSenderRefused``).
* A unix-socket milter is connected to by smtpd running as user ``postfix``: the socket (and
  every directory above it) must be reachable and writable by that user.
* smtp-sink drops every CR it receives (its files have LF line ends), undoes dot stuffing,
  prefixes its own ``X-Client-Addr`` ... ``Received`` lines and appends one empty line;
  :class:`SinkMessage` separates those parts again. It closes a file before it answers the
  final ".", so a message whose queue file is gone is complete on disk.
* Postfix programs pause while main.cf is less than about a second old (see
  :meth:`PostfixInstance._cool_down`); this module backdates the file after every edit.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import pty
import pwd
import re
import select
import shutil
import signal
import smtplib
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from tests.support.packages import ensure_packages
from tests.support.procs import alive as _alive
from tests.support.procs import free_ports
from tests.support.procs import port_open as _port_open
from tests.support.procs import processes as _processes
from tests.support.procs import tail as _tail
from tests.support.procs import wait_until as _wait_until

POSTFIX = Path("/usr/sbin/postfix")
POSTCONF = Path("/usr/sbin/postconf")
POSTQUEUE = Path("/usr/sbin/postqueue")
POSTSUPER = Path("/usr/sbin/postsuper")
POSTKICK = Path("/usr/sbin/postkick")
SMTP_SINK = Path("/usr/sbin/smtp-sink")
MASTER = Path("/usr/lib/postfix/sbin/master")

# Queue directories a message can sit in. ``hold`` is where quarantined mail waits; it never
# drains on its own, so :meth:`PostfixInstance.wait_idle` does not wait for it.
QUEUES = ("maildrop", "incoming", "active", "deferred", "hold")
_IN_FLIGHT = ("maildrop", "incoming", "active")

# Parent for instance directories when the caller's directory is not reachable by the
# ``postfix`` user (pytest's /tmp/pytest-of-root is 0700). /var/tmp is world-traversable.
_FALLBACK_PARENT = Path("/var/tmp")

_MASTER_CF_SERVICES = """\
# service type  private unpriv  chroot  wakeup  maxproc command
# chroot is "n" everywhere: the instance lives outside /var/spool/postfix.
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


# --------------------------------------------------------------------------- installation


def ensure_postfix_installed() -> None:
    """Install Postfix if any of its programs the tests run is missing; never skip silently.

    Milter tests that skip when Postfix is absent would pass on a machine where nothing was
    tested: as root the package is installed, otherwise this raises naming it.
    """
    ensure_packages("postfix")


# --------------------------------------------------------------------------- small helpers


def smtp_session(port: int, timeout: float = 10.0) -> smtplib.SMTP:
    """Open an SMTP session to 127.0.0.1:port; use it as a context manager so it QUITs.

    A session left open keeps its smtpd (and that smtpd's old milter settings) alive across a
    reload, so tests should close sessions promptly.
    """
    return smtplib.SMTP("127.0.0.1", port, local_hostname="client.example.test", timeout=timeout)


def _run_on_pty(argv: Sequence[str], env: Mapping[str, str], timeout: float) -> tuple[int, str]:
    """Run a command with stdout and stderr on a pty; return (exit status, output).

    Reads until the command exits, not until EOF: a daemon it leaves behind may still hold the
    terminal open.
    """
    controller, terminal = pty.openpty()
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=terminal, stderr=terminal, env=dict(env)
        )
    finally:
        os.close(terminal)
    output = bytearray()
    deadline = time.monotonic() + timeout
    try:
        os.set_blocking(controller, False)
        while True:
            exited = proc.poll() is not None
            if select.select([controller], [], [], 0 if exited else 0.02)[0]:
                try:
                    chunk = os.read(controller, 65536)
                except BlockingIOError:  # spurious wake-up: poll again
                    continue
                except OSError:  # EIO: every holder of the terminal has closed it
                    break
                if not chunk:
                    break
                output += chunk
                continue
            if exited:
                break
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise subprocess.TimeoutExpired(list(argv), timeout, bytes(output))
    finally:
        os.close(controller)
    try:
        returncode = proc.wait(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    return returncode, output.decode("utf-8", "replace").replace("\r\n", "\n")


def _traversable_by_others(path: Path) -> bool:
    """True if a non-root user (``postfix``) can reach entries inside ``path``."""
    postfix_uid = pwd.getpwnam("postfix").pw_uid
    for part in [path, *path.parents]:
        st = part.stat()
        if not (st.st_mode & 0o001 or (st.st_uid == postfix_uid and st.st_mode & 0o100)):
            return False
    return True


# --------------------------------------------------------------------------- sink messages


@dataclass(frozen=True)
class SinkMessage:
    """One mail transaction as smtp-sink stored it.

    ``data`` is the message exactly as Postfix relayed it (including the headers Postfix and a
    milter added), except that smtp-sink dropped every CR (CRLF became LF). ``mail_from`` and
    ``rcpt_to`` are the MAIL/RCPT arguments (``<addr>`` plus any ESMTP parameters), so envelope
    changes made by a milter are visible too.
    """

    path: Path
    helo: str | None
    mail_from: str
    rcpt_to: tuple[str, ...]
    data: bytes
    raw: bytes

    @classmethod
    def parse(cls, path: Path, raw: bytes) -> SinkMessage:
        """Split smtp-sink's dump format (see man smtp-sink, DUMP FILE FORMAT)."""
        lines = raw.split(b"\n")
        helo: str | None = None
        mail_from = ""
        rcpts: list[str] = []
        i = 0
        while i < len(lines) and lines[i].startswith(b"X-"):
            name, _, value = lines[i].decode("utf-8", "replace").partition(": ")
            if name == "X-Helo-Args":
                helo = value
            elif name == "X-Mail-Args":
                mail_from = value
            elif name == "X-Rcpt-Args":
                rcpts.append(value)
            i += 1
        # smtp-sink's own three-line Received header: "Received: from ...", "\tby ... (smtp-sink)
        # with ... id ...;", "\t<date>".
        if not (
            i + 2 < len(lines)
            and lines[i].startswith(b"Received: ")
            and b"(smtp-sink)" in lines[i + 1]
        ):
            raise ValueError(f"{path}: not an smtp-sink dump file")
        body = b"\n".join(lines[i + 3 :])
        # The end-of-data line "." leaves one extra LF behind.
        body = body.removesuffix(b"\n")
        return cls(path, helo, mail_from, tuple(rcpts), body, raw)


# --------------------------------------------------------------------------- the instance


class PostfixInstance:
    """A private Postfix on 127.0.0.1 that relays to its own smtp-sink.

    Use as a context manager (or call :meth:`start` / :meth:`close`). ``milter`` is a Postfix
    milter spec such as ``unix:/run/x/milter.sock`` or ``inet:127.0.0.1:8891``; ``None`` runs
    without a milter. :meth:`set_milter` switches it on a running instance, so a benchmark can
    measure with and without a milter against the same Postfix.

    ``milter_timeout`` (seconds) is used for milter_connect/command/content_timeout, so a dead
    or hung milter costs a test seconds; ``main_cf`` overrides or adds main.cf settings.

    ``parent`` is where the instance directory is created. Postfix daemons run as ``postfix``
    and must reach it; if ``parent`` is not traversable by other users (pytest's tmp dirs are
    0700) the instance goes under /var/tmp instead and its maillog is copied into ``parent`` on
    close, so it is still there to read after a failure.
    """

    def __init__(
        self,
        parent: Path | str | None = None,
        *,
        milter: str | None = None,
        milter_default_action: str = "tempfail",
        milter_timeout: int = 5,
        main_cf: Mapping[str, str] | None = None,
    ) -> None:
        self.parent = Path(parent) if parent is not None else None
        self.milter = milter
        self.milter_default_action = milter_default_action
        self.milter_timeout = milter_timeout
        self.extra_main_cf = dict(main_cf or {})
        self.base = Path()
        self.etc = Path()
        self.spool = Path()
        self.sink_dir = Path()
        self.maillog_path = Path()
        self.smtp_port = 0
        self.sink_port = 0
        self._sink: subprocess.Popen[bytes] | None = None
        self.master_pid: int | None = None
        self._started = False
        self._closed = False

    # ----------------------------------------------------------------- lifecycle

    def __enter__(self) -> PostfixInstance:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        """Create the directories and config, start smtp-sink, then Postfix.

        Raises RuntimeError with the reason if anything fails: the postfix command's own
        complaint (captured on a pty, see :meth:`_postfix`) and the maillog tail. Call
        :meth:`close` afterwards (the context manager does), as a start can fail halfway.
        """
        if self._started:
            raise RuntimeError("PostfixInstance.start() called twice")
        self._started = True
        ensure_postfix_installed()
        if os.geteuid() != 0:
            raise RuntimeError("a private Postfix instance needs root (`postfix start` does)")
        atexit.register(self.stop)
        self._make_dirs()
        self.smtp_port, self.sink_port = free_ports(2)
        self._write_config()
        self._start_sink()
        self._start_postfix()

    def _make_dirs(self) -> None:
        parent = self.parent
        if parent is None or not _traversable_by_others(parent):
            parent = _FALLBACK_PARENT
        self.base = Path(tempfile.mkdtemp(prefix="mailguard-postfix-", dir=parent))
        self.base.chmod(0o755)
        self.etc = self.base / "etc"
        self.spool = self.base / "spool"
        self.sink_dir = self.base / "sink"
        self.maillog_path = self.base / "maillog"
        data = self.base / "data"
        for directory in (self.etc, self.spool, self.sink_dir, data):
            directory.mkdir(mode=0o755)
        for directory in (self.sink_dir, data):
            shutil.chown(directory, "postfix", "postfix")
        # Postfix checks that nothing in its config dir is writable by others.
        self.etc.chmod(0o755)

    def _main_cf(self) -> dict[str, str]:
        """main.cf per the notes; ``main_cf`` passed to the constructor overrides any of it."""
        settings = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.spool),
            "data_directory": str(self.base / "data"),
            "myhostname": "mailguard-test.localdomain",
            "mydestination": "",
            "inet_interfaces": "loopback-only",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "smtpd_relay_restrictions": "permit_mynetworks, reject",
            "relayhost": f"[127.0.0.1]:{self.sink_port}",
            "smtp_dns_support_level": "disabled",
            "smtpd_peername_lookup": "no",
            "maillog_file_prefixes": str(self.base),
            "maillog_file": str(self.maillog_path),
            "alias_maps": "",
            "alias_database": "",
            "local_recipient_maps": "",
            "biff": "no",
            # Load tests: no per-message delay, no error tarpit (notes, pitfalls 3 and 4).
            "in_flow_delay": "0",
            "smtpd_error_sleep_time": "0",
            "smtpd_soft_error_limit": "1000",
            "smtpd_hard_error_limit": "1000",
            "milter_protocol": "6",
            "milter_default_action": self.milter_default_action,
            # A dead or hung milter should cost a test seconds, not the 30 s / 300 s defaults.
            "milter_connect_timeout": f"{self.milter_timeout}s",
            "milter_command_timeout": f"{self.milter_timeout}s",
            "milter_content_timeout": f"{self.milter_timeout}s",
            "smtpd_milters": self.milter or "",
            # Mail submitted with sendmail (maildrop -> pickup -> cleanup) is checked too.
            "non_smtpd_milters": "$smtpd_milters",
        }
        settings.update(self.extra_main_cf)
        return settings

    def _write_config(self) -> None:
        main_cf = "".join(f"{key} = {value}\n" for key, value in self._main_cf().items())
        (self.etc / "main.cf").write_text(main_cf)
        master_cf = f"127.0.0.1:{self.smtp_port} inet n - n - - smtpd\n" + _MASTER_CF_SERVICES
        (self.etc / "master.cf").write_text(master_cf)
        for name in ("main.cf", "master.cf"):
            (self.etc / name).chmod(0o644)
        self._cool_down()

    def _cool_down(self) -> None:
        """Backdate main.cf so Postfix programs don't wait for it to "cool down".

        Postfix re-reads a main.cf modified within the last second or so, pausing 300 ms per
        try ("pausing to let ... cool down" with -vv), which made every start and every reload
        right after ``postconf -e`` take about 2 s. We write the file whole before using it,
        so there is no half-written file to wait for.
        """
        past = time.time() - 60
        os.utime(self.etc / "main.cf", (past, past))

    def _start_sink(self) -> None:
        """Start smtp-sink, on a fresh port if the one picked was taken meanwhile."""
        for _attempt in range(3):
            if self._spawn_sink():
                return
            self._stop_sink()
            self.sink_port = free_ports(1)[0]
            self._postconf({"relayhost": f"[127.0.0.1]:{self.sink_port}"})
        raise RuntimeError(
            "smtp-sink did not start:\n" + _tail(self._read(self.base / "smtp-sink.log"))
        )

    def _spawn_sink(self) -> bool:
        with (self.base / "smtp-sink.log").open("ab") as log:
            sink = subprocess.Popen(
                [
                    str(SMTP_SINK),
                    "-u",  # required as root: the user it switches to after binding
                    "postfix",
                    # One file per transaction: the expanded template plus a random hex suffix
                    # (created with O_EXCL, retried on a clash).
                    "-d",
                    f"{self.sink_dir}/%Y%m%d%H%M%S.",
                    f"127.0.0.1:{self.sink_port}",
                    "128",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._sink = sink
        _wait_until(lambda: sink.poll() is not None or _port_open(self.sink_port), 5)
        return sink.poll() is None and _port_open(self.sink_port)

    def _start_postfix(self) -> None:
        result = self._postfix("start")
        pid = self._read_master_pid()
        if result.returncode != 0 or pid is None or not _alive(pid):
            raise RuntimeError(self._failure("`postfix start` failed", result))
        self.master_pid = pid
        if not _wait_until(lambda: _port_open(self.smtp_port), 5):
            raise RuntimeError(self._failure(f"smtpd is not listening on {self.smtp_port}"))

    def stop(self) -> None:
        """Stop Postfix and smtp-sink and wait until their processes are gone.

        Idempotent and safe after a half-failed start: leftover master processes would hold
        ports and confuse later runs. Only processes of this instance are signalled: the master
        whose pid file is in our spool, its process group, and our own smtp-sink.
        """
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.stop)
        if self.base == Path():  # never got as far as creating anything
            return
        pid = self.master_pid or self._read_master_pid()
        if pid is not None and not self._is_our_master(pid):
            pid = None
        if (self.etc / "main.cf").exists() and pid is not None:
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                self._postfix("stop", timeout=30)
        if pid is not None:
            if not _wait_until(lambda: not _alive(pid), 10):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            # master kills its process group on SIGTERM; make sure no child outlives it.
            self._kill_group(pid)
        self._stop_sink()

    def close(self) -> None:
        """Stop everything and remove the instance directory (keeping a copy of the maillog)."""
        self.stop()
        if self.base == Path() or not self.base.exists():
            return
        if self.parent is not None and self.base.parent != self.parent and self.parent.is_dir():
            with contextlib.suppress(OSError):
                shutil.copyfile(self.maillog_path, self.parent / f"{self.base.name}.maillog")
        shutil.rmtree(self.base, ignore_errors=True)

    def _stop_sink(self) -> None:
        sink, self._sink = self._sink, None
        if sink is None or sink.poll() is not None:
            return
        sink.terminate()
        try:
            sink.wait(5)
        except subprocess.TimeoutExpired:
            sink.kill()
            sink.wait(5)

    def _kill_group(self, pgrp: int) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if _wait_until(lambda: not _processes(pgrp=pgrp), 3 if sig == signal.SIGTERM else 2):
                return
            for pid in _processes(pgrp=pgrp):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)

    def _read_master_pid(self) -> int | None:
        try:
            return int((self.spool / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _is_our_master(self, pid: int) -> bool:
        """Guard against a recycled pid: our master runs with MAIL_CONFIG set to our etc."""
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            return False
        return f"MAIL_CONFIG={self.etc}".encode() in environ

    # ----------------------------------------------------------------- configuration

    def set_milter(self, spec: str | None, default_action: str = "tempfail") -> None:
        """Point smtpd and non-SMTP mail at ``spec`` (None: no milter) and reload Postfix.

        ``default_action`` (tempfail, accept, reject, quarantine) is what Postfix does when the
        milter is unreachable or fails; it is reset on every call. Returns once the new setting
        is in force (see :meth:`reload`), about 30 ms.
        """
        self.milter = spec
        self.milter_default_action = default_action
        self.configure(
            {
                "smtpd_milters": spec or "",
                "non_smtpd_milters": "$smtpd_milters",
                "milter_default_action": default_action,
            }
        )

    def configure(self, settings: Mapping[str, str]) -> None:
        """Change main.cf settings with ``postconf -e`` and reload."""
        self._postconf(settings)
        self.reload()

    def _postconf(self, settings: Mapping[str, str]) -> None:
        args = [f"{key}={value}" for key, value in settings.items()]
        self._run([str(POSTCONF), "-c", str(self.etc), "-e", *args])
        self._cool_down()

    def reload(self, timeout: float = 10.0) -> None:
        """``postfix reload`` and wait until it has taken effect.

        ``postfix reload`` only sends SIGHUP and returns. The master then logs
        ``reload -- version ...`` and tells every running daemon to exit once idle, and new
        daemons start with the new config. So: wait for a new "reload" line in the maillog,
        then for every process that was a child of the master before the reload to exit. After
        that no old smtpd is left to accept a connection with the old milter settings. A
        session still open at reload keeps its old smtpd until it QUITs: close sessions first.
        """
        master = self.master_pid
        if master is None or not _alive(master):
            raise RuntimeError(self._failure("reload: Postfix master is not running"))
        marker = re.compile(rf"postfix/master\[{master}\]: reload -- ")
        reloads_before = len(marker.findall(self.maillog()))
        old_children = _processes(ppid=master)
        result = self._postfix("reload")
        if result.returncode != 0:
            raise RuntimeError(self._failure("`postfix reload` failed", result))
        deadline = time.monotonic() + timeout
        if not _wait_until(lambda: len(marker.findall(self.maillog())) > reloads_before, timeout):
            raise TimeoutError(self._failure("no 'reload' line in the maillog"))
        remaining = max(0.0, deadline - time.monotonic())
        if not _wait_until(lambda: not (old_children & _processes(ppid=master)), remaining):
            left = sorted(old_children & _processes(ppid=master))
            raise TimeoutError(
                self._failure(f"daemons from before the reload still running: {left}")
            )
        if not _alive(master):
            raise RuntimeError(self._failure("Postfix master died during reload"))

    # ----------------------------------------------------------------- inspection

    def maillog(self) -> str:
        """The whole maillog so far (written asynchronously by postlogd: poll, don't assume)."""
        return self._read(self.maillog_path)

    def log_mark(self) -> int:
        """Current end of the maillog, for ``wait_for_log(..., since=mark)``."""
        return len(self.maillog())

    def wait_for_log(self, pattern: str, timeout: float = 5.0, since: int = 0) -> re.Match[str]:
        """Wait until the maillog matches the regex ``pattern``; return the match.

        ``since`` (from :meth:`log_mark`) ignores earlier lines, so a test on a shared instance
        doesn't match what an earlier test logged. ``^``/``$`` match at line boundaries.
        """
        regex = re.compile(pattern, re.MULTILINE)
        found: list[re.Match[str]] = []

        def check() -> bool:
            match = regex.search(self.maillog(), since)
            if match:
                found.append(match)
            return match is not None

        if not _wait_until(check, timeout, 0.02):
            raise TimeoutError(self._failure(f"no maillog line matches {pattern!r}"))
        return found[0]

    def queue_counts(self) -> dict[str, int]:
        """Number of queue files in maildrop, incoming, active, deferred and hold.

        Counted from the spool (deferred is hashed into subdirectories), so it works whether or
        not Postfix is running and costs no daemon round trip.
        """
        counts = {}
        for queue in QUEUES:
            directory = self.spool / queue
            counts[queue] = (
                sum(1 for p in directory.rglob("*") if p.is_file()) if directory.is_dir() else 0
            )
        return counts

    def wait_idle(self, timeout: float = 30.0, *, allow_deferred: bool = False) -> None:
        """Wait until every accepted message has been delivered (or held).

        Idle means maildrop, incoming and active are empty (and deferred too, unless
        ``allow_deferred``: deferred mail waits minutes for its retry, so a test expecting a
        deferral passes ``allow_deferred=True`` and asserts on :meth:`queue_counts`). A queue
        file is removed only after smtp-sink answered 250, and smtp-sink closes its file before
        answering, so once idle :meth:`sink_messages` is complete. Held mail does not count.
        """
        watched = _IN_FLIGHT if allow_deferred else (*_IN_FLIGHT, "deferred")
        streak = 0
        kicked = time.monotonic()
        kick_failed = ""

        def idle() -> bool:
            nonlocal streak, kicked, kick_failed
            counts = self.queue_counts()
            # Two clean looks in a row: cheap insurance against catching a hand-over between
            # queues (they are renames, so none should be visible).
            streak = streak + 1 if not any(counts[q] for q in watched) else 0
            if counts["incoming"] and time.monotonic() - kicked > 2:
                # A `postfix reload` restarts qmgr; a "new mail" wake-up sent while the old
                # one was exiting is lost, and the new one would scan `incoming` only at its
                # next periodic run (minutes). Ask it to scan now (what cleanup's wake-up
                # asks); deferred mail is not retried by this.
                kick_failed = self._kick_qmgr() or kick_failed
                kicked = time.monotonic()
            return streak >= 2

        if not _wait_until(idle, timeout, 0.02):
            last = f"; last qmgr wake-up: {kick_failed}" if kick_failed else ""
            raise TimeoutError(self._failure(f"queue not idle: {self.queue_counts()}{last}"))

    def _kick_qmgr(self) -> str:
        """Ask qmgr to scan ``incoming`` now; what went wrong, or "".

        A wake-up is a hint: if qmgr is between two lives (a reload restarts it), postkick's
        write to its FIFO finds no reader and dies of SIGPIPE (seen in CI: status -13, which
        failed a test whose mail was all there). Nothing was asked then, and
        :meth:`wait_idle` asks again two seconds later; if the queue never empties, its
        timeout error quotes the last failure."""
        argv = [str(POSTKICK), "-c", str(self.etc), "public", "qmgr", "I"]
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=60, env=self._env(),
            stdin=subprocess.DEVNULL, check=False,
        )  # fmt: skip
        if result.returncode == 0:
            return ""
        return f"postkick status {result.returncode}: {(result.stderr or '').strip()[-300:]}"

    def queue_ids(self, queue: str | None = None) -> list[str]:
        """Queue IDs from ``postqueue -j`` (JSON lines, Postfix >= 3.1), optionally one queue."""
        out = self._run([str(POSTQUEUE), "-c", str(self.etc), "-j"]).stdout
        entries = [json.loads(line) for line in out.splitlines() if line.strip()]
        return [e["queue_id"] for e in entries if queue is None or e["queue_name"] == queue]

    def hold_queue_ids(self) -> list[str]:
        """IDs of messages in the hold queue, i.e. quarantined by a milter."""
        return self.queue_ids("hold")

    def delete_queued(self, queue: str = "ALL") -> None:
        """Delete queued mail (``postsuper -d ALL [queue]``) so one test's leftovers don't leak."""
        args = ["ALL"] if queue == "ALL" else ["ALL", queue]
        self._run([str(POSTSUPER), "-c", str(self.etc), "-d", *args])

    def sink_files(self) -> list[Path]:
        """smtp-sink's dump files, oldest first."""
        files = [p for p in self.sink_dir.iterdir() if p.is_file()]
        return sorted(files, key=lambda p: (p.stat().st_mtime_ns, p.name))

    def sink_deliveries(self) -> list[SinkMessage]:
        """Every transaction that reached the sink, parsed (call :meth:`wait_idle` first)."""
        return [SinkMessage.parse(p, p.read_bytes()) for p in self.sink_files()]

    def sink_messages(self) -> list[bytes]:
        """The messages that reached the sink, as relayed by Postfix (LF line ends)."""
        return [m.data for m in self.sink_deliveries()]

    def clear_sink(self) -> None:
        """Forget delivered messages (only while idle: a transaction in progress has a file)."""
        for path in self.sink_files():
            path.unlink()

    def smtp(self, timeout: float = 10.0) -> smtplib.SMTP:
        """An SMTP session to this instance's smtpd."""
        return smtp_session(self.smtp_port, timeout)

    # ----------------------------------------------------------------- plumbing

    def _postfix(self, command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run ``postfix -c ETC command`` with its output on a pseudo-terminal.

        The postfix command writes its fatal errors ("parameter mail_owner: unknown user
        name ...") to stderr only when stderr is a tty; otherwise they go to syslog, which does
        not exist here, and never reach the maillog either (notes, pitfall 1).
        """
        argv = [str(POSTFIX), "-c", str(self.etc), command]
        returncode, output = _run_on_pty(argv, self._env(), timeout)
        return subprocess.CompletedProcess(argv, returncode, output, "")

    def _run(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=60,
            env=self._env(),
            stdin=subprocess.DEVNULL,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(self._failure(f"`{' '.join(argv)}` failed", result))
        return result

    @staticmethod
    def _env() -> dict[str, str]:
        # Our -c must win over anything inherited from the caller.
        env = {k: v for k, v in os.environ.items() if k != "MAIL_CONFIG"}
        env["LANG"] = "C"
        return env

    @staticmethod
    def _read(path: Path) -> str:
        try:
            return path.read_text(errors="replace")
        except OSError:
            return ""

    def _failure(self, what: str, result: subprocess.CompletedProcess[str] | None = None) -> str:
        # postlogd writes asynchronously: give the last lines a moment to land.
        time.sleep(0.2)
        parts = [f"{what} (instance {self.base})"]
        if result is not None:
            parts.append(f"rc {result.returncode}; output:\n{result.stdout}{result.stderr}")
        parts.append("maillog tail:\n" + _tail(self.maillog()))
        return "\n".join(parts)


def postfix_for(parent: Path, milter_spec: str) -> Iterator[PostfixInstance]:
    """The body of a test module's ``postfix`` fixture: installed if need be, started in
    ``parent`` with ``milter_spec`` as its milter, stopped after the module
    (``yield from postfix_for(tmp_path_factory.mktemp("postfix"), milter.spec)``)."""
    ensure_postfix_installed()
    with PostfixInstance(parent, milter=milter_spec) as instance:
        yield instance
