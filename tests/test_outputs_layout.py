"""The outputs package stays small files, one emitter per format (issue 9, point 5)."""

from __future__ import annotations

import importlib

from mailguard.outputs import FORMATS
from mailguard.outputs.scan import SCAN_FORMATS
from tests.conftest import ROOT

EMITTERS = {
    **{f"check:{fmt}": f"mailguard.outputs.{mod}" for fmt, mod in
       (("text", "text"), ("json", "json_report"), ("sarif", "sarif"))},
    **{f"scan:{fmt}": f"mailguard.outputs.scan_{fmt}" for fmt in SCAN_FORMATS},
}  # fmt: skip


def test_every_format_has_its_own_module():
    assert {k for k in EMITTERS if k.startswith("check:")} == {f"check:{f}" for f in FORMATS}
    modules = [importlib.import_module(name) for name in EMITTERS.values()]
    assert len({m.__file__ for m in modules}) == len(EMITTERS)


def test_no_output_module_is_longer_than_500_lines():
    long = {
        path.name: n
        for path in (ROOT / "mailguard" / "outputs").glob("*.py")
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > 500
    }
    assert not long
