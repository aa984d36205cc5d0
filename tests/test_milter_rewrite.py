"""The milter's ``rewrite`` action: frames, fallbacks, monitor mode and the log line.

Frame-level tests drive :class:`~mailguard.milter.session.Session` with no sockets; the
header-index tests at the end run the daemon over a real socket with the byte-exact client
and replay its edits the way Postfix and Sendmail number fields. The real Postfix and
OpenDKIM tests are in ``tests/test_milter_rewrite_postfix.py``.
"""

from __future__ import annotations

import asyncio
import struct
import threading
from pathlib import Path

import pytest

from mailguard.config import Config
from mailguard.engine import Engine
from mailguard.errors import ConfigError
from mailguard.milter import protocol as p
from mailguard.milter import rewrite
from mailguard.milter.decision import Outcome, log_fields, outcome_for
from mailguard.milter.server import ListenSpec, MilterServer
from mailguard.milter.settings import MilterSettings, from_mapping
from mailguard.remedy import Edit, apply_to_fields
from tests.support import custom_rule
from tests.support.milter_client import MilterClient
from tests.test_milter_session import feed_message, new_session
from tests.test_remedy import sendmail_apply

PEOPLE = [f"person{i}@gmail.com" for i in range(40)]
RISKY = [("From", " HR <hr@serviceco.example>"), ("To", " " + ", ".join(PEOPLE[:20])),
         ("Subject", " Welcome"), ("Cc", " " + ", ".join(PEOPLE[20:]))]  # fmt: skip
REWRITE = MilterSettings(on_block="rewrite")


def decide(
    headers: list[tuple[str, str]],
    settings: MilterSettings = REWRITE,
    engine: Engine | None = None,
    **offer: int,
) -> tuple[Outcome, dict[str, object]]:
    s = new_session(settings, **offer)
    step = feed_message(s, headers)
    txn = step.decide
    assert txn is not None
    report = rewrite.judge(engine or Engine(Config()), txn, s.caps.leading_space, "q", 1e12)
    outcome = outcome_for(report, settings, s.caps, txn)
    return outcome, log_fields(report, outcome)


def edits_of(frames: list[bytes]) -> list[Edit]:
    """The header edits in a milter reply, as :mod:`mailguard.remedy` spells them."""
    edits = []
    for frame in frames:
        command, payload = frame[4:5], frame[5:]
        if command == p.CHGHEADER:
            (index,) = struct.unpack_from("!I", payload)
            name, value = payload[4:].split(b"\0")[:2]
            assert value == b""
            edits.append(Edit("delete", name.decode(), index=index))
        elif command == p.ADDHEADER:
            name, value = payload.split(b"\0")[:2]
            edits.append(Edit("add", name.decode(), value.decode()))
    return edits


def delivered(headers: list[tuple[str, str]], frames: list[bytes]) -> list[tuple[str, str]]:
    """The header block after the MTA applied the frames; Postfix and Sendmail must agree."""
    edits = edits_of(frames)
    postfix = apply_to_fields(headers, edits)
    assert postfix == sendmail_apply(headers, tuple(edits))
    return postfix


def test_enforce_rewrite_moves_everybody_out_of_the_header_block() -> None:
    outcome, fields = decide([*RISKY, ("X-Mailguard-Verdict", " pass")])  # forged: goes too
    assert outcome.action == "rewrite" and outcome.frames[-1] == p.SIMPLE[p.CONTINUE]
    after = delivered([*RISKY, ("X-Mailguard-Verdict", " pass")], outcome.frames)
    assert [n for n, _ in after] == ["From", "Subject", "To", "X-Mailguard-Action"]
    assert dict(after)["To"] == " undisclosed-recipients:;"
    assert "@gmail" not in repr(after)
    assert (fields["action"], fields["would"]) == ("rewrite", "reject")
    assert (fields["visible_before"], fields["visible_after"]) == (40, 0)
    assert dict(after)["X-Mailguard-Action"] == " rewritten; visible=40->0; removed=To:1,Cc:1"


def test_without_leading_space_values_are_sent_without_one() -> None:
    outcome, _fields = decide(RISKY, actions=0x1FF, steps=0x1FFFFF & ~p.SMFIP_HDR_LEADSPC)
    assert p.add_header("To", "undisclosed-recipients:;") in outcome.frames


def test_monitor_mode_logs_would_rewrite_and_changes_nothing() -> None:
    outcome, fields = decide(RISKY, MilterSettings(mode="monitor", on_block="rewrite"))
    assert outcome.action == "accept" and outcome.planned == "rewrite"
    edits = edits_of(outcome.frames)
    assert all(e.action == "add" and e.name.startswith("X-Mailguard-") for e in edits)
    assert Edit("add", "X-Mailguard-Action", " monitor; enforce mode would rewrite") in edits
    assert fields["would"] == "rewrite" and fields["visible_before"] == 40


def test_a_finding_without_a_header_remedy_falls_back(tmp_path: Path) -> None:
    custom_rule.write_rule(tmp_path / "rules")
    engine = Engine(Config(rule_paths=(tmp_path / "rules",)))
    headers = [*RISKY, ("X-Note", " about the payslip")]
    s = new_session(REWRITE)
    step = feed_message(s, headers, body=b"Your PAYSLIP is ready.\r\n")
    assert step.decide is not None
    report = rewrite.judge(engine, step.decide, True, "q", 1e12)
    outcome = outcome_for(report, REWRITE, s.caps, step.decide)
    assert outcome.action == "reject"
    assert not [f for f in outcome.frames if f[4:5] in (p.CHGHEADER, p.ADDHEADER)]
    assert log_fields(report, outcome)["rewrite"] == f"fallback:{custom_rule.CODE}"
    quarantine = MilterSettings(on_block="rewrite", rewrite_fallback="quarantine")
    assert outcome_for(report, quarantine, s.caps, step.decide).action == "quarantine"


def test_no_header_changes_granted_means_fallback() -> None:
    outcome, _ = decide(RISKY, actions=p.SMFIF_ADDHDRS)
    assert outcome.action == "reject"
    tempfail = MilterSettings(on_block="rewrite", rewrite_fallback="tempfail")
    outcome, _fields = decide(RISKY, tempfail, actions=p.SMFIF_ADDHDRS)
    assert outcome.action == "tempfail"


def test_fields_not_kept_past_the_header_cap_mean_fallback() -> None:
    """Recipients may hide in fields the milter did not keep: a rewrite could not delete them."""
    settings = MilterSettings(on_block="rewrite", max_header_bytes=1_200)
    headers = [*RISKY, ("To", " hidden@yahoo.com")]
    outcome, fields = decide(headers, settings)
    assert outcome.action == "reject"
    assert fields["rewrite"] == "fallback:header-block-not-read"


def test_on_warn_rewrite_and_a_forged_action_field_deleted_once() -> None:
    headers = [("From", " a@serviceco.example"), ("To", " colleague@serviceco.example"),
               ("X-Mailguard-Action", " forged"), ("Bcc", " x@gmail.com, y@gmail.com")]  # fmt: skip
    settings = MilterSettings(on_warn="rewrite", add_headers="always")
    outcome, _fields = decide(headers, settings)
    assert outcome.action == "rewrite", outcome
    deletes = [e for e in edits_of(outcome.frames) if e.action == "delete"]
    assert deletes.count(Edit("delete", "X-Mailguard-Action", index=1)) == 1
    after = delivered(headers, outcome.frames)
    assert ("To", " colleague@serviceco.example") in after
    assert not [n for n, _ in after if n == "Bcc"]
    assert ("X-Mailguard-Verdict", " pass") in after  # our verdict, of the rewritten message


def test_pass_and_other_actions_are_untouched_by_rewrite_settings() -> None:
    clean = [("From", " a@serviceco.example"), ("To", " colleague@serviceco.example")]
    outcome, fields = decide(clean)
    assert outcome.action == "accept" and outcome.frames == [p.SIMPLE[p.CONTINUE]]
    assert "visible_before" not in fields


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"on_error": "rewrite"}, "on_error"),
        ({"rewrite_fallback": "rewrite"}, "rewrite_fallback"),
        ({"rewrite_to": "everybody"}, "rewrite_to"),
    ],
)
def test_rewrite_settings_are_strict(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_mapping(table)
    assert from_mapping({"on_block": "rewrite", "on_warn": "rewrite"}).on_warn == "rewrite"
    assert from_mapping({"rewrite_to": "sender"}).rewrite_to == "sender"


# ---------------------------------------------------------------- header indexes, live daemon


def test_header_index_edge_cases_over_a_real_socket() -> None:
    """Repeated names in any case, a folded field between them, a forged Action field: the
    daemon's reply deletes each name from its highest index down, and replaying it under
    Postfix's and Sendmail's numbering leaves the same header block with no address."""
    headers = [
        ("From", " hr@serviceco.example"),
        ("To", " " + ", ".join(PEOPLE[:10])),
        ("cc", " " + ",\n\t".join(PEOPLE[10:20])),
        ("X-Mailguard-Action", " forged"),
        ("TO", " " + ", ".join(PEOPLE[20:30])),
        ("Resent-Cc", " " + ", ".join(PEOPLE[30:])),
        ("to", " late@yahoo.com"),
        ("Subject", " hello"),
    ]
    server = MilterServer(Config(), ListenSpec.parse("inet:127.0.0.1:0"), settings=REWRITE)
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    ready = threading.Event()

    async def main() -> None:
        await server.start()
        ready.set()
        await server.serve(stop)

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),))
    thread.start()
    try:
        assert ready.wait(10)
        host, port = server.bound[5:].rsplit(":", 1)
        client = MilterClient((host, int(port)))
        client.negotiate()
        client.connect_info()
        frames = client.message(headers, rcpts=tuple(f"<{a}>" for a in PEOPLE))
        client.close()
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(15)
        loop.close()
    replies = [p.frame(command, payload) for command, payload in frames]
    deletes = [(e.name, e.index) for e in edits_of(replies) if e.action == "delete"]
    assert deletes == [("To", 3), ("To", 2), ("To", 1), ("Cc", 1), ("Resent-Cc", 1),
                       ("X-Mailguard-Action", 1)]  # fmt: skip
    after = delivered(headers, replies)
    assert [n for n, _ in after] == ["From", "Subject", "To", "X-Mailguard-Action"]
    assert "@gmail" not in repr(after) and "@yahoo" not in repr(after)
