"""What Postfix does with SMFIR_CHGHEADER indexes, measured rather than assumed.

:mod:`mailguard.remedy` deletes every instance of a field from the highest index down,
because (reading Postfix's ``cleanup_milter.c``) a delete closes the gap: the next field of
that name becomes index 1, where Sendmail keeps counting the deleted one. A scripted
milter here sends fixed edits to a real Postfix and the sink shows what was left, so the
claim the rewrite depends on is checked against the MTA itself.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator

import pytest

from mailguard.milter import protocol as p
from mailguard.remedy import Edit, apply_to_fields
from tests.conftest import eml
from tests.support.postfix import PostfixInstance, ensure_postfix_installed
from tests.test_remedy import sendmail_apply

_REPLIED = {p.CONNECT, p.HELO, p.MAIL, p.RCPT, p.DATA, p.HEADER, p.EOH, p.BODY, p.UNKNOWN}


class ScriptedMilter:
    """Answers every step with "continue" and, at end of message, sends ``self.edits``."""

    def __init__(self) -> None:
        self.edits: list[Edit] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn: socket.socket) -> None:
        decoder = p.FrameDecoder()
        with conn:
            while data := conn.recv(65536):
                for command, _payload in decoder.feed(data):
                    if command == p.OPTNEG:
                        actions = p.SMFIF_ADDHDRS | p.SMFIF_CHGHDRS
                        conn.sendall(p.frame(p.OPTNEG, struct.pack("!III", 6, actions, 0)))
                    elif command in _REPLIED:
                        conn.sendall(p.SIMPLE[p.CONTINUE])
                    elif command == p.BODYEOB:
                        frames = [
                            p.delete_header(e.index, e.name)
                            if e.action == "delete"
                            else p.add_header(e.name, e.value)
                            for e in self.edits
                        ]
                        conn.sendall(b"".join(frames) + p.SIMPLE[p.CONTINUE])
                    elif command == p.QUIT:
                        return

    def close(self) -> None:
        self.listener.close()


@pytest.fixture(scope="module")
def scripted() -> Iterator[ScriptedMilter]:
    milter = ScriptedMilter()
    yield milter
    milter.close()


@pytest.fixture(scope="module")
def postfix(
    tmp_path_factory: pytest.TempPathFactory, scripted: ScriptedMilter
) -> Iterator[PostfixInstance]:
    ensure_postfix_installed()
    spec = f"inet:127.0.0.1:{scripted.port}"
    with PostfixInstance(tmp_path_factory.mktemp("postfix-index"), milter=spec) as instance:
        yield instance


FIELDS = [("From", "a@acme.example"), ("To", "one@x.example"), ("Subject", "s"),
          ("TO", "two@x.example"), ("to", "three@x.example")]  # fmt: skip


def left_after(postfix: PostfixInstance, scripted: ScriptedMilter, edits: list[Edit]) -> list[str]:
    scripted.edits = edits
    postfix.clear_sink()
    raw = eml("\n".join(f"{n}: {v}" for n, v in FIELDS), "body")
    with postfix.smtp() as smtp:
        smtp.sendmail("a@acme.example", ["one@x.example"], raw)
    postfix.wait_idle()
    (delivery,) = postfix.sink_deliveries()
    head = delivery.data.partition(b"\n\n")[0].decode()
    return [
        line.split(":", 1)[1].strip() for line in head.splitlines() if line[:3].lower() == "to:"
    ]


@pytest.mark.parametrize(
    "edits",
    [
        [Edit("delete", "To", index=1), Edit("delete", "To", index=1)],
        [Edit("delete", "To", index=1), Edit("delete", "To", index=2)],
        [
            Edit("delete", "To", index=3),
            Edit("delete", "To", index=2),
            Edit("delete", "To", index=1),
        ],
        [
            Edit("delete", "to", index=2),
            Edit("add", "To", "new@x.example"),
            Edit("delete", "To", index=3),
        ],
    ],
    ids=["1-then-1", "1-then-2", "3-2-1", "add-between"],
)
def test_postfix_numbers_fields_as_the_remedy_model_does(
    postfix: PostfixInstance, scripted: ScriptedMilter, edits: list[Edit]
) -> None:
    expected = [v for n, v in apply_to_fields(FIELDS, edits) if n.lower() == "to"]
    assert left_after(postfix, scripted, edits) == expected


def test_the_models_differ_except_from_the_top_down(
    postfix: PostfixInstance, scripted: ScriptedMilter
) -> None:
    """ "Delete To #1, then #1 again" leaves one To in Postfix (the gap closes) and would
    leave two in Sendmail's numbering: only highest-index-first reads the same in both."""
    edits = [Edit("delete", "To", index=1), Edit("delete", "To", index=1)]
    assert left_after(postfix, scripted, edits) == ["three@x.example"]
    assert [v for n, v in sendmail_apply(FIELDS, tuple(edits)) if n.lower() == "to"] == [
        "two@x.example", "three@x.example",
    ]  # fmt: skip
    top_down = [Edit("delete", "To", index=i) for i in (3, 2, 1)]
    assert left_after(postfix, scripted, top_down) == []
    assert not [n for n, _ in sendmail_apply(FIELDS, tuple(top_down)) if n.lower() == "to"]
