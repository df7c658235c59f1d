"""The import graph of ``src/poolattn`` has no cycle, and importing the model stays light.

The graph is read from the source with ``ast``: every ``import`` statement counts, whether at
module level, inside a function or under ``TYPE_CHECKING`` (a deferred import that hides a
cycle is still a cycle). Relative imports are resolved, and ``from pkg import name`` points at
the submodule ``pkg.name`` when one exists, else at ``pkg`` itself. The implicit import of a
module's parent packages is not an edge (every submodule would otherwise form a cycle with the
``__init__`` that re-exports it); that is why code inside ``src`` imports from the defining
module, never through a package ``__init__``.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "poolattn"
ROOT = "poolattn"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def from_base(node: ast.ImportFrom, package: str) -> str:
    """The absolute module a ``from ... import`` statement reads from."""
    if not node.level:
        return node.module or ""
    parts = package.split(".")
    base = parts[: len(parts) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_targets(node: ast.AST, package: str, modules: set[str]) -> set[str]:
    """The poolattn modules one import statement loads (relative imports resolved)."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name.split(".")[0] == ROOT}
    if not isinstance(node, ast.ImportFrom):
        return set()
    base = from_base(node, package)
    if base.split(".")[0] != ROOT:
        return set()
    return {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names}


def import_graph() -> dict[str, set[str]]:
    """Module -> the poolattn modules it imports anywhere in its source."""
    paths = {module_name(p): p for p in sorted(SRC.rglob("*.py"))}
    modules = set(paths)
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        tree = ast.parse(path.read_text(), filename=str(path))
        deps: set[str] = set()
        for node in ast.walk(tree):
            deps |= import_targets(node, package, modules)
        unknown = deps - modules
        assert not unknown, f"{path}: imports {sorted(unknown)}, which are not modules of {SRC}"
        graph[name] = deps - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path ``[a, b, ..., a]``, or None (depth-first search)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return path[path.index(dep) :] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_walker_sees_deferred_relative_and_submodule_imports() -> None:
    graph = import_graph()
    assert "poolattn.training.config" in graph["poolattn.training.data"]  # from .config import ...
    assert "poolattn.model" in graph["poolattn.backends.resolve"]  # inside a function
    assert graph["poolattn.config"] == set()  # config is a leaf


def test_find_cycle_reports_the_path() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_import_graph_has_no_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def defined_names(init: Path) -> set[str]:
    """Names a package ``__init__`` defines itself (functions, classes, assignments)."""
    names: set[str] = set()
    for node in ast.parse(init.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names


def shadowed_modules(init: Path, package: str) -> set[str]:
    """Submodule names an ``__init__`` rebinds to something else (``from .compare import
    compare``): ``from package import compare`` then gets the re-export, not the module."""
    names: set[str] = set()
    for node in ast.parse(init.read_text()).body:
        if isinstance(node, ast.ImportFrom) and from_base(node, package) != package:
            names |= {a.asname or a.name for a in node.names}
    return names & {p.stem for p in init.parent.glob("*.py")}


def test_src_never_imports_a_name_through_a_package_init() -> None:
    """Inside src, a name comes from the module that defines it: an ``__init__`` that merely
    re-exports it (for users) is not a source, or the package's other imports come along."""
    paths = {module_name(p): p for p in sorted(SRC.rglob("*.py"))}
    inits = {name: path for name, path in paths.items() if path.name == "__init__.py"}
    offenders = []
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            base = from_base(node, package)
            if base not in inits:
                continue
            own, shadowed = defined_names(inits[base]), shadowed_modules(inits[base], base)
            offenders += [
                f"{path.relative_to(SRC.parent)}:{node.lineno}: {a.name} from {base}"
                for a in node.names
                if (a.name not in own and f"{base}.{a.name}" not in paths) or a.name in shadowed
            ]
    assert offenders == [], "import these from their defining module:\n" + "\n".join(offenders)


LIGHT_PROBE = """
import json, sys
import poolattn
from poolattn import EmbeddingModel
print(json.dumps(sorted(m for m in %r if m in sys.modules)))
"""


def test_importing_the_model_loads_no_evaluation_or_plotting_stack() -> None:
    """``from poolattn import EmbeddingModel`` is what an encoding user pays for (fresh process)."""
    heavy = ("matplotlib", "mteb", "sentence_transformers")
    done = subprocess.run(
        [sys.executable, "-c", LIGHT_PROBE % (heavy,)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
