"""The quick lane (``pytest -m "not slow"``) as a pytest plugin, loaded by tests/conftest.py.

The quick lane must touch every module under components/ and experiments/ (issue 19): a module no
quick test imports can break unseen until the full suite runs. What a run touched is what it
imported, so the check runs inside the run itself, as its last test
(tests/test_quick_lane.py), and reads ``sys.modules``. Two hooks keep that honest:

- files whose every test is slow (a module-level ``pytestmark`` naming ``slow``) are not even
  imported by the quick lane: their imports would count as touched though none of their tests
  runs, and importing them costs time for nothing (every test in them is deselected anyway);
- the check is moved to the end of the run, after every other quick test has imported what it
  needs.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("components", "experiments")
QUICK_MARKEXPR = "not slow"
CHECK_FILE = "test_quick_lane.py"


def lab_modules() -> set[str]:
    """Dotted names of every module and package under components/ and experiments/."""
    names: set[str] = set()
    for layer in LAYERS:
        for path in (ROOT / layer).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            names.add(".".join(parts))
    return names


def only_slow(path: Path) -> bool:
    """True when the test file marks all its tests slow with a module-level ``pytestmark``."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return False  # let pytest collect it and report the error itself
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        if any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in targets) and node.value is not None:
            if any(isinstance(n, ast.Attribute) and n.attr == "slow" for n in ast.walk(node.value)):
                return True
    return False


def deselects_slow(config) -> bool:
    """The run's marker expression is the quick lane's, ``not slow``."""
    return " ".join((config.option.markexpr or "").split()) == QUICK_MARKEXPR


def is_whole_quick_lane(config) -> bool:
    """This run is the quick lane over the whole tests/ folder, with nothing else filtered out:
    only then does ``sys.modules`` at its end say what the quick lane touches."""
    if not deselects_slow(config) or config.option.keyword or getattr(config.option, "lf", False):
        return False
    if getattr(config.option, "deselect", None):
        return False
    roots = {ROOT.resolve(), (ROOT / "tests").resolve()}
    args = [a.split("::")[0] for a in config.args] or ["tests"]
    return all((Path(config.invocation_params.dir) / a).resolve() in roots for a in args)


def pytest_ignore_collect(collection_path, config):
    if (deselects_slow(config) and collection_path.suffix == ".py" and collection_path.name.startswith("test_")
            and only_slow(collection_path)):
        return True
    return None


def pytest_collection_modifyitems(config, items):
    last = [item for item in items if item.path.name == CHECK_FILE]
    if last:
        items[:] = [item for item in items if item.path.name != CHECK_FILE] + last
