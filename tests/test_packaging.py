"""The wheel must carry the rule files: an installed mailguard has no source checkout."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import ROOT


def test_wheel_ships_rules_and_data(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--quiet", "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True,
    )  # fmt: skip
    wheel = next(tmp_path.glob("mailguard_dlp-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {Path(n).name for n in names if n.startswith("mailguard/_rules/")}
    in_repo = {p.name for p in (ROOT / "rules").glob("*.toml")}
    assert in_repo <= shipped
    assert {"personal_domains.txt", "sensitive_terms.toml"} <= shipped
    assert any(n.endswith("entry_points.txt") for n in names)
    assert "mailguard/outputs/scan_html.css" in names  # the HTML register's stylesheet

    # Unpacked as an installer would, the package finds its rules inside itself.
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    probe = (
        "import mailguard.rules as r, mailguard; "
        "print(r.rules_dir()); print(len(r.load_rules())); "
        "print(mailguard.check(open({!r}, 'rb').read()).verdict); "
        "from mailguard.outputs.scan_html import stylesheet; "
        "print(stylesheet() == open({!r}, encoding='utf-8').read())"
    ).format(
        str(ROOT / "examples" / "incidents" / "01-contact-tracers-cc.eml"),
        str(ROOT / "mailguard" / "outputs" / "scan_html.css"),
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env={"PYTHONPATH": str(site)},
        check=True, capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    assert out[0] == str(site / "mailguard" / "_rules")
    assert int(out[1]) == len(in_repo)
    assert out[2] == "block"
    assert out[3] == "True"  # read from the installed package, not the checkout
