"""``check --jobs``: a large folder judged by forked workers reports exactly what one
process reports, in the same order, and loses nothing when a worker dies."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mailguard import pools
from mailguard.cli import app
from mailguard.commands import check_pool
from mailguard.commands.check_pool import PARALLEL_MIN, choose_jobs
from tests.conftest import EXAMPLES, eml
from tests.support import faults
from tests.support.synth import build_mix

runner = CliRunner()


def run(*args: str, input: bytes | None = None):
    return runner.invoke(app, list(args), input=input)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 100 generated messages and the incident examples, in nested folders, with a
    FIFO and a linked folder among them (two inputs that cannot be read)."""
    root = tmp_path_factory.mktemp("tree")
    for i, sample in enumerate(build_mix(7, 50)):
        folder = root / f"batch{i // 7:03d}"
        folder.mkdir(exist_ok=True)
        (folder / f"{i:04d}.eml").write_bytes(sample.data)
    examples = root / "examples"
    examples.mkdir()
    for path in sorted(EXAMPLES.glob("*.eml")):
        (examples / path.name).write_bytes(path.read_bytes())
    os.mkfifo(root / "batch003" / "pipe.eml")
    (root / "linked").symlink_to(examples, target_is_directory=True)
    return root


def report(*args: str, input: bytes | None = None) -> tuple[int, str, str]:
    result = run("check", *args, "--no-config", "--format", "json", input=input)
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("extra", [(), ("--show-addresses",), ("--redact",)])
def test_two_workers_report_what_one_process_reports(tree: Path, extra: tuple[str, ...]) -> None:
    one = report(str(tree), "--jobs", "1", *extra)
    two = report(str(tree), "--jobs", "2", *extra)
    auto = report(str(tree), *extra)
    doc = json.loads(one[1])
    assert doc["summary"]["messages"] > 100
    assert {"pass", "block"} <= {m["verdict"] for m in doc["messages"]}
    assert one[0] == 2  # the FIFO and the linked folder are input errors
    if "--redact" in extra:  # a path may carry an address: only its keyed hash is shown
        assert one[2].count("cannot read hmac:") == 2
        assert "pipe.eml" not in one[2] and "linked" not in one[2]
    else:
        assert "pipe.eml" in one[2] and "linked" in one[2]
    if "--redact" not in extra:  # redaction keys are random per run
        assert two == one
        assert auto == one
    else:
        assert two[0] == one[0]
        assert len(json.loads(two[1])["messages"]) == len(doc["messages"])


def test_text_and_sarif_are_the_same_with_workers(tree: Path) -> None:
    for fmt in ("text", "sarif"):
        one = run("check", str(tree), "--no-config", "--format", fmt, "-j", "1")
        two = run("check", str(tree), "--no-config", "--format", fmt, "-j", "2")
        assert (two.exit_code, two.stdout) == (one.exit_code, one.stdout)


def test_stdin_and_files_keep_their_order(tree: Path) -> None:
    message = (EXAMPLES / "01-contact-tracers-cc.eml").read_bytes()
    first = sorted((tree / "batch000").glob("*.eml"))[0]
    args = (str(first), "-", str(tree / "batch001"), str(first))
    one = report(*args, "-j", "1", input=message)
    two = report(*args, "-j", "2", input=message)
    assert two == one
    sources = [m["source"] for m in json.loads(two[1])["messages"]]
    assert sources[1] == "<stdin>" and sources[0] == sources[-1] == str(first)


def test_a_worker_that_dies_loses_no_message(
    tree: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A worker killed in the middle (as the OOM killer would) breaks the pool: the runs it
    did not return are judged in the checking process, so every file is still reported."""
    folder = tmp_path / "mail"
    folder.mkdir()
    for i in range(60):
        subject = "KILL-WORKER" if i == 30 else f"note {i}"
        (folder / f"{i:03d}.eml").write_bytes(
            eml(f"From: a@org.example\nTo: b{i}@org.example\nSubject: {subject}\n")
        )
    expected = report(str(folder), "-j", "1")
    parent = os.getpid()

    def die_in_worker(ctx) -> None:
        if os.getpid() != parent and "KILL-WORKER" in (ctx.message.get("subject") or ""):
            os._exit(9)

    read_here: list[str] = []
    real_read = check_pool._read

    def read(item, job):
        if os.getpid() == parent:
            read_here.append(str(item))
        return real_read(item, job)

    faults.before_every_check(monkeypatch, die_in_worker)
    monkeypatch.setattr(check_pool, "CHUNK", 4)
    monkeypatch.setattr(check_pool, "_read", read)
    got = report(str(folder), "-j", "2")
    assert got == expected
    assert len(json.loads(got[1])["messages"]) == 60
    # The pool did break, and the run holding message 30 was judged in this process.
    assert str(folder / "030.eml") in read_here


def test_when_workers_are_used() -> None:
    many = PARALLEL_MIN
    assert choose_jobs(None, many - 1, fork_safe=True) == 1
    assert choose_jobs(None, many, fork_safe=True) == min(check_pool.cores(), 8)
    assert choose_jobs(3, 2, fork_safe=True) == 2  # never more workers than files
    assert choose_jobs(4, many, fork_safe=True) == 4
    # A history store or a resolver must not cross a fork: one process, whatever --jobs.
    assert choose_jobs(4, many, fork_safe=False) == 1
    assert choose_jobs(None, many, fork_safe=False) == 1


def test_jobs_must_be_positive(tree: Path) -> None:
    result = run("check", str(tree), "--jobs", "0")
    assert result.exit_code == 2
    assert "--jobs" in result.output or "--jobs" in result.stderr


def test_no_process_pool_means_one_process(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine where a pool cannot start (a container without /dev/shm has no POSIX
    semaphores) still gets its report: the files are judged in the checking process."""

    def no_semaphores(*_args: object, **_kwargs: object) -> None:
        raise OSError(38, "Function not implemented")

    expected = report(str(tree), "-j", "1")
    monkeypatch.setattr(pools, "process_pool", no_semaphores)
    assert report(str(tree), "-j", "2") == expected
