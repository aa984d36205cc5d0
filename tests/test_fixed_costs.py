"""Issue 10's fixed costs: what a run pays before and after the messages themselves.

Start-up imports only what the command needs, machine output is compact unless asked
otherwise.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from mailguard.cli import app
from tests.conftest import EXAMPLES, ROOT
from tests.scan_archive import EXPECTED, write_mbox

runner = CliRunner()
TRACERS = str(EXAMPLES / "01-contact-tracers-cc.eml")

# What `check --format json` must not load: the milter's server, the archive scanner and
# its IMAP client, DNS, the text report's terminal library.
NOT_FOR_CHECK = (
    "rich",
    "imapclient",
    "dns",
    "asyncio",
    "mailguard.archive",
    "mailguard.milter.server",
    "mailguard.milter.session",
    "mailguard.outputs.text",
)


def _modules_after(*args: str) -> set[str]:
    code = (
        "import sys\n"
        "from mailguard.cli import main\n"
        f"sys.argv = ['mailguard', *{list(args)!r}]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('\\n'.join(sys.modules), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False
    )
    return set(done.stderr.split())


def test_check_json_imports_only_what_it_needs():
    loaded = _modules_after("check", "--no-config", "--format", "json", TRACERS)
    assert "mailguard.engine" in loaded and "mailguard.outputs.json_report" in loaded
    assert not {m for m in loaded if m.split(".")[0] in NOT_FOR_CHECK or m in NOT_FOR_CHECK}
    assert not {m for m in loaded if m.startswith(NOT_FOR_CHECK)}


def test_public_suffix_list_is_parsed_on_first_use_only():
    code = (
        "import sys, mailguard, mailguard.cli, mailguard.domains as d\n"
        "assert d._psl is None and 'publicsuffixlist' not in sys.modules\n"
        "assert d.registrable_domain('a.b.example.co.uk') == 'example.co.uk'\n"
        "first = d.public_suffix_list()\n"
        "assert d.suffix_of('x.nhs.uk') == 'nhs.uk' and d.public_suffix_list() is first\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_check_json_is_compact_unless_pretty():
    compact = runner.invoke(app, ["check", "--no-config", "--format", "json", TRACERS])
    pretty = runner.invoke(app, ["check", "--no-config", "--format", "json", "--pretty", TRACERS])
    assert compact.exit_code == pretty.exit_code == 1
    assert compact.stdout.count("\n") == 1 and '"verdict":"block"' in compact.stdout
    assert '\n  "messages": [' in pretty.stdout
    assert json.loads(compact.stdout) == json.loads(pretty.stdout)


def test_scan_json_is_compact_unless_pretty(tmp_path: Path):
    mbox = str(write_mbox(tmp_path / "sent.mbox"))
    base = ["scan", "--no-config", "--format", "json", "--jobs", "1", mbox]
    compact, pretty = runner.invoke(app, base), runner.invoke(app, [*base, "--pretty"])
    assert compact.stdout.count("\n") == 1 and pretty.stdout.count("\n") > 50
    assert json.loads(compact.stdout)["summary"]["incidents"] == EXPECTED["incidents"]
    as_read = [json.loads(r.stdout) for r in (compact, pretty)]
    for data in as_read:
        data["summary"].pop("seconds")
    assert as_read[0] == as_read[1]
