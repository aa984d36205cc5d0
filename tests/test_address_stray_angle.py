"""A stray ``<`` does not swallow the entries after it when a later display name quotes a
``>``.

Found by ``test_one_junk_entry_never_hides_the_other_addresses`` (a random example, in a
full-suite run): in ``<, ">" <""@0.AA>`` the lexer's quote-blind angle-addr ran from the
stray ``<`` to the ``>`` inside ``">"``, so the real ``<""@0.AA>`` was cut apart and the
whole header was one invalid entry: an address a recipient check never saw. That
alternative now stops at a ``,`` or ``;`` as the unterminated one does; a quote-free
angle-addr with commas (the obsolete route ``<@r1,@r2:u@h>``) is matched before it.
"""

from __future__ import annotations

import pytest

from mailguard.addresses import parse_address_list


@pytest.mark.parametrize(
    ("value", "addresses"),
    [
        ('<, ">" <""@0.AA>', ['""@0.aa']),
        ('<, a@b.example, ">" <""@d.example>', ["a@b.example", '""@d.example']),
        ('x <, "a > b" <c@d.example>, e@f.example', ["c@d.example", "e@f.example"]),
        ("<@r1.example,@r2.example:u@h.example>", ["u@h.example"]),  # a route: one address
        ('"a>b" <c@d.example>', ["c@d.example"]),
        ('<"a>b"@d.example>', ['"a>b"@d.example']),
    ],
)
def test_no_entry_is_lost_to_a_stray_angle(value: str, addresses: list[str]) -> None:
    assert [a.addr for a in parse_address_list(value, "to").addresses] == addresses
