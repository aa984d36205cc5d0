"""The source stays safe to compile with mypyc, and the opt-in compiled build works.

Why these exist (issue 10): the compiled build (``hatch_build.py``, ``MAILGUARD_COMPILE=1``)
was tried before and three constructs broke or slowed it *silently*, with every pure-Python
test still green:

* ``functools.cached_property`` becomes a plain property in a compiled class: the value is
  recomputed at every access (small messages got 20 % slower);
* ``except InputError as exc`` then ``except Exception as exc`` in one function: mypyc gives
  ``exc`` the first handler's type, so the second handler raises ``TypeError`` instead of
  handling the bug;
* a test that monkeypatches a compiled module's function: compiled callers call it directly,
  so the patch is ignored and the test asserts nothing (``tests/support/faults.py`` has the
  seams that work in both builds);
* ``__dict__`` on an instance: compiled (native) classes have none;
* a dataclass ``field(init=False, default=...)``: mypyc leaves it unset, and the first read
  raises ``AttributeError`` (found by the compiled-wheel step of ``.ci/run``).

The last tests build wheels: a one-module compiled build, the fallback when the compiler
fails, and an editable build, and check that none leaves a file in the work tree.
``.ci/run`` builds the whole compiled wheel, installs it in a fresh venv and runs the engine's
tests against it with ``MAILGUARD_EXPECT_COMPILED=1``, which
:func:`test_the_build_under_test_is_the_expected_one` turns into a proof that they imported
the compiled package.
"""

from __future__ import annotations

import ast
import importlib
import os
import pickle
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT))
try:
    import hatch_build
finally:
    sys.path.remove(str(ROOT))

PACKAGE = ROOT / "mailguard"
COMPILED = [ROOT / m for m in hatch_build.COMPILED]
COMPILED_NAMES = {m.removesuffix(".py").replace("/", ".") for m in hatch_build.COMPILED}
EXT_SUFFIX = sysconfig.get_config_var("EXT_SUFFIX")


def _where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}"


def test_the_compiled_list_names_real_modules_and_leaves_the_test_seams_alone():
    assert all(p.is_file() for p in COMPILED), [p for p in COMPILED if not p.is_file()]
    # tests/support/faults.py patches Rule.check: rules.py must stay interpreted.
    assert "mailguard.rules" not in COMPILED_NAMES
    assert "mailguard.engine" in COMPILED_NAMES  # the CI step proves this one compiled


def test_no_cached_property_anywhere_in_the_package():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            name = getattr(node, "id", None) or getattr(node, "attr", None)
            if isinstance(node, ast.Name | ast.Attribute) and name == "cached_property":
                found.append(_where(path, node))
            if isinstance(node, ast.alias) and node.name.endswith("cached_property"):
                found.append(f"{path.relative_to(ROOT)} imports it")
    assert found == [], "use an explicit lazy attribute (see Message.body_text)"


def _handler_clashes(tree: ast.AST, path: Path) -> list[str]:
    clashes = []
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        bound: dict[str, str] = {}
        stack = list(ast.iter_child_nodes(fn))
        while stack:
            node = stack.pop()
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                continue  # its own scope, checked on its own
            if isinstance(node, ast.ExceptHandler) and node.name:
                kind = ast.unparse(node.type) if node.type else "BaseException"
                if bound.setdefault(node.name, kind) != kind:
                    clashes.append(f"{_where(path, node)} {fn.name}: `{node.name}` is "
                                   f"{bound[node.name]} and {kind}")  # fmt: skip
            stack.extend(ast.iter_child_nodes(node))
    return clashes


def test_compiled_modules_bind_each_except_name_to_one_type():
    clashes = [c for p in COMPILED for c in _handler_clashes(ast.parse(p.read_text()), p)]
    assert clashes == [], "rename one of them: mypyc types the name by its first handler"


def test_the_except_name_check_finds_the_pattern_that_broke_the_build():
    code = (
        "def f():\n    try:\n        g()\n    except ValueError as exc:\n        h(exc)\n"
        "    except Exception as exc:\n        h(exc)\n"
    )
    assert len(_handler_clashes(ast.parse(code), ROOT / "x.py")) == 1


def test_compiled_modules_use_no_instance_dict():
    found = [
        _where(p, node)
        for p in COMPILED
        for node in ast.walk(ast.parse(p.read_text()))
        if isinstance(node, ast.Attribute) and node.attr == "__dict__"
    ]
    assert found == [], "compiled classes have no __dict__"


def test_compiled_dataclasses_have_no_init_false_fields():
    found = [
        _where(p, node)
        for p in COMPILED
        for node in ast.walk(ast.parse(p.read_text()))
        if isinstance(node, ast.Call)
        and ast.unparse(node.func).endswith("field")
        and any(
            k.arg == "init" and isinstance(k.value, ast.Constant) and k.value.value is False
            for k in node.keywords
        )
    ]
    assert found == [], "mypyc leaves an init=False field unset (AttributeError on first read)"


def test_a_config_pickles_without_its_derived_objects():
    """Scan workers get the Config pickled; what it derived (some of it compiled objects,
    which do not unpickle) is derived again there, the same."""
    from mailguard.config import _LAZY, Config

    config = Config(internal_domains=("serviceco.example",))
    _ = config.internal_set, config.personal_set, config.catalog
    state = config.__getstate__()
    assert all(state[name] is None for name in _LAZY) and state["derived"] == {}
    again = pickle.loads(pickle.dumps(config))
    assert again == config and again.rule_settings == config.rule_settings
    assert "mail.serviceco.example" in again.internal_set


def _module_aliases(tree: ast.AST) -> dict[str, str]:
    """Names a test file binds to mailguard modules: alias -> dotted module name."""
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                aliases[a.asname or a.name] = a.name
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    return aliases


def _patched_compiled(tree: ast.AST, path: Path) -> list[str]:
    aliases = _module_aliases(tree)
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and node.args):
            continue
        func = ast.unparse(node.func)
        if not func.endswith(("monkeypatch.setattr", "mock.patch", "mock.patch.object")):
            continue
        target = node.args[0]
        if isinstance(target, ast.Constant) and isinstance(target.value, str):
            dotted = target.value.rsplit(".", 1)[0]  # "module.function"
        else:
            text = ast.unparse(target)
            head, _, rest = text.partition(".")
            dotted = aliases.get(head, head) + (f".{rest}" if rest else "")
        if dotted in COMPILED_NAMES:
            found.append(f"{_where(path, node)} patches {dotted}")
    return found


def test_tests_do_not_patch_functions_of_compiled_modules():
    found = [
        hit
        for path in sorted((ROOT / "tests").rglob("test_*.py"))
        for hit in _patched_compiled(ast.parse(path.read_text(encoding="utf-8")), path)
    ]
    assert found == [], "ignored once compiled: use tests/support/faults.py"


def test_the_patch_check_finds_the_patterns_that_were_ignored_once_compiled():
    code = (
        "import mailguard.engine\nfrom mailguard import engine as engine_mod\n"
        "def test(monkeypatch):\n"
        "    monkeypatch.setattr(engine_mod, 'parse_message', f)\n"
        "    monkeypatch.setattr(mailguard.engine, 'analyse', f)\n"
        "    monkeypatch.setattr('mailguard.engine.analyse', f)\n"
        "    monkeypatch.setattr('mailguard.rules.Rule.check', f)\n"  # rules.py: fine
    )
    assert len(_patched_compiled(ast.parse(code), ROOT / "tests" / "x.py")) == 3


def test_the_build_under_test_is_the_expected_one():
    """Pure from the work tree normally; with MAILGUARD_EXPECT_COMPILED=1 (the compiled-wheel
    step of .ci/run), every compiled module is an extension module from the installed wheel."""
    expect_compiled = os.environ.get("MAILGUARD_EXPECT_COMPILED") == "1"
    for name in sorted(COMPILED_NAMES):
        where = Path(importlib.import_module(name).__file__ or "")
        if expect_compiled:
            assert where.name.endswith(EXT_SUFFIX), f"{name} imported from {where}"
            assert not where.is_relative_to(ROOT), f"{name} imported from the work tree"
        else:
            # A stray .so in the work tree would be imported here instead of the source.
            assert where.suffix == ".py" and where.is_relative_to(PACKAGE), where


# ------------------------------------------------------------------ building wheels


def _tree_files() -> set[Path]:
    # Tool caches other processes may touch meanwhile (the build's own mypy cache is in its
    # temporary directory: hatch_build sets MYPY_CACHE_DIR).
    skip = {".venv", "__pycache__", ".hypothesis", ".pytest_cache", ".git", ".ruff_cache",
            ".mypy_cache"}  # fmt: skip
    return {p for p in ROOT.rglob("*") if p.is_file() and not skip & set(p.relative_to(ROOT).parts)}


def _pip_wheel(out: Path, **env: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-v",
         "-w", str(out), str(ROOT)],
        env={**os.environ, **env}, capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    return proc.stdout + proc.stderr


@pytest.mark.parametrize("compiler", ["real", "broken"])
def test_compiled_wheel_build_or_its_fallback_leaves_the_work_tree_clean(tmp_path, compiler):
    before = _tree_files()
    env = {"MAILGUARD_COMPILE": "1", "MAILGUARD_COMPILE_MODULES": "mailguard/charsets.py"}
    if compiler == "broken":
        env["CC"] = "/bin/false"  # what a machine without a C compiler amounts to
    output = _pip_wheel(tmp_path, **env)
    (wheel,) = tmp_path.glob("mailguard_dlp-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "mailguard/charsets.py" in names  # the source ships either way
    if compiler == "real":
        assert wheel.name.endswith(f"-cp{sys.version_info[0]}{sys.version_info[1]}-"
                                   f"{sysconfig.get_platform().replace('-', '_')}.whl")  # fmt: skip
        assert {f"mailguard/charsets{EXT_SUFFIX}", f"mailguard__mypyc{EXT_SUFFIX}"} <= names
    else:
        assert wheel.name.endswith("-py3-none-any.whl")
        assert not [n for n in names if n.endswith(EXT_SUFFIX)]
        assert "compiled build failed, building the pure-Python wheel instead" in output
    assert _tree_files() == before


def test_editable_builds_stay_pure_and_require_mode_fails_loudly(tmp_path, monkeypatch):
    monkeypatch.setenv("MAILGUARD_COMPILE", "require")
    monkeypatch.setenv("MAILGUARD_COMPILE_MODULES", "mailguard/charsets.py")
    monkeypatch.setenv("CC", "/bin/false")
    hook = hatch_build.CompiledBuildHook(str(ROOT), {}, None, None, str(tmp_path), "wheel")
    assert hook.dependencies() == hatch_build.BUILD_REQUIRES  # only asked for when compiling
    build_data: dict[str, object] = {"force_include": {}}
    hook.initialize("editable", build_data)  # would raise if it tried to compile
    assert build_data == {"force_include": {}}
    with pytest.raises(hatch_build.CompileError, match="mypyc exited"):
        hook.initialize("standard", build_data)
    hook.finalize("standard", build_data, "")
    monkeypatch.setenv("MAILGUARD_COMPILE", "0")
    assert hook.dependencies() == []
