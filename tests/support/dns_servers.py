"""DNS servers on loopback for the tests: a real ``unbound`` and a fault-injecting fake.

``unbound`` answers from a ``static`` local zone (every other name is REFUSED, so nothing
is ever forwarded off the machine): MX, null MX, address-only, no-data and missing names.
The in-process server (dnslib) exists only for what unbound will not do on demand: answer
late, answer SERVFAIL, or truncate over UDP.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dns.message
import dns.query
from dnslib import QTYPE, RCODE, RR, DNSRecord
from dnslib.server import BaseResolver, DNSServer

from tests.support.packages import ensure_packages
from tests.support.procs import tail

UNBOUND = Path("/usr/sbin/unbound")

ZONE = "example."
LOCAL_DATA = [
    "example. 300 IN SOA ns.example. admin.example. 1 3600 600 86400 60",
    "mx.example. 300 IN MX 10 mail.mx.example.",
    "mail.mx.example. 300 IN A 192.0.2.25",
    "null.example. 300 IN MX 0 .",
    "aonly.example. 300 IN A 192.0.2.1",
    "v6only.example. 300 IN AAAA 2001:db8::1",
    'nodata.example. 300 IN TXT "no mail here"',
]
#: What the zone holds, as the service should classify it.
EXPECTED = {
    "mx.example": "deliverable",
    "null.example": "null-mx",
    "aonly.example": "deliverable",
    "v6only.example": "deliverable",
    "nodata.example": "no-mx-no-address",
    "missing.example": "nxdomain",
}


def free_udp_tcp_port() -> int:
    """A loopback port free for both UDP and TCP a moment ago."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return int(port)
    raise RuntimeError("no free port")


def answers(port: int, name: str = "mx.example.") -> bool:
    try:
        query = dns.message.make_query(name, "MX")
        dns.query.udp(query, "127.0.0.1", port=port, timeout=0.2)
    except Exception:
        return False
    return True


class Unbound:
    """``unbound -d`` on 127.0.0.1:PORT with the test zone; nothing recursive."""

    def __init__(self, directory: Path, extra: Sequence[str] = ()) -> None:
        """``extra``: more records of the ``example.`` zone (the benchmark's 60 domains)."""
        ensure_packages("unbound")
        self.port = free_udp_tcp_port()
        conf = directory / "unbound.conf"
        lines = [
            "server:",
            f"  interface: 127.0.0.1@{self.port}",
            f"  port: {self.port}",
            "  do-daemonize: no",
            '  username: ""',
            '  chroot: ""',
            f'  directory: "{directory}"',
            f'  pidfile: "{directory}/unbound.pid"',
            "  use-syslog: no",
            "  do-ip6: no",
            "  access-control: 127.0.0.0/8 allow",
            '  module-config: "iterator"',
            "  num-threads: 1",
            '  local-zone: "." refuse',
            f'  local-zone: "{ZONE}" static',
            *[f'  local-data: "{line}"'.replace('"no mail here"', "'no mail here'")
              for line in [*LOCAL_DATA, *extra]],
            "remote-control:",
            "  control-enable: no",
        ]  # fmt: skip
        conf.write_text("\n".join(lines) + "\n")
        self.log = directory / "unbound.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [str(UNBOUND), "-d", "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 10
        while not answers(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError("unbound did not start:\n" + tail(self.log.read_text()))
            time.sleep(0.05)

    @property
    def server(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class _Faulty(BaseResolver):  # type: ignore[misc]
    def __init__(self, owner: FaultServer) -> None:
        self.owner = owner

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        owner = self.owner
        name = str(request.q.qname).rstrip(".")
        owner.queries.append((name, QTYPE[request.q.qtype], handler.protocol))
        reply = request.reply()
        label = name.split(".")[0]
        if label.startswith("slow"):
            time.sleep(owner.delay)
        if label.startswith("servfail"):
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        if label.startswith("trunc") and handler.protocol == "udp":
            reply.header.tc = 1
            return reply
        if QTYPE[request.q.qtype] == "MX" and not label.startswith("gone"):
            reply.add_answer(*RR.fromZone(f"{name}. 300 IN MX 10 mail.{name}."))
        elif label.startswith("gone"):
            reply.header.rcode = RCODE.NXDOMAIN
            reply.add_auth(*RR.fromZone("example. 300 IN SOA ns.example. a.example. 1 1 1 1 30"))
        return reply


class FaultServer:
    """UDP and TCP on one loopback port. Names starting with ``slow`` answer after ``delay``;
    ``servfail``: SERVFAIL; ``trunc``: truncated over UDP, whole over TCP; ``gone``:
    NXDOMAIN; anything else has an MX. Every query is recorded in :attr:`queries`."""

    def __init__(self, delay: float = 3.0) -> None:
        self.delay = delay
        self.queries: list[tuple[str, str, str]] = []
        self.port = free_udp_tcp_port()
        resolver = _Faulty(self)
        self.servers = [
            DNSServer(resolver, port=self.port, address="127.0.0.1", tcp=tcp, logger=_Quiet())
            for tcp in (False, True)
        ]
        for server in self.servers:
            server.server.daemon_threads = True
            # A late answer to a client that gave up (or after close) is no test failure.
            server.server.handle_error = lambda *args: None
            server.start_thread()

    @property
    def server(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        for server in self.servers:
            server.stop()
            server.server.server_close()


class _Quiet:
    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None
