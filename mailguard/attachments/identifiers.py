"""National identifiers and payment numbers, validated by their own check rules.

A digit string is only an identifier when its checksum holds *and* a column header or a
keyword nearby says what it is (the caller's job): about one random 16-digit string in ten
passes Luhn, one in eleven passes the NHS mod-11 check, so a checksum alone would turn
every order number into a card number.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_NOT_ALNUM = re.compile(r"[^0-9A-Za-z]")

# HMRC's rules for National Insurance numbers: two prefix letters (neither D, F, I, Q, U
# or V; the second not O), prefixes BG, GB, KN, NK, NT, TN and ZZ never allocated, six
# digits, a suffix A-D.
_NINO = re.compile(r"[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z][0-9]{6}[A-D]")
_NINO_NEVER = frozenset({"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"})
_IBAN = re.compile(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}")


def _compact(value: str) -> str:
    return _NOT_ALNUM.sub("", value).upper()


def uk_ni_number(value: str) -> bool:
    """A UK National Insurance number with a prefix HMRC allocates (``QQ 12 34 56 C``)."""
    v = _compact(value)
    return len(v) == 9 and _NINO.fullmatch(v) is not None and v[:2] not in _NINO_NEVER


def nhs_number(value: str) -> bool:
    """Ten digits whose mod-11 check digit holds (a remainder of 10 is never issued)."""
    v = _compact(value)
    if len(v) != 10 or not v.isdigit() or len(set(v)) == 1:
        return False
    total = sum(int(d) * w for d, w in zip(v[:9], range(10, 1, -1), strict=True))
    check = 11 - total % 11
    if check == 11:
        check = 0
    return check != 10 and check == int(v[9])


def payment_card(value: str) -> bool:
    """13-19 digits passing Luhn, starting like a card scheme's numbers (2-6)."""
    v = _compact(value)
    if not 13 <= len(v) <= 19 or not v.isdigit() or v[0] not in "23456":
        return False
    total = 0
    for i, ch in enumerate(reversed(v)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban(value: str) -> bool:
    """An IBAN whose ISO 13616 mod-97 check holds."""
    v = _compact(value)
    if _IBAN.fullmatch(v) is None:
        return False
    moved = v[4:] + v[:4]
    return int("".join(str(int(ch, 36)) for ch in moved)) % 97 == 1


VALIDATORS: dict[str, Callable[[str], bool]] = {
    "ni_number": uk_ni_number,
    "nhs_number": nhs_number,
    "payment_card": payment_card,
    "iban": iban,
}
"""Column kinds whose values must pass a check before they count."""

CANDIDATE = re.compile(
    r"\b(?:[A-Za-z]{2}[ ]?\d{2}[ ]?\d{2}[ ]?\d{2}[ ]?[A-Da-d]"  # NI number
    r"|\d{3}[ -]?\d{3}[ -]?\d{4}"  # NHS number
    r"|(?:\d[ -]?){12,18}\d"  # card
    r"|[A-Za-z]{2}\d{2}(?:[ ]?[A-Za-z0-9]{4}){2,7}[ ]?[A-Za-z0-9]{1,4})\b"  # IBAN
)
"""Strings in free text that may be one of the identifiers above (validated after)."""
