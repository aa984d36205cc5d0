"""A private, loopback-only Dovecot IMAP server for the ``mailguard scan imap://`` tests.

Why a real Dovecot: what the IMAP reader must get right (EXAMINE really being read-only,
``BODY.PEEK`` not setting ``\\Seen``, special-use attributes in LIST, STARTTLS, certificate
checks, UID batching, modified UTF-7 folder names) is server behaviour, and a fake server
would only encode our own reading of the RFCs. The recipe mirrors ``tests/support/postfix.py``.

Layout of one instance (``base`` is a fresh directory, removed again on exit)::

    base/dovecot.conf        the whole configuration (no includes), used via ``dovecot -c``
    base/run/                base_dir: master.pid, the auth/login sockets (so instances never
                             clash with each other or with the system Dovecot in /run/dovecot)
    base/state/              state_dir
    base/users               passwd-file for both passdb and userdb
    base/mail/USER/Maildir/  each user's Maildir++ (owned by the ``mail`` user, see below)
    base/tls/                a throw-away CA (``ca.pem``) and a server certificate it signed
    base/dovecot.log         Dovecot's log (there is no syslog here)
    base/dovecot.out         the master's stdout/stderr (config errors land here)

Choices worth knowing (Dovecot 2.3.19, Debian 12):

* Mail processes run as the Debian system user ``mail`` (uid 8, gid 8) with
  ``first_valid_uid = last_valid_uid = 8``: Dovecot refuses uid 0 for mail access outright,
  the ``dovecot``/``dovenull`` users are reserved for its own internal and login processes,
  and ``mail`` exists on every Debian system, so no user has to be created.
* The master runs in the foreground (``-F``) in its own session, so this module knows its
  pid without reading a pid file and can signal its whole process group on stop; children
  carry ``instance_name`` in their process title (``pgrep -f`` finds them).
* Only ``protocols = imap`` with both listeners on 127.0.0.1 at ports picked free just
  before start; the system Dovecot that Debian's postinst may have started listens on the
  standard ports and its own base_dir, so the two never meet.
* ``disable_plaintext_auth = no``: the loopback imap:// tests log in without TLS too.
* The instance directory must be reachable by the ``mail`` user (pytest's tmp dirs are 0700),
  so it goes under /var/tmp unless ``parent`` is traversable by others.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import imaplib
import os
import pwd
import re
import shutil
import signal
import ssl
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from imapclient import imap_utf7

from tests.support.packages import ensure_packages
from tests.support.procs import free_ports
from tests.support.procs import port_open as _port_open
from tests.support.procs import processes as _processes
from tests.support.procs import tail as _tail
from tests.support.procs import wait_until as _wait_until

DOVECOT = Path("/usr/sbin/dovecot")
# dovecot-core alone has the master but no IMAP service; dovecot-imapd brings these.
IMAP_BINARIES = (Path("/usr/lib/dovecot/imap"), Path("/usr/lib/dovecot/imap-login"))
OPENSSL = "openssl"
MAIL_USER = "mail"

_FALLBACK_PARENT = Path("/var/tmp")
_SPECIAL_USE = re.compile(r"\\(All|Archive|Drafts|Flagged|Junk|Sent|Trash)")


# --------------------------------------------------------------------------- installation


def ensure_dovecot_installed() -> None:
    """Install ``dovecot-imapd`` if Dovecot is missing; never skip silently.

    IMAP tests that skip when Dovecot is absent would pass on a machine where nothing was
    tested, so a missing Dovecot is either fixed (as root) or a hard error naming the package.
    Debian's postinst may try to start the system Dovecot; the instances here never use it.
    """
    ensure_packages("openssl")  # the test CA and certificate are made with the openssl CLI
    needed = (DOVECOT, *IMAP_BINARIES)
    if all(path.exists() for path in needed):
        return
    missing = ", ".join(str(path) for path in needed if not path.exists())
    if os.geteuid() != 0:
        raise RuntimeError(
            f"Dovecot is not installed ({missing} missing) and this process is not root, so "
            "it cannot install it. Install the Debian package `dovecot-imapd` and run the "
            "tests as root."
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    steps = [
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", "dovecot-imapd"],
    ]
    for argv in steps:
        result = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
        if result.returncode != 0:
            raise RuntimeError(
                f"installing Dovecot failed at `{' '.join(argv)}` (rc {result.returncode}):\n"
                + _tail(result.stdout + result.stderr, 30)
            )
    still = ", ".join(str(path) for path in needed if not path.exists())
    if still:
        raise RuntimeError(f"`apt-get install dovecot-imapd` succeeded but {still} is missing")


# --------------------------------------------------------------------------- small helpers


def _traversable_by_others(path: Path) -> bool:
    return all(part.stat().st_mode & 0o001 for part in [path, *path.parents])


def _quote(name: str) -> str:
    """An IMAP quoted string for a mailbox name, modified-UTF-7 encoded (RFC 3501 5.1.3).

    imaplib sends arguments as they are, so names with spaces or non-ASCII need this.
    """
    encoded = imap_utf7.encode(name).decode("ascii")
    return '"' + encoded.replace("\\", "\\\\").replace('"', '\\"') + '"'


def processes_named(marker: str) -> list[str]:
    """Live processes whose command line (process title) contains ``marker``.

    Dovecot children rewrite their titles to ``INSTANCE_NAME/service ...``, so the instance
    name finds every process of one instance. Zombies are ignored (init reaps late here).
    """
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if proc.joinpath("stat").read_text().rsplit(")", 1)[1].split()[0] in "ZX":
                continue
            cmdline = proc.joinpath("cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if marker.encode() in cmdline:
            found.append(f"{proc.name}: {cmdline.decode(errors='replace').strip()}")
    return found


def _process_group(pgrp: int) -> set[int]:
    return _processes(pgrp=pgrp)


def _kill_group(pgrp: int) -> None:
    """Wait for a process group to empty; SIGTERM, then SIGKILL, whatever is left in it."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if _wait_until(lambda: not _process_group(pgrp), 3):
            return
        for pid in _process_group(pgrp):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
    if _process_group(pgrp):
        raise RuntimeError(f"Dovecot processes survived SIGKILL: {_process_group(pgrp)}")


# --------------------------------------------------------------------------- the instance


@dataclass(frozen=True)
class Mailbox:
    """A mailbox declared in the namespace: its special-use attribute and ``auto`` setting.

    ``auto = "no"`` declares the attribute without creating the mailbox, so one account can
    have a ``\\Sent`` folder (after :meth:`DovecotInstance.create`) and another none at all.
    """

    special_use: str = ""
    auto: str = "subscribe"


DEFAULT_MAILBOXES: Mapping[str, Mailbox] = {"Sent": Mailbox(r"\Sent")}


class DovecotInstance:
    """A private Dovecot on 127.0.0.1 with imap (STARTTLS-capable) and imaps listeners.

    ``users`` maps extra user names to passwords (next to ``user``/``password``); every user
    shares the namespace declared by ``mailboxes`` (name -> :class:`Mailbox`; INBOX always
    exists). Use as a context manager, or call :meth:`start` and :meth:`close`.
    """

    def __init__(
        self,
        parent: Path | str | None = None,
        *,
        user: str = "auditor",
        password: str = "correct horse battery staple",
        users: Mapping[str, str] | None = None,
        mailboxes: Mapping[str, Mailbox] | None = None,
    ) -> None:
        self.parent = Path(parent) if parent is not None else None
        self.user = user
        self.password = password
        self.passwords = {user: password, **(users or {})}
        for name, secret in self.passwords.items():
            if not re.fullmatch(r"[A-Za-z0-9._-]+", name) or re.search(r"[:\r\n]", secret):
                raise ValueError(f"user {name!r}: unsupported characters for a passwd-file")
        self.mailboxes = dict(DEFAULT_MAILBOXES if mailboxes is None else mailboxes)
        for name, box in self.mailboxes.items():
            if (
                '"' in name
                or "\\" in name
                or (box.special_use and not _SPECIAL_USE.fullmatch(box.special_use))
            ):
                raise ValueError(f"mailbox {name!r}: unsupported name or special-use flag")
        self.base = Path()
        self.imap_port = 0
        self.imaps_port = 0
        self.instance_name = ""
        self.proc: subprocess.Popen[bytes] | None = None
        self._started = False
        self._closed = False

    # ----------------------------------------------------------------- paths

    @property
    def conf_path(self) -> Path:
        return self.base / "dovecot.conf"

    @property
    def log_path(self) -> Path:
        return self.base / "dovecot.log"

    @property
    def ca_file(self) -> Path:
        """The CA that signed the server certificate: for SSL_CERT_FILE or an SSL context."""
        return self.base / "tls" / "ca.pem"

    def ssl_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts only this instance's CA."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    def mail_root(self, user: str | None = None) -> Path:
        return self.base / "mail" / (user or self.user) / "Maildir"

    def maildir(self, folder: str, user: str | None = None) -> Path:
        """The Maildir of ``folder``: Maildir++ keeps INBOX at the root, others as ``.a.b``."""
        root = self.mail_root(user)
        if folder.upper() == "INBOX":
            return root
        return root / ("." + imap_utf7.encode(folder).decode("ascii").replace("/", "."))

    # ----------------------------------------------------------------- lifecycle

    def __enter__(self) -> DovecotInstance:
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
        """Create directories, TLS material and config, start Dovecot, wait for both ports.

        Raises RuntimeError with the master's output and the log tail if anything fails. Call
        :meth:`close` afterwards (the context manager does), as a start can fail halfway.
        """
        if self._started:
            raise RuntimeError("DovecotInstance.start() called twice")
        self._started = True
        ensure_dovecot_installed()
        if os.geteuid() != 0:
            raise RuntimeError("a private Dovecot instance needs root (it switches users)")
        atexit.register(self.stop)
        self._make_dirs()
        self._make_tls()
        # The ports were free a moment ago; another process may take one before Dovecot binds.
        for _attempt in range(3):
            self.imap_port, self.imaps_port = free_ports(2)
            self._write_config()
            if self._start_master():
                return
        raise RuntimeError(self._failure("Dovecot found its ports taken three times"))

    def _make_dirs(self) -> None:
        parent = self.parent
        if parent is None or not _traversable_by_others(parent):
            parent = _FALLBACK_PARENT
        self.base = Path(tempfile.mkdtemp(prefix="mailguard-dovecot-", dir=parent))
        self.base.chmod(0o755)
        # In every process title (children are "dovecot-NAME/service") and, via the config
        # path, in the master's command line: one string finds all processes of this instance.
        self.instance_name = self.base.name
        for name in ("run", "state", "tls", "mail"):
            (self.base / name).mkdir(mode=0o755)
        (self.base / "tls").chmod(0o700)
        mail = pwd.getpwnam(MAIL_USER)
        (self.base / "mail").chmod(0o700)
        os.chown(self.base / "mail", mail.pw_uid, mail.pw_gid)

    def _make_tls(self) -> None:
        """A CA and a server certificate for localhost/127.0.0.1, made with the openssl CLI.

        EC keys: generating them takes milliseconds, where RSA-2048 takes a noticeable share
        of a start. The server cert carries SANs (Python checks those, never the CN).
        """
        tls = self.base / "tls"
        (tls / "server.ext").write_text(
            "basicConstraints = critical, CA:FALSE\n"
            "keyUsage = critical, digitalSignature\n"
            "extendedKeyUsage = serverAuth\n"
            "subjectAltName = DNS:localhost, IP:127.0.0.1\n"
            "subjectKeyIdentifier = hash\n"
            "authorityKeyIdentifier = keyid, issuer\n"
        )
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        self._run_tls(
            [OPENSSL, "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=mailguard test CA",
             "-addext", "basicConstraints = critical, CA:TRUE",
             "-addext", "keyUsage = critical, keyCertSign, cRLSign"]
        )  # fmt: skip
        self._run_tls(
            [OPENSSL, "req", *ec, "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=localhost"]
        )  # fmt: skip
        self._run_tls(
            [OPENSSL, "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-set_serial", "1", "-days", "2", "-extfile", "server.ext", "-out", "server.pem"]
        )  # fmt: skip

    def _run_tls(self, argv: list[str]) -> None:
        result = subprocess.run(
            argv, cwd=self.base / "tls", capture_output=True, text=True, check=False, timeout=30
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"`{' '.join(argv)}` failed (rc {result.returncode}):\n"
                + _tail(result.stdout + result.stderr)
            )

    def _write_config(self) -> None:
        mail = pwd.getpwnam(MAIL_USER)
        users = self.base / "users"
        users.write_text(
            "".join(
                f"{name}:{{PLAIN}}{secret}:{mail.pw_uid}:{mail.pw_gid}::"
                f"{self.base / 'mail' / name}::\n"
                for name, secret in self.passwords.items()
            )
        )
        # Read by the auth process, which runs as the dovecot user.
        users.chmod(0o640)
        shutil.chown(users, "root", "dovecot")
        boxes = "".join(
            f'  mailbox "{name}" {{\n'
            f"    auto = {box.auto}\n"
            + (f"    special_use = {box.special_use}\n" if box.special_use else "")
            + "  }\n"
            for name, box in self.mailboxes.items()
        )
        tls = self.base / "tls"
        dh = Path("/usr/share/dovecot/dh.pem")
        conf = f"""\
# Private test instance; see tests/support/dovecot.py. Complete: no system includes.
instance_name = {self.instance_name}
base_dir = {self.base / "run"}
state_dir = {self.base / "state"}
log_path = {self.log_path}
protocols = imap
listen = 127.0.0.1
shutdown_clients = yes

ssl = yes
ssl_cert = <{tls / "server.pem"}
ssl_key = <{tls / "server.key"}
{f"ssl_dh = <{dh}" if dh.exists() else ""}
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_verbose = yes
auth_cache_size = 0

first_valid_uid = {mail.pw_uid}
last_valid_uid = {mail.pw_uid}
first_valid_gid = {mail.pw_gid}
last_valid_gid = {mail.pw_gid}
mail_location = maildir:~/Maildir

passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {users}
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {users}
}}

namespace inbox {{
  inbox = yes
  separator = /
{boxes}}}

service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.imaps_port}
    ssl = yes
  }}
}}
# A wrong password would otherwise cost 2 s plus a growing per-IP penalty (anvil). Dovecot
# still answers a failed login only at its next 0.5 s failure-flush tick.
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
auth_failure_delay = 0
"""
        self.conf_path.write_text(conf)

    def _start_master(self) -> bool:
        """Start the master and wait for both listeners; False if a port was taken meanwhile."""
        mark = len(self.log())
        out = (self.base / "dovecot.out").open("wb")  # only this attempt's complaints
        try:
            self.proc = subprocess.Popen(
                [str(DOVECOT), "-F", "-c", str(self.conf_path)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            out.close()
        proc = self.proc
        ports = (self.imap_port, self.imaps_port)

        def up() -> bool:
            # An open port alone could be someone else's listener on a port taken meanwhile;
            # the master logs "starting up" only after it has bound all of its listeners.
            return "starting up" in self.log()[mark:] and all(_port_open(p) for p in ports)

        ready = _wait_until(lambda: proc.poll() is not None or up(), 10)
        if ready and proc.poll() is None:
            return True
        said = _read(self.base / "dovecot.out") + self.log()[mark:]
        if proc.poll() is not None and "Address already in use" in said:
            self.proc = None
            _kill_group(proc.pid)
            return False
        raise RuntimeError(self._failure("Dovecot did not start listening"))

    def stop(self) -> None:
        """Stop every process of this instance and wait until they are gone.

        Idempotent and safe after a half-failed start. SIGTERM goes to the whole process group
        at once: sent to the master alone it makes the master wait a fixed second for its
        children, which would be most of a test module's Dovecot time. Even so the master
        sometimes waits that second (an imap process still exiting after LOGOUT), so after
        0.3 s the group gets SIGKILL: nothing of an instance is worth keeping once it stops,
        and no login or imap process may outlive it.
        """
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.stop)
        proc, self.proc = self.proc, None
        if proc is None:
            return
        pgrp = proc.pid  # start_new_session: the master leads its own group
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgrp, signal.SIGTERM)
            try:
                proc.wait(0.3)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgrp, signal.SIGKILL)
                proc.wait(5)
        _kill_group(pgrp)

    def close(self) -> None:
        """Stop Dovecot and remove the instance directory (keeping a copy of the log)."""
        self.stop()
        if self.base == Path() or not self.base.exists():
            return
        if self.parent is not None and self.base.parent != self.parent and self.parent.is_dir():
            with contextlib.suppress(OSError):
                shutil.copyfile(self.log_path, self.parent / f"{self.base.name}.log")
        shutil.rmtree(self.base, ignore_errors=True)

    # ----------------------------------------------------------------- IMAP helpers

    @contextlib.contextmanager
    def imap(self, user: str | None = None) -> Iterator[imaplib.IMAP4]:
        """A logged-in stdlib imaplib session on the plain port, logged out on exit.

        Deliberately not IMAPClient: the harness checks the code under test, so it should not
        share its IMAP library. AUTHENTICATE PLAIN because imaplib's LOGIN is ASCII-only.
        """
        name = user or self.user
        secret = self.passwords[name]
        conn = imaplib.IMAP4("127.0.0.1", self.imap_port, timeout=10)
        try:
            conn.authenticate("PLAIN", lambda _: f"\0{name}\0{secret}".encode())
            yield conn
        finally:
            with contextlib.suppress(imaplib.IMAP4.error, OSError):
                conn.logout()

    def create(self, folder: str, user: str | None = None) -> None:
        with self.imap(user) as conn:
            _check(conn.create(_quote(folder)), f"CREATE {folder}")

    def append(
        self,
        folder: str,
        raw: bytes,
        flags: Iterable[str] = (),
        *,
        when: dt.datetime | None = None,
        user: str | None = None,
    ) -> int:
        """APPEND a message (``when`` sets its internal date); return its UID (APPENDUID)."""
        return self.append_many(folder, [(raw, flags, when)], user=user)[0]

    def append_many(
        self,
        folder: str,
        messages: Iterable[tuple[bytes, Iterable[str], dt.datetime | None]],
        *,
        user: str | None = None,
    ) -> list[int]:
        """APPEND ``(raw, flags, when)`` messages in one session (a login costs ~50 ms)."""
        uids = []
        with self.imap(user) as conn:
            for raw, flags, when in messages:
                flag_list = "(" + " ".join(flags) + ")"
                stamp = imaplib.Time2Internaldate(when) if when is not None else None
                data = _check(
                    conn.append(_quote(folder), flag_list, stamp, raw), f"APPEND {folder}"
                )
                match = re.search(rb"\[APPENDUID \d+ (\d+)\]", data[-1] or b"")
                if not match:
                    raise RuntimeError(f"APPEND {folder}: no APPENDUID in {data!r}")
                uids.append(int(match.group(1)))
        return uids

    def flags(self, folder: str, user: str | None = None) -> dict[int, set[str]]:
        """UID -> flags of every message, read through EXAMINE so reading changes nothing.

        ``\\Recent`` is left out: it belongs to whichever session saw a message first, which
        is not something a scan can be asked to preserve.
        """
        with self.imap(user) as conn:
            _check(conn.select(_quote(folder), readonly=True), f"EXAMINE {folder}")
            typ, data = conn.uid("FETCH", "1:*", "(FLAGS)")
            _check((typ, data), f"FETCH FLAGS in {folder}")
        result: dict[int, set[str]] = {}
        for item in data:
            if not isinstance(item, bytes):
                continue
            uid = re.search(rb"UID (\d+)", item)
            flags = re.search(rb"FLAGS \(([^)]*)\)", item)
            if uid and flags:
                names = flags.group(1).decode().split()
                result[int(uid.group(1))] = {f for f in names if f != r"\Recent"}
        return result

    def maildir_files(self, folder: str, user: str | None = None) -> list[Path]:
        """Message files of ``folder`` in ``new/`` and ``cur/``."""
        box = self.maildir(folder, user)
        return sorted(p for sub in ("new", "cur") for p in (box / sub).glob("*") if p.is_file())

    # ----------------------------------------------------------------- plumbing

    def log(self) -> str:
        """The whole log so far (written by Dovecot's log process: poll, don't assume)."""
        return _read(self.log_path)

    def log_mark(self, timeout: float = 5.0) -> int:
        """End of the log once every earlier session has logged its end, for ``since=``.

        Dovecot logs asynchronously, and a session's summary ("Disconnected: Logged out ...")
        is written after the client has already seen the reply to LOGOUT, so without the wait
        a previous test's summary could land after the mark and be taken for the next one's.
        """
        logins = re.compile(r"imap-login: Info: Login: ")
        ends = re.compile(r" imap\([^)]*\)<[^>]*><[^>]*>: Info: Disconnected")

        def settled() -> bool:
            text = self.log()
            return len(logins.findall(text)) == len(ends.findall(text))

        if not _wait_until(settled, timeout, 0.01):
            raise TimeoutError(self._failure("sessions still open: no session summary logged"))
        return len(self.log())

    def wait_for_log(self, pattern: str, since: int = 0, timeout: float = 5.0) -> list[str]:
        """Wait until a log line after ``since`` matches the regex; return all matching lines.

        Useful lines: ``imap-login: Info: Login: user=<u>, ..., TLS,`` (``secured`` instead of
        ``TLS`` means no TLS on loopback) and the session summary ``imap(u)...: Disconnected:
        Logged out ... hdr_count=N ... body_count=M``, written when a session ends.
        """
        regex = re.compile(pattern)

        def lines() -> list[str]:
            return [line for line in self.log()[since:].splitlines() if regex.search(line)]

        if not _wait_until(lambda: bool(lines()), timeout, 0.02):
            raise TimeoutError(self._failure(f"no log line matches {pattern!r}"))
        return lines()

    def _failure(self, what: str) -> str:
        parts = [f"{what} (instance {self.base})"]
        if self.proc is not None and self.proc.poll() is not None:
            parts.append(f"master exited with rc {self.proc.returncode}")
        parts.append("master output:\n" + _tail(_read(self.base / "dovecot.out")))
        parts.append("dovecot.log tail:\n" + _tail(self.log()))
        return "\n".join(parts)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _check(response: tuple[str, list[bytes | None]], what: str) -> list[bytes | None]:
    typ, data = response
    if typ != "OK":
        raise RuntimeError(f"{what}: {typ} {data!r}")
    return data
