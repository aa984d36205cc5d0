"""ZIP archives found by the hostile-attachment sweep: one entry that cannot be read must
not hide the list beside it, and an archive of 100,000 entries is refused from its bytes,
before ``zipfile`` builds an object per entry."""

from __future__ import annotations

import io
import zipfile

from mailguard import Engine
from tests.support import attachments as fx

PEOPLE, LIST, ZIP = fx.SWEEP_PEOPLE, fx.SWEEP_LIST, "application/zip"
people, zipped = fx.people_and_findings, fx.zipped


def test_an_encrypted_entry_does_not_hide_the_list_beside_it():
    data = bytearray(zipped([("secret.csv", b"x" * 100), ("people.csv", LIST)]))
    data[6] |= 1  # the local header's and the central directory's "encrypted" flag
    data[data.find(b"PK\x01\x02") + 8] |= 1
    count, findings = people(fx.message([("mixed.zip", ZIP, bytes(data))]))
    assert count == PEOPLE
    assert "password-protected" in findings["MG603"]


def test_a_bomb_entry_does_not_hide_the_list_beside_it():
    bomb = zipped([("zeros.csv", b"\0" * (8 << 20)), ("people.csv", LIST)])
    count, findings = people(fx.message([("mixed.zip", ZIP, bomb)]))
    assert count == PEOPLE
    assert "zip bomb" in findings["MG603"]


def _many_entries(n: int) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        for i in range(n):
            z.writestr(zipfile.ZipInfo(f"{i}.csv"), b"")
    return out.getvalue()


def test_too_many_entries_are_counted_before_the_archive_is_parsed():
    """zipfile builds an object per entry (100,000 empty ones: 60 MB); the count now comes
    first, from the bytes of the central directory (a zip64 end record here)."""
    import tracemalloc

    data = _many_entries(100_000)
    engine = Engine()
    people(fx.message([("w.zip", ZIP, zipped([("w.csv", LIST)]))]), engine)  # warm
    message = fx.message([("many.zip", ZIP, data), ("people.csv", "text/csv", LIST)])
    tracemalloc.start()
    count, findings = people(message, engine)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert count == PEOPLE
    assert "100,000 entries in the archive" in findings["MG603"]
    assert peak < 3 * len(data), (peak, len(data))  # the decoded file and its copies
