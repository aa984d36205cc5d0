"""Outlook ``.msg`` files (one message saved from Outlook): converted to RFC 5322 first.

A ``.msg`` is an OLE compound file, not text, so nothing in it can be judged until it is
converted. ``msgconvert`` (Debian ``libemail-outlook-message-perl``) does that; mail-parser's
``parse_from_file_msg`` calls the same tool, so using it directly costs nothing in fidelity
and keeps mail-parser a test-only cross-check. The tool runs as a subprocess with a
timeout, on a private copy of the bytes already read (capped by ``max_message_bytes``), and
writes to its standard output: no file of ours or of the user's is written next to the
input, and a hostile file cannot hang a scan.

A file is converted when its bytes start with the OLE signature, whatever its name: a
message saved as ``.msg`` in RFC 822 text is read as it is. Not every OLE file is a message:
a Word ``.doc`` or an Excel ``.xls`` has the same signature, and msgconvert turns one into a
message with no sender and no recipients, which would then "pass". Only a file with the
property stream every Outlook item has is handed to the tool.

A broken msgconvert (Debian's package does not depend on ``libemail-address-perl``, which
the script loads first) fails on every file alike: its error names the missing Perl module
and the package to install, not the file, so an audit does not report good mail as damaged.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
PACKAGE = "libemail-outlook-message-perl"
TOOL = "msgconvert"
TIMEOUT = 60.0
# The stream every Outlook item (.msg) has, named in UTF-16LE in the OLE directory.
_MSG_STREAM = "__properties_version1.0".encode("utf-16-le")
_PERL_MISSING = re.compile(r"Can't locate (\S+)\.pm in @INC")


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


def broken_tool_message(module_path: str) -> str:
    """What to install when msgconvert cannot load a Perl module (``Email/Address``)."""
    module = module_path.replace("/", "::")
    package = "lib" + module_path.replace("/", "-").lower() + "-perl"  # Debian's naming
    return (
        f"{TOOL} is installed but cannot run: the Perl module {module} is missing; install "
        f"it (on Debian: apt-get install {package}). The file itself was not read"
    )


def convert(data: bytes, max_bytes: int, *, timeout: float = TIMEOUT) -> bytes:
    """The RFC 5322 message inside a ``.msg``; :class:`MsgError` if it cannot be had."""
    if _MSG_STREAM not in data:
        raise MsgError(
            "an OLE compound file that is not an Outlook message (no message property "
            "stream): a Word or Excel document, perhaps; not read"
        )
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
        stderr = done.stderr.decode("utf-8", "replace")
        missing = _PERL_MISSING.search(stderr)
        if missing:
            raise MsgError(broken_tool_message(missing.group(1)))
        # Only the tool's last line, without our temporary path: no message text in errors.
        lines = stderr.strip().splitlines()
        why = lines[-1].replace(str(path), "the file")[:200] if lines else "no output"
        raise MsgError(f"not a readable Outlook .msg file ({TOOL}: {why})")
    if len(done.stdout) > max_bytes:
        raise MsgError(
            f"converted .msg of {len(done.stdout):,} bytes is over the size cap of "
            f"{max_bytes:,} bytes (limits.max_message_bytes); not read"
        )
    return done.stdout
