"""``check`` on an mbox file judges every message in it, as ``scan`` does.

A mail-merge tool or an export can hand over a batch of outgoing messages as one mbox.
Judged as a single message, only the first would be read, and an exposure in any other
would pass unseen.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from mailguard.cli import app
from tests.scan_archive import MESSAGES, write_mbox

runner = CliRunner()


def _message(subject: str, cc: int) -> bytes:
    copied = ", ".join(f"person{i}@gmail.com" for i in range(cc))
    return (
        f"From: hr@org.example\nTo: team@org.example\nCc: {copied or 'hr@org.example'}\n"
        f"Subject: {subject}\nMessage-ID: <{subject}@org.example>\n\nHello\n"
    ).encode()


def _mbox(path: Path, messages: list[bytes]) -> Path:
    path.write_bytes(
        b"".join(b"From hr@org.example Mon Jan  6 09:00:00 2020\n" + m + b"\n" for m in messages)
    )
    return path


def check_json(*args: str) -> tuple[int, dict]:
    result = runner.invoke(app, ["check", "--no-config", "--format", "json", *args])
    return result.exit_code, json.loads(result.stdout)


def test_an_exposure_in_a_later_message_of_an_mbox_is_found(tmp_path: Path) -> None:
    mbox = _mbox(tmp_path / "outbox.mbox", [_message("a", 0), _message("b", 0), _message("c", 40)])
    code, doc = check_json(str(mbox))
    assert code == 1
    verdicts = [(m["source"], m["verdict"]) for m in doc["messages"]]
    assert [v for _, v in verdicts] == ["pass", "pass", "block"]
    assert all(s.startswith(f"{mbox}@") for s, _ in verdicts)


def test_check_and_scan_name_and_judge_an_mbox_alike(tmp_path: Path) -> None:
    mbox = write_mbox(tmp_path / "archive.mbox")
    _, checked = check_json("--mode", "archived", str(mbox))
    scanned = json.loads(
        runner.invoke(app, ["scan", "--no-config", "--format", "json", str(mbox)]).stdout
    )
    assert len(checked["messages"]) == len(MESSAGES) == scanned["summary"]["messages"]
    incidents = {i["source"]: i["verdict"] for i in scanned["incidents"]}
    judged = {m["source"]: m["verdict"] for m in checked["messages"]}
    assert incidents and all(judged[s] == v for s, v in incidents.items())


def test_a_single_message_with_a_from_line_keeps_the_files_name(tmp_path: Path) -> None:
    one = _mbox(tmp_path / "saved.eml", [_message("only", 40)])
    code, doc = check_json(str(one))
    assert code == 1
    assert [(m["source"], m["verdict"]) for m in doc["messages"]] == [(str(one), "block")]


def test_an_mbox_over_the_message_cap_is_still_judged_message_by_message(
    tmp_path: Path,
) -> None:
    big = [_message(f"m{i}", 0) + b"filler line\n" * 200 for i in range(30)]
    mbox = _mbox(tmp_path / "big.mbox", [*big, _message("late", 40)])
    config = tmp_path / "mailguard.toml"
    config.write_text("[limits]\nmax_message_bytes = 20000\n")
    result = runner.invoke(app, ["check", "--config", str(config), "--format", "json", str(mbox)])
    assert mbox.stat().st_size > 20000
    doc = json.loads(result.stdout)
    assert result.exit_code == 1, result.stderr
    assert len(doc["messages"]) == 31
    assert doc["messages"][-1]["verdict"] == "block"


def test_two_workers_split_an_mbox_as_one_process_does(tmp_path: Path) -> None:
    folder = tmp_path / "batch"
    folder.mkdir()
    for i in range(30):
        (folder / f"{i:02d}.eml").write_bytes(_message(f"f{i}", i % 3 * 10))
    _mbox(folder / "15-merge.eml", [_message("x", 0), _message("y", 40)])
    one = check_json("--jobs", "1", str(folder))
    two = check_json("--jobs", "2", str(folder))
    assert one == two
    assert len(one[1]["messages"]) == 32


def test_an_mbox_piped_to_check_is_judged_message_by_message(tmp_path: Path) -> None:
    """``mailmerge --export | mailguard check -``: the batch arrives on stdin, and the
    exposure in its last message must not pass because only the first was read."""
    mbox = _mbox(tmp_path / "outbox.mbox", [_message("a", 0), _message("b", 0), _message("c", 40)])
    result = runner.invoke(
        app, ["check", "--no-config", "--format", "json", "-"], input=mbox.read_bytes()
    )
    doc = json.loads(result.stdout)
    assert result.exit_code == 1
    assert [m["verdict"] for m in doc["messages"]] == ["pass", "pass", "block"]
    on_disk = check_json(str(mbox))[1]["messages"]
    offsets = [m["source"].rsplit("@", 1)[1] for m in doc["messages"]]
    assert offsets == [m["source"].rsplit("@", 1)[1] for m in on_disk]
    assert all(m["source"].startswith("<stdin>@") for m in doc["messages"])


def test_one_message_piped_with_a_from_line_keeps_the_stdin_name() -> None:
    result = runner.invoke(
        app,
        ["check", "--no-config", "--format", "json", "-"],
        input=b"From hr@org.example Mon Jan  6 09:00:00 2020\n" + _message("only", 40),
    )
    doc = json.loads(result.stdout)
    assert [(m["source"], m["verdict"]) for m in doc["messages"]] == [("<stdin>", "block")]


def test_a_piped_mbox_cut_off_mid_message_still_judges_what_arrived() -> None:
    whole = b"".join(
        b"From hr@org.example Mon Jan  6 09:00:00 2020\n" + _message(s, c) + b"\n"
        for s, c in (("a", 0), ("b", 40))
    )
    result = runner.invoke(
        app, ["check", "--no-config", "--format", "json", "-"], input=whole.rstrip(b"\n")
    )
    doc = json.loads(result.stdout)
    assert [m["verdict"] for m in doc["messages"]] == ["pass", "block"]
    assert result.exit_code == 1


_PIECES = [
    b"From hr@org.example Mon Jan  6 09:00:00 2020\n",
    b"From - Tue Jan  7 10:00:00 2020\r\n",
    b">From quoted\n",
    b"From Russia with love\n",
    b"Subject: x\n",
    b"\n",
    b"\r\n",
    b"body line\n",
    b"\xef\xbb\xbf",
    b"no newline at the end",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=25), st.integers(10, 400))
def test_piped_and_mapped_mboxes_are_split_alike(pieces: list[bytes], cap: int) -> None:
    """The stdin reader and the file reader are one walk; this holds them to it, on
    malformed input too (cut-off messages, blank ones, a cap, a late byte-order mark)."""
    from mailguard.archive.mbox import iter_mbox, iter_mbox_bytes

    data = b"".join(pieces)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m.mbox"
        path.write_bytes(data)
        mapped = list(iter_mbox(path, max_bytes=cap, label="x"))
    assert list(iter_mbox_bytes(data, "x", cap)) == mapped


def _pipe(tmp_path: Path, data: bytes, *args: str) -> tuple[int, dict, str]:
    """``check -`` in its own process, fed through a real pipe, its temporary files in
    ``tmp_path/tmp`` (so that what it leaves behind can be seen)."""
    import os
    import subprocess
    import sys

    temp = tmp_path / "tmp"
    temp.mkdir(exist_ok=True)
    config = tmp_path / "mailguard.toml"
    config.write_text("[limits]\nmax_message_bytes = 20000\n")
    result = subprocess.run(
        [sys.executable, "-m", "mailguard", "check", "--config", str(config), "-f", "json",
         *args, "-"],
        input=data, capture_output=True, timeout=120, check=False,
        env={**os.environ, "TMPDIR": str(temp)},
    )  # fmt: skip
    assert list(temp.iterdir()) == []  # the spool is gone
    return result.returncode, json.loads(result.stdout), result.stderr.decode()


def test_a_piped_mbox_over_the_message_cap_is_split_not_refused(tmp_path: Path) -> None:
    """``cat outbox.mbox | mailguard check -`` with a batch larger than one message may be:
    copied into a private file and split there, as a named mbox of any size is."""
    big = [_message(f"m{i}", 0) + b"filler line\n" * 200 for i in range(30)]
    mbox = _mbox(tmp_path / "big.mbox", [*big, _message("late", 40)])
    assert mbox.stat().st_size > 20000
    code, doc, _ = _pipe(tmp_path, mbox.read_bytes())
    assert code == 1
    assert len(doc["messages"]) == 31
    assert doc["messages"][-1]["verdict"] == "block"
    assert all(m["source"].startswith("<stdin>@") for m in doc["messages"])
    assert "mailguard-stdin" not in json.dumps(doc)
    on_disk = [m["source"].rsplit("@", 1)[1] for m in check_json(str(mbox))[1]["messages"]]
    assert [m["source"].rsplit("@", 1)[1] for m in doc["messages"]] == on_disk


def test_a_piped_mbox_split_by_two_workers_is_judged_alike(tmp_path: Path) -> None:
    big = [_message(f"m{i}", i % 2 * 40) + b"filler line\n" * 200 for i in range(12)]
    data = _mbox(tmp_path / "big.mbox", big).read_bytes()
    assert _pipe(tmp_path, data, "--jobs", "2")[:2] == _pipe(tmp_path, data, "--jobs", "1")[:2]


def test_other_input_over_the_cap_on_stdin_is_one_error(tmp_path: Path) -> None:
    code, doc, err = _pipe(tmp_path, b"Subject: big\n\n" + b"x" * 30000)
    assert code == 2
    [message] = doc["messages"]
    assert message["source"] == "<stdin>" and message["verdict"] == "error"
    assert "over the size cap of 20,000 bytes" in err, err


def test_spooling_a_piped_mbox_costs_linear_time(tmp_path: Path) -> None:
    """Stdin over the cap is copied to disk in chunks: twice the input, about twice the time
    (the copy keeps no growing buffer)."""
    import io
    import shutil

    from mailguard.sources import Spooled, iter_planned
    from tests.support.doubling import assert_doubling_linear

    def prepare(mb: int) -> Callable[[], object]:
        data = b"From a@example.test Mon Jan  1 00:00:00 2024\n" + b"x" * 75 + b"\n"
        data = data + (b"y" * 79 + b"\n") * (mb * 1024 * 1024 // 80)

        def work() -> object:
            spool = Path(tempfile.mkdtemp(dir=tmp_path))
            try:
                [planned] = iter_planned(["-"], stdin=io.BytesIO(data), max_bytes=1024, spool=spool)
                assert isinstance(planned, Spooled)
                assert Path(planned).stat().st_size == len(data)
                return planned
            finally:
                shutil.rmtree(spool)

        return work

    assert_doubling_linear(prepare, (16, 32), what="a piped mbox spooled to disk")
