"""The test harness installs the Debian packages it needs, or fails naming them; never skips.

apt-get is replaced by a recorder here: the tests check which commands would run and that a
package counts as installed only when every file the tests use from it exists.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support import packages


@pytest.fixture
def fake_packages(tmp_path, monkeypatch):
    """Three packages whose files live under tmp_path; ``present`` ones exist already."""
    files = {
        "postfix": (tmp_path / "postfix", tmp_path / "smtp-sink"),
        "miltertest": (tmp_path / "miltertest",),
        "dovecot-imapd": (tmp_path / "dovecot", tmp_path / "imap"),
    }
    monkeypatch.setattr(packages, "PACKAGES", files)
    return files


class Apt:
    """Records commands; ``apt-get install`` creates the packages' files (or fails)."""

    def __init__(self, files: dict[str, tuple[Path, ...]], fail_at: str | None = None) -> None:
        self.files = files
        self.fail_at = fail_at
        self.calls: list[tuple[list[str], str | None]] = []

    def __call__(self, argv, *, input=None, **kwargs):
        self.calls.append((list(argv), input))
        if self.fail_at and self.fail_at in argv:
            return subprocess.CompletedProcess(argv, 100, "", "E: Unable to locate package")
        if argv[:2] == ["apt-get", "install"]:
            for name in argv[4:]:
                for path in self.files[name]:
                    path.touch()
        return subprocess.CompletedProcess(argv, 0, "", "")

    def installed(self) -> list[str]:
        return [arg for argv, _ in self.calls if argv[:2] == ["apt-get", "install"]
                for arg in argv[4:]]  # fmt: skip


def test_postfix_present_but_miltertest_missing_installs_miltertest(fake_packages, monkeypatch):
    """The README's command on a machine with Postfix and no miltertest: 35 failures before."""
    monkeypatch.setattr(packages.os, "geteuid", lambda: 0)
    for path in fake_packages["postfix"]:
        path.touch()
    apt = Apt(fake_packages)
    absent = packages.ensure_for_modules(["test_milter_postfix", "test_milter_miltertest"], apt)
    assert absent == ["miltertest"]
    assert apt.installed() == ["miltertest"]
    assert all(p.exists() for p in fake_packages["miltertest"])


def test_a_package_counts_only_with_every_file(fake_packages, monkeypatch):
    monkeypatch.setattr(packages.os, "geteuid", lambda: 0)
    fake_packages["postfix"][0].touch()  # postfix but no smtp-sink
    apt = Apt(fake_packages)
    packages.ensure_packages("postfix", run=apt)
    assert apt.installed() == ["postfix"]
    argv, preseed = apt.calls[0]
    assert argv == ["debconf-set-selections"] and "No configuration" in (preseed or "")
    assert [argv for argv, _ in apt.calls[1:]] == [
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", "postfix"],
    ]


def test_nothing_runs_when_everything_is_there(fake_packages, monkeypatch):
    monkeypatch.setattr(packages.os, "geteuid", lambda: 1000)
    for files in fake_packages.values():
        for path in files:
            path.touch()
    apt = Apt(fake_packages)
    packages.ensure_packages(*fake_packages, run=apt)
    assert apt.calls == []


def test_not_root_fails_naming_the_packages(fake_packages, monkeypatch):
    monkeypatch.setattr(packages.os, "geteuid", lambda: 1000)
    apt = Apt(fake_packages)
    with pytest.raises(RuntimeError) as caught:
        packages.ensure_for_modules(["test_milter_miltertest", "test_scan_imap"], apt)
    message = str(caught.value)
    assert "miltertest" in message and "dovecot-imapd" in message
    assert "apt-get install miltertest dovecot-imapd" in message
    assert "not root" in message
    assert apt.calls == []


def test_a_failed_install_says_where(fake_packages, monkeypatch):
    monkeypatch.setattr(packages.os, "geteuid", lambda: 0)
    apt = Apt(fake_packages, fail_at="install")
    with pytest.raises(RuntimeError, match=r"(?s)failed at `apt-get install .*Unable to locate"):
        packages.ensure_packages("miltertest", run=apt)


def test_only_modules_that_need_packages_install_anything():
    assert packages.needed_by(["test_cli", "test_config", "test_addresses"]) == []
    assert packages.needed_by(["test_scan_imap", "test_milter_postfix"]) == [
        "postfix", "dovecot-imapd", "openssl"
    ]  # fmt: skip


def test_every_listed_module_exists_and_every_package_is_known():
    tests = Path(__file__).resolve().parent
    for module, names in packages.NEEDED_BY.items():
        assert (tests / f"{module}.py").is_file(), module
        assert set(names) <= set(packages.PACKAGES)


def test_this_machine_has_what_the_suite_needs():
    """The session fixture ran before this test; every package must now be complete."""
    assert packages.missing(packages.PACKAGES) == []
