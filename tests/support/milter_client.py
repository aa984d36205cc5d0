"""A minimal MTA side of the milter protocol, for byte-exact tests of our own daemon.

The independent check is Debian's ``miltertest`` (tests/test_milter_miltertest.py) and a
real Postfix (tests/test_milter_postfix.py); this client exists for what those cannot
show: progress frames, the time budget, and malformed frames.
"""

from __future__ import annotations

import socket
import struct

from mailguard.milter import protocol as p

ALL_ACTIONS = 0x1FF
ALL_STEPS = 0x1FFFFF


class MilterClient:
    def __init__(self, address: str | tuple[str, int], timeout: float = 10.0) -> None:
        family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(address)
        self.decoder = p.FrameDecoder()
        self.pending: list[tuple[bytes, bytes]] = []
        self.protocol = 0

    def close(self) -> None:
        self.sock.close()

    def send(self, command: bytes, payload: bytes = b"") -> None:
        self.sock.sendall(p.frame(command, payload))

    def read(self) -> tuple[bytes, bytes]:
        while not self.pending:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("milter closed the connection")
            self.pending.extend(self.decoder.feed(data))
        return self.pending.pop(0)

    def negotiate(self, actions: int = ALL_ACTIONS, steps: int = ALL_STEPS) -> tuple[int, int]:
        self.send(p.OPTNEG, struct.pack("!III", 6, actions, steps))
        command, payload = self.read()
        assert command == p.OPTNEG
        _, got_actions, got_steps = struct.unpack_from("!III", payload)
        self.protocol = got_steps
        return got_actions, got_steps

    def step(self, command: bytes, payload: bytes = b"") -> bytes | None:
        """Send a step; read its reply unless the milter waived it (or gave the step up)."""
        self.send(command, payload)
        flag = p.NO_REPLY_FLAG.get(command, 0)
        if (flag and self.protocol & flag) or (command == p.EOH and self.protocol & p.SMFIP_NOEOH):
            return None
        self.last = self.read()
        return self.last[0]

    def connect_info(self, address: str = "127.0.0.1") -> bytes | None:
        payload = b"client.example\x004" + struct.pack("!H", 4000) + address.encode() + b"\0"
        return self.step(p.CONNECT, payload)

    def message(
        self,
        headers: list[tuple[str, str]],
        body: bytes = b"Hello\r\n",
        mail_from: str = "<hr@serviceco.example>",
        rcpts: tuple[str, ...] = (),
    ) -> list[tuple[bytes, bytes]]:
        """One transaction up to and including the end-of-message replies."""
        assert self.step(p.MAIL, mail_from.encode() + b"\0") in (None, p.CONTINUE)  # None: waived
        for rcpt in rcpts:
            self.step(p.RCPT, rcpt.encode() + b"\0")
        for name, value in headers:
            self.step(p.HEADER, name.encode() + b"\0" + value.encode() + b"\0")
        if self.step(p.EOH) not in (None, p.CONTINUE):
            return [self.last]  # decided at end-of-headers: an MTA sends no body then
        self.step(p.BODY, body)
        self.send(p.BODYEOB)
        return self.read_final()

    def read_final(self) -> list[tuple[bytes, bytes]]:
        """Frames up to and including the final verdict of an end of message."""
        frames = []
        while True:
            frame = self.read()
            frames.append(frame)
            if frame[0] in (b"a", b"c", b"d", b"r", b"t", b"y"):
                return frames
