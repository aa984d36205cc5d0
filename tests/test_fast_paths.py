"""Every fast path of issue 10 gives the answer of the careful path it stands in for.

The careful implementations stay in the code as the reference; these properties run both
on generated input, well-formed and malformed, and compare the results exactly.
"""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailguard import domains, sensitive
from mailguard.body import part_fields
from mailguard.headers import parse_header_block
from mailguard.limits import Limits
from mailguard.sources import find_files, find_names, read_file

# ------------------------------------------------------------------ sensitive-context matcher

_VOCAB = sensitive.vocabulary()
_CUSTOM = sensitive.vocabulary(("dear members", "in care*", "on on", "zzz tops", "abc*"))
# Words of the vocabulary (first words, anchors, prefixes and their extensions), everyday
# words that start terms, and noise: texts made of these hit every branch of both matchers.
_TERM_WORDS = sorted(
    {w for terms in _VOCAB._exact.values() for t in terms for w in t.words}
    | {t.words[0] for terms in _VOCAB._prefix.values() for t in terms}
)
_PHRASES = sorted(
    {" ".join(t.words) for terms in _VOCAB._exact.values() for t in terms if len(t.words) > 1}
)
_WORD = st.one_of(
    st.sampled_from(_PHRASES),  # whole terms and exclude phrases, to be found or cut
    st.sampled_from(_TERM_WORDS),
    st.sampled_from(_TERM_WORDS).map(lambda w: w + "ic"),  # prefix extensions
    st.sampled_from(["in", "on", "dear", "all", "the", "members", "care", "tops", "zzz", "abc"]),
    st.text(alphabet="abcdeiostz", min_size=1, max_size=6),
)
_GLUE = st.sampled_from([" ", "  ", "\n", "-", "'", ", ", ". ", "/", "\t", "!"])


@st.composite
def _texts(draw: st.DrawFn) -> str:
    words = draw(st.lists(_WORD, max_size=40))
    glue = draw(st.lists(_GLUE, min_size=len(words), max_size=len(words)))
    text = "".join(g + w for g, w in zip(glue, words, strict=True))
    if draw(st.booleans()):  # case, junk and separators the matcher must fold
        text = draw(st.sampled_from([str.upper, str.title, str.lower]))(text)
    return text + draw(st.text(max_size=5))


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_texts())
def test_sensitive_find_equals_careful(text):
    for vocab in (_VOCAB, _CUSTOM):
        assert vocab.find(text) == vocab.find_careful(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_sensitive_find_equals_careful_on_any_text(text):
    assert _VOCAB.find(text) == _VOCAB.find_careful(text)


def test_sensitive_find_examples():
    text = "Dear patients, the HIV support group meets in the psychiatric wing on Monday"
    assert _VOCAB.find(text) == _VOCAB.find_careful(text) != []
    # A tie at one position goes to the same term in both (single word and phrase).
    assert _CUSTOM.find("on on on") == _CUSTOM.find_careful("on on on")


# ------------------------------------------------------------------ check's folder walk

_NAME = st.text(alphabet="aA-_. b~0é", min_size=1, max_size=4).filter(
    lambda n: n not in (".", "..")
)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(_NAME, min_size=1, max_size=3), min_size=1, max_size=12))
def test_walk_order_is_path_order(tmp_path_factory, trees):
    root = tmp_path_factory.mktemp("walk")
    for parts in trees:
        *folders, name = parts
        folder = root.joinpath(*folders)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / (name + ".eml")).write_bytes(b"")
        except OSError:  # a name already taken by a folder, or the other way round
            continue
    names, _ = find_names(root, "*.eml")
    careful = sorted(  # the reference: every file, as Path objects, in Path order
        Path(dirpath, f) for dirpath, _d, files in os.walk(root) for f in files
    )
    assert [Path(n) for n in names] == careful
    assert [str(p) for p in careful] == names  # and spelled as Path spells them
    assert find_files(root, "*.eml")[0] == careful


def test_walk_from_current_folder_names_files_as_path_does(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.eml").write_bytes(b"")
    (tmp_path / "a.eml").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    assert find_names(".", "*.eml")[0] == ["a.eml", "sub/b.eml"]
    assert find_names("./sub/", "*.eml")[0] == ["sub/b.eml"]


# ------------------------------------------------------------------ words of a text


@settings(max_examples=2000, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=60))
def test_ascii_words_equal_careful(text):
    assert sensitive._words(text) == sensitive._words_careful(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_words_equal_careful_on_any_text(text):
    assert sensitive._words(text) == sensitive._words_careful(text)


# ------------------------------------------------------------------ reading a file


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([0, 1, 2, 1000, 256 * 1024 - 1, 256 * 1024, 256 * 1024 + 1, 300_000]))
def test_read_file_equals_plain_read(tmp_path_factory, size):
    path = tmp_path_factory.mktemp("read") / "m.eml"
    path.write_bytes(os.urandom(size))
    assert read_file(path).data == path.read_bytes()
    assert read_file(str(path), max_bytes=size).data == path.read_bytes()
    if size:
        assert read_file(path, max_bytes=size - 1).data is None  # over the cap: not read


def test_read_file_of_a_size_zero_proc_file_reads_it_whole():
    data = read_file("/proc/self/status").data
    assert data is not None and data.startswith(b"Name:")


# ------------------------------------------------------------------ a MIME part's fields

_PART_PIECES = st.sampled_from(
    [
        "Content-Type",
        "content-type",
        "CONTENT-TYPE",
        "Content-Disposition",
        "Content-Transfer-Encoding",
        "content-transfer-encoding",
        "X-Other",
        "Content-Typex",
        "Content-Type-X",
        "Content-Di\u017fposition",
        "ContEnt-TYPE",
        " Content-Type",
        "\tContent-Type",
        ":",
        " :",
        "\t:",
        ": ",
        " ",
        "\t",
        "\n",
        "\r\n",
        "\n ",
        "\n\t",
        "\r",
        "text/plain",
        'multipart/alternative; boundary="b"',
        "attachment",
        "base64",
        ";",
        "=",
        "é",
        "\x00",
    ]
)


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_PART_PIECES, max_size=25), st.booleans())
def test_part_fields_equal_full_header_parse(pieces, latin1):
    block = "".join(pieces).encode("latin-1" if latin1 else "utf-8", "replace")
    limits = Limits(max_header_field_bytes=12)
    careful = parse_header_block(block, limits, [])
    expected = tuple(
        careful[name][0] if name in careful else None
        for name in ("content-type", "content-disposition", "content-transfer-encoding")
    )
    assert part_fields(block, limits) == expected


# ------------------------------------------------------------------ the Public Suffix List


def test_public_suffix_list_equals_the_librarys_own():
    from publicsuffixlist import PublicSuffixList

    careful, fast = PublicSuffixList(), domains._build_psl()
    assert fast._publicsuffix == careful._publicsuffix
    assert fast._maxlabel == careful._maxlabel
    for name in ("a.b.example.co.uk", "x.nhs.uk", "xn--bcher-kva.example", "city.kobe.jp",
                 "www.ck", "a.b.c.xn--p1ai", "test.xn--fiqs8s", "s3.amazonaws.com"):  # fmt: skip
        assert fast.privatesuffix(name) == careful.privatesuffix(name), name
        assert fast.publicsuffix(name) == careful.publicsuffix(name), name


# ------------------------------------------------------------------ early decision terms


def _engines() -> list:
    """The default rules and three variants: the input rules heavier or off, a body rule
    off, weights that move the verdict bands."""
    from mailguard.config import from_mapping
    from mailguard.engine import Engine

    variants = [
        {},
        {"rules": {"MG003": {"enabled": False}}},
        {"rules": {"MG301": {"enabled": False}, "MG002": {"weight": 60}}},
        {"rules": {"MG101": {"weight": 5}, "MG003": {"weight": 90}}},
    ]
    return [Engine(from_mapping(v)) for v in variants]


_ENGINES = _engines()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    kind=st.sampled_from(["small", "cc"]),
    count=st.integers(1, 60),
    mode=st.sampled_from(["outgoing", "archived"]),
)
def test_body_could_change_equals_careful(seed, kind, count, mode):
    from tests.support.synth import MixGenerator

    gen = MixGenerator(seed)
    data = gen.small().data if kind == "small" else gen.many_cc(count).data
    end = data.find(b"\r\n\r\n")
    headers = data[: end + 2] if end >= 0 else data  # what the milter has at end-of-headers
    for engine in _ENGINES:
        for raw in (data, headers):
            report = engine.check(raw, mode=mode)
            assert engine.body_could_change(report, mode) == engine.body_could_change_careful(
                report, mode
            )


# ------------------------------------------------------------------ MIME delimiter search

_HAY = st.lists(
    st.sampled_from([b"-", b"--", b"--b1", b"--b1--", b"\n", b"\r\n", b"abc", b"QUJD+/=", b"b1"]),
    max_size=60,
).map(b"".join)


@settings(max_examples=3000, deadline=None)
@given(
    _HAY,
    st.sampled_from([b"--b1", b"--b", b"-", b"--b1--", b"---"]),
    st.integers(-5, 70),
    st.integers(-5, 70),
)
def test_find_dashed_equals_bytes_find(raw, needle, start, end):
    from mailguard.body import find_dashed

    start, end = max(start, 0), max(end, 0)  # find's negative indexes are not used here
    assert find_dashed(raw, needle, start, end) == raw.find(needle, start, end)


_MBOXISH = st.lists(
    st.sampled_from([b" ", b"From ", b"\nFrom ", b"\nFro", b"\n", b"m ", b"QUJD+/=", b"x y"]),
    max_size=60,
).map(b"".join)


@settings(max_examples=3000, deadline=None)
@given(
    _MBOXISH,
    st.sampled_from([b"\nFrom ", b"From ", b" ", b"m F", b"x y"]),
    st.data(),
    st.integers(0, 70),
    st.integers(0, 70),
)
def test_find_via_equals_bytes_find(raw, needle, data, start, end):
    import tempfile

    from mailguard.file_view import FileView
    from mailguard.search import find_via

    pivot = data.draw(st.integers(0, len(needle) - 1))
    assert find_via(raw, needle, pivot, start, end) == raw.find(needle, start, end)
    if raw:  # the mbox reader searches a file's view (windows: tests/test_mbox_shrinks.py)
        with tempfile.TemporaryFile() as f:
            f.write(raw)
            f.flush()
            view = FileView(f.fileno())
            assert find_via(view, needle, pivot, start, end) == raw.find(needle, start, end)
