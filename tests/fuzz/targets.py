"""What every fuzz target promises, written once for the atheris harnesses and Hypothesis.

Each function takes raw bytes (what a fuzzer produces) and raises ``AssertionError`` or the
escaped exception when a promise is broken:

* :func:`check_message` — ``mailguard.check`` turns any bytes into a :class:`Report` in
  every mode; verdict ``error`` only with a real reason, never "internal error".
* :func:`split_mbox` — the mbox splitter accounts for every message: one entry per
  ``From_`` line, each message's bytes exactly, and the same entries however the file is
  cut into ranges for parallel workers.
* :func:`milter_stream` — the milter's frame decoder and session take any byte stream and
  raise nothing but :class:`~mailguard.milter.protocol.ProtocolError`; a message that
  reaches the end is decided.
* :func:`load_config` — any file given as ``mailguard.toml`` or ``pyproject.toml`` gives a
  :class:`~mailguard.config.Config` or a :class:`~mailguard.errors.ConfigError`.
"""

from __future__ import annotations

import contextlib
import json
import re
import tempfile
import tomllib
from pathlib import Path
from typing import Any

from mailguard.archive.mbox import is_from_line, iter_mbox, split_ranges
from mailguard.config import Config, from_mapping, load_file
from mailguard.engine import Engine
from mailguard.errors import ConfigError
from mailguard.milter import protocol as p
from mailguard.milter import rewrite
from mailguard.milter.decision import outcome_for
from mailguard.milter.session import Session
from mailguard.milter.settings import MilterSettings
from mailguard.report import Report
from mailguard.scoring import VERDICT_ORDER

_ENGINE: Engine | None = None


def engine() -> Engine:
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = Engine()
    return _ENGINE


# ---------------------------------------------------------------------------- check()


def check_message(data: bytes) -> list[Report]:
    """Judge ``data`` as a message and as an SMTP payload, outgoing and archived."""
    reports = []
    for mode in ("outgoing", "archived"):
        for smtp_data in (False, True):
            report = engine().check(data, mode=mode, smtp_data=smtp_data)  # type: ignore[arg-type]
            _assert_sound(report)
            reports.append(report)
    return reports


def _assert_sound(report: Report) -> None:
    assert isinstance(report, Report)
    assert report.verdict in VERDICT_ORDER, report.verdict
    assert 0 <= report.score <= 100, report.score
    json.dumps(report.to_dict())  # the JSON contract holds for every report
    if report.verdict == "error":
        reasons = [f.message for f in report.findings if f.code == "MG001"]
        assert reasons, report.findings
        assert not any("internal error" in r for r in reasons), reasons


# ---------------------------------------------------------------------------- mbox

_QUOTED = re.compile(rb"^>(>*From )", re.MULTILINE)


def split_mbox(data: bytes, directory: Path | None = None) -> None:
    """Every ``From_`` line starts exactly one entry, and every byte after it is accounted for."""
    if directory is None:
        with tempfile.TemporaryDirectory() as tmp:
            split_mbox(data, Path(tmp))
        return
    path = directory / "fuzz.mbox"
    path.write_bytes(data)
    whole = [(i.source, i.data, i.error) for i in iter_mbox(path)]
    starts = _from_line_starts(data)
    if not starts:  # not an mbox: one error entry, nothing judged
        assert len(whole) <= 1 and all(d is None for _, d, _ in whole), whole
        return
    offsets = [int(source.rsplit("@", 1)[1]) for source, _, _ in whole if "@" in source]
    assert len(offsets) == len(whole), whole
    # No loss, no duplicate: the entries begin at exactly the From_ lines, in order.
    assert offsets == starts[: len(offsets)], (offsets, starts)
    cut_off = whole and whole[-1][2] is not None and "cut off" in (whole[-1][2] or "")
    assert len(offsets) == len(starts), (offsets, starts, whole[-1:])
    for k, (_source, message, error) in enumerate(whole):
        start = offsets[k]
        end = offsets[k + 1] if k + 1 < len(offsets) else len(data)
        line_end = data.find(b"\n", start, end)
        if message is None:
            assert error, whole[k]
            if k + 1 < len(offsets):  # only the last message can be cut off
                assert "empty message" in error, error
            continue
        assert line_end >= 0
        raw = data[line_end + 1 : end]
        expected = raw
        if raw.find(b">From ", 0, 256 * 1024) >= 0:
            expected = _QUOTED.sub(rb"\1", raw)
        # The message is the text up to the next From_ line, less the separator's blank line.
        assert expected.startswith(message), (k, raw[:80], message[:80])
        assert expected[len(message) :] in (b"", b"\n", b"\r\n"), (k, expected[len(message) :])
    assert not cut_off or len(whole) == len(starts)
    # Parallel workers see the same entries as one reader, whatever the cut.
    for parts in (2, 3, 7):
        ranges = split_ranges(path, parts)
        pieces = [
            (i.source, i.data, i.error)
            for start, end in ranges
            for i in iter_mbox(path, start, end)
        ]
        assert pieces == whole, (parts, ranges)


def _from_line_starts(data: bytes) -> list[int]:
    """Offsets of every From_ line, as the splitter defines them (first line after a BOM)."""
    first = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    if not is_from_line(_line(data, first)):
        return []
    starts = [first]
    pos = data.find(b"\nFrom ", first)
    while pos >= 0:
        if is_from_line(_line(data, pos + 1)):
            starts.append(pos + 1)
        pos = data.find(b"\nFrom ", pos + 1)
    return starts


def _line(data: bytes, start: int) -> bytes:
    end = data.find(b"\n", start, start + 1000)
    return data[start : end if end >= 0 else min(len(data), start + 1000)]


# ---------------------------------------------------------------------------- milter


def milter_stream(data: bytes, chunk: int = 0) -> int:
    """Feed ``data`` to a decoder and a session as an MTA would; return the frames handled.

    ``chunk`` > 0 delivers the stream in reads of that size, to exercise partial frames.
    The only exception allowed out is ``ProtocolError``, after which the server closes the
    connection.
    """
    # Odd-length streams rewrite instead of refusing: plan, re-check and header edits too.
    settings = MilterSettings(on_block="rewrite", on_warn="rewrite") if len(data) % 2 else (
        MilterSettings()
    )  # fmt: skip
    session = Session(settings)
    decoder = p.FrameDecoder()
    handled = 0
    reads = [data[i : i + chunk] for i in range(0, len(data), chunk)] if chunk else [data]
    try:
        for read in reads:
            for command, payload in decoder.feed(read):
                step = session.handle(command, payload)
                handled += 1
                for reply in step.replies:
                    assert isinstance(reply, bytes) and len(reply) >= 5
                if step.decide is not None:
                    txn = step.decide
                    leading_space = session.caps.leading_space
                    report = rewrite.judge(engine(), txn, leading_space, "fuzz", 1e12)
                    _assert_sound(report)
                    outcome = outcome_for(report, txn.settings, session.caps, txn)
                    frames = session.conclude(outcome.frames)
                    assert all(isinstance(f, bytes) for f in frames)
                    kinds = [f[4:5] for f in frames if f[4:5] in (p.CHGHEADER, p.ADDHEADER)]
                    assert kinds == sorted(kinds, key=lambda k: k == p.ADDHEADER), kinds
                if step.close:
                    return handled
    except p.ProtocolError:
        pass
    return handled


# ---------------------------------------------------------------------------- config


def load_config(data: bytes, directory: Path | None = None) -> list[Config]:
    """Load ``data`` as each kind of config file; anything but Config/ConfigError escapes."""
    if directory is None:
        with tempfile.TemporaryDirectory() as tmp:
            return load_config(data, Path(tmp))
    configs = []
    for name in ("mailguard.toml", "pyproject.toml"):
        path = directory / name
        path.write_bytes(data)
        with contextlib.suppress(ConfigError):
            configs.append(load_file(path))
    return configs


def config_mapping(data: dict[str, Any]) -> Config | None:
    """A parsed TOML table as config: a Config or a ConfigError, nothing else."""
    try:
        config = from_mapping(data)
    except ConfigError:
        return None
    engine_for(config)
    return config


def engine_for(config: Config) -> Engine:
    """A config that loads must also build an engine and judge a message."""
    eng = Engine(config)
    _assert_sound(eng.check(b"From: a@example.org\r\nTo: b@example.net\r\n\r\nhi\r\n"))
    return eng


def toml_text(data: bytes) -> dict[str, Any] | None:
    try:
        return tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
