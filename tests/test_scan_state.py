"""``scan --state``: re-runs read only new mail and still write the whole register.

Each test compares the incremental register with a full scan of the same files, and reads
what was read from the counts the output states.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.scan_archive import MESSAGES, SENDER, P, Q, from_line, write_maildir, write_mbox
from tests.support.synth import mbox_entry


def scan(*args: str) -> tuple[int, dict, str]:
    """Run the CLI; returns exit status, the JSON register, stderr."""
    out = Path(args[-1])
    result = subprocess.run(
        [sys.executable, "-m", "mailguard", "scan", "--no-config", "-q", "-f", "json",
         *args[:-1], "-o", str(out)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(out.read_text()), result.stderr


def comparable(data: dict) -> tuple[object, ...]:
    summary = {k: v for k, v in data["summary"].items() if k != "seconds"}
    incidents = sorted(json.dumps(i, sort_keys=True) for i in data["incidents"])
    errors = sorted(json.dumps(e, sort_keys=True) for e in data["errors"])
    extra = sorted(data.get("exposed_addresses", []))
    return summary, incidents, errors, data["sources"], extra


def append_messages(mbox: Path, count: int) -> None:
    with mbox.open("ab") as f:
        for i in range(count):
            raw = MESSAGES[i % len(MESSAGES)][1].replace(b"\r\n", b"\n")
            f.write(mbox_entry(from_line(i), raw)[0])


def drop_files(maildir: Path, count: int) -> None:
    for i in range(count):
        (maildir / "new" / f"1600000000.M{i}P2.host").write_bytes(MESSAGES[1 + i % 3][1])


def state_lines(stderr: str) -> dict[str, str]:
    found = re.findall(r"mailguard: state: (.+?): (.+)", stderr)
    return {Path(label).name: what for label, what in found}


@pytest.fixture
def archive(tmp_path: Path) -> tuple[Path, Path]:
    return write_mbox(tmp_path / "archive.mbox"), write_maildir(tmp_path / "Maildir")


def test_rescan_reads_only_new_mail_and_writes_the_full_register(
    tmp_path: Path, archive: tuple[Path, Path]
) -> None:
    mbox, maildir = archive
    state = tmp_path / "scan.state"
    _, _, err = scan(str(mbox), str(maildir), "--state", str(state), str(tmp_path / "1.json"))
    assert state_lines(err) == {
        "archive.mbox": "first scan: 8 message(s) read",
        "Maildir": "first scan: 8 message(s) read",
    }
    append_messages(mbox, 100)
    drop_files(maildir, 5)
    # A flag change and a move from new/ to cur/ are no new mail.
    moved = next((maildir / "new").iterdir())
    moved.rename(maildir / "cur" / f"{moved.name}:2,S")

    code, again, err = scan(str(mbox), str(maildir), "--state", str(state), str(tmp_path / "2.j"))
    assert state_lines(err) == {
        "archive.mbox": "incremental: 100 new message(s) read, 8 carried over from the last scan",
        "Maildir": "incremental: 5 new message(s) read, 8 carried over from the last scan",
    }
    full_code, full, _ = scan(str(mbox), str(maildir), str(tmp_path / "full.json"))
    assert again["summary"]["messages"] == 8 + 8 + 100 + 5
    assert code == full_code
    assert comparable(again) == comparable(full)

    # Nothing new: nothing read, the same register again.
    _, third, err = scan(str(mbox), str(maildir), "--state", str(state), str(tmp_path / "3.json"))
    assert state_lines(err)["archive.mbox"].startswith("incremental: 0 new message(s) read")
    assert comparable(third) == comparable(full)


def truncate(data: bytes) -> bytes:
    return data[: data.index(b"\nFrom ", len(data) // 2) + 1]  # whole messages


def rewrite(data: bytes) -> bytes:
    return data.replace(b"Subject: agenda", b"Subject: AGENDA")  # the same size


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (
            truncate,
            "full re-scan: the mbox is shorter than the",
        ),
        (rewrite, "full re-scan: the mbox was rewritten (its first"),
    ],
)
def test_a_truncated_or_rewritten_mbox_is_scanned_again_in_full(
    tmp_path: Path, archive: tuple[Path, Path], change, why: str
) -> None:
    mbox, _ = archive
    state = tmp_path / "scan.state"
    append_messages(mbox, 2)
    scan(str(mbox), "--state", str(state), str(tmp_path / "1.json"))
    mbox.write_bytes(change(mbox.read_bytes()))
    _, again, err = scan(str(mbox), "--state", str(state), str(tmp_path / "2.json"))
    assert state_lines(err)["archive.mbox"].startswith(why)
    _, full, _ = scan(str(mbox), str(tmp_path / "full.json"))
    assert comparable(again) == comparable(full)


def test_changed_settings_or_removed_files_mean_a_full_rescan(
    tmp_path: Path, archive: tuple[Path, Path]
) -> None:
    mbox, maildir = archive
    state = tmp_path / "scan.state"
    scan(str(mbox), str(maildir), "--state", str(state), str(tmp_path / "1.json"))
    _, changed, err = scan(str(mbox), str(maildir), "--state", str(state),
                           "--internal-domain", "gmail.com", str(tmp_path / "2.json"))  # fmt: skip
    reason = "full re-scan: the rules or the configuration changed since the last scan"
    assert all(what.startswith(reason) for what in state_lines(err).values()), err
    _, full, _ = scan(str(mbox), str(maildir), "--internal-domain", "gmail.com",
                      str(tmp_path / "f.json"))  # fmt: skip
    assert comparable(changed) == comparable(full)

    next((maildir / "cur").iterdir()).unlink()
    _, _, err = scan(str(mbox), str(maildir), "--state", str(state),
                     "--internal-domain", "gmail.com", str(tmp_path / "3.json"))  # fmt: skip
    assert state_lines(err)["Maildir"].startswith(
        "full re-scan: 1 file(s) read last time are gone or were renamed"
    )
    assert state_lines(err)["archive.mbox"].startswith("incremental: 0 new")


def test_the_store_keeps_no_addresses_and_listed_addresses_are_read_again(
    tmp_path: Path, archive: tuple[Path, Path]
) -> None:
    """The store holds addresses only as keyed hashes (the key in a file of its own), and
    no subject or Message-ID; addresses asked for on a re-run come from the mail read in
    that run, and the register is a full scan's."""
    mbox, maildir = archive
    state = tmp_path / "scan.state"
    scan(str(mbox), str(maildir), "--state", str(state), "--show-addresses",
         str(tmp_path / "1.json"))  # fmt: skip
    raw = state.read_bytes()
    db = sqlite3.connect(state)
    dumped = "\n".join(db.iterdump()).encode()
    db.close()
    secrets = [*P, *Q, SENDER, "Welcome tracers", "block-40@serviceco", "hiv@positivevoices"]
    for secret in secrets:
        assert secret.encode() not in raw and secret.encode() not in dumped, secret
    # The only "@" left are positions in the mbox (byte offsets).
    assert dumped.count(b"@") == len(re.findall(rb"archive\.mbox@\d+", dumped)) > 0
    key = tmp_path / "scan.state.key"
    assert state.stat().st_mode & 0o077 == 0 and key.stat().st_mode & 0o077 == 0
    assert key.read_text().strip().encode() not in raw

    append_messages(mbox, 3)
    _, again, _ = scan(str(mbox), str(maildir), "--state", str(state), "--show-addresses",
                       str(tmp_path / "2.json"))  # fmt: skip
    _, full, _ = scan(str(mbox), str(maildir), "--show-addresses", str(tmp_path / "f.json"))
    assert len(again["exposed_addresses"]) == 52
    assert comparable(again) == comparable(full)
    # Without addresses: the stored incidents are rebuilt, and the register is the same.
    _, plain, err = scan(str(mbox), str(maildir), "--state", str(state), str(tmp_path / "3.j"))
    _, plain_full, _ = scan(str(mbox), str(maildir), str(tmp_path / "pf.json"))
    assert state_lines(err)["archive.mbox"].startswith("incremental: 0 new message(s) read")
    assert comparable(plain) == comparable(plain_full)


def test_a_lost_key_file_means_a_full_rescan(tmp_path: Path, archive: tuple[Path, Path]) -> None:
    mbox, _ = archive
    state = tmp_path / "scan.state"
    scan(str(mbox), "--state", str(state), str(tmp_path / "1.json"))
    (tmp_path / "scan.state.key").unlink()
    _, again, err = scan(str(mbox), "--state", str(state), str(tmp_path / "2.json"))
    assert state_lines(err)["archive.mbox"].startswith(
        "full re-scan: the state's key file is not the one it was written with"
    )
    _, full, _ = scan(str(mbox), str(tmp_path / "f.json"))
    assert comparable(again) == comparable(full)


def test_a_message_changed_in_place_is_reported_not_hidden(
    tmp_path: Path, archive: tuple[Path, Path]
) -> None:
    """An incident file rewritten as a clean message: the register says the source changed
    (incomplete, exit 2) and the next run re-scans it in full."""
    _, maildir = archive
    state = tmp_path / "scan.state"
    scan(str(maildir), "--state", str(state), str(tmp_path / "1.json"))
    incident = next(p for p in (maildir / "cur").iterdir() if p.read_bytes() == MESSAGES[1][1])
    incident.write_bytes(MESSAGES[0][1])
    code, again, _ = scan(str(maildir), "--state", str(state), str(tmp_path / "2.json"))
    assert code == 2
    assert any("not found again" in e["message"] for e in again["failed_sources"])
    _, _, err = scan(str(maildir), "--state", str(state), str(tmp_path / "3.json"))
    assert state_lines(err)["Maildir"].startswith("first scan")


def test_redacted_state_lines_name_no_source(tmp_path: Path) -> None:
    """A Maildir's path often holds its owner's address; under --redact the per-source state
    lines on stderr hash it as the register does."""
    maildir = write_maildir(tmp_path / "jane.doe@example.org")
    state = tmp_path / "state.db"
    for _ in range(2):  # a first scan, then an incremental one
        _, data, err = scan(
            str(maildir), "--state", str(state), "--redact", str(tmp_path / "r.json")
        )
        assert "jane.doe" not in err and "jane.doe" not in json.dumps(data)
        assert re.search(r"mailguard: state: hmac:[0-9a-f]+: ", err), err
