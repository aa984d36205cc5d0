"""DKIM and rewrite: mailguard goes before the signer in ``smtpd_milters``.

A rewrite edits the header block, and DKIM signs it (To and Cc are in the signed list):
an edit after signing breaks the signature at every receiver. Postfix runs milters in the
order listed and hands each the message as the previous one left it, so with mailguard
first the real OpenDKIM (Debian ``opendkim``) signs the rewritten message. The signature is
verified with dkimpy, whose ``dnsfunc`` serves the generated test key: no network. The
reverse order is tried too, to show the check would catch a broken signature.
"""

from __future__ import annotations

import base64
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import dkim
import pytest

from tests.conftest import eml
from tests.support.milter_process import MilterProcess
from tests.support.packages import ensure_packages
from tests.support.postfix import PostfixInstance, ensure_postfix_installed
from tests.support.procs import free_ports, port_open, wait_until

DOMAIN = "serviceco.example"
SELECTOR = "mgtest"
OPENDKIM = "/usr/sbin/opendkim"


class OpenDKIM:
    """A signing-only OpenDKIM on a loopback port, with a key made for this run."""

    def __init__(self) -> None:
        ensure_packages("opendkim", "openssl")
        self.dir = Path(tempfile.mkdtemp(prefix="mailguard-dkim-", dir="/var/tmp"))
        key = self.dir / "test.private"
        subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True,
                       capture_output=True)  # fmt: skip
        key.chmod(0o600)
        der = subprocess.run(
            ["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"],
            check=True, capture_output=True,
        ).stdout  # fmt: skip
        self.record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)
        (self.port,) = free_ports(1)
        conf = self.dir / "opendkim.conf"
        conf.write_text(
            f"Syslog no\nMode s\nDomain {DOMAIN}\nSelector {SELECTOR}\nKeyFile {key}\n"
            f"Socket inet:{self.port}@127.0.0.1\nPidFile {self.dir}/opendkim.pid\n"
            "Canonicalization relaxed/simple\nInternalHosts 127.0.0.1\nBackground no\n"
            # A throwaway key under /var/tmp, which other users can write to.
            "RequireSafeKeys false\n",
            encoding="utf-8",
        )
        self.log = (self.dir / "opendkim.log").open("wb")
        self.proc = subprocess.Popen([OPENDKIM, "-f", "-x", str(conf)], stdout=self.log,
                                     stderr=subprocess.STDOUT)  # fmt: skip
        if not wait_until(lambda: port_open(self.port) or self.proc.poll() is not None, 15):
            raise RuntimeError("opendkim did not listen within 15 s")
        if self.proc.poll() is not None:
            raise RuntimeError((self.dir / "opendkim.log").read_text(errors="replace"))

    @property
    def spec(self) -> str:
        return f"inet:127.0.0.1:{self.port}"

    def dns(self, name: bytes, timeout: int = 5) -> bytes:
        """dkimpy's ``dnsfunc``: the TXT record of our selector, nothing else."""
        return self.record if name == f"{SELECTOR}._domainkey.{DOMAIN}.".encode() else b""

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.log.close()
        subprocess.run(["rm", "-rf", str(self.dir)], check=False)


@pytest.fixture(scope="module")
def opendkim() -> Iterator[OpenDKIM]:
    signer = OpenDKIM()
    yield signer
    signer.close()


@pytest.fixture(scope="module")
def milter() -> Iterator[MilterProcess]:
    with MilterProcess('[milter]\non_block = "rewrite"\n') as process:
        yield process


@pytest.fixture(scope="module")
def postfix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostfixInstance]:
    ensure_postfix_installed()
    with PostfixInstance(tmp_path_factory.mktemp("postfix-dkim")) as instance:
        yield instance


def send_and_receive(postfix: PostfixInstance, subject: str) -> bytes:
    people = [f"person{i}@gmail.com" for i in range(60)]
    raw = eml(
        f"From: HR <hr@{DOMAIN}>\nTo: {', '.join(people[:30])}\nCc: {', '.join(people[30:])}\n"
        f"Subject: {subject}\nDate: Tue, 01 Dec 2026 09:00:00 +0000\n"
        f"Message-ID: <{subject.replace(' ', '.')}@{DOMAIN}>",
        "Welcome aboard.\r\nSee you on Monday.",
    )
    postfix.clear_sink()
    with postfix.smtp() as smtp:
        smtp.sendmail(f"hr@{DOMAIN}", people, raw)
    postfix.wait_idle()
    deliveries = postfix.sink_deliveries()
    assert {d.data for d in deliveries} and len({d.data for d in deliveries}) == 1
    return deliveries[0].data.replace(b"\n", b"\r\n")  # smtp-sink stored LF for CRLF


def test_mailguard_before_opendkim_a_rewritten_message_verifies(
    postfix: PostfixInstance, milter: MilterProcess, opendkim: OpenDKIM
) -> None:
    postfix.set_milter(f"{milter.spec}, {opendkim.spec}")
    data = send_and_receive(postfix, "mailguard first")
    assert b"\r\nTo: undisclosed-recipients:;\r\n" in data and b"@gmail.com" not in data
    assert data.startswith(b"DKIM-Signature:") or b"\r\nDKIM-Signature:" in data
    assert dkim.verify(data, dnsfunc=opendkim.dns)
    assert "action=rewrite" in milter.decisions()[-1]


def test_the_other_order_breaks_the_signature(
    postfix: PostfixInstance, milter: MilterProcess, opendkim: OpenDKIM
) -> None:
    """Why the README insists on the order: signed first, rewritten after, fails to verify."""
    postfix.set_milter(f"{opendkim.spec}, {milter.spec}")
    data = send_and_receive(postfix, "signer first")
    assert b"\r\nTo: undisclosed-recipients:;\r\n" in data and b"DKIM-Signature:" in data
    assert not dkim.verify(data, dnsfunc=opendkim.dns)
