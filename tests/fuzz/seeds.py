"""Seed inputs for the atheris campaign: real shapes for the fuzzer to mutate.

Random bytes seldom start with "From " or carry a valid milter option negotiation, so a
campaign started from nothing spends its first hours finding the format. Usage::

    python -m tests.fuzz.seeds TARGET DIRECTORY

writes the seeds for TARGET (``check``, ``mbox``, ``milter``, ``config``) into DIRECTORY.
"""

from __future__ import annotations

import hashlib
import struct
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from mailguard.milter import protocol as p
from mailguard.rules import load_rules
from tests.conftest import ROOT
from tests.scan_archive import MESSAGES, write_mbox


def messages() -> Iterator[bytes]:
    for rule in load_rules():
        for example in rule.examples:
            yield example.message.lstrip("\n").replace("\n", "\r\n").encode("utf-8")
    for path in sorted((ROOT / "examples" / "incidents").glob("*.eml")):
        yield path.read_bytes()
    for _name, data in MESSAGES:
        yield data


def mboxes() -> Iterator[bytes]:
    with tempfile.TemporaryDirectory() as tmp:
        for crlf in (False, True):
            yield write_mbox(Path(tmp) / "a.mbox", crlf=crlf).read_bytes()


def milter_streams() -> Iterator[bytes]:
    """A whole SMTP transaction per message, as Postfix sends it (first byte: read size)."""
    for data in list(messages())[:20]:
        head, _, body = data.partition(b"\r\n\r\n")
        frames = [
            p.frame(p.OPTNEG, struct.pack("!III", 6, 0x1FF, 0x1FFFFF)),
            p.frame(p.CONNECT, b"client.example\x004\x00\x19127.0.0.1\x00"),
            p.frame(p.MACRO, b"M{auth_authen}\x00user\x00i\x00ABC123\x00"),
            p.frame(p.MAIL, b"<hr@serviceco.example>\x00SIZE=100\x00"),
            p.frame(p.RCPT, b"<a@gmail.com>\x00"),
        ]
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            frames.append(p.frame(p.HEADER, name + b"\0" + value + b"\0"))
        frames += [p.frame(p.EOH), p.frame(p.BODY, body), p.frame(p.BODYEOB), p.frame(p.QUIT)]
        yield bytes([0]) + b"".join(frames)


def configs() -> Iterator[bytes]:
    yield (ROOT / "examples" / "milter" / "mailguard.toml").read_bytes()
    yield (ROOT / "pyproject.toml").read_bytes()
    yield (
        b'internal_domains = ["serviceco.example"]\n[scoring]\nwarn_at = 20\nblock_at = 60\n'
        b"[limits]\nmax_mime_depth = 8\n[rules.MG101]\nmin_parties = 5\n"
        b'[rules.exposed-external-parties]\nseverity = "critical"\n[milter]\nmode = "monitor"\n'
    )


SEEDS = {"check": messages, "mbox": mboxes, "milter": milter_streams, "config": configs}


def write(target: str, directory: Path) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    count = 0
    for data in SEEDS[target]():
        (directory / hashlib.sha1(data).hexdigest()).write_bytes(data)
        count += 1
    return count


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in SEEDS:
        sys.exit(f"usage: python -m tests.fuzz.seeds {{{','.join(SEEDS)}}} DIRECTORY")
    print(write(sys.argv[1], Path(sys.argv[2])), "seeds written")
