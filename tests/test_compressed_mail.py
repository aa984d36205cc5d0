"""Message files stored compressed are unpacked, within the size cap, before they are judged.

Why: Dovecot's ``mail_compress`` (formerly ``zlib``) plugin keeps Maildir files gzip-,
bzip2-, xz-, zstd- or lz4-compressed under their usual names, and archives hold gzipped
``.eml`` files. Read as they were, each was a "not a message" error entry and what it
exposed went unseen. gzip, bzip2 and xz are unpacked with the standard library; zstd and
lz4 become an error entry naming the format. A bomb (a few KB that inflate to gigabytes)
costs what the cap allows, then an error.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mailguard.compressed import MAX_STREAMS, CompressedError, decompress, kind
from mailguard.sources import read_file, read_head
from tests.scan_archive import MESSAGES
from tests.test_scan_state import comparable, scan
from tests.test_scan_state_maildir import write_maildir

PACK: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress, "bzip2": bz2.compress, "xz": lzma.compress,
}  # fmt: skip
INCIDENT = MESSAGES[1][1]  # block-40: a Cc exposing 40 addresses


@pytest.mark.parametrize("name", sorted(PACK))
def test_a_compressed_maildir_scans_as_the_plain_one(tmp_path: Path, name: str) -> None:
    plain = write_maildir(tmp_path / "plain", ":")
    packed = write_maildir(tmp_path / "packed", ":")
    for path in [*packed.glob("cur/*"), *packed.glob("new/*")]:
        path.write_bytes(PACK[name](path.read_bytes()))
        assert kind(path.read_bytes()) == name
    _, want, _ = scan(str(plain), str(tmp_path / "a.json"))
    _, got, _ = scan(str(packed), str(tmp_path / "b.json"))
    assert got["summary"]["incidents"] == want["summary"]["incidents"] > 0
    assert comparable(got)[0] == comparable(want)[0]  # the same summary


@pytest.mark.parametrize(
    ("magic", "name"), [(b"\x28\xb5\x2f\xfd", "zstd"), (b"\x04\x22\x4d\x18", "lz4")]
)
def test_formats_not_unpacked_here_are_named(tmp_path: Path, magic: bytes, name: str) -> None:
    path = tmp_path / "m.eml"
    path.write_bytes(magic + b"\x00" * 40)
    item = read_file(path)
    assert item.data is None and item.unreadable
    assert item.error is not None and f"compressed with {name}" in item.error


def test_a_bomb_stops_at_the_cap_quickly(tmp_path: Path) -> None:
    bomb = gzip.compress(b"\x00" * (256 << 20), compresslevel=9)  # 256 MB in ~250 KB
    path = tmp_path / "bomb.eml"
    path.write_bytes(bomb)
    started = time.monotonic()
    item = read_file(path, 1 << 20)
    assert time.monotonic() - started < 5
    assert item.data is None and "more than the size cap of 1,048,576 bytes" in (item.error or "")


def test_cut_off_or_damaged_data_is_an_error_entry() -> None:
    packed = gzip.compress(INCIDENT)
    with pytest.raises(CompressedError, match="cut off"):
        decompress(packed[: len(packed) // 2], 1 << 20)
    damaged = packed[:12] + bytes(b ^ 0xFF for b in packed[12:40]) + packed[40:]
    with pytest.raises(CompressedError, match="damaged gzip"):
        decompress(damaged, 1 << 20)


def test_concatenated_streams_and_trailing_padding() -> None:
    two = gzip.compress(b"From: a@b.example\n") + gzip.compress(b"To: c@d.example\n\nhi\n")
    assert decompress(two + b"\x00" * 64, 1 << 20) == b"From: a@b.example\nTo: c@d.example\n\nhi\n"
    many = gzip.compress(b"X: y\n") * (MAX_STREAMS + 1)
    with pytest.raises(CompressedError, match="concatenated gzip streams"):
        decompress(many, 1 << 20)


def test_plain_messages_are_not_taken_for_compressed_ones() -> None:
    for _, raw in MESSAGES:
        assert kind(raw) is None
    assert kind(b"BZh: a header field\n\n") is None  # "BZh" without the block magic


def test_a_rescan_reads_a_compressed_message_whole(tmp_path: Path) -> None:
    """read_head cannot stop at the header block of packed bytes: it reads the file whole
    (unpacked), so a --state re-scan rebuilds the incident from the real header fields."""
    path = tmp_path / "m.eml"
    path.write_bytes(gzip.compress(INCIDENT))
    assert read_head(path).data == read_file(path).data == INCIDENT


def test_a_gzipped_mbox_is_judged_message_by_message(tmp_path: Path) -> None:
    """Unpacked as it is read, an mbox must still be split: judged as one message, all but
    its first would go unseen (by ``scan`` of the file or of a folder holding it, and by
    ``check``)."""
    import json
    import subprocess
    import sys

    from tests.scan_archive import write_mbox

    (tmp_path / "plain").mkdir()
    mbox = write_mbox(tmp_path / "plain" / "sent.mbox")
    packed = tmp_path / "packed" / "sent.mbox.gz"
    packed.parent.mkdir()
    packed.write_bytes(gzip.compress(mbox.read_bytes()))
    _, want, _ = scan(str(mbox), str(tmp_path / "a.json"))
    _, got, _ = scan(str(packed), str(tmp_path / "b.json"))
    _, tree, _ = scan("--glob", "*.gz", str(packed.parent), str(tmp_path / "c.json"))
    for data in (got, tree):
        assert data["summary"]["messages"] == want["summary"]["messages"] == len(MESSAGES)
        assert data["summary"]["incidents"] == want["summary"]["incidents"] > 0
    done = subprocess.run(
        [sys.executable, "-m", "mailguard", "check", "--no-config", "-f", "json", str(packed)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    sources = [m["source"] for m in json.loads(done.stdout)["messages"]]
    assert len(sources) == len(MESSAGES) and sources[0] == f"{packed}@0", done.stderr
