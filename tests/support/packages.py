"""The Debian packages the end-to-end tests need: installed when missing, never skipped.

A test that skips when Postfix, miltertest or Dovecot is absent passes on a machine where
nothing was tested, so a missing package is either installed (the suite runs as root, as
``.ci/run`` and the README's command do) or a hard error that names the package. Each
package is judged by every file the tests run from it: Postfix installed without
miltertest used to pass the Postfix check and then fail 35 miltertest tests.

``tests/conftest.py`` installs, once per session, what the collected test modules need
(:data:`NEEDED_BY`); the harnesses call :func:`ensure_packages` again before they start
anything, so a new test module that uses them is covered too.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from tests.support.procs import tail

#: Files each package must have brought, for the tests to run.
PACKAGES: dict[str, tuple[Path, ...]] = {
    "postfix": (
        Path("/usr/sbin/postfix"),
        Path("/usr/sbin/postconf"),
        Path("/usr/sbin/postqueue"),
        Path("/usr/sbin/postsuper"),
        Path("/usr/sbin/smtp-sink"),
        Path("/usr/sbin/smtp-source"),
        Path("/usr/lib/postfix/sbin/master"),
    ),
    "miltertest": (Path("/usr/bin/miltertest"),),
    "dovecot-imapd": (
        Path("/usr/sbin/dovecot"),
        Path("/usr/lib/dovecot/imap"),
        Path("/usr/lib/dovecot/imap-login"),
    ),
    "openssl": (Path("/usr/bin/openssl"),),
    "unbound": (Path("/usr/sbin/unbound"),),
    "opendkim": (Path("/usr/sbin/opendkim"),),
    "pst-utils": (Path("/usr/bin/readpst"),),
    "libemail-outlook-message-perl": (Path("/usr/bin/msgconvert"),),
    # msgconvert's first `use`; Debian's libemail-outlook-message-perl does not depend on
    # it, so without it msgconvert is installed but fails on every file.
    "libemail-address-perl": (Path("/usr/share/perl5/Email/Address.pm"),),
}

#: debconf answers given before installing: Postfix's postinst would otherwise configure an
#: Internet Site and start a system MTA on port 25 (the tests run private instances).
PRESEED: dict[str, str] = {"postfix": "postfix postfix/main_mailer_type select No configuration\n"}

#: Test modules (by file stem) and the packages they use.
NEEDED_BY: dict[str, tuple[str, ...]] = {
    "test_milter_postfix": ("postfix",),
    "test_milter_attachments": ("postfix",),
    "test_postfix_harness": ("postfix",),
    "test_bench_milter_script": ("postfix",),
    "test_milter_miltertest": ("miltertest",),
    "test_scan_imap": ("dovecot-imapd", "openssl"),
    "test_history_imap": ("dovecot-imapd", "openssl"),
    "test_history_milter": ("postfix",),
    "test_harness_packages": ("postfix", "miltertest", "dovecot-imapd", "openssl", "opendkim"),
    "test_dns": ("unbound",),
    "test_bench_dns_script": ("unbound",),
    "test_milter_dkim": ("postfix", "opendkim", "openssl"),
    "test_milter_rewrite_postfix": ("postfix",),
    "test_postfix_header_index": ("postfix",),
    "test_scan_outlook": ("pst-utils", "libemail-outlook-message-perl", "libemail-address-perl"),
    "test_corpus_sweep": ("libemail-outlook-message-perl", "libemail-address-perl"),
    "test_scan_dask": ("pst-utils",),
    "test_scan_state_imap": ("dovecot-imapd", "openssl"),
    "test_proxy_postfix": ("postfix",),
    "test_proxy_upstream": ("openssl",),
    "test_bench_proxy_script": ("postfix",),
}

Runner = Callable[..., subprocess.CompletedProcess[str]]


def missing(names: Iterable[str]) -> list[str]:
    """The packages among ``names`` with a file the tests need absent."""
    return [name for name in names if not all(path.exists() for path in PACKAGES[name])]


def needed_by(modules: Iterable[str]) -> list[str]:
    """The packages the given test modules (file stems) use, in a stable order."""
    wanted = {pkg for module in modules for pkg in NEEDED_BY.get(module, ())}
    return [name for name in PACKAGES if name in wanted]


def ensure_packages(*names: str, run: Runner = subprocess.run) -> None:
    """Install every package in ``names`` that is missing, in one ``apt-get install``.

    Not root: a :class:`RuntimeError` naming the packages and the command to run.
    """
    absent = missing(names)
    if not absent:
        return
    files = ", ".join(str(p) for name in absent for p in PACKAGES[name] if not p.exists())
    command = f"apt-get install {' '.join(absent)}"
    if os.geteuid() != 0:
        raise RuntimeError(
            f"the tests need the Debian package(s) {', '.join(absent)} ({files} missing); "
            f"this process is not root, so it cannot install them. Run `{command}` as root"
            + (f" (preseed `{PRESEED['postfix'].strip()}` first)" if "postfix" in absent else "")
            + ", or run the tests as root."
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    steps: list[tuple[Sequence[str], str | None]] = [
        (["debconf-set-selections"], "".join(PRESEED[n] for n in absent if n in PRESEED)),
        (["apt-get", "update"], None),
        (["apt-get", "install", "-y", "--no-install-recommends", *absent], None),
    ]
    for argv, stdin in steps:
        if stdin == "":
            continue
        result = run(argv, input=stdin, capture_output=True, text=True, env=env, check=False)
        if result.returncode != 0:
            raise RuntimeError(
                f"installing {', '.join(absent)} failed at `{' '.join(argv)}` "
                f"(rc {result.returncode}):\n" + tail(result.stdout + result.stderr, 30)
            )
    still = missing(absent)
    if still:
        gone = ", ".join(str(p) for name in still for p in PACKAGES[name] if not p.exists())
        raise RuntimeError(f"`{command}` succeeded but {gone} is still missing")


def ensure_for_modules(modules: Iterable[str], run: Runner = subprocess.run) -> list[str]:
    """Install what the given test modules use; returns the packages that were missing."""
    names = needed_by(modules)
    absent = missing(names)
    ensure_packages(*names, run=run)
    return absent
