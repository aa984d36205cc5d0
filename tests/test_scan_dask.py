"""``scan --scheduler``: the same work units on a real Dask cluster on loopback.

The cluster is what a user starts: ``dask scheduler`` and two ``dask worker`` processes
(the CLI entry points, each with its nanny, as deployed), started once for the module. The
register a cluster writes must be the local pool's, also when a worker is killed mid-scan
(Dask hands its units to the other worker; the nanny starts a new one).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from distributed import Client

from mailguard.archive.dask_executor import DaskExecutor
from mailguard.archive.mbox import split_ranges
from mailguard.archive.register import Register
from mailguard.archive.scanner import Scanner, Unit
from mailguard.config import Config
from tests.scan_archive import MESSAGES, write_eml_tree, write_maildir, write_mbox
from tests.support.procs import free_ports, tail

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("workers")  # the workers' own folder (relative paths)
    port = free_ports(1)[0]
    address = f"tcp://127.0.0.1:{port}"
    logs = [home / "scheduler.log", home / "w1.log", home / "w2.log"]
    argvs = [
        [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
         "--no-dashboard"],
        *[[str(BIN / "dask"), "worker", address, "--nthreads", "1", "--no-dashboard",
           "--name", f"w{i}", "--host", "127.0.0.1", "--local-directory", str(home)]
          for i in (1, 2)],
    ]  # fmt: skip
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for argv, log in zip(argvs, logs, strict=True):
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    argv, cwd=home, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
                )
                procs.append(proc)
        with Client(address, timeout=60, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=120)
        yield address
    except Exception:
        for log in logs:
            print(log.name, tail(log.read_text(errors="replace"), 20))
        raise
    finally:
        for proc in reversed(procs):  # workers (and their nannies' children) first
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailguard", "scan", "--no-config", "-q", *args],
        capture_output=True, text=True, timeout=300, cwd=cwd, check=False,
    )  # fmt: skip


def comparable(data: dict) -> tuple[object, ...]:
    """A JSON register without what differs between runs (time, the order units finished)."""
    summary = {k: v for k, v in data["summary"].items() if k != "seconds"}
    incidents = sorted(json.dumps(i, sort_keys=True) for i in data["incidents"])
    errors = sorted(json.dumps(e, sort_keys=True) for e in data["errors"])
    return summary, incidents, errors, data["sources"]


def fingerprint(register: Register) -> tuple[object, ...]:
    summary = {k: v for k, v in register.summary().items() if k != "seconds"}
    return (
        summary,
        sorted(repr(i) for i in register.incidents),
        sorted((e.source, e.message) for e in register.errors),
        sorted(register.exposed),
    )


def test_cluster_register_is_the_local_pools(cluster: str, tmp_path: Path) -> None:
    sources = [
        str(write_mbox(tmp_path / "archive.mbox")),
        str(write_maildir(tmp_path / "Maildir")),
        str(write_eml_tree(tmp_path / "exported")),
    ]
    local = cli(*sources, "--jobs", "2", "-f", "json", "-o", str(tmp_path / "local.json"))
    remote = cli(*sources, "--scheduler", cluster, "-f", "json", "-o", str(tmp_path / "d.json"))
    assert local.returncode == remote.returncode == 2, remote.stderr  # one unreadable message
    assert "Traceback" not in remote.stderr
    local_data = json.loads((tmp_path / "local.json").read_text())
    remote_data = json.loads((tmp_path / "d.json").read_text())
    assert remote_data["summary"]["messages"] == 3 * len(MESSAGES)
    assert remote_data["summary"]["incidents"] == 9
    assert comparable(remote_data) == comparable(local_data)


def test_pst_folders_on_a_cluster_are_the_local_scans(cluster: str, tmp_path: Path) -> None:
    """A PST is unpacked by the scanning process; its messages reach the workers in batches."""
    pst = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "go-pst" / "support.pst"
    local = cli(str(pst), "-f", "json", "-o", str(tmp_path / "local.json"))
    remote = cli(str(pst), "--scheduler", cluster, "-f", "json", "-o", str(tmp_path / "d.json"))
    assert local.returncode == remote.returncode == 0, remote.stderr
    remote_data = json.loads((tmp_path / "d.json").read_text())
    assert remote_data["summary"]["messages"] == 17
    assert comparable(remote_data) == comparable(json.loads((tmp_path / "local.json").read_text()))


def big_units(tmp_path: Path, copies: int, parts: int) -> tuple[Path, list[Unit]]:
    one = write_mbox(tmp_path / "one.mbox").read_bytes()
    path = tmp_path / "big.mbox"
    path.write_bytes(one * copies)
    units = [Unit("mbox", path=str(path), start=s, end=e, size=e - s)
             for s, e in split_ranges(path, parts)]  # fmt: skip
    return path, units


def test_a_worker_killed_mid_scan_still_gives_the_same_register(
    cluster: str, tmp_path: Path
) -> None:
    path, units = big_units(tmp_path, copies=600, parts=24)
    local = Scanner(Config(), jobs=2).scan([(str(path), units)])
    with Client(cluster, timeout=60, set_as_default=False) as client:
        client.wait_for_workers(2, timeout=120)
        pids = client.run(os.getpid)
        victim = sorted(pids.values())[0]
        killed: list[int] = []

        def progress(messages: int, _: int) -> None:
            if not killed:  # mid-scan: the first unit is merged, the rest are not
                os.kill(victim, signal.SIGKILL)
                killed.append(messages)

        register = Scanner(Config(), jobs=2, executor=DaskExecutor(client)).scan(
            [(str(path), units)], progress=progress
        )
        assert killed and killed[0] < local.total.messages
        client.wait_for_workers(2, timeout=120)  # the nanny restarted it
        assert victim not in client.run(os.getpid).values()
    assert not register.errors[len(local.errors) :]
    assert fingerprint(register) == fingerprint(local)
    assert register.total.messages == 600 * len(MESSAGES)


def test_a_source_missing_on_the_workers_is_named(cluster: str, tmp_path: Path) -> None:
    """A relative path exists in the scanning process's folder, not in the workers'."""
    here = tmp_path / "here"
    here.mkdir()
    write_mbox(here / "relative.mbox")
    absolute = write_mbox(tmp_path / "shared.mbox")
    result = cli("relative.mbox", str(absolute), "--scheduler", cluster, cwd=here)
    assert result.returncode == 2
    assert "relative.mbox: not found on worker(s) tcp://127.0.0.1:" in result.stderr
    assert "shared.mbox" not in result.stderr
    assert "Traceback" not in result.stderr


def test_no_scheduler_at_the_address_is_a_clear_error(tmp_path: Path) -> None:
    port = free_ports(1)[0]
    mbox = write_mbox(tmp_path / "a.mbox")
    started = time.monotonic()
    result = cli(str(mbox), "--scheduler", f"tcp://127.0.0.1:{port}")
    assert result.returncode == 2
    assert f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}" in result.stderr
    assert time.monotonic() - started < 60


def test_without_the_extra_scheduler_names_it(tmp_path: Path) -> None:
    """``distributed`` made unimportable, as on an install without the ``dask`` extra."""
    mbox = write_mbox(tmp_path / "a.mbox")
    code = (
        "import sys; sys.modules['distributed'] = None; from mailguard.cli import main; "
        f"sys.argv = ['mailguard', 'scan', '--no-config', {str(mbox)!r}, "
        "'--scheduler', 'tcp://127.0.0.1:1']; main()"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    assert "pip install 'mailguard-dlp[dask]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_ctrl_c_on_a_cluster_scan_writes_a_partial_register(cluster: str, tmp_path: Path) -> None:
    one = write_mbox(tmp_path / "one.mbox").read_bytes()
    big = tmp_path / "big.mbox"
    big.write_bytes(one * 8000)
    out = tmp_path / "partial.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailguard", "scan", "--no-config", str(big),
         "--scheduler", cluster, "-f", "json", "-o", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    # Interrupt once the workers have judged something: the stop file names the scanning
    # process, so wait for the first unit (a unit is ~8 MB or ~100 ms of judging here).
    time.sleep(1.0)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if _busy(cluster):
            break
        time.sleep(0.1)
    time.sleep(0.5)
    assert proc.poll() is None, "the scan finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr.decode()[-2000:]
    assert b"Traceback" not in stderr
    data = json.loads(out.read_text())
    assert data["summary"]["interrupted"] is True
    assert 0 < data["summary"]["messages"] < 8000 * len(MESSAGES)
    with Client(cluster, timeout=60, set_as_default=False) as client:
        deadline = time.monotonic() + 30  # nothing left running on the cluster
        while time.monotonic() < deadline and any(client.processing().values()):
            time.sleep(0.1)
        assert not any(client.processing().values())


def _busy(cluster: str) -> bool:
    with Client(cluster, timeout=30, set_as_default=False) as client:
        return any(client.processing().values())
