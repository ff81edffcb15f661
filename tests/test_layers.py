"""The folders are the layers: a module may import its own layer or the ones below, never above,
and no chain of imports may lead back to where it started.

    components/core  <  components/engines  <  components/judges  <  components/store
                     <  experiments  <  components/app

Every import counts, including those inside functions (they run too, only later) and the lazy
registries' "package.module:attr" strings, so a late import cannot hide a layer break or a circle.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("components.core", "components.engines", "components.judges", "components.store", "experiments",
          "components.app")
REGISTRY_STRING = re.compile(r"^((?:components|experiments)(?:\.\w+)+)(?::\w+)?$")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int | None:
    for i, name in enumerate(LAYERS):
        if module == name or module.startswith(name + "."):
            return i
    return None


def lab_modules() -> dict[str, Path]:
    files = [*ROOT.glob("components/**/*.py"), *ROOT.glob("experiments/**/*.py")]
    return {module_name(p): p for p in files if "__pycache__" not in p.parts}


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """The lab modules ``module`` imports (the most specific known name of each import)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def add(name: str) -> None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name and name != module:
            found.add(name)

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:  # "from pkg import module" imports pkg.module
                full = f"{target}.{alias.name}"
                add(full if full in known else target)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            match = REGISTRY_STRING.match(node.value)
            if match and match.group(1) in known:
                add(match.group(1))
    return found


def import_graph() -> dict[str, set[str]]:
    modules = lab_modules()
    known = set(modules)
    return {name: imports_of(name, path, known) for name, path in modules.items()}


def test_every_lab_module_sits_in_a_layer():
    outside = sorted(m for m in lab_modules() if layer_of(m) is None and m not in ("components",))
    assert not outside, f"modules outside every layer folder: {outside}"


def test_no_import_runs_up_a_layer():
    upward = [f"{m} ({LAYERS[layer_of(m)]}) imports {t} ({LAYERS[layer_of(t)]})"
              for m, targets in import_graph().items() if layer_of(m) is not None
              for t in sorted(targets) if layer_of(t) is not None and layer_of(t) > layer_of(m)]
    assert not upward, "imports running up a layer:\n" + "\n".join(upward)


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the groups of modules that reach each other (circles), largest first."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted((g for g in groups if len(g) > 1), key=len, reverse=True)


def test_no_import_circle():
    circles = strongly_connected(import_graph())
    assert not circles, "import circles:\n" + "\n".join(" <-> ".join(c) for c in circles)


@pytest.mark.parametrize("graph, circles", [
    ({"a": {"b"}, "b": {"a"}, "c": {"a"}}, [["a", "b"]]),
    ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, [["a", "b", "c"]]),
])
def test_circle_finder_finds_circles(graph, circles):
    assert strongly_connected(graph) == circles


def test_the_checker_sees_a_late_upward_import(tmp_path):
    """The rule is only as good as the parser: an import inside a function still counts."""
    source = tmp_path / "x.py"
    source.write_text("def f():\n    from components.app.server import main\n    return 'experiments.specs:X'\n")
    found = imports_of("components.core.x", source, {"components.app.server", "experiments.specs"})
    assert found == {"components.app.server", "experiments.specs"}
