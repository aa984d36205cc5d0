"""Fix instead of refuse: the header edits that cure a finding, planned once, applied twice.

Refusing a 296-recipient welcome mail is safe, but it is friction, and friction gets a guard
switched off. Most exposures live in the header block alone: the MTA already holds every
recipient in the envelope, so deleting the visible recipient fields (and a ``Bcc:`` left in
the payload) and adding ``To: undisclosed-recipients:;`` delivers the same message to the
same people without showing anybody's address. This module decides whether that is enough
and says exactly which edits to make; it knows nothing of sockets or SMTP, so the milter
and a pre-send proxy share it.

The API, for both front ends::

    # A proxy, with the raw message: plan, apply, re-check with the same engine.
    result = rewrite_message(
        raw, report, level="block", scoring=config.scoring,
        recheck=lambda data: engine.check(data, envelope=envelope),
    )
    if result.ok:
        send(result.data)          # the rewritten message, body byte for byte as it came
    else:
        ...                        # result.why: rule codes or a reason; use the fallback

    # A milter, with the fields the MTA sent: the same, step by step.
    plan = plan_rewrite(fields, report, level="block", scoring=config.scoring)
    plan.edits  # one CHGHEADER (delete) / ADDHEADER frame per edit, in this order

``fields`` is the header block as ``(name, value)`` pairs in order (what the milter gets
from the MTA; :func:`fields_of` gives them for raw bytes). ``report`` is the engine's report
of the message; each finding's rule declares its ``remedy`` (:data:`mailguard.rules.REMEDIES`).

When a rewrite is possible. The findings whose remedy is a header edit are cured by it;
the others stay. A rewrite is possible only when what stays would, on its own, score below
the action's level (``warn`` or ``block``): a finding without a header remedy that is heavy
enough to reach the level (a future attachment rule, a custom body rule) makes it
impossible. The caller then re-checks the rewritten message with the same engine, since
only the engine knows what the edited header block scores.

Header-index semantics (SMFIR_CHGHEADER). A delete names a field and a 1-based index among
the fields *of that name*. The MTAs disagree about what a delete does to later indexes:
Postfix (``cleanup_milter.c``: ``cleanup_del_header`` overwrites the field with a pointer
past it, and ``cleanup_find_header_start`` counts only the fields it still reaches) closes
the gap, so deleting ``To`` #1 makes the old #2 the new #1; Sendmail (``milter.c``:
``milter_changeheader`` sets the value to NULL and keeps the entry) leaves the entry counted,
so indexes never move. Deleting every instance from the highest index down is the one order
both read the same way, and it is the order :attr:`Plan.edits` uses (a real Postfix is
driven with scripted edits in ``tests/test_postfix_header_index.py``: "To #1 twice" leaves
the third To, as this model says). Postfix counts from the first field after its own
``Received:``, i.e. the fields the milter was shown, and counts fields a milter added.
Added fields go to the end of the header block (SMFIR_ADDHEADER), so :func:`apply_to_bytes`
appends them there too.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from mailguard.headers import find_header_end
from mailguard.report import Finding, Report
from mailguard.rules import MOVE_TO_BCC, REMOVE_BCC_HEADER
from mailguard.scoring import VERDICT_ORDER, Scoring, total, verdict

HEADER_REMEDIES = frozenset({MOVE_TO_BCC, REMOVE_BCC_HEADER})
"""Remedies a header edit applies; any other (or none) cannot be cured by a rewrite."""
VISIBLE_FIELDS = ("To", "Cc", "Resent-To", "Resent-Cc")
"""Fields whose addresses every recipient sees: all deleted when moving to Bcc."""
BCC_FIELDS = ("Bcc", "Resent-Bcc")
"""Hidden-recipient fields: never wanted in an outgoing payload, deleted in every rewrite."""
ACTION_FIELD = "X-Mailguard-Action"
"""Says the message was rewritten (counts only); one the sender wrote is deleted first."""
UNDISCLOSED = "undisclosed-recipients:;"
"""An empty group (RFC 5322 3.4): a To field that names nobody, which MUAs show as such."""
REWRITE_TO = ("undisclosed", "sender")
"""What the new To says: the empty group, or the sender's own address."""
LEVELS = ("warn", "block")

_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+")
"""A dot-atom address: safe to write into a header as it is, with no quoting."""
_UNIT = re.compile(rb"\n(?![ \t])(?:([!-9;-~]+)[ \t]*:)?")
"""A line that starts a unit (no leading blank), with the field name when it is a field.
Matched from the line end before it: a literal first character lets the engine skip ahead."""


@dataclass(frozen=True, slots=True)
class Edit:
    """One header edit, as a milter sends it: delete ``name`` #``index``, or add a field."""

    action: Literal["delete", "add"]
    name: str
    value: str = ""
    index: int = 0
    """Deletes: 1-based among the fields called ``name`` (any case) still present."""


@dataclass(frozen=True, slots=True)
class Plan:
    """Whether a rewrite can cure the message, and the edits that do it."""

    possible: bool
    reason: str = ""
    """Why not (rule codes and names, never message data); empty when possible."""
    uncured: tuple[str, ...] = ()
    """Codes of the findings no header edit cures (why it is not possible, or what stays)."""
    edits: tuple[Edit, ...] = ()
    """Deletes (per name, highest index first), then adds; apply in this order."""
    cures: tuple[str, ...] = ()
    """Codes of the findings the edits cure."""
    removed: Mapping[str, int] = field(default_factory=dict)
    """Field name -> instances deleted (To, Cc, Resent-To, Resent-Cc, Bcc, Resent-Bcc)."""
    visible_before: int = 0
    """Distinct visible recipients before the rewrite (the report's count)."""
    visible_after: int = 0
    """Visible recipients the new header block names: 0, or 1 with ``rewrite_to="sender"``."""


@dataclass(frozen=True, slots=True)
class Rewritten:
    """What a rewrite came to: the rewritten message, or why it is no cure."""

    ok: bool
    """The edits cure the message: ``data`` is to be sent instead of the original."""
    plan: Plan
    data: bytes | None = None
    after: Report | None = None
    """The re-check of the rewritten message (``None`` when none was made)."""
    why: str = ""
    """When not ok, for a log line: the codes no header edit cures (``plan.uncured``), or
    those still found after the rewrite, or a short reason. Never message data."""


def rewrite_message(
    raw: bytes,
    report: Report,
    *,
    level: str,
    scoring: Scoring,
    recheck: Callable[[bytes], Report],
    rewrite_to: str = "undisclosed",
    fields: Sequence[tuple[str, str]] | None = None,
) -> Rewritten:
    """Plan, apply to ``raw`` and re-check: the whole rewrite, for the milter and the proxy.

    ``recheck`` runs the engine that made ``report`` on the rewritten bytes (with the same
    envelope and limits); only the engine knows what the edited header block scores.
    ``fields``: the header fields as the MTA counts them, when that is not ``raw``'s own
    (a milter's), so the plan's indexes are the MTA's.
    """
    plan = plan_rewrite(
        fields_of(raw) if fields is None else fields, report, level=level, scoring=scoring,
        rewrite_to=rewrite_to,
    )  # fmt: skip
    if not plan.possible:
        return Rewritten(False, plan, why=",".join(plan.uncured) or "nothing-to-cure")
    if raw.find(b"\n", 0, 4096) < 0 and raw.find(b"\r", 0, 4096) >= 0:
        # Bare-CR line ends: the engine reads them as lines (mailguard.message), the byte
        # edits do not, and the LF of an added field would change how the re-check reads
        # the rest. A mail client may show those lines: no rewrite, never a pretend one.
        return Rewritten(False, plan, why="bare-cr-line-ends")
    data = apply_to_bytes(raw, plan.edits)
    after = recheck(data)
    if at_level(after, level):
        return Rewritten(False, plan, None, after, ",".join(after.codes) or after.verdict)
    return Rewritten(True, plan, data, after)


def at_level(report: Report, level: str) -> bool:
    """Whether the report's verdict is at or above ``level``; an ``error`` always is."""
    return VERDICT_ORDER[report.verdict] >= VERDICT_ORDER[level]


still_at_level = at_level
"""For the re-check: the rewritten message's report is judged the same way."""


def plan_rewrite(
    fields: Sequence[tuple[str, str]],
    report: Report,
    *,
    level: str,
    scoring: Scoring,
    rewrite_to: str = "undisclosed",
) -> Plan:
    """The edits that cure ``report`` at ``level``, or why there are none (see module doc)."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, not {level!r}")
    if rewrite_to not in REWRITE_TO:
        raise ValueError(f"rewrite_to must be one of {REWRITE_TO}, not {rewrite_to!r}")
    if report.verdict == "error":
        return Plan(False, "the message could not be checked")
    curable = [f for f in report.findings if f.remedy in HEADER_REMEDIES]
    kept = [f for f in report.findings if f.remedy not in HEADER_REMEDIES]
    uncured = tuple(dict.fromkeys(f.code for f in kept))
    if VERDICT_ORDER[verdict(total(f.weight for f in kept), scoring)] >= VERDICT_ORDER[level]:
        return Plan(False, "no header remedy for " + _names(kept), uncured)
    if not curable:
        return Plan(False, "no finding a header edit can cure", uncured)
    move = any(f.remedy == MOVE_TO_BCC for f in curable)
    counts = _counts(fields)
    deleting = (*VISIBLE_FIELDS, *BCC_FIELDS) if move else BCC_FIELDS
    edits = [
        Edit("delete", name, index=i)
        for name in (*deleting, ACTION_FIELD)
        for i in range(counts.get(name.lower(), 0), 0, -1)
    ]
    visible_before = int(report.recipients.get("visible", 0))
    visible_after = visible_before
    if move:
        to = _sender_address(report) if rewrite_to == "sender" else None
        edits.append(Edit("add", "To", to or UNDISCLOSED))
        visible_after = 1 if to else 0
    removed = {n: counts[n.lower()] for n in deleting if counts.get(n.lower())}
    note = ",".join(f"{n}:{c}" for n, c in removed.items()) or "none"
    edits.append(
        Edit(
            "add",
            ACTION_FIELD,
            f"rewritten; visible={visible_before}->{visible_after}; removed={note}",
        )
    )
    return Plan(
        True,
        uncured=uncured,
        edits=tuple(edits),
        cures=tuple(dict.fromkeys(f.code for f in curable)),
        removed=removed,
        visible_before=visible_before,
        visible_after=visible_after,
    )


def _names(findings: Iterable[Finding]) -> str:
    return ", ".join(dict.fromkeys(f"{f.code} {f.name}" for f in findings))


def _counts(fields: Sequence[tuple[str, str]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name, _ in fields:
        key = name.strip().lower()
        counts[key] = counts.get(key, 0) + 1
    return counts


def _sender_address(report: Report) -> str | None:
    """The sender's addr-spec for the new To, if it is plain printable ASCII.

    Only the address, not the display name: it is written into a header verbatim, and the
    normalised address of the recipient analysis has no quoting or encoding to get wrong.
    """
    sender = report.analysis.sender if report.analysis is not None else None
    if sender is None or not _PLAIN_ADDRESS.fullmatch(sender.addr):
        return None
    return sender.addr


# ---------------------------------------------------------------- applying a plan


def apply_to_fields(
    fields: Sequence[tuple[str, str]], edits: Iterable[Edit]
) -> list[tuple[str, str]]:
    """The header fields as an MTA holds them after ``edits`` (Postfix's semantics).

    A delete of an index that does not exist does nothing, as in both MTAs.
    """
    block = _Block([name.strip().lower() for name, _ in fields], list(fields))
    for edit in edits:
        block.apply(edit, (edit.name, edit.value))
    return block.live()


def fields_of(raw: bytes) -> list[tuple[str, str]]:
    """The header fields of a raw message, ``(name, value)`` with folding kept in the value."""
    head, _, _ = _split(raw)
    out = []
    for key, start, stop in _units(head):
        if key is not None:
            name, _, value = head[start:stop].partition(b":")
            value = value[:-2] if value.endswith(b"\r\n") else value.removesuffix(b"\n")
            out.append((name.strip().decode("latin-1"), value.decode("latin-1")))
    return out


def apply_to_bytes(raw: bytes, edits: Iterable[Edit]) -> bytes:
    """``raw`` with ``edits`` applied to its header block; the body is the same bytes.

    Deleted fields go with all their continuation lines; added fields take the message's
    own line ending and are appended after the last field, as an MTA adds them. Lines of
    the header block that are not fields are kept as they are. Lines end at LF (CRLF
    included); :func:`rewrite_message` refuses messages with bare-CR line ends.
    """
    head, sep, body = _split(raw)
    first = head.find(b"\n")
    eol = b"\r\n" if first > 0 and head[first - 1] == 13 else b"\n"
    spans = _units(head)
    block = _Block([key for key, _, _ in spans], [head[a:b] for _, a, b in spans])
    last = len(spans) - 1  # the only unit that can lack a line end: the block's last line
    for edit in edits:
        tail = block.units[last] if edit.action == "add" and last >= 0 else None
        if tail is not None and not tail.endswith(b"\n"):
            block.units[last] = tail + eol
        block.apply(edit, _field_bytes(edit.name, edit.value, eol))
    return b"".join(block.live()) + sep + body


class _Block:
    """A header block under edit: units (fields or other lines) and their lower-case names.

    ``positions`` lists, per name, where its live fields are, in order: a delete is a
    ``pop`` from that list, at its end for the highest-index-first deletes that plans make,
    so deleting every one of 10,000 ``To`` fields is linear, not quadratic.
    """

    def __init__(self, keys: list[str | None], units: list) -> None:  # type: ignore[type-arg]
        self.units = units
        self.positions: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            if key is not None:
                self.positions.setdefault(key, []).append(i)

    def apply(self, edit: Edit, unit: object) -> None:
        key = edit.name.strip().lower()
        live = self.positions.setdefault(key, [])
        if edit.action == "add":
            live.append(len(self.units))
            self.units.append(unit)
        elif 1 <= edit.index <= len(live):
            self.units[live.pop(edit.index - 1)] = None

    def live(self) -> list:  # type: ignore[type-arg]
        return [u for u in self.units if u is not None]


def _field_bytes(name: str, value: str, eol: bytes) -> bytes:
    text = f"{name}: {value}".encode("ascii", "replace")
    return text.replace(b"\r", b"").replace(b"\n", b"") + eol


def _split(raw: bytes) -> tuple[bytes, bytes, bytes]:
    """(header block with its last line end, the blank line, body)."""
    found = find_header_end(raw, 0, len(raw))
    if found is None:
        return raw, b"", b""
    end, body = found
    line_end = raw.find(b"\n", end)
    return raw[: line_end + 1], raw[line_end + 1 : body], raw[body:]


def _units(head: bytes) -> list[tuple[str | None, int, int]]:
    """Spans of fields (lower-case name, start, stop; continuation lines included) and of
    other lines (name ``None``).

    One regex pass finds the line starts that are not continuations: a 300-line folded Cc
    is one unit found in C, not 300 turns of a Python loop.
    """
    if not head:
        return []
    first = _UNIT.match(b"\n" + head[:1000])  # the first line, as if a line ended before it
    starts = [(0, first.group(1))] if first else []
    starts += [(m.start() + 1, m.group(1)) for m in _UNIT.finditer(head) if m.end() < len(head)]
    units: list[tuple[str | None, int, int]] = []
    if not starts or starts[0][0] > 0:  # the block opens with a continuation line
        units.append((None, 0, starts[0][0] if starts else len(head)))
    for i, (start, name) in enumerate(starts):
        stop = starts[i + 1][0] if i + 1 < len(starts) else len(head)
        units.append((name.decode("ascii").lower() if name else None, start, stop))
    return units
