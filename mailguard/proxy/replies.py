"""What the proxy says: its own replies, aiosmtpd's with an enhanced status code, and any
reply (the upstream's too) made well formed before a client hears it (RFC 5321 4.2 and
4.5.3.1.5, RFC 3463)."""

from __future__ import annotations

import re

from mailguard.proxy.relay import Reply

INTERNAL = "451 4.3.0 mailguard: internal error; please try again later"
IDLE = "421 4.4.2 mailguard: idle too long, closing"
SHUTTING_DOWN = "421 4.3.2 mailguard: shutting down; please try again later"
REWORDED = {
    text: f"{text[:3]} {enhanced} {text[4:]}"
    for text, enhanced in (
        ("552 Error: Too much mail data", "5.3.4"),  # RFC 1870 / RFC 3463: too big
        ("552 Error: message size exceeds fixed maximum message size", "5.3.4"),
        ("500 Line too long (see RFC5321 4.5.3.1.6)", "5.5.2"),
        ("500 Command line too long", "5.5.2"),
        ("500 Error: bad syntax", "5.5.2"),
        ("500 Error: strict ASCII mode", "5.5.2"),
        ("503 Error: need MAIL command", "5.5.1"),
        ("503 Error: need RCPT command", "5.5.1"),
        ("503 Error: nested MAIL command", "5.5.1"),
        ("501 Syntax: DATA", "5.5.4"),
        ("501 Syntax: RSET", "5.5.4"),
        ("501 Syntax: QUIT", "5.5.4"),
        ("530 Must issue a STARTTLS command first", "5.7.0"),
        ("454 TLS not available", "4.7.0"),
    )
}
"""aiosmtpd's fixed error replies that carry no enhanced status code (RFC 3463), as the
proxy words them: the same code and text, with one of the reply's class."""


MAX_TEXT = 512 - len("250 \r\n")
"""RFC 5321 4.5.3.1.5: a reply line is at most 512 octets with its code and CRLF."""
_PLAIN_TEXT = re.compile(rf"[!-~](?:[ -~]{{0,{MAX_TEXT - 2}}}[!-~])?\Z")
"""One line of printable ASCII that fits, no space at either end: sent as it is."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
"""CR, NUL, tab and the other controls: nothing of the upstream's a client could misread."""
_NOT_ASCII = re.compile(r"[^\x00-\x7f]")
"""8-bit text: a client that did not ask for SMTPUTF8 reads replies as ASCII."""
_ENHANCED = re.compile(r"[245](?=\.[0-9]{1,3}\.[0-9]{1,3}(?: |\Z))")


def format_reply(reply: Reply) -> str:
    """A reply as the client hears it: one line or several (``250-...``), each printable
    ASCII of at most 512 octets, an enhanced status code (RFC 3463) of the reply's own
    class, and never an empty text. The text may be the upstream's: whatever it sent
    (a bare CR, a NUL, a 2 KB line, ``451 5.7.1``), the client gets a well-formed reply."""
    code, text = reply
    kind = str(code // 100)
    if _PLAIN_TEXT.match(text) and (text[0] == kind or text[0] not in "245"):
        return f"{code} {text}"  # one clean line, as nearly every reply
    lines = []
    for line in text.split("\n"):
        line = _NOT_ASCII.sub("?", _CONTROL.sub(" ", line)).strip(" ")[:MAX_TEXT]
        if line and kind in "245" and _ENHANCED.match(line):
            line = kind + line[1:]  # RFC 3463: the enhanced code's class is the reply's
        if line:
            lines.append(line)
    if not lines:  # RFC 5321 4.2: a text, if any, is not empty
        lines.append(f"{kind}.0.0" if kind in "245" else "")
    head = "".join(f"{code}-{line}\r\n" for line in lines[:-1])
    return f"{head}{code} {lines[-1]}".rstrip(" ")
