"""Opt-in compiled build: ``MAILGUARD_COMPILE=1`` compiles the hot modules with mypyc.

Why: the engine's per-message path is pure Python; mypyc (part of mypy, which the package is
clean under) turns it into C extension modules for a further speed-up on the same source, no
second code base. Why opt-in: it needs a C compiler and the Python headers, the wheel it
makes is tied to one interpreter and platform, and a pure wheel is what most users need.

A normal ``pip install .`` / ``pip wheel .`` / ``python -m build`` runs this hook:

* ``MAILGUARD_COMPILE`` unset or ``0``: nothing happens, the wheel is pure Python.
* ``MAILGUARD_COMPILE=1``: mypy and setuptools join the build requirements (only then: see
  :meth:`CompiledBuildHook.dependencies`, which pip's isolated build environment installs),
  the modules in :data:`COMPILED` are compiled and the extension modules go into the wheel
  beside the ``.py`` files (an extension module wins the import). If compiling fails (no
  compiler, no ``Python.h``, a mypyc error) the build warns on stderr and makes the pure
  wheel: the package works either way.
* ``MAILGUARD_COMPILE=require``: as ``1``, but a failure fails the build (CI uses this so a
  broken compiled build cannot pass as a pure one).

Editable installs stay pure. Compiling happens in a temporary copy of the package, so no
``.c``, ``.so``, ``build/`` or mypy cache is left in the work tree
(``tests/test_mypyc_safety.py`` checks both).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

ENV = "MAILGUARD_COMPILE"
ENV_MODULES = "MAILGUARD_COMPILE_MODULES"
"""Comma-separated subset of :data:`COMPILED` (the packaging test builds one small module)."""

#: The per-message path of ``check``, ``scan`` and the milter. Not compiled, on purpose:
#: ``rules.py`` and ``config.py`` (tests and custom rules patch and pickle their classes;
#: compiled classes cannot be patched) and ``scoring.py`` (its frozen dataclasses are
#: pickled to scan workers, which compiled frozen classes refuse to unpickle).
COMPILED = (
    "mailguard/address_tokens.py",
    "mailguard/addresses.py",
    "mailguard/body.py",
    "mailguard/charsets.py",
    "mailguard/checks/base.py",
    "mailguard/checks/content.py",
    "mailguard/checks/domains.py",
    "mailguard/checks/headers.py",
    "mailguard/checks/input.py",
    "mailguard/checks/mail_domains.py",
    "mailguard/checks/recipients.py",
    "mailguard/domains.py",
    "mailguard/engine.py",
    "mailguard/headers.py",
    "mailguard/message.py",
    "mailguard/milter/protocol.py",
    "mailguard/milter/session.py",
    "mailguard/recipients.py",
    "mailguard/report.py",
    "mailguard/sensitive.py",
)
BUILD_REQUIRES = ["mypy>=1.8", "setuptools>=61"]
GROUP = "mailguard"
"""mypyc's shared runtime goes into one top-level ``mailguard__mypyc`` extension module."""

_DRIVER = """
import os, sys
from setuptools import setup
from mypyc.build import mypycify
setup(
    name="mailguard-compiled",
    ext_modules=mypycify(sys.argv[1:], opt_level="3", group_name={group!r}),
    script_args=["build_ext", "--inplace", "--parallel", str(os.cpu_count() or 1)],
)
"""


class CompileError(Exception):
    """The compiled build failed; the message says why (the tail of the compiler's output)."""


def requested() -> str:
    """``off``, ``on`` (fall back to pure on failure) or ``require``."""
    value = os.environ.get(ENV, "").strip().lower()
    if value in ("", "0", "no", "false", "off"):
        return "off"
    return "require" if value == "require" else "on"


def modules() -> tuple[str, ...]:
    wanted = [m.strip() for m in os.environ.get(ENV_MODULES, "").split(",") if m.strip()]
    unknown = sorted(set(wanted) - set(COMPILED))
    if unknown:
        raise CompileError(f"{ENV_MODULES}: not in hatch_build.COMPILED: {', '.join(unknown)}")
    return tuple(wanted) or COMPILED


def compile_modules(root: Path, workdir: Path) -> dict[str, Path]:
    """Compile in ``workdir`` (a copy of the package); wheel path -> built extension module."""
    paths = modules()
    src = workdir / "src"
    shutil.copytree(
        root / "mailguard", src / "mailguard", ignore=shutil.ignore_patterns("__pycache__", "*.so")
    )
    env = {**os.environ, "MYPY_CACHE_DIR": str(workdir / "mypy_cache")}
    proc = subprocess.run(
        [sys.executable, "-c", _DRIVER.format(group=GROUP), *paths],
        cwd=src, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
    )  # fmt: skip
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise CompileError(f"mypyc exited {proc.returncode}:\n{tail}")
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    built = {
        path.relative_to(src).as_posix(): path
        for path in src.rglob(f"*{suffix}")
        if "build" not in path.relative_to(src).parts
    }
    expected = {m.removesuffix(".py") + suffix for m in paths} | {f"{GROUP}__mypyc{suffix}"}
    missing = sorted(expected - set(built))
    if missing:
        raise CompileError(f"mypyc did not produce {', '.join(missing)}")
    return built


class CompiledBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    """The wheel target's hook; a no-op unless ``MAILGUARD_COMPILE`` asks for a compiled build."""

    PLUGIN_NAME = "custom"

    def dependencies(self) -> list[str]:
        # Asked before the build (PEP 517 get_requires_for_build_wheel): mypy and setuptools
        # are installed into the isolated build environment only for a compiled build.
        return list(BUILD_REQUIRES) if requested() != "off" else []

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        self._workdir: str | None = None
        mode = requested()
        if mode == "off" or self.target_name != "wheel" or version == "editable":
            return
        self._workdir = tempfile.mkdtemp(prefix="mailguard-mypyc-")
        try:
            built = compile_modules(Path(self.root), Path(self._workdir))
        except (CompileError, OSError) as exc:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
            if mode == "require":
                raise
            warn(
                f"mailguard: compiled build failed, building the pure-Python wheel instead "
                f"({ENV}=require makes this an error).\n{exc}"
            )
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        for target, path in built.items():
            build_data["force_include"][str(path)] = target
        print(f"mailguard: compiled {len(built) - 1} modules with mypyc", file=sys.stderr)

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        if getattr(self, "_workdir", None):
            shutil.rmtree(self._workdir, ignore_errors=True)  # type: ignore[arg-type]


def warn(text: str) -> None:
    print(f"WARNING: {text}", file=sys.stderr, flush=True)
