"""The milter's own CPU per message, in one process, next to the engine's on the same message.

``bench_milter.py`` measures the milter behind a real Postfix, where every figure moves
with whatever else the machine runs. This one replays, in process, the frames Postfix
sends for the benchmark's two messages (negotiation, connect, MAIL, RCPT, every header
field with its macro frame, end-of-headers, then the body if the headers did not settle
it, abort and quit) through :class:`~mailguard.milter.server.MilterConnection` with an
in-memory transport, and times it with ``time.process_time``: no sockets, no Postfix, no
scheduler. The baseline is ``Engine.check`` on the same bytes the milter hands the engine
(Postfix's Received field and the header block, plus the body for the clean message, which
is decided at its end: with the attachment rules on, its text could hold a uuencoded file;
the 300-Cc message is refused at end-of-headers), so the difference is what the milter adds
(framing, session state, the mapping to a reply, the log line). Repeats are interleaved
and the best of each is kept, which is what stays put on a busy machine.

    python benchmarks/bench_milter_inproc.py            # 3,000 clean / 400 300-Cc, best of 5
    python benchmarks/bench_milter_inproc.py --quick    # a smoke run (~2 s)
    python benchmarks/bench_milter_inproc.py --json     # table on stderr, figures on stdout
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import struct
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import _harness as h  # noqa: F401  (puts the repository on sys.path)

from mailguard.commands.settings import ConfigSource
from mailguard.milter import logline
from mailguard.milter import protocol as p
from mailguard.milter.listen import ListenSpec
from mailguard.milter.server import MilterConnection, MilterServer
from mailguard.recipients import Envelope
from tests.support.memory_transport import MemoryTransport
from tests.support.synth import cc300_message, clean_message

SENDER, CC300_SENDER, RECIPIENT = "alice@example.test", "hr@serviceco.example", "bob@example.test"
QUEUE_ID = b"i\x004ABCDEF123\x00"
RECEIVED = (
    b"Received: from client.example.test (localhost [127.0.0.1])\n"
    b"\tby mailguard-test.localdomain (Postfix) with ESMTP id 4ABCDEF123\n"
    b"\tfor <bob@example.test>; Tue,  1 Dec 2026 04:00:00 +0000 (UTC)"
)


def postfix_reads(message: str, sender: str) -> tuple[list[bytes], bytes, bytes]:
    """The reads a milter gets from Postfix for one message on its own SMTP session: up
    to end-of-headers; the body (sent only when end-of-headers was answered "continue");
    abort and quit. Postfix adds its Received field, and sends a macro frame before each
    step and header field (``milter8.c``)."""
    head, _, body = message.encode().partition(b"\n\n")
    fields: list[bytes] = [RECEIVED]
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t") and len(fields) > 1:
            fields[-1] += b"\n" + line
        else:
            fields.append(line)
    envelope = [
        p.frame(p.MACRO, b"C{daemon_name}\x00mailguard-test\x00{client_addr}\x00127.0.0.1\x00"),
        p.frame(p.CONNECT, b"localhost\x004" + struct.pack("!H", 40000) + b"127.0.0.1\x00"),
        p.frame(p.MACRO, b"M{auth_authen}\x00\x00"),
        p.frame(p.MAIL, f"<{sender}>\x00".encode()),
        p.frame(p.MACRO, b"R" + QUEUE_ID),
        p.frame(p.RCPT, f"<{RECIPIENT}>\x00".encode()),
    ]
    headers: list[bytes] = []
    for field in fields:
        name, _, value = field.partition(b":")
        headers += [
            p.frame(p.MACRO, b"L" + QUEUE_ID),
            p.frame(p.HEADER, name + b"\0" + value + b"\0"),
        ]
    headers += [p.frame(p.MACRO, b"N" + QUEUE_ID), p.frame(p.EOH)]
    half = len(headers) // 2
    reads = [
        p.frame(p.OPTNEG, struct.pack("!III", 6, 0x1FF, 0x1FFFFF)),
        b"".join(envelope),
        b"".join(headers[:half]),
        b"".join(headers[half:]),
    ]
    rest = [
        p.frame(p.MACRO, b"B" + QUEUE_ID),
        p.frame(p.BODY, body.replace(b"\n", b"\r\n")),
        p.frame(p.MACRO, b"E" + QUEUE_ID),
        p.frame(p.BODYEOB),
    ]
    return reads, b"".join(rest), p.frame(p.ABORT) + p.frame(p.QUIT)


_FINAL = frozenset((p.ACCEPT, p.REJECT, p.TEMPFAIL, p.DISCARD, p.REPLYCODE))
"""Replies that end a message: after one at end-of-headers, Postfix sends no body."""
_EOH_FRAMES = p.frame(p.MACRO, b"N" + QUEUE_ID) + p.frame(p.EOH)


def through_the_milter(
    server: MilterServer, message: str, sender: str
) -> Callable[[], tuple[list[bytes], bool]]:
    """One message through a new connection: what was written, and whether it was settled
    at end-of-headers. Postfix sends end-of-headers only if the milter did not give it up
    in the negotiation, and the body only if end-of-headers did not end the message."""
    reads, body, end = postfix_reads(message, sender)
    first, rest, last = reads[0], reads[1:-1], reads[-1]
    without_eoh = last.removesuffix(_EOH_FRAMES)

    def one() -> tuple[list[bytes], bool]:
        conn = MilterConnection(server)
        transport = MemoryTransport()
        conn.connection_made(transport)  # type: ignore[arg-type]
        conn.data_received(first)
        for data in rest:
            conn.data_received(data)
        conn.data_received(without_eoh if conn.session.caps.protocol & p.SMFIP_NOEOH else last)
        settled = transport.written[-1][4:5] in _FINAL
        if not settled:
            conn.data_received(body)
        conn.data_received(end)
        conn.connection_lost(None)
        return transport.written, settled

    return one


def best_us(
    fns: dict[str, Callable[[], object]], n: dict[str, int], repeat: int
) -> dict[str, float]:
    """Best CPU µs per call of each, the repeats of all interleaved."""
    best = {name: float("inf") for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            start = time.process_time()
            for _ in range(n[name]):
                fn()
            best[name] = min(best[name], (time.process_time() - start) / n[name] * 1e6)
    return best


async def measure(clean_n: int, cc_n: int, repeat: int) -> dict[str, Any]:
    source = ConfigSource(no_config=True).loader()()
    server = MilterServer(
        source.config, ListenSpec.parse("unix:/nonexistent/milter.sock"), settings=source.milter
    )
    messages = {
        "clean": (clean_message(SENDER, RECIPIENT), SENDER, clean_n),
        "cc300": (cc300_message(CC300_SENDER), CC300_SENDER, cc_n),
    }
    fns: dict[str, Callable[[], object]] = {}
    n: dict[str, int] = {}
    replies: dict[str, bytes] = {}
    at_headers: dict[str, bool] = {}
    for kind, (message, sender, count) in messages.items():
        milter = through_the_milter(server, message, sender)
        written, at_headers[kind] = milter()
        replies[kind] = written[-1]
        # What the milter hands the engine where it decides: Postfix's Received field and the
        # header block, and the body unless the message was settled at end-of-headers.
        head, _, body = message.partition("\n\n")
        text = head.encode() + b"\n\n" + (b"" if at_headers[kind] else body.encode())
        raw = (RECEIVED + b"\n" + text).replace(b"\n", b"\r\n")
        envelope = Envelope(f"<{sender}>", (f"<{RECIPIENT}>",))
        fns[f"{kind}_engine"] = lambda raw=raw, env=envelope: server.engine.check(raw, envelope=env)
        fns[f"{kind}_milter"] = milter
        n[f"{kind}_engine"] = n[f"{kind}_milter"] = count
    for fn in fns.values():  # warm-up: caches, the suffix list
        for _ in range(20):
            fn()
    best = {name: round(us, 1) for name, us in best_us(fns, n, repeat).items()}
    server.pool.shutdown(wait=False)
    return {
        "clean_reply": replies["clean"][4:5].decode(),
        "cc300_reply": replies["cc300"][4:5].decode(),
        "at_headers": at_headers,
        "us_per_msg": best,
        "milter_adds_us": {
            kind: round(best[f"{kind}_milter"] - best[f"{kind}_engine"], 1) for kind in messages
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a smoke run: few messages, 2 repeats")
    ap.add_argument("--repeat", type=int, help="interleaved repeats; the best is kept (5)")
    ap.add_argument("--json", action="store_true", help="table on stderr, figures as JSON")
    args = ap.parse_args(argv)
    clean_n, cc_n, repeat = (200, 30, 2) if args.quick else (3000, 400, 5)
    repeat = args.repeat or repeat
    # The decision line goes through the milter's own buffered handler, into nothing.
    logline.configure(logging.INFO)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logline.BufferedHandler):
            handler.setStream(io.StringIO())
    figures = asyncio.run(measure(clean_n, cc_n, repeat))
    out = sys.stderr if args.json else sys.stdout
    us, adds = figures["us_per_msg"], figures["milter_adds_us"]
    print(f"milter in process, CPU per message (best of {repeat}, interleaved):", file=out)
    print(f"  {'':<22}{'Engine.check':>14}{'milter path':>14}{'milter adds':>14}", file=out)
    for kind, label in (("clean", "clean (passed)"), ("cc300", "300 Cc (refused)")):
        print(
            f"  {label:<22}{us[f'{kind}_engine']:>11.1f} us{us[f'{kind}_milter']:>11.1f} us"
            f"{adds[kind]:>11.1f} us",
            file=out,
        )
    where = {
        kind: "end-of-headers" if at else "its end" for kind, at in figures["at_headers"].items()
    }
    print(
        f"  replies: clean {figures['clean_reply']!r} at {where['clean']}, "
        f"300 Cc {figures['cc300_reply']!r} at {where['cc300']}",
        file=out,
    )
    if args.json:
        json.dump(figures, sys.stdout, indent=2)
        print()
    ok = figures["clean_reply"] == "c" and figures["cc300_reply"] == "y"
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
