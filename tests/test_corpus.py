"""Every message of the shared real-world corpus gets a report, never a crash.

The corpus (``../shared/corpus``, next to the repository) holds other projects' parser test
messages: spam, hostile MIME, broken headers, mbox files. See its README.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import mailguard

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
VERDICTS = {"pass", "warn", "block", "error"}
MISSING = f"the shared corpus is missing: expected it at {CORPUS} (see shared/corpus/README.md)"


def _is_message(path: Path) -> bool:
    name = path.name
    return (
        path.is_file()
        and not name.startswith(".")  # .gitattributes and the like: repository metadata
        and not name.upper().startswith(("LICENSE", "README"))
        and path.suffix != ".mbox"
    )


def _files(pattern: str, keep: object) -> list[object]:
    if not CORPUS.is_dir():
        return [pytest.param(None, id="corpus-missing")]
    found = sorted(p for p in CORPUS.rglob(pattern) if keep(p))
    return [pytest.param(p, id=p.relative_to(CORPUS).as_posix()) for p in found]


MESSAGES = _files("*", _is_message)
MBOXES = _files("*.mbox", Path.is_file)


def split_mbox(path: Path) -> Iterator[bytes]:
    """Stream the messages of an mbox: each starts after a line beginning with ``From ``.

    Reads line by line (never the whole file), keeps each message's line endings (LF or
    CRLF) and drops the ``From `` separator line itself and a UTF-8 BOM before the first one.
    """
    lines: list[bytes] = []
    with path.open("rb") as handle:
        for number, line in enumerate(handle):
            if number == 0:
                line = line.removeprefix(b"\xef\xbb\xbf")
            if line.startswith(b"From "):
                if lines:
                    yield b"".join(lines)
                lines = []
                continue
            lines.append(line)
    if lines:
        yield b"".join(lines)


def _has_from_or_to(data: bytes) -> bool:
    """Whether the header block (up to the first empty line) has a From: or To: field."""
    for line in data.splitlines():
        if not line.strip():
            return False
        if line.lower().startswith((b"from:", b"to:")):
            return True
    return False


def _check_one(data: bytes, source: str) -> mailguard.Report:
    report = mailguard.check(data, source=source)
    assert report.verdict in VERDICTS, (source, report.verdict)
    assert report.source == source
    internal = [f.message for f in report.findings if "internal error" in f.message]
    assert not internal, (source, internal)
    if _has_from_or_to(data):
        # A message with real headers is always checked, never turned away as unreadable.
        assert report.verdict != "error", (source, [f.message for f in report.findings])
        assert "MG001" not in report.codes, (source, report.codes)
    return report


def test_corpus_is_present():
    assert CORPUS.is_dir(), MISSING
    messages = [p for p in MESSAGES if p.values[0] is not None]
    assert len(messages) > 400, f"only {len(messages)} corpus messages found in {CORPUS}"
    assert len(MBOXES) >= 5


@pytest.mark.parametrize("path", MESSAGES)
def test_corpus_message_gets_a_report(path):
    if path is None:
        pytest.fail(MISSING)
    _check_one(path.read_bytes(), str(path))


@pytest.mark.parametrize("path", MBOXES)
def test_corpus_mbox_messages_get_reports(path):
    if path is None:
        pytest.fail(MISSING)
    checked = 0
    for index, data in enumerate(split_mbox(path)):
        _check_one(data, f"{path}#{index}")
        checked += 1
    assert checked >= 3, f"{path}: the splitter found only {checked} messages"


def _corpus_file(relative: str) -> bytes:
    path = CORPUS / relative
    assert path.is_file(), MISSING if not CORPUS.is_dir() else f"{path} is missing"
    return path.read_bytes()


def test_spamassassin_spam_006_has_48_visible_recipients():
    # Counted by hand: 1 To + 47 Cc angle-addrs, all distinct (README: "1 To + 47 Cc").
    report = mailguard.check(_corpus_file("spamassassin/spam/006"))
    r = report.recipients
    assert (r["to"], r["cc"], r["visible"], r["invalid_entries"]) == (1, 47, 48, 0)
    assert "MG101" in report.codes


def test_mail_parser_mail_test_9_has_21_in_to():
    r = mailguard.check(_corpus_file("mail-parser/mails/mail_test_9")).recipients
    assert (r["to"], r["cc"], r["visible"], r["invalid_entries"]) == (21, 0, 21, 0)


@pytest.mark.parametrize(
    ("relative", "to", "cc", "visible"),
    [
        # 18 To + 2 Cc as the README says, plus one Resent-To (MRC@CAC.Washington.EDU), which
        # mailguard folds into To: every recipient of the resent copy sees it.
        ("spamassassin/nice/mime3", 19, 2, 21),
        ("spamassassin/spam/005", 2, 17, 19),
    ],
)
def test_other_large_visible_lists_from_the_readme(relative, to, cc, visible):
    r = mailguard.check(_corpus_file(relative)).recipients
    assert (r["to"], r["cc"], r["visible"], r["invalid_entries"]) == (to, cc, visible, 0)


def test_rfc2822_oddities_are_fully_counted():
    """RFC 5322 appendix A.5/A.6.3: comments in angle-addrs, groups, spaced addr-specs."""
    odd = mailguard.check(_corpus_file("mikel-mail/emails/rfc2822/example10.eml"))
    assert odd.analysis is not None
    assert sorted(odd.analysis.visible) == ["c@public.example", "jdoe@one.test", "joe@example.org"]
    assert odd.recipients["invalid_entries"] == 0
    assert odd.analysis.sender is not None
    assert odd.analysis.sender.addr == "pete@silly.test"
    obsolete = mailguard.check(_corpus_file("mikel-mail/emails/rfc2822/example11.eml"))
    assert obsolete.analysis is not None
    assert sorted(obsolete.analysis.visible) == ["jdoe@test.example", "mary@example.net"]


def test_weird_and_empty_group_to_headers():
    weird = mailguard.check(_corpus_file("mikel-mail/emails/error_emails/weird_to_header.eml"))
    assert (weird.recipients["to"], weird.recipients["invalid_entries"]) == (2, 0)
    empty = mailguard.check(_corpus_file("mikel-mail/emails/error_emails/empty_group_lists.eml"))
    assert (empty.recipients["to"], empty.recipients["invalid_entries"]) == (0, 0)


def test_deeply_nested_and_reused_boundary_messages_are_read():
    report = mailguard.check(_corpus_file("mimekit/messages/stack-overflow.txt"))
    assert report.verdict != "error"
    assert report.recipients["to"] >= 1
    simple = list(split_mbox(CORPUS / "mimekit" / "mbox" / "simple.mbox"))
    assert len(simple) == 3
    assert all(mailguard.check(m).verdict != "error" for m in simple)


# ------------------------------------------------------------------ the splitter itself


@pytest.mark.parametrize("eol", [b"\n", b"\r\n"])
def test_split_mbox_handles_lf_crlf_and_bom(tmp_path, eol):
    body = [
        b"\xef\xbb\xbfFrom a@x.example Mon Jan  1 00:00:00 2024",
        b"From: a@x.example",
        b"To: b@y.example",
        b"",
        b"first",
        b"",
        b"From - Tue Jan  2 00:00:00 2024",
        b"To: c@z.example",
        b"",
        b">From is escaped here",
        b"",
    ]
    path = tmp_path / "two.mbox"
    path.write_bytes(eol.join(body))
    messages = list(split_mbox(path))
    assert len(messages) == 2
    assert messages[0].startswith(b"From: a@x.example" + eol)
    assert messages[1].startswith(b"To: c@z.example" + eol)
    assert all(b"From " not in m.split(eol)[0] for m in messages)
    assert [mailguard.check(m).recipients["to"] for m in messages] == [1, 1]
