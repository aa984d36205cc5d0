"""The package's layers, and the length of its files.

core <- checks <- engine <- archive/milter/outputs <- commands <- cli: a module may import
from its own layer or one below it, never from one above. That is what lets the core (the
message, the recipients, the decision config) be used and tested without the mail server,
and a new front end (a pre-send proxy, a web hook) be added next to the CLI without the
engine knowing. Imports are read with ``ast``, function-level and ``TYPE_CHECKING`` ones
included: a lazy import is still a dependency.

A file over :data:`MAX_LINES` is hard to review and usually holds two things; the few that
are over today are listed in :data:`LONG_FILES` and may not grow.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "mailguard"

CORE, CHECKS, ENGINE, ADAPTERS, COMMANDS, CLI = range(6)
LAYER_NAMES = ("core", "checks", "engine", "archive/milter/outputs", "commands", "cli")

#: The core: parsing, recipient analysis, the decision config and what every layer shares.
#: Any module named ``config*`` (the decision config, the config-file reader) is core too.
CORE_MODULES = {
    "address_tokens", "addresses", "body", "charsets", "deadline", "domains", "errors", "headers",
    "history", "limits", "lookalike", "message", "typos",
    "recipients", "redact", "report", "resolver", "rules", "scoring", "sensitive", "services",
    "sources", "msgfile", "compressed", "remedy", "approval", "approval_keys", "attachments",
    "keyfile", "search", "file_view",
}  # fmt: skip

#: Top-level packages and modules above the core.
LAYERS = {
    "checks": CHECKS,
    "engine": ENGINE,
    "pools": ENGINE,
    "archive": ADAPTERS,
    "milter": ADAPTERS,
    "proxy": ADAPTERS,
    "outputs": ADAPTERS,
    "commands": COMMANDS,
    "cli": CLI,
    "cli_options": CLI,
    "cli_workflows": CLI,
    "__main__": CLI,
}

#: Modules whose layer is not their package's (none today: a module that needs an entry
#: here is usually in the wrong package).
OVERRIDES: dict[str, int] = {}

MAX_LINES = 500

#: Files over :data:`MAX_LINES` today, with their length: they may shrink, not grow; once
#: one is split below the limit its entry must go.
LONG_FILES: dict[str, int] = {}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def layer_of(module: str) -> int | None:
    """The layer of a ``mailguard`` module, or ``None`` if nobody has classified it."""
    if module in OVERRIDES:
        return OVERRIDES[module]
    if module == "mailguard":
        # The package itself is the library's facade: Engine, check, load_config.
        return ENGINE
    top = module.split(".")[1]
    if top in CORE_MODULES or top.startswith("config"):
        return CORE
    return LAYERS.get(top)


def _is_module(dotted: str) -> bool:
    base = ROOT.joinpath(*dotted.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def imports_of(source: str, module: str, *, is_package: bool = False) -> set[str]:
    """Every ``mailguard`` module that ``source`` (the text of ``module``) imports.

    ``from mailguard import x`` names the submodule ``x`` when there is one, otherwise the
    package itself; relative imports are resolved against ``module``.
    """
    found: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "mailguard")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            if base.split(".")[0] != "mailguard":
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if _is_module(sub) else base)
    return found


def _modules() -> list[tuple[str, Path]]:
    return [(module_name(path), path) for path in sorted(PACKAGE.rglob("*.py"))]


def test_every_module_has_a_layer():
    unclassified = [name for name, _ in _modules() if layer_of(name) is None]
    assert not unclassified, (
        f"classify {unclassified} in tests/test_architecture_layers.py "
        "(CORE_MODULES, LAYERS or OVERRIDES)"
    )


def test_no_module_imports_from_a_layer_above_it():
    wrong = []
    for name, path in _modules():
        own = layer_of(name)
        assert own is not None
        text = path.read_text(encoding="utf-8")
        for target in sorted(imports_of(text, name, is_package=path.name == "__init__.py")):
            theirs = layer_of(target)
            if theirs is not None and theirs > own:
                wrong.append(
                    f"{name} ({LAYER_NAMES[own]}) imports {target} ({LAYER_NAMES[theirs]})"
                )
    assert not wrong, "imports from a layer above:\n" + "\n".join(wrong)


def test_the_import_reader_sees_every_kind_of_import():
    """The check above is only as good as this reader: lazy, relative, aliased, facade."""
    source = (
        "import os\n"
        "import mailguard.engine as e\n"
        "from mailguard import config, __version__\n"
        "from . import server\n"
        "from ..outputs import text\n"
        "def later():\n"
        "    from mailguard.commands.settings import ConfigSource\n"
        "if False:\n"
        "    from mailguard.cli import app\n"
    )
    assert imports_of(source, "mailguard.milter.settings") == {
        "mailguard.engine", "mailguard.config", "mailguard", "mailguard.milter.server",
        "mailguard.outputs.text", "mailguard.commands.settings", "mailguard.cli",
    }  # fmt: skip
    assert imports_of("from . import x\n", "mailguard.commands", is_package=True) == {
        "mailguard.commands"
    }


@pytest.mark.parametrize(
    ("module", "layer"),
    [
        ("mailguard.config", CORE),
        ("mailguard.configfile", CORE),
        ("mailguard.checks.base", CHECKS),
        ("mailguard", ENGINE),
        ("mailguard.milter.settings", ADAPTERS),
        ("mailguard.archive.scanner", ADAPTERS),
        ("mailguard.commands.scan_run", COMMANDS),
        ("mailguard.commands.check", COMMANDS),
        ("mailguard.cli", CLI),
        ("mailguard.newthing", None),
    ],
)
def test_layers_of_known_modules(module, layer):
    assert layer_of(module) == layer


def test_config_does_not_import_the_milter():
    """The regression that started this: the core config owned the mail server's settings."""
    text = (PACKAGE / "config.py").read_text(encoding="utf-8")
    assert not any(m.startswith("mailguard.milter") for m in imports_of(text, "mailguard.config"))


def _lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def test_no_file_is_longer_than_the_limit():
    over = {}
    for _, path in _modules():
        rel = path.relative_to(ROOT).as_posix()
        n = _lines(path)
        allowed = LONG_FILES.get(rel, MAX_LINES)
        if n > allowed:
            over[rel] = n
    assert not over, f"over {MAX_LINES} lines (or longer than listed in LONG_FILES): {over}"


def test_long_files_list_holds_only_long_files():
    stale = {rel: _lines(ROOT / rel) for rel in LONG_FILES if _lines(ROOT / rel) <= MAX_LINES}
    assert not stale, f"now within {MAX_LINES} lines, remove from LONG_FILES: {stale}"
