"""The floor plan, enforced: each package imports only from its own layer and those below,
no module imports itself back through others, and no module outgrows one concern.

Imports under `if TYPE_CHECKING:` are type hints, not dependencies: they are left out."""

import ast
from pathlib import Path

import archlab

SRC = Path(archlab.__file__).parent

#: lowest first; a package may import from its own layer and the layers below it
LAYERS = [
    {"errors", "config", "records"},
    {"memory", "tasks"},
    {"sandbox", "eval", "prompts", "search"},
    {"llm"},
    {"roles"},
    {"orchestration"},
    {"report"},
    {"ui"},
    {"benchmarks"},
    {"cli", "__main__"},
]
LAYER = {package: rank for rank, packages in enumerate(LAYERS) for package in packages}
#: the plugin API re-exports the tasks' types (and loads them on first use)
TOP_LEVEL = {"__init__"}

MAX_LINES = 520


def _module(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> set[str]:
    """The archlab modules a module imports when it runs (at any depth, lazy ones too)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("archlab"))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("archlab"):
            assert node.module is not None
            found.add(node.module)
            # `from archlab.roles import coder` imports the module archlab.roles.coder
            found.update(f"{node.module}.{a.name}" for a in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module(p): p for p in SRC.rglob("*.py")}
    return {
        name: {m for m in _imports(ast.parse(path.read_text())) if m in modules and m != name}
        for name, path in modules.items()
    }


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_package_has_a_layer() -> None:
    packages = {_package(m) for m in _graph()}
    assert packages - TOP_LEVEL <= set(LAYER), f"no layer for {packages - set(LAYER)}"


def test_packages_import_only_their_layer_and_below() -> None:
    wrong = []
    for module, imported in _graph().items():
        package = _package(module)
        if package in TOP_LEVEL:
            continue
        for target in imported:
            other = _package(target)
            if other not in TOP_LEVEL and LAYER[other] > LAYER[package]:
                wrong.append(f"{module} imports {target} ({other} is above {package})")
    assert wrong == []


def test_the_lower_layers_never_reach_up_to_roles_or_orchestration() -> None:
    """The issue's rule, stated on its own: memory, sandbox and tasks stand alone."""
    for module, imported in _graph().items():
        if _package(module) in {"memory", "sandbox", "tasks"}:
            assert not {_package(t) for t in imported} & {"roles", "orchestration"}, module


def test_no_import_cycle() -> None:
    graph = _graph()
    done: set[str] = set()

    def walk(module: str, path: list[str]) -> None:
        if module in path:
            cycle = [*path[path.index(module) :], module]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        if module in done:
            return
        for target in sorted(graph[module]):
            walk(target, [*path, module])
        done.add(module)

    for module in sorted(graph):
        walk(module, [])


def test_no_module_outgrows_one_concern() -> None:
    sizes = {str(p.relative_to(SRC)): len(p.read_text().splitlines()) for p in SRC.rglob("*.py")}
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}


def test_the_rules_see_real_imports() -> None:
    """The checks above would pass on an empty graph: make sure they read the code."""
    graph = _graph()
    assert "archlab.roles.context" in graph["archlab.roles.planner"]
    assert "archlab.orchestration.nodes" in graph["archlab.orchestration.graph"]
    # a type-only import is no dependency
    assert "archlab.roles.brains" not in graph["archlab.roles.context"]


def test_every_folder_of_code_is_a_package() -> None:
    """setuptools' find_packages (pyproject) skips a folder without __init__.py: an
    installed (not editable) archlab would lack it."""
    folders = {p.parent for p in SRC.rglob("*.py") if "__pycache__" not in p.parts}
    assert sorted(str(f) for f in folders if not (f / "__init__.py").exists()) == []
