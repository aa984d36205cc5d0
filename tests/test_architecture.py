"""Architecture rules that keep "one rule, one file" true.

Knowledge about a particular rule lives in its rule file and its check function; the
engine, the sources, the milter and the outputs decide from rule metadata (reads, needs,
remedy, tags, scoring), so a new rule never needs an edit outside ``rules/`` and
``mailguard/checks/``.
"""

from __future__ import annotations

import re

from tests.conftest import ROOT

PACKAGE = ROOT / "mailguard"
RULE_CODE = re.compile(r"MG\d{3}")


def test_no_rule_code_outside_the_checks() -> None:
    """Source text, comments and docstrings included: a rule code outside checks/ is
    knowledge about one rule that leaked out of its file."""
    leaks = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if "checks" not in path.relative_to(PACKAGE).parts
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if RULE_CODE.search(line)
    ]
    assert not leaks, "\n".join(leaks)


def test_the_check_above_sees_a_planted_code(tmp_path) -> None:
    """The pattern catches codes in words and docstrings alike (the test is not vacuous)."""
    assert RULE_CODE.search('"""Raised as MG001."""')
    assert RULE_CODE.search("codes & {'MG101'}")
    assert not RULE_CODE.search("MG10 or MGX01")


def test_checks_do_not_score() -> None:
    """Checks report facts; the engine turns them into points from the rule's [scoring]."""
    for path in (PACKAGE / "checks").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "ramp" not in text and "mailguard.scoring" not in text, path
