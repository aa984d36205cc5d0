"""Classes of failure found by running mailguard over other projects' test corpora.

The corpora (zbateson/mail-mime-parser, mailgun/flanker, nodemailer/mailparser,
TeamMsgExtractor/msg-extractor, hfig/MAPI) are not copied here: each test builds its own
minimal input of the same class.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import mailguard
from tests.conftest import eml

END, FREE, FATSECT, NOSTREAM = 0xFFFFFFFE, 0xFFFFFFFF, 0xFFFFFFFD, 0xFFFFFFFF


def run(*args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ) if path is None else {**os.environ, "PATH": path}
    result = subprocess.run(
        [sys.executable, "-m", "mailguard", *args],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip
    assert "Traceback" not in result.stderr, result.stderr
    return result


# ------------------------------------------------------- external domains of the sender


def test_a_sender_copying_their_own_personal_mailbox_adds_no_external_domain() -> None:
    """msg-extractor's unicode.msg: From and Cc a Gmail user, To one other person. The
    sender's own copy is internal; it used to leave "gmail.com 0" among the external
    domains, counted in ``external_domains``."""
    raw = eml(
        "From: Brian <brian@gmail.com>\nTo: friend@me.com\nCc: Brian <brian@gmail.com>\nSubject: hi"
    )
    report = mailguard.check(raw)
    assert report.recipients["visible_external"] == 1
    assert report.recipients["external_domains"] == 1
    assert [tuple(d) for d in report.recipients["top_domains"]] == [("me.com", 1)]
    assert report.analysis is not None and 0 not in report.analysis.domains.values()


def test_the_text_report_lists_no_external_domain_with_no_address(tmp_path: Path) -> None:
    path = tmp_path / "own-copy.eml"
    path.write_bytes(eml("From: b@gmail.com\nTo: x@me.com, y@me.com\nCc: b@gmail.com\nSubject: s"))
    result = run("check", "--no-config", str(path))
    assert "external domains: me.com 2\n" in result.stdout, result.stdout


# ---------------------------------------------------------- an mbox with no final newline


def _mbox(messages: list[bytes], crlf: bool) -> bytes:
    out = b""
    for i, raw in enumerate(messages):
        raw = raw.replace(b"\r\n", b"\n")
        out += b"From sender@example.org Mon Jan  1 00:00:%02d 2024\n" % i + raw + b"\n"
    out = out.rstrip(b"\n")  # the last message ends without a newline
    return out.replace(b"\n", b"\r\n") if crlf else out


def test_the_last_message_of_an_mbox_without_a_final_newline_is_judged(tmp_path: Path) -> None:
    """An mbox built by concatenating messages, the last without a final newline: its
    exposure used to be lost behind a "message cut off" error entry (exit 2, no incident)."""
    cc = ", ".join(f"person{i}@gmail.com" for i in range(30))
    quiet = eml("From: a@org.example\nTo: b@org.example\nSubject: fine")
    leak = eml(f"From: a@org.example\nTo: a@org.example\nCc: {cc}\nSubject: leak", "body")
    for crlf in (False, True):
        path = tmp_path / f"nonl-{crlf}.mbox"
        path.write_bytes(_mbox([quiet, quiet, leak], crlf))
        for jobs in ("1", "2"):
            result = run("scan", "--no-config", "-q", "-j", jobs, "-f", "json", str(path))
            data = json.loads(result.stdout)
            assert data["summary"]["messages"] == 3 and data["summary"]["error"] == 0
            assert result.returncode == 1, result.stderr
            (incident,) = data["incidents"]
            assert incident["verdict"] == "block"
            assert incident["recipients"]["visible"] == 31
            codes = [f["code"] for f in incident["findings"]]
            assert "MG101" in codes and "MG002" in codes  # judged, and said to be partial
            mg002 = next(f for f in incident["findings"] if f["code"] == "MG002")
            assert "no final newline" in mg002["message"]


def test_a_from_line_with_nothing_after_it_is_still_an_error(tmp_path: Path) -> None:
    path = tmp_path / "bare.mbox"
    first = eml("From: a@org.example\nTo: b@org.example\nSubject: one")
    path.write_bytes(_mbox([first], False) + b"\nFrom x@example.org Mon Jan  1 00:00:00 2024")
    result = run("scan", "--no-config", "-q", "-f", "json", str(path))
    data = json.loads(result.stdout)
    assert data["summary"]["messages"] == 2 and data["summary"]["error"] == 1
    assert "cut off" in data["errors"][0]["message"]
    assert result.returncode == 2


# ------------------------------------------------------------- OLE files and msgconvert


def _entry(name: str, kind: int, child: int, start: int, size: int) -> bytes:
    raw = name.encode("utf-16-le") + b"\0\0" if name else b""
    head = struct.pack("<HBB3I", len(raw), kind, 1, NOSTREAM, NOSTREAM, child)
    return raw.ljust(64, b"\0") + head + bytes(36) + struct.pack("<IQ", start, size)


def ole_file(stream: str, payload: bytes) -> bytes:
    """A minimal OLE compound file (version 3) holding one stream of 4 KB."""
    payload = payload.ljust(4096, b"\0")
    sectors = len(payload) // 512
    header = (
        bytes.fromhex("d0cf11e0a1b11ae1") + bytes(16)
        + struct.pack("<HHHHH", 0x3E, 3, 0xFFFE, 9, 6) + bytes(6)
        + struct.pack("<9I", 0, 1, 1, 0, 4096, END, 0, END, 0)
        + struct.pack("<I", 0) + struct.pack("<I", FREE) * 108
    )  # fmt: skip
    fat = [FATSECT, END] + [3 + i for i in range(sectors - 1)] + [END]
    fat_sector = struct.pack("<128I", *(fat + [FREE] * (128 - len(fat))))
    directory = (
        _entry("Root Entry", 5, 1, END, 0)
        + _entry(stream, 2, NOSTREAM, 2, len(payload))
        + _entry("", 0, NOSTREAM, 0, 0) * 2
    )
    return header + fat_sector + directory + payload


def test_an_ole_file_that_is_not_an_outlook_message_is_an_error_not_a_pass(
    tmp_path: Path,
) -> None:
    """A Word .doc has the .msg file signature; msgconvert turned one (mail-mime-parser's
    test.doc) into a message with no sender and no recipients, which passed."""
    doc = tmp_path / "report.doc"
    doc.write_bytes(ole_file("WordDocument", b"minutes of the meeting"))
    result = run("check", "--no-config", str(doc))
    assert result.returncode == 2
    assert "not an Outlook message" in result.stderr
    folder = tmp_path / "saved"
    folder.mkdir()
    (folder / "attachment.msg").write_bytes(doc.read_bytes())
    result = run("scan", "--no-config", "-q", "-f", "json", str(folder))
    data = json.loads(result.stdout)
    assert data["summary"]["messages"] == 1 and data["summary"]["pass"] == 0
    assert "not an Outlook message" in data["errors"][0]["message"]
    assert result.returncode == 2


def test_a_msgconvert_missing_a_perl_module_is_named_not_the_file(tmp_path: Path) -> None:
    """Debian's msgconvert needs Email::Address, which its package does not pull in: every
    .msg then failed with "not a readable Outlook .msg file (... BEGIN failed ...)", which
    blames good files. A real Perl script with a missing module stands in for it."""
    tools = tmp_path / "bin"
    tools.mkdir()
    script = tools / "msgconvert"
    script.write_text("#!/usr/bin/perl -w\nuse Email::NoSuchModuleForMailguard;\nprint 1;\n")
    script.chmod(0o755)
    msg = tmp_path / "saved.msg"
    msg.write_bytes(ole_file("__properties_version1.0", b""))
    result = run("check", "--no-config", str(msg), path=str(tools))
    assert result.returncode == 2
    assert "the Perl module Email::NoSuchModuleForMailguard is missing" in result.stderr
    assert "apt-get install libemail-nosuchmoduleformailguard-perl" in result.stderr
    assert "not a readable Outlook .msg file" not in result.stderr


# ------------------------------------------------------------------ --redact on stderr


def test_check_redact_hashes_the_path_of_a_file_it_cannot_read(tmp_path: Path) -> None:
    """A file name can be an address (saved mail is often named after its recipient); the
    stderr line for an unreadable input printed it under --redact."""
    missing = tmp_path / "zelda.quux@gmail.com.eml"
    doc = tmp_path / "yorick.quux@gmail.com.msg"
    doc.write_bytes(ole_file("WordDocument", b"x"))
    for fmt in ("text", "json", "sarif"):
        result = run("check", "--no-config", "--redact", "-f", fmt, str(missing), str(doc))
        assert result.returncode == 2
        assert "quux" not in result.stderr + result.stdout
        assert result.stderr.count("mailguard: cannot read hmac:") == 2, result.stderr
    plain = run("check", "--no-config", str(missing))
    assert f"cannot read {missing}: No such file or directory" in plain.stderr


# --------------------------------------------------------- text that only looks like headers


def test_text_whose_lines_hold_colons_is_not_a_message_that_passes(tmp_path: Path) -> None:
    """flanker's address and URL lists (mailbox_valid.txt, url_valid.txt) parsed as header
    blocks of odd field names ('"very.(),', 'http') and passed as messages with no
    recipients: a non-message called clean."""
    url_list = b"http://www.example.com\nhttps://example.org/a?b=c\nftp://files.example.net/\n"
    address_list = (
        b"# Valid dataset\n#\n" + b'"very.(),:;<>[]\\".VERY.\\"very@\\\\ \\"very\\".x"@ex.example\n'
        b"simple@example.com\nother.email-with-dash@example.com\n"
    )
    records = b"Year: 1963\nTitle: From Russia with Love\n\nWhat did Thunderbird do?\n"
    for raw in (url_list, address_list, records):
        report = mailguard.check(raw)
        assert report.verdict == "error", raw
        assert "does not look like an email message" in report.findings[0].message
        assert "very" not in report.findings[0].message  # counts only, no field names
    # A real header block with only uncommon fields is still a message.
    for headers in ("Subject: hello", "X-Custom: 1\nTo: a@b.example", "Received: from x"):
        assert mailguard.check(eml(headers)).verdict == "pass", headers
    box = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (box / sub).mkdir(parents=True)
    (box / "new" / "1.host").write_bytes(url_list)
    (box / "new" / "2.host").write_bytes(eml("From: a@b.example\nTo: c@d.example\nSubject: s"))
    result = run("scan", "--no-config", "-q", "-f", "json", str(box))
    data = json.loads(result.stdout)
    assert (data["summary"]["messages"], data["summary"]["pass"], data["summary"]["error"]) == (
        2, 1, 1,
    )  # fmt: skip
    assert result.returncode == 2
