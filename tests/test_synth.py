"""The shared synthetic-mail generator (``tests/support/synth.py``) stays what its users need.

The incident examples are checked-in files with known answers: moving or changing the
generator must not change a byte of them. The benchmarks' mix must be deterministic and say
truthfully how many recipients each message has (the benchmarks check mailguard against it),
so that is checked here with the standard library, not with mailguard.
"""

from __future__ import annotations

import email.parser
import email.policy
import email.utils
import importlib.util
import random
from collections import Counter

from tests.conftest import ROOT
from tests.support import synth

INCIDENTS = ROOT / "examples" / "incidents"


def test_incident_examples_regenerate_byte_for_byte() -> None:
    spec = importlib.util.spec_from_file_location("generate", INCIDENTS / "generate.py")
    assert spec is not None and spec.loader is not None
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    examples = generate.build(random.Random(2020))
    assert len(examples) == len(list(INCIDENTS.glob("*.eml"))) == 11
    for example in examples:
        assert synth.render(example) == (INCIDENTS / example.filename).read_bytes(), example
    expected = (INCIDENTS / "expected.toml").read_text(encoding="utf-8")
    assert generate.expected_toml(examples) == expected


def visible_recipients(data: bytes) -> int:
    end = data.find(b"\r\n\r\n")
    head = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(data[:end])
    fields = head.get_all("to", []) + head.get_all("cc", [])
    return len({addr.casefold() for _, addr in email.utils.getaddresses(fields)})


def test_standard_mix_is_deterministic_and_counts_its_recipients() -> None:
    mix = synth.build_mix(1729, 50)
    assert [s.data for s in mix] == [s.data for s in synth.build_mix(1729, 50)]
    assert [s.data for s in mix] != [s.data for s in synth.build_mix(1730, 50)]
    assert Counter(s.kind for s in mix) == {"small": 90, "cc300": 8, "attachment": 2}
    for sample in mix:
        assert visible_recipients(sample.data) == sample.visible, sample.kind
    assert {s.visible for s in mix if s.kind == "cc300"} == {301}
    assert all(len(s.data) > 2_000_000 for s in mix if s.kind == "attachment")


def test_milter_messages_expose_300_personal_addresses() -> None:
    cc300 = synth.cc300_message("hr@serviceco.example").replace("\n", "\r\n").encode()
    assert visible_recipients(cc300) == 301
    head = cc300[: cc300.find(b"\r\n\r\n")].decode()
    cc = head[head.index("Cc:") : head.index("\r\nSubject:")]
    domains = Counter(addr.rsplit("@", 1)[1] for _, addr in email.utils.getaddresses([cc[3:]]))
    assert sum(domains.values()) == 300 and set(domains) <= set(synth.PERSONAL_DOMAINS)
    clean = synth.clean_message("alice@example.test", "bob@example.test")
    assert visible_recipients(clean.replace("\n", "\r\n").encode()) == 1
    assert 1_800 < len(clean) < 2_200
