"""An mbox inside a folder a scan was given is read message by message.

Why: ``scan --glob '*' exports/`` judged ``exports/sent.mbox`` as ONE message: the first
was judged and every later one, with any exposure in it, was never seen (3 messages in
the corpus's ``nice.mbox``, 1 judged). Now a file in the tree that holds more than one
``From_``-separated message, whatever its name, is a source of its own, labelled with its
path; with the default pattern ``*.mbox`` files are found too. A file of one message
saved with its envelope line (many ``.eml`` exports) stays one file of the tree.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from mailguard.archive.mbox import holds_several_messages
from tests.scan_archive import MESSAGES, from_line, write_eml_tree, write_mbox
from tests.support.synth import mbox_entry
from tests.test_scan_state import scan, state_lines


def _tree(root: Path, mbox_name: str = "sent.mbox") -> Path:
    write_eml_tree(root)
    write_mbox(root / "older" / mbox_name)
    return root


def test_an_mbox_in_a_tree_is_a_source_of_its_own(tmp_path: Path) -> None:
    root = _tree(tmp_path / "exports")
    _, data, _ = scan(str(root), str(tmp_path / "r.json"))
    _, alone, _ = scan(str(root / "older" / "sent.mbox"), str(tmp_path / "m.json"))
    _, eml_only, _ = scan("--glob", "[0-9]*.eml", str(root), str(tmp_path / "e.json"))
    assert data["sources"] == [str(root), str(root / "older" / "sent.mbox")]
    assert data["summary"]["messages"] == 2 * len(MESSAGES)  # the non-message counts, as an error
    summary = {k: v for k, v in data["summary"].items() if k not in ("seconds", "bytes")}
    for key in ("messages", "incidents", "pass", "warn", "block", "error"):
        assert summary[key] == alone["summary"][key] + eml_only["summary"][key], key
    names = {i["source"] for i in data["incidents"] if "@" in i["source"]}
    assert names and all(n.startswith(str(root / "older" / "sent.mbox") + "@") for n in names)


def test_whatever_its_name(tmp_path: Path) -> None:
    """``x.eml`` holding several messages (an export gone wrong) is an mbox too."""
    root = _tree(tmp_path / "exports", mbox_name="all-of-2020.eml")
    _, data, _ = scan(str(root), str(tmp_path / "r.json"))
    assert str(root / "older" / "all-of-2020.eml") in data["sources"]
    assert data["summary"]["messages"] == 2 * len(MESSAGES)


def test_one_message_with_an_envelope_line_stays_a_file(tmp_path: Path) -> None:
    root = tmp_path / "exports"
    root.mkdir()
    for i, (_, raw) in enumerate(MESSAGES[:4]):
        entry, _ = mbox_entry(from_line(i), raw.replace(b"\r\n", b"\n"))
        (root / f"{i}.eml").write_bytes(entry)
        assert not holds_several_messages(root / f"{i}.eml")
    _, data, _ = scan(str(root), str(tmp_path / "r.json"))
    assert data["sources"] == [str(root)]
    assert data["summary"]["messages"] == 4


def test_a_from_in_a_body_is_no_second_message(tmp_path: Path) -> None:
    path = tmp_path / "m.eml"
    path.write_bytes(
        b"From a@b.example Mon Jun  1 09:00:00 2020\nFrom: a@b.example\nTo: c@d.example\n\n"
        b"From Russia with love\n>From the archive\n"
    )
    assert not holds_several_messages(path)
    path.write_bytes(
        path.read_bytes() + b"\nFrom x@y.example Mon Jun  1 09:00:01 2020\nTo: e@f\n\n"
    )
    assert holds_several_messages(path)
    (tmp_path / "empty.eml").write_bytes(b"")
    assert not holds_several_messages(tmp_path / "empty.eml")
    assert not holds_several_messages(tmp_path)  # a folder: no


def test_with_state_mail_appended_to_the_mbox_is_read_next_time(tmp_path: Path) -> None:
    root = _tree(tmp_path / "exports")
    mbox = root / "older" / "sent.mbox"
    state = tmp_path / "s.state"
    scan(str(root), "--state", str(state), str(tmp_path / "a.json"))
    with mbox.open("ab") as f:
        entry, _ = mbox_entry(from_line(99), MESSAGES[1][1].replace(b"\r\n", b"\n"))
        f.write(entry)
    _, again, err = scan(str(root), "--state", str(state), str(tmp_path / "b.json"))
    lines = state_lines(err)
    assert lines["sent.mbox"].startswith("incremental: 1 new message(s) read"), lines
    assert lines["exports"].startswith("incremental: 0 new message(s) read"), lines
    _, full, _ = scan(str(root), str(tmp_path / "c.json"))
    assert again["summary"]["messages"] == full["summary"]["messages"] == 2 * len(MESSAGES) + 1


def test_check_of_a_folder_finds_mbox_files_and_splits_them(tmp_path: Path) -> None:
    root = tmp_path / "outbox"
    root.mkdir()
    write_mbox(root / "mailout.mbox")
    done = subprocess.run(
        [sys.executable, "-m", "mailguard", "check", "--no-config", "-f", "json", str(root)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    sources = [m["source"] for m in json.loads(done.stdout)["messages"]]
    assert len(sources) == len(MESSAGES), done.stderr
    assert all(s.startswith(str(root / "mailout.mbox") + "@") for s in sources)
