"""The product's layering rules (``docs/architecture.md``, "Layers and the one-way import rule"), read off the code's
own imports and literals (AST, nothing run); ``LAYERS`` below is where they are written down.

* no import cycle between production modules, nor between production packages (the Dataverse emulator's own
  package aside: it is a stand-in, not product code);
* each package imports only the layers below it (``LAYERS``): ``transport/`` is HTTP plumbing, ``dataverse/`` the
  Web API client that knows nothing of the migration, ``load/`` the migration's load layer above it; only the entry
  points import ``assets/``; only the entry points import the sandbox;
* Dagster is imported only by ``assets/``, ``resources.py``, ``io_managers.py`` and the entry points: everything
  below them runs (and is tested) without it;
* at most ``MAX_FUNCTION_IMPORTS`` imports inside functions in production code, each with a one-line reason;
* no string literal equal to a registry object's name outside the registry: everything particular to one object is
  declared on its registry entry (or in the map file);
* the tests' helpers live in ``senseimig_dagster_tests/support``: test modules import from there and from the
  product, never from another test module or a conftest.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

from senseimig_dagster.objects import REGISTRY

ROOT = Path(__file__).resolve().parents[1] / "senseimig_dagster"
TESTS = Path(__file__).resolve().parent
PACKAGE = "senseimig_dagster"
SUPPORT = "senseimig_dagster_tests.support"
SANDBOX = f"{PACKAGE}.sandbox"
EMULATOR = f"{SANDBOX}.dataverse_emulator"
# The entry points: the Definitions the UI loads, the jobs, and the command line package (parse, commands, runs, demo).
ENTRY_UNITS = frozenset({"definitions", "jobs", "cli"})
# Besides the entry points, the only units that may import Dagster (``dagster``, ``dagster_duckdb``...).
DAGSTER_UNITS = frozenset({"assets", "resources", "io_managers"})
MAX_FUNCTION_IMPORTS = 15

# Each unit (a top-level module or package of senseimig_dagster) and the units it may import. Dependencies point
# one way: down this list. The entry points (ENTRY_UNITS) may import anything.
LAYERS: dict[str, set[str]] = {
    "objects": set(),
    "settings": set(),
    "transport": set(),
    "privacy": set(),
    "sensei": {"objects", "transport"},
    "dataverse": {"transport"},
    "graph": {"transport"},
    "mapping": {"objects", "sensei", "dataverse"},
    "staging": {"objects", "sensei", "mapping", "dataverse", "privacy"},
    "audit": {"dataverse", "privacy"},
    "load": {"objects", "sensei", "mapping", "dataverse", "graph", "audit", "privacy"},
    "verify": {"objects", "mapping", "dataverse", "staging", "load"},
    "store": {"objects", "load"},
    "io_managers": {"objects", "privacy", "sensei"},
    "resources": {"objects", "settings", "transport", "privacy", "sensei", "dataverse", "graph", "mapping", "audit",
                  "load", "store"},
    "assets": {"objects", "settings", "privacy", "sensei", "dataverse", "graph", "mapping", "staging", "audit",
               "load", "verify", "store", "io_managers", "resources"},
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in ROOT.rglob("*.py")}


@cache
def _tree(name: str) -> ast.Module:
    return ast.parse(_modules()[name].read_text(encoding="utf-8"))


def _resolve(module: str, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    """Project modules an import statement names (``from pkg import mod`` names ``pkg.mod``)."""
    if isinstance(node, ast.Import):
        yield from (a.name for a in node.names if a.name.startswith(PACKAGE))
        return
    base = node.module or ""
    if node.level:
        here = module.split(".") if _modules()[module].name == "__init__.py" else module.split(".")[:-1]
        base = ".".join(here[:len(here) - node.level + 1] + ([base] if base else []))
    if not base.startswith(PACKAGE):
        return
    for alias in node.names:
        candidate = f"{base}.{alias.name}"
        yield candidate if candidate in _modules() else base


def _type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def _in_function(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            return True
    return False


@cache
def _imports() -> dict[str, list[tuple[str, ast.Import | ast.ImportFrom, bool]]]:
    """Per module: (imported module, statement, inside a function); TYPE_CHECKING imports left out."""
    out: dict[str, list] = defaultdict(list)
    for name in _modules():
        tree = _tree(name)
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom) and not _type_checking_only(node, parents):
                out[name] += [(target, node, _in_function(node, parents)) for target in _resolve(name, node)]
    return out


def _unit(module: str) -> str:
    return module.split(".")[1] if "." in module else module


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _production(module: str) -> bool:
    return not module.startswith(SANDBOX)


def _entry(module: str) -> bool:
    return _unit(module) in ENTRY_UNITS


def test_no_import_cycle_between_modules() -> None:
    graph = {m: {t for t, _, _ in deps if t != m} for m, deps in _imports().items() if not m.startswith(EMULATOR)}
    assert _cycles(graph) == []


def test_no_import_cycle_between_packages() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for module, deps in _imports().items():
        if _production(module):
            graph[_unit(module)] |= {_unit(t) for t, _, _ in deps if _production(t) and _unit(t) != _unit(module)}
    assert _cycles(graph) == []


def test_each_layer_imports_only_the_layers_below_it() -> None:
    wrong = []
    for module, deps in _imports().items():
        unit = _unit(module)
        if not _production(module) or _entry(module) or module == PACKAGE:
            continue
        assert unit in LAYERS, f"{module}: add its package to LAYERS, with the units it may import"
        for target, node, _ in deps:
            if _unit(target) not in (unit, *LAYERS[unit]):
                wrong.append(f"{module}:{node.lineno} imports {target}")
    assert wrong == []


def test_only_entry_points_import_the_sandbox() -> None:
    wrong = [f"{module}:{node.lineno} imports {target}" for module, deps in _imports().items()
             if _production(module) and not _entry(module)
             for target, node, _ in deps if target.startswith(SANDBOX)]
    assert wrong == []


def _imports_dagster(module: str) -> list[int]:
    """Lines of ``module`` importing Dagster or one of its libraries (TYPE_CHECKING imports aside)."""
    tree = _tree(module)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names = [node.module or ""]
        else:
            continue
        if any(n.split(".")[0].startswith("dagster") for n in names) and not _type_checking_only(node, parents):
            lines.append(node.lineno)
    return lines


def test_only_assets_resources_io_managers_and_entry_points_import_dagster() -> None:
    wrong = [f"{module}:{line} imports Dagster" for module in sorted(_modules()) if _production(module)
             and not _entry(module) and _unit(module) not in DAGSTER_UNITS
             for line in _imports_dagster(module)]
    assert wrong == [], "keep Dagster out of this layer: pass plain values in from an asset or a resource"


def test_imports_inside_functions_are_few_and_give_their_reason() -> None:
    inside = {(module, node.lineno): node for module, deps in _imports().items() if _production(module)
              for _, node, in_function in deps if in_function}
    assert len(inside) <= MAX_FUNCTION_IMPORTS, sorted(inside)
    unexplained = []
    for (module, line), _ in sorted(inside.items()):
        lines = _modules()[module].read_text(encoding="utf-8").splitlines()
        if "#" not in lines[line - 1] and not lines[line - 2].strip().startswith("#"):
            unexplained.append(f"{module}:{line}")
    assert unexplained == [], "say why the import waits for the call, in a comment on its line or the one above"


def _docstrings(tree: ast.Module) -> set[int]:
    return {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body
            and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}


@pytest.mark.parametrize("module", sorted(m for m in _modules() if _production(m) and m != f"{PACKAGE}.objects"))
def test_no_object_name_outside_the_registry(module: str) -> None:
    names = {o.name for o in REGISTRY}
    tree = _tree(module)
    docs = _docstrings(tree)
    found = sorted({f"{node.lineno}: {node.value!r}" for node in ast.walk(tree)
                    if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs
                    and node.value in names})
    assert found == [], "declare it on the object's registry entry (objects.py) and read the declaration"


def _test_files() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*.py") if "__pycache__" not in p.parts)


def test_outside_support_the_tests_tree_holds_only_tests_and_conftests() -> None:
    helpers = [str(p.relative_to(TESTS)) for p in _test_files() if TESTS / "support" not in p.parents
               and not p.name.startswith("test_") and p.name not in ("conftest.py", "__init__.py")]
    assert helpers == [], "move shared helpers into senseimig_dagster_tests/support"


def test_tests_import_only_support_and_the_product() -> None:
    wrong = []
    for path in _test_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = ["." * node.level + (node.module or "")]
            else:
                continue
            wrong += [f"{path.relative_to(TESTS)}:{node.lineno} imports {n}" for n in names if n.startswith(".")
                      or (n.startswith("senseimig_dagster_tests") and n != SUPPORT
                          and not n.startswith(f"{SUPPORT}."))]
    assert wrong == [], "import shared helpers from senseimig_dagster_tests.support"
