"""``mailguard domains``: recipient domains with counts, candidate internal domains by
shared tenant MX/SPF (a real unbound on loopback), lookalikes of internal ones, and no
network at all without ``--dns``."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mailguard.archive import domain_survey
from mailguard.archive.domain_survey import is_shared, spf_includes, survey
from mailguard.cli import app
from mailguard.config import Config
from mailguard.sources import Input
from tests.support.dns_servers import FaultServer, Unbound
from tests.support.doubling import assert_doubling_linear

ORG = "acmetrust.example"
TENANT_MX = "mx1.acmetrust-mail.example"
TENANT_SPF = "_spf.acmetrust-mail.example"
ZONE = [
    # The organisation: its own tenant MX and SPF include, plus Google's and Microsoft's
    # shared ones (a mixed estate), so sharing those must not be enough.
    f"{ORG}. 300 IN MX 10 {TENANT_MX}.",
    f"{ORG}. 300 IN MX 20 aspmx.l.google.com.",
    f"{ORG}. 300 IN TXT 'v=spf1 include:_spf.google.com include:spf.protection.outlook.com "
    f"include:{TENANT_SPF} -all'",
    # A sibling on the same tenant MX host.
    f"acmegroup.example. 300 IN MX 10 {TENANT_MX}.",
    # A sibling sharing only the SPF include (its MX is Microsoft's per-domain host).
    "acmehealth.example. 300 IN MX 10 acmehealth-example.mail.protection.outlook.com.",
    f"acmehealth.example. 300 IN TXT 'v=spf1 include:{TENANT_SPF} ~all'",
    # Strangers on Google Workspace and on Microsoft 365: shared hosts and includes only.
    "shop.example. 300 IN MX 1 aspmx.l.google.com.",
    "shop.example. 300 IN MX 5 alt1.aspmx.l.google.com.",
    "shop.example. 300 IN TXT 'v=spf1 include:_spf.google.com ~all'",
    "bank.example. 300 IN MX 10 bank-example.mail.protection.outlook.com.",
    "bank.example. 300 IN TXT 'v=spf1 include:spf.protection.outlook.com -all'",
    # A lookalike on the tenant's MX (a defensive registration, or a mistake): both marks,
    # but never in the suggestion.
    f"acmetrustt.example. 300 IN MX 10 {TENANT_MX}.",
]
LOOKALIKE = "acmetrsut.example"  # swapped letters; not in the zone (NXDOMAIN)


@pytest.fixture(scope="module")
def unbound(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Unbound]:
    server = Unbound(tmp_path_factory.mktemp("unbound-domains"), ZONE)
    yield server
    server.close()


def eml(sender: str, to: str, cc: str = "", bcc: str = "") -> bytes:
    lines = [f"From: {sender}", f"To: {to}"]
    lines += [f"Cc: {cc}"] if cc else []
    lines += [f"Bcc: {bcc}"] if bcc else []
    return ("\r\n".join([*lines, "Subject: hello", "", "Body."]) + "\r\n").encode()


MESSAGES = [
    eml(f"a@{ORG}", f"x@acmegroup.example, y@acmegroup.example, z@{ORG}"),
    eml(f"a@{ORG}", "x@acmegroup.example", cc="p@shop.example"),
    eml(f"b@{ORG}", "q@acmehealth.example", bcc="r@bank.example"),
    eml(f"b@{ORG}", f"t@{LOOKALIKE}"),
    eml("someone@elsewhere.example", "u@shop.example"),
    eml(f"c@{ORG}", "v@acmetrustt.example"),
]


@pytest.fixture
def mail(tmp_path: Path) -> Path:
    folder = tmp_path / "mail"
    folder.mkdir()
    for n, data in enumerate(MESSAGES):
        (folder / f"{n}.eml").write_bytes(data)
    return folder


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["domains", "--no-config", *args])
    return result.exit_code, result.stdout


def rows(output: str) -> dict[str, dict[str, object]]:
    return {r["domain"]: r for r in json.loads(output)["domains"]}


def test_candidates_share_tenant_mx_or_spf_not_google_or_microsoft(
    mail: Path, unbound: Unbound
) -> None:
    code, out = run(str(mail), "--dns", "--dns-server", unbound.server, "-f", "json")
    assert code == 0
    data = json.loads(out)
    assert data["organisation"] == [ORG]
    assert data["organisation_basis"] == "most frequent sender domain"
    assert data["fingerprint"] == {"mx": [TENANT_MX], "spf": [TENANT_SPF]}
    found = rows(out)
    assert found["acmegroup.example"]["candidate"] is True
    assert found["acmegroup.example"]["shares"] == [f"mx {TENANT_MX}"]
    assert found["acmegroup.example"]["messages"] == 2
    assert found["acmegroup.example"]["addresses"] == 2
    assert found["acmehealth.example"]["shares"] == [f"spf include:{TENANT_SPF}"]
    for stranger in ("shop.example", "bank.example"):
        assert found[stranger]["candidate"] is False, stranger
        assert found[stranger]["dns"] == "nothing shared"
    assert found["shop.example"]["messages"] == 2  # Cc and To, two messages
    assert found[ORG]["internal"] is True
    assert found[LOOKALIKE]["suspicious"]["intended"] == ORG  # type: ignore[index]
    assert found[LOOKALIKE]["candidate"] is False
    assert found["acmetrustt.example"]["candidate"] is True
    assert found["acmetrustt.example"]["suspicious"]["intended"] == ORG  # type: ignore[index]
    assert data["suggestion"] == (
        f'internal_domains = ["{ORG}", "acmegroup.example", "acmehealth.example"]'
    )


def test_shared_list_is_what_keeps_strangers_out(
    mail: Path, unbound: Unbound, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without the shared list, Google's MX and Microsoft's include would link strangers.
    monkeypatch.setattr(domain_survey, "SHARED_MX", ())
    monkeypatch.setattr(domain_survey, "SHARED_SPF", ())
    found = rows(run(str(mail), "--dns", "--dns-server", unbound.server, "-f", "json")[1])
    assert found["shop.example"]["candidate"] is True
    assert found["bank.example"]["candidate"] is True


def test_text_output_marks_and_suggests(mail: Path, unbound: Unbound) -> None:
    code, out = run(str(mail), "--dns", "--dns-server", unbound.server)
    assert code == 0
    line = {ln.split()[0]: ln for ln in out.splitlines() if ln.split()[:1] != []}
    assert "candidate internal" in line["acmegroup.example"]
    assert "candidate internal" not in line["shop.example"]
    assert "suspicious: looks like acmetrust.example" in line[LOOKALIKE]
    assert out.rstrip().endswith(
        f'internal_domains = ["{ORG}", "acmegroup.example", "acmehealth.example"]'
    )


def test_configured_internal_domains_are_the_organisation(mail: Path, unbound: Unbound) -> None:
    args = ["--internal-domain", "acmegroup.example", "--dns", "--dns-server", unbound.server]
    data = json.loads(run(str(mail), *args, "-f", "json")[1])
    assert data["organisation"] == ["acmegroup.example"]
    assert data["organisation_basis"] == "configured"
    found = {r["domain"]: r for r in data["domains"]}
    assert found[ORG]["candidate"] is True  # shares the tenant MX with acmegroup.example
    assert found["acmehealth.example"]["candidate"] is False  # acmegroup has no SPF
    assert found[LOOKALIKE]["suspicious"] is None  # not a lookalike of acmegroup.example


def test_without_dns_no_resolver_is_built(mail: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("a resolver was built without --dns")

    monkeypatch.setattr("mailguard.resolver.DnsService.__init__", no_network)
    monkeypatch.setattr("mailguard.resolver._dnspython", no_network)
    code, out = run(str(mail), "-f", "json")
    assert code == 0
    data = json.loads(out)
    assert data["dns"] is False and data["suggestion"] is None
    found = {r["domain"]: r for r in data["domains"]}
    assert {r["dns"] for r in found.values()} == {"not looked up (no --dns)"}
    assert found[LOOKALIKE]["suspicious"]["kind"] == "swapped-letters"  # lookalikes need no network
    text = run(str(mail))[1]
    assert "run with --dns" in text


def test_mbox_source_counts_the_same(mail: Path, tmp_path: Path) -> None:
    mbox = tmp_path / "sent.mbox"
    with mbox.open("wb") as out:
        for data in MESSAGES:
            out.write(b"From x@y Thu Jan  1 00:00:00 2026\n" + data.replace(b"\r\n", b"\n") + b"\n")
    from_files = rows(run(str(mail), "-f", "json")[1])
    from_mbox = rows(run(str(mbox), "-f", "json")[1])
    assert from_mbox == from_files


def test_source_error_is_exit_2_with_the_rest_still_listed(mail: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["domains", "--no-config", str(mail), str(tmp_path / "missing"), "-f", "json"]
    )
    assert result.exit_code == 2
    data = json.loads(result.stdout)
    assert "acmegroup.example" in {r["domain"] for r in data["domains"]}
    assert data["errors"][0]["source"].endswith("missing")


def test_imap_url_with_password_is_refused_without_echoing_it(mail: Path) -> None:
    result = CliRunner().invoke(
        app, ["domains", "--no-config", "imaps://bob:hunter2@127.0.0.1/Sent", "-f", "json"]
    )
    assert result.exit_code == 2
    assert "hunter2" not in result.stdout + result.stderr


def test_spf_parsing_and_shared_names() -> None:
    assert spf_includes(["v=spf1 include:A.example ~include:b.example. redirect=c.example"]) == {
        "a.example", "b.example", "c.example",
    }  # fmt: skip
    assert spf_includes(["google-site-verification=x include:a.example"]) == set()
    assert is_shared("ALT3.ASPMX.L.GOOGLE.COM.", domain_survey.SHARED_MX)
    assert not is_shared("acme-example.mail.protection.outlook.com", domain_survey.SHARED_MX)
    assert is_shared("spf.protection.outlook.com", domain_survey.SHARED_SPF)


def _survey(n: int) -> Callable[[], object]:
    inputs = [
        Input(f"m{i}", eml("a@org.example", f"u{i}@d{i}.example, v@d{i // 2}.example, w@x.example"))
        for i in range(n)
    ]

    def work() -> None:
        assert len(survey(inputs, Config()).rows) == n + 1

    return work


def test_survey_time_grows_linearly_with_the_mail() -> None:
    assert_doubling_linear(_survey, (4000, 8000), what="the messages")


def test_slow_servers_end_at_the_overall_deadline(tmp_path: Path) -> None:
    # 40 domains whose server answers after 3 s each, asked all at once: the survey ends at
    # its deadline with "no answer" for them, not after 40 timeouts one by one.
    faults = FaultServer(delay=3.0)
    try:
        folder = tmp_path / "mail"
        folder.mkdir()
        to = ", ".join(f"u@slow{i}.example" for i in range(40))
        (folder / "1.eml").write_bytes(eml("a@org.example", to))
        started = time.monotonic()
        code, out = run(
            str(folder), "--dns", "--dns-server", faults.server, "--deadline", "0.5", "-f", "json"
        )
        elapsed = time.monotonic() - started
    finally:
        faults.close()
    assert code == 0
    assert elapsed < 2.0, elapsed
    found = rows(out)
    assert len(found) == 40
    assert {r["dns"] for r in found.values()} == {"no answer"}
    assert all(r["candidate"] is False for r in found.values())
