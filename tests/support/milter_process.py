"""``mailguard milter`` as a real subprocess, for end-to-end tests and benchmarks.

Started exactly as an admin would start it (the console entry point's code path, a config
file, a unix socket Postfix's unprivileged daemons can reach), so the tests exercise
argument parsing, config loading, logging and signal handling too.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MILTER_ARGV = [sys.executable, "-c", "from mailguard.cli import main; main()", "milter"]


class MilterProcess:
    """One ``mailguard milter`` process; :meth:`restart` swaps its config or mode."""

    def __init__(self, config: str = "", *args: str, inet_port: int | None = None) -> None:
        # Postfix's smtpd (user postfix) must reach the socket: /var/tmp is traversable,
        # pytest's 0700 tmp dirs are not.
        self.dir = Path(tempfile.mkdtemp(prefix="mailguard-milter-", dir="/var/tmp"))
        self.dir.chmod(0o755)
        self.socket = self.dir / "milter.sock"
        self.log_path = self.dir / "milter.log"
        self.inet_port = inet_port
        self.proc: subprocess.Popen[bytes] | None = None
        self.customised = False
        self.start(config, *args)

    @property
    def spec(self) -> str:
        """The Postfix milter spec for ``smtpd_milters``."""
        if self.inet_port is not None:
            return f"inet:127.0.0.1:{self.inet_port}"
        return f"unix:{self.socket}"

    def start(self, config: str = "", *args: str) -> None:
        self.customised = bool(config or args)
        config_path = self.dir / "mailguard.toml"
        config_path.write_text(config, encoding="utf-8")
        argv = [*MILTER_ARGV, "--listen", self.spec, "--config", str(config_path),
                "--socket-mode", "666", *args]  # fmt: skip
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(argv, stdout=log, stderr=log, cwd=self.dir)
        log.close()
        deadline = time.monotonic() + 15
        while not self._listening():
            if self.proc.poll() is not None:
                raise RuntimeError(f"mailguard milter exited at start:\n{self.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"mailguard milter did not listen within 15 s:\n{self.log()}")
            time.sleep(0.02)

    def _listening(self) -> bool:
        if self.inet_port is not None:
            family, address = socket.AF_INET, ("127.0.0.1", self.inet_port)
        else:
            # The daemon chmods its socket just after it starts listening: until then only
            # root (this probe) can connect, and Postfix's smtpd would be refused.
            if not self.socket.exists() or self.socket.stat().st_mode & 0o777 != 0o666:
                return False
            family, address = socket.AF_UNIX, str(self.socket)  # type: ignore[assignment]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(address)
            except OSError:
                return False
        return True

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int | None:
        """Stop the process; returns its exit status."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)

    def kill(self) -> None:
        """SIGKILL: a crash, with no chance to say goodbye to the MTA."""
        self.stop(signal.SIGKILL)

    def restart(self, config: str = "", *args: str) -> None:
        self.stop()
        self.start(config, *args)

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def decisions(self) -> list[str]:
        return [line for line in self.log().splitlines() if " decision " in line]

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> MilterProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
