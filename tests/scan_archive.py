"""A small archive with known answers, written as mbox, Maildir and a folder of .eml files.

Used by the scan tests. The messages are written out by hand (assembled with the shared
generator, ``tests/support/synth.py``) because every count in :data:`EXPECTED` must follow
from them at a glance: a wrong tally, a lost message or a double count in any reader shows
up as a mismatch.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.synth import assemble, mbox_entry

SENDER = "hr@serviceco.example"


def _msg(headers: list[str], body: str = "Hello all.") -> bytes:
    return assemble(headers, body + "\r\n")


def _cc(addresses: list[str]) -> str:
    return "Cc: " + ", ".join(addresses)


P = [f"p{i}@gmail.com" for i in range(42)]
Q = [f"q{i}@yahoo.com" for i in range(10)]

MESSAGES: list[tuple[str, bytes]] = [
    ("clean-1", _msg([f"From: {SENDER}", "To: partner@othercorp.example",
                      "Date: Fri, 10 Jan 2020 09:00:00 +0000", "Subject: agenda",
                      "Message-ID: <clean-1@serviceco.example>"])),
    ("block-40", _msg([f"From: {SENDER}", f"To: {SENDER}", _cc(P[:40]),
                       "Date: Sun, 01 Mar 2020 10:00:00 +0100", "Subject: Welcome tracers",
                       "Message-ID: <block-40@serviceco.example>"])),
    ("clean-2", _msg([f"From: {SENDER}", "To: colleague@serviceco.example",
                      "Date: Sat, 15 Feb 2020 09:00:00 +0000", "Subject: lunch",
                      "Message-ID: <clean-2@serviceco.example>"])),
    ("warn-12", _msg([f"From: {SENDER}", f"To: {SENDER}", _cc(P[30:42]),
                      "Date: Wed, 15 Apr 2020 16:30:00 +0000", "Subject: Fixtures",
                      "Message-ID: <warn-12@serviceco.example>"])),
    ("bcc-sent-copy", _msg([f"From: {SENDER}", f"To: {SENDER}",
                            "Bcc: " + ", ".join(f"b{i}@gmail.com" for i in range(50)),
                            "Date: Mon, 04 May 2020 08:00:00 +0000", "Subject: newsletter",
                            "Message-ID: <bcc@serviceco.example>"])),
    ("sensitive-undated", _msg(["From: Positive Voices HIV support <team@positivevoices.example>",
                                "To: team@positivevoices.example", _cc(Q),
                                "Subject: HIV peer support group - next meeting",
                                "Message-ID: <hiv@positivevoices.example>"],
                               "Dear members of our HIV peer support group,")),
    ("clean-3", _msg([f"From: {SENDER}", "To: partner@othercorp.example",
                      "Date: Mon, 01 Jun 2020 09:00:00 +0000", "Subject: minutes",
                      "Message-ID: <clean-3@serviceco.example>"])),
    ("not-a-message", b"\x00\x01\x02 binary junk without any header\x00\x00\r\n"),
]  # fmt: skip

EXPECTED = {
    "messages": 8,
    "pass": 4,
    "warn": 1,
    "block": 2,
    "error": 1,
    "incidents": 3,
    # p0-p39 and p30-p41 overlap in p30-p39: 42 people, plus q0-q9.
    "unique_exposed_addresses": 52,
    "unique_exposed_personal_addresses": 52,
    "exposed_domains": 2,
    "first_date": "2020-01-10T09:00:00Z",
    "last_date": "2020-06-01T09:00:00Z",
}


def from_line(i: int) -> bytes:
    return f"From {SENDER} Mon Jun  1 09:00:{i % 60:02d} 2020\n".encode()


def write_mbox(path: Path, *, crlf: bool = False) -> Path:
    """mboxrd: body lines starting with From (after any '>') get one more '>'."""
    out = bytearray()
    for i, (_, raw) in enumerate(MESSAGES):
        block, _ = mbox_entry(from_line(i), raw.replace(b"\r\n", b"\n"))
        out += block.replace(b"\n", b"\r\n") if crlf else block
    path.write_bytes(bytes(out))
    return path


def write_maildir(root: Path) -> Path:
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i, (_, raw) in enumerate(MESSAGES):
        sub = "cur" if i % 2 else "new"
        suffix = ":2,S" if sub == "cur" else ""
        (root / sub / f"{1590000000 + i}.M{i}P1.host{suffix}").write_bytes(raw)
    (root / "tmp" / "1590009999.M9P9.host").write_bytes(MESSAGES[1][1])  # never counted
    return root


def write_eml_tree(root: Path) -> Path:
    for i, (name, raw) in enumerate(MESSAGES):
        folder = root / ("2020" if i % 2 else "older")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i:02d}-{name}.eml").write_bytes(raw)
    return root


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (0 if gone): evidence that scan workers
    are judging, on a machine of any speed, where a fixed sleep is only a guess."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
