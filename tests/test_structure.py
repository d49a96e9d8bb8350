"""The shape of the code: module size, function size, and imports that run one way, stage by stage.

The package is read as text (``ast``), nothing is imported, so these checks see every import, including the
ones inside functions and the lazy ones, and cost no time.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from conftest import REPO_ROOT

PACKAGE = "vocalsound_hf"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80
# Functions allowed past MAX_FUNCTION_LINES, each with the reason.
LONG_FUNCTIONS: dict[str, str] = {}

# Layers, lowest first: a module may import its own layer or a lower one. The stage folders of one layer are
# independent of each other.
LAYERS: dict[str, int] = {
    "release": 0,
    "fileio": 0,
    "audio": 1,
    "features": 1,
    "augment": 1,
    "metrics": 1,
    "vocalsound_metrics": 1,
    "events": 1,
    "data": 2,
    "event_metrics": 2,
    "models": 2,
    "training": 3,
    "inference": 3,
    "cli": 4,
}
SCRIPTS = ("train_hf.py", "spaces_demo", "benchmarks", "dataset_script")


def _package_modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    modules = {}
    for path in sorted((REPO_ROOT / PACKAGE).rglob("*.py")):
        parts = path.relative_to(REPO_ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _source_files() -> list[Path]:
    files = list(_package_modules().values())
    for script in SCRIPTS:
        target = REPO_ROOT / script
        files += [target] if target.is_file() else sorted(target.rglob("*.py"))
    return files


def _imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The package modules ``name`` imports, wherever the import stands (type-checking-only imports aside)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    type_checking = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and ast.unparse(block.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
        for node in ast.walk(block)
    }
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in type_checking:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from a import b`` imports the module a.b when there is one, else a itself.
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _import_graph() -> dict[str, set[str]]:
    modules = _package_modules()
    return {name: _imported_modules(name, path, set(modules)) for name, path in modules.items()}


def _stage(module: str) -> str:
    return module.split(".")[1] if "." in module else ""


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), or a module importing itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph.get(node, ())):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_no_module_is_over_the_line_limit():
    too_long = {
        str(path.relative_to(REPO_ROOT)): count
        for path in _source_files()
        if (count := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert too_long == {}, f"modules over {MAX_MODULE_LINES} lines: {too_long}"


def test_no_function_is_over_the_line_limit():
    too_long = {}
    for path in _source_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            body = node.body
            if len(body) > 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                body = body[1:]  # the docstring
            count = node.end_lineno - body[0].lineno + 1
            key = f"{path.relative_to(REPO_ROOT)}:{node.name}"
            if count > MAX_FUNCTION_LINES and key not in LONG_FUNCTIONS:
                too_long[key] = count
    assert too_long == {}, f"functions over {MAX_FUNCTION_LINES} lines (docstring excluded): {too_long}"


def test_the_package_has_no_import_cycle():
    assert _cycles(_import_graph()) == []


def test_every_module_has_a_layer():
    unplaced = sorted(
        module for module in _package_modules() if module != PACKAGE and _stage(module) not in LAYERS
    )
    assert unplaced == [], "modules without a layer in LAYERS: place each new stage or shared module"


def test_imports_run_one_way_from_stage_to_stage():
    wrong = []
    for module, targets in _import_graph().items():
        if module == PACKAGE:
            continue
        for target in targets:
            source_stage, target_stage = _stage(module), _stage(target)
            if (
                target == PACKAGE
                or source_stage == target_stage
                or not {source_stage, target_stage} <= set(LAYERS)
            ):
                continue
            if LAYERS[target_stage] >= LAYERS[source_stage]:
                wrong.append(f"{module} -> {target}")
    assert wrong == [], "imports against the layers (lower stages must not import higher or sibling ones)"


def test_the_checks_see_a_cycle_an_upward_import_and_an_import_inside_a_function(tmp_path):
    """The checks themselves: a cycle made of an import inside a function is found, and so is a layer breach."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    module = tmp_path / "builder.py"
    module.write_text("def load():\n    from ..training.trainer import VocalSoundTrainer\n")
    known = {f"{PACKAGE}.training.trainer", f"{PACKAGE}.data.builder"}
    assert _imported_modules(f"{PACKAGE}.data.builder", module, known) == {f"{PACKAGE}.training.trainer"}
    assert LAYERS[_stage(f"{PACKAGE}.training.trainer")] > LAYERS[_stage(f"{PACKAGE}.data.builder")]


@pytest.mark.parametrize("stage", ["data", "models", "training", "inference"])
def test_stage_folders_only_document_their_modules(stage):
    """A stage's ``__init__`` imports nothing: ``vocalsound_hf.models.presets`` stays free of torch."""
    init = REPO_ROOT / PACKAGE / stage / "__init__.py"
    tree = ast.parse(init.read_text(encoding="utf-8"))
    assert ast.get_docstring(tree), f"{init} has no docstring"
    assert tree.body[1:] == [], f"{init} should hold only its docstring"


def test_the_readme_layout_names_every_module_and_only_existing_paths():
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Repository layout", 1)[1].split("\n## ", 1)[0]
    # Paths are the code spans with a folder or a source file in them; the rest name APIs and files a run writes.
    named = {
        span for span in re.findall(r"`([\w./-]+)`", section) if "/" in span or span.endswith((".py", ".md"))
    }
    missing = sorted(path for path in named if not (REPO_ROOT / path).exists())
    assert missing == [], f"README's layout names paths that do not exist: {missing}"
    modules = {
        str(path.relative_to(REPO_ROOT))
        for path in _package_modules().values()
        if path.name != "__init__.py" and path.parent.name != "vocalsound_metrics"
    }
    unnamed = sorted(modules - named)
    assert unnamed == [], f"README's layout leaves out: {unnamed}"
