"""``scan --state`` on an IMAP folder of a real Dovecot: UIDVALIDITY and the last UID.

New mail is the UIDs above the last one read; a recreated folder (new UIDVALIDITY) or a
deleted message makes the stored counts wrong, so the folder is read again in full, and
the output says why.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.scan_archive import MESSAGES
from tests.support.dovecot import DovecotInstance, ensure_dovecot_installed

FOLDER = "Sent"


@pytest.fixture(scope="module")
def dovecot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DovecotInstance]:
    ensure_dovecot_installed()
    with DovecotInstance(tmp_path_factory.mktemp("dovecot")) as instance:
        yield instance


def scan(dovecot: DovecotInstance, out: Path, *args: str) -> tuple[dict, str]:
    env = {**os.environ, "MAILGUARD_IMAP_PASSWORD": dovecot.password,
           "SSL_CERT_FILE": str(dovecot.ca_file)}  # fmt: skip
    url = f"imaps://auditor@127.0.0.1:{dovecot.imaps_port}/{FOLDER}"
    result = subprocess.run(
        [sys.executable, "-m", "mailguard", "scan", url, "--no-config", "-q", "-f", "json",
         "-o", str(out), *args],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert "Traceback" not in result.stderr, result.stderr
    assert dovecot.password not in result.stderr
    return json.loads(out.read_text()), result.stderr


def comparable(data: dict) -> tuple[object, ...]:
    summary = {k: v for k, v in data["summary"].items() if k != "seconds"}
    incidents = sorted(json.dumps(i, sort_keys=True) for i in data["incidents"])
    return summary, incidents, sorted(json.dumps(e, sort_keys=True) for e in data["errors"])


def note(stderr: str) -> str:
    [what] = re.findall(r"mailguard: state: imaps://\S+: (.+)", stderr)
    return what


def test_imap_rescans_read_only_new_uids_and_notice_a_recreated_folder(
    dovecot: DovecotInstance, tmp_path: Path
) -> None:
    for _, raw in MESSAGES:
        dovecot.append(FOLDER, raw)
    state = tmp_path / "imap.state"
    _, err = scan(dovecot, tmp_path / "1.json", "--state", str(state))
    assert note(err) == f"first scan: {len(MESSAGES)} message(s) read"

    for _, raw in MESSAGES[:5]:
        dovecot.append(FOLDER, raw)
    again, err = scan(dovecot, tmp_path / "2.json", "--state", str(state))
    assert (
        note(err)
        == f"incremental: 5 new message(s) read, {len(MESSAGES)} carried over from the last scan"
    )
    full, _ = scan(dovecot, tmp_path / "full.json")
    assert again["summary"]["messages"] == len(MESSAGES) + 5
    assert comparable(again) == comparable(full)

    with dovecot.imap() as conn:  # recreated: the same messages under a new UIDVALIDITY
        conn.select(FOLDER)
        conn.store("1:*", "+FLAGS", r"(\Deleted)")
        conn.expunge()
        conn.close()
        conn.delete(FOLDER)
        conn.create(FOLDER)
    for _, raw in [*MESSAGES, *MESSAGES[:5]]:
        dovecot.append(FOLDER, raw)
    recreated, err = scan(dovecot, tmp_path / "3.json", "--state", str(state))
    assert note(err).startswith("full re-scan: the folder's UIDVALIDITY changed")
    assert comparable(recreated)[0] == comparable(full)[0]

    with dovecot.imap() as conn:  # one message deleted: the old counts are wrong
        conn.select(FOLDER)
        conn.store("2", "+FLAGS", r"(\Deleted)")
        conn.expunge()
    _, err = scan(dovecot, tmp_path / "4.json", "--state", str(state))
    assert note(err).startswith("full re-scan: 1 message(s) read last time were deleted")
