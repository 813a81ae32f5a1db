"""The layout's one import rule, read from the source (ast), and the architecture page.

Arrows point down: the CLI and the benchmarks -> the pipeline -> the stages -> the registry ->
the clients (teachers, k8s) -> the foundation (config, errors, data, scoring, the stage
table). Every import counts, those inside functions too: a lazy import is still a dependency.
A violation fails with the edge (``importer -> imported``) and the line it is on.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = SRC / "r1ov"

# Top-level part of r1ov -> layer. A module may import its own part and any part on a lower
# layer; never a higher one, and never another part on its own layer above the foundation.
LAYERS: dict[str, int] = {
    # foundation: the parts every stage stands on; they import each other, never upward
    "r1ov": 0,  # __init__: the version
    "errors": 0,
    "config": 0,
    "data": 0,
    "scoring": 0,
    "stages": 0,  # the stage table: names, configs and "module:function" strings
    # clients of the outside world
    "teachers": 1,
    "k8s": 1,
    # MLflow: tracking, model versions, promotion, serving
    "registry": 2,
    # the stages
    "formalize": 3,
    "distill": 3,
    "filtering": 3,
    "train": 3,
    "eval": 3,
    # offline data and stand-ins: below the pipeline, imported only where OFFLINE_USERS allows
    "synthetic": 4,
    "testing": 4,
    # the KFP pipeline's task bodies, compile, submit, the demo
    "pipeline": 5,
    # entry points nothing imports
    "bench": 6,
    "cli": 6,
}
FOUNDATION = 0
OFFLINE = {"synthetic", "testing"}
# Who may import the offline parts: the demo and the CLI's offline commands, the benchmarks,
# and the offline parts themselves.
OFFLINE_USERS = ("r1ov.pipeline.demo", "r1ov.cli", "r1ov.bench", "r1ov.synthetic", "r1ov.testing")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> Iterator[tuple[str, int]]:
    """Every r1ov module ``path`` imports, with the line; ``from pkg import mod`` names the module."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "r1ov":
                    yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target.split(".")[0] != "r1ov":
                continue
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                yield (submodule if _is_module(submodule) else target), node.lineno


def _is_module(name: str) -> bool:
    path = SRC.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def part(module: str) -> str:
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else "r1ov"


def edges() -> list[tuple[str, str, str]]:
    """(importer, imported, "file:line") for every import of an r1ov module by an r1ov module."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for target, line in imports(path):
            found.append((module_name(path), target, f"{path.relative_to(ROOT)}:{line}"))
    return found


def test_every_part_has_a_layer() -> None:
    parts = {p.stem if p.suffix == ".py" else p.name for p in PACKAGE.iterdir() if not p.name.startswith("__")}
    parts = {p for p in parts if (PACKAGE / p).is_dir() or (PACKAGE / f"{p}.py").is_file()}
    assert parts - {"__pycache__"} <= set(LAYERS), f"parts without a layer: {sorted(parts - set(LAYERS))}"


def test_the_top_level_holds_packages_and_a_handful_of_modules() -> None:
    modules = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert modules == ["__init__.py", "cli.py", "config.py", "errors.py", "stages.py"]
    for package in (p for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()):
        doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text()))
        assert doc, f"{package.name}/__init__.py has no docstring saying what it owns"


def broken_rule(importer: str, imported: str) -> str | None:
    """Why ``importer`` may not import ``imported``, or None when the arrow points down."""
    source, target = part(importer), part(imported)
    if source == target:
        return None
    if target == "cli":
        return "the library never imports the CLI"
    if target in OFFLINE and not importer.startswith(OFFLINE_USERS):
        return f"production code imports offline {target}"
    if LAYERS[target] > LAYERS[source]:
        return f"{source} may not import the higher {target}"
    if LAYERS[target] == LAYERS[source] != FOUNDATION:
        return f"{source} and {target} are peers"
    return None


@pytest.mark.parametrize(
    ("importer", "imported"),
    [
        ("r1ov.train.worker", "r1ov.cli"),
        ("r1ov.data.outcome", "r1ov.registry.tracking"),
        ("r1ov.scoring.answers", "r1ov.train.rewards"),
        ("r1ov.registry.models", "r1ov.eval.report"),
        ("r1ov.teachers.client", "r1ov.formalize.router"),
        ("r1ov.train.common", "r1ov.testing.tiny_model"),
        ("r1ov.eval.generate", "r1ov.train.common"),
    ],
)
def test_the_rule_refuses_an_upward_arrow(importer: str, imported: str) -> None:
    assert broken_rule(importer, imported)


def test_imports_point_down() -> None:
    violations = [
        f"{importer} -> {imported} ({where}): {why}"
        for importer, imported, where in edges()
        if (why := broken_rule(importer, imported))
    ]
    assert not violations, "\n".join(violations)


def top_level_names(module: str) -> set[str]:
    """What ``from module import name`` can find: its top-level definitions, imports and submodules."""
    path = SRC.joinpath(*module.split("."))
    source = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    names = {p.stem for p in path.iterdir()} if path.is_dir() else set()
    for node in ast.parse(source.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
    return names


def test_every_import_names_what_is_there() -> None:
    """A module moved without its importers updated fails here, before any test imports it."""
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] == "r1ov":
                if not _is_module(node.module):
                    missing.append(f"{path.relative_to(ROOT)}:{node.lineno}: no module {node.module}")
                    continue
                defined = top_level_names(node.module)
                missing += [
                    f"{path.relative_to(ROOT)}:{node.lineno}: {node.module} has no {a.name}"
                    for a in node.names
                    if a.name != "*" and a.name not in defined
                ]
    assert not missing, "\n".join(missing)


def test_no_import_circle() -> None:
    graph: dict[str, set[str]] = {}
    for importer, imported, _ in edges():
        graph.setdefault(importer, set()).add(imported)
    circles = [sorted(c) for c in _strongly_connected(graph) if len(c) > 1]
    assert not circles, f"import circles: {circles}"


def _strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm, iterative (the graph is a few hundred modules)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []
    counter = 0
    for root in list(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                components.append(component)
    return components


@pytest.mark.parametrize(
    ("graph", "circle"),
    [
        ({"a": {"b"}, "b": {"a"}}, {"a", "b"}),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, {"a", "b", "c"}),
        ({"a": {"b"}, "b": set()}, None),
    ],
)
def test_the_circle_finder_finds_circles(graph: dict[str, set[str]], circle: set[str] | None) -> None:
    found = [c for c in _strongly_connected(graph) if len(c) > 1]
    assert found == ([circle] if circle else [])


def test_the_architecture_page_names_only_parts_that_exist() -> None:
    page = (ROOT / "docs" / "architecture.md").read_text()
    named = set(re.findall(r"`((?:src/)?r1ov/[\w/]+(?:\.py)?)`", page))
    assert len(named) >= 15, "the page names the packages it describes"
    missing = [n for n in sorted(named) if not (SRC / n.removeprefix("src/")).exists()]
    assert not missing, f"docs/architecture.md names what does not exist: {missing}"
    for name in LAYERS:
        if name != "r1ov":
            assert f"r1ov/{name}" in page, f"docs/architecture.md does not place r1ov/{name}"
