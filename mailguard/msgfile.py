"""Outlook ``.msg`` files (one message saved from Outlook): converted to RFC 5322 first.

A ``.msg`` is an OLE compound file, not text, so nothing in it can be judged until it is
converted. ``msgconvert`` (Debian ``libemail-outlook-message-perl``) does that; mail-parser's
``parse_from_file_msg`` calls the same tool, so using it directly costs nothing in fidelity
and keeps mail-parser a test-only cross-check. The tool runs as a subprocess with a
timeout, on a private copy of the bytes already read (capped by ``max_message_bytes``), and
writes to its standard output: no file of ours or of the user's is written next to the
input, and a hostile file cannot hang a scan.

A file is converted when its bytes start with the OLE signature, whatever its name: a
message saved as ``.msg`` in RFC 822 text is read as it is.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
PACKAGE = "libemail-outlook-message-perl"
TOOL = "msgconvert"
TIMEOUT = 60.0


class MsgError(Exception):
    """The .msg could not be converted; the message says why (and which package to
    install when the converter is missing)."""


def is_msg(data: bytes) -> bool:
    return data.startswith(OLE_MAGIC)


def missing_tool_message() -> str:
    return (
        f"an Outlook .msg file needs {TOOL} to be read; install the Debian package "
        f"{PACKAGE} (apt-get install {PACKAGE})"
    )


def convert(data: bytes, max_bytes: int, *, timeout: float = TIMEOUT) -> bytes:
    """The RFC 5322 message inside a ``.msg``; :class:`MsgError` if it cannot be had."""
    with tempfile.TemporaryDirectory(prefix="mailguard-msg-") as folder:
        path = Path(folder) / "message.msg"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        try:
            done = subprocess.run(
                [TOOL, "--outfile", "-", str(path)],
                capture_output=True,
                timeout=timeout,
                check=False,
                stdin=subprocess.DEVNULL,
                cwd=folder,
            )
        except FileNotFoundError:
            raise MsgError(missing_tool_message()) from None
        except subprocess.TimeoutExpired:
            raise MsgError(f"{TOOL} did not finish within {timeout:g} s; not read") from None
    if done.returncode != 0 or not done.stdout.strip():
        # Only the tool's last line, without our temporary path: no message text in errors.
        lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
        why = lines[-1].replace(str(path), "the file")[:200] if lines else "no output"
        raise MsgError(f"not a readable Outlook .msg file ({TOOL}: {why})")
    if len(done.stdout) > max_bytes:
        raise MsgError(
            f"converted .msg of {len(done.stdout):,} bytes is over the size cap of "
            f"{max_bytes:,} bytes (limits.max_message_bytes); not read"
        )
    return done.stdout
