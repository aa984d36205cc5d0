"""When no message can be accepted at end-of-headers, the milter stops judging there.

A rule that reads every body whatever the recipients (the attachment rules: a text part may
hold a uuencoded file) means no ``pass`` is ever settled by the header block. Judging the
block anyway only ever found refusals, and judged every clean message twice. So the engine
names such rules (:meth:`Engine.body_always_counts`) and the milter then negotiates
end-of-headers away (:func:`mailguard.milter.early.header_decisions`).
"""

from __future__ import annotations

import logging

import pytest

from mailguard.config import from_mapping
from mailguard.engine import Engine, _always_open
from mailguard.milter import protocol as p
from mailguard.milter.early import header_decisions
from mailguard.milter.session import Session
from mailguard.milter.settings import MilterSettings
from mailguard.scoring import Gate, gate_open
from tests.support.synth import MixGenerator

FILE_RULES = ("MG601", "MG602", "MG603")
NO_FILE_RULES = {"rules": {c: {"enabled": False} for c in FILE_RULES}}
OFFERED = 0x1FFFFF  # everything Postfix 3.x offers


def engine(**rules: dict[str, object]) -> Engine:
    return Engine(from_mapping({"rules": {**NO_FILE_RULES["rules"], **rules}}))


def test_the_default_rules_read_every_body_through_the_attachment_rules() -> None:
    assert Engine().body_always_counts("outgoing") == FILE_RULES


def test_gated_body_readers_do_not_count() -> None:
    # MG101/MG102 read the body for sensitive words only above a recipient count.
    assert engine().body_always_counts("outgoing") == ()


@pytest.mark.parametrize(
    ("gate", "always"), [(None, True), (("parties", 0), True), (("parties", 2), False)]
)
def test_a_gate_no_count_can_shut_counts_like_none(gate: Gate, always: bool) -> None:
    assert _always_open(gate) is always
    assert all(gate_open(gate, {"parties": n}) for n in range(5)) is always


def test_input_rules_heavy_enough_to_lift_any_pass_count() -> None:
    heavy = engine(MG003={"weight": 90})
    assert "MG003" in heavy.body_always_counts("outgoing")


@pytest.mark.parametrize("seed", range(40))
def test_when_a_rule_reads_every_body_no_pass_could_settle_at_headers(seed: int) -> None:
    """The claim the milter acts on, checked against the per-message test it replaces."""
    gen = MixGenerator(seed)
    data = gen.small().data if seed % 2 else gen.many_cc(1 + seed).data
    headers = data[: data.find(b"\r\n\r\n") + 2]
    for judge in (Engine(), engine(MG003={"weight": 90})):
        assert judge.body_always_counts("outgoing")
        report = judge.check(headers)
        if report.verdict == "pass":
            assert judge.body_could_change(report)


def test_the_milter_gives_up_end_of_headers_and_says_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = MilterSettings()
    with caplog.at_level(logging.INFO, logger="mailguard.milter"):
        lean = header_decisions(settings, Engine())
    assert settings.decide_at_headers and not lean.decide_at_headers
    assert "rules MG601,MG602,MG603 read every message's body" in caplog.text
    wanted = Session(lean).wanted_protocol(OFFERED)
    # No end-of-headers step; the MAIL step is answered (out-of-scope mail accepted there).
    assert wanted & p.SMFIP_NOEOH and wanted & p.SMFIP_NR_EOH
    assert not wanted & p.SMFIP_NR_MAIL


def test_with_the_attachment_rules_off_end_of_headers_is_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = MilterSettings()
    with caplog.at_level(logging.INFO, logger="mailguard.milter"):
        assert header_decisions(settings, engine()) is settings
        off = MilterSettings(decide_at_headers=False)
        assert header_decisions(off, Engine()) is off  # already off: nothing to say
    assert "read every message's body" not in caplog.text
    wanted = Session(settings).wanted_protocol(OFFERED)
    assert not wanted & p.SMFIP_NOEOH and wanted & p.SMFIP_NR_MAIL
