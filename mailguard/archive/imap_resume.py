"""Where an incremental IMAP scan resumes: UIDVALIDITY and the last UID read.

IMAP numbers a folder's messages with UIDs that only grow, as long as the folder's
UIDVALIDITY stays the same: new mail is exactly the UIDs above the last one read. A new
UIDVALIDITY (the folder was recreated, or the server renumbered it) or fewer messages at
or below that UID (some were deleted) make the old counts wrong, so the folder is read
again in full.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class ImapResume:
    """An incremental re-scan of a folder (``scan --state``): what the last scan saw goes
    in; what this one decided and saw comes out, once the folder is open.

    With the same UIDVALIDITY and no message at or below ``last_uid`` gone, only the UIDs
    in ``again`` (read first: the stored incidents and unreadable messages) and those
    above ``last_uid`` are read. Otherwise the whole folder is, and ``reason`` says why.
    """

    uidvalidity: int | None = None
    last_uid: int = 0
    count: int = 0
    """Messages at or below ``last_uid`` the last scan found (fewer now: some were deleted)."""
    again: tuple[int, ...] = ()
    # what this scan found
    full: bool | None = None
    """None until the folder was opened."""
    reason: str = ""
    seen_uidvalidity: int | None = None
    highest: int = 0
    seen_count: int = 0
    again_count: int = 0

    def choose(self, uidvalidity: int | None, uids: list[int]) -> list[int]:
        """The UIDs to read, re-reads first; records the decision."""
        self.seen_uidvalidity, self.seen_count = uidvalidity, len(uids)
        self.highest = max(uids, default=0)
        old = [u for u in uids if u <= self.last_uid]
        if self.uidvalidity is None:
            self.full, self.reason = True, ""
        elif uidvalidity != self.uidvalidity:
            self.full = True
            self.reason = "the folder's UIDVALIDITY changed (it was recreated or renumbered)"
        elif len(old) != self.count:
            self.full = True
            self.reason = f"{self.count - len(old):,} message(s) read last time were deleted"
        else:
            present = set(old)
            again = sorted(u for u in self.again if u in present)
            self.full, self.again_count = False, len(again)
            self.highest = max(self.highest, self.last_uid)
            return again + [u for u in uids if u > self.last_uid]
        return uids
