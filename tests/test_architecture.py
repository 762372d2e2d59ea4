"""The layout is the data flow: a stage imports only the stages before it (docs/architecture.md).

Imports under ``if TYPE_CHECKING:`` are annotations, not dependencies, and are not counted.
Imports inside functions are (they load at run time). Module size is bounded too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "src" / "pytest_vramcap"
STAGES = ["model", "planner", "engines", "load", "gpu", "report", "plugin"]
FOUNDATION = {"errors", "defaults", "types", "parsers", "options", "net"}  # import-free of every stage
MAX_LINES = 350


def stage_of(module: str) -> str:
    """``pytest_vramcap.planner.memory`` -> ``planner``; a top-level module is its own name."""
    return module.split(".")[1] if module.count(".") else ""


def runtime_imports(path: Path, module: str) -> set[str]:
    """Modules of this package imported outside ``if TYPE_CHECKING:`` blocks, as absolute names."""
    tree = ast.parse(path.read_text())
    guarded = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
               and isinstance(block.test, ast.Name) and block.test.id == "TYPE_CHECKING"
               for stmt in block.body for node in ast.walk(stmt)}
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    found = set()
    for node in ast.walk(tree):
        if id(node) in guarded or not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            target = f"{base}.{node.module}" if node.module else base
        else:
            target = node.module or ""
        if target.startswith("pytest_vramcap."):
            found.add(target)
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@pytest.mark.parametrize("path", MODULES, ids=[module_name(p) for p in MODULES])
def test_stages_import_only_earlier_stages(path: Path) -> None:
    module = module_name(path)
    own = module.split(".")[1] if module.count(".") else module.split(".")[0]
    for target in runtime_imports(path, module):
        other = target.split(".")[1]
        if other in FOUNDATION or other == own:
            continue
        assert own not in FOUNDATION, f"{module} is foundation but imports {target}"
        if own in ("cli", "pytest_vramcap"):
            continue  # the command and the public face sit on top of everything
        assert other in STAGES and STAGES.index(other) < STAGES.index(own), f"{module} imports {target}"


@pytest.mark.parametrize("path", MODULES, ids=[module_name(p) for p in MODULES])
def test_modules_stay_small(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= MAX_LINES
