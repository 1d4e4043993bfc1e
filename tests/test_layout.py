"""The package's shape: no import circles among datakit modules, a root that holds only the sub-packages and a
handful of shared modules, and a CLI that imports no heavy library until a command runs."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "datakit"
# shared by several sub-packages (progress: training, evals and the demo all report long work the same way)
ROOT_MODULES = {"__init__", "__main__", "errors", "secrets", "schemas", "text", "specfile", "tiny", "jsonschema",
                "progress"}
SUBPACKAGES = {"cli", "registry", "io", "ops", "build", "generate", "train", "evals", "demo", "ui"}


def _modules() -> dict[str, Path]:
    """Dotted name -> file, for every module of the package (a package is its __init__)."""
    out = {}
    for f in PACKAGE.rglob("*.py"):
        parts = f.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def import_graph() -> dict[str, set[str]]:
    """Edges from each module to every datakit module its imports run: at module level or inside a function
    (a lazy import is still a dependency), plus the packages above the target, whose __init__ runs first. A
    module's own packages are left out: they are always initialized before it."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: resolve against this module's package
                    base = name.split(".") if is_pkg else name.split(".")[:-1]
                    base = base[: len(base) - node.level + 1]
                    src = ".".join(base + ([node.module] if node.module else []))
                else:
                    src = node.module or ""
                targets = [src] + [f"{src}.{a.name}" for a in node.names]
            for t in targets:
                if not t.startswith("datakit"):
                    continue
                hits = [t] if t in mods else []
                hits += [a for a in _ancestors(t) if a in mods]
                graph[name] |= {h for h in hits if h != name and h not in _ancestors(name)}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_sees_a_circle_through_a_lazy_import():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(g) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_counts_imports_inside_functions_and_the_packages_they_run():
    g = import_graph()
    # the demo command imports the demo lazily, inside the command function
    assert "datakit.demo" in g["datakit.cli.demo"]
    # importing datakit.registry.store runs datakit/registry/__init__.py first
    assert {"datakit.registry", "datakit.registry.store"} <= g["datakit.ops.runner"]


def test_no_import_circles_among_datakit_modules():
    found = cycles(import_graph())
    assert not found, "import circles: " + "; ".join(" <-> ".join(c) for c in found)


def test_the_library_never_imports_the_cli_or_the_demo():
    g = import_graph()
    for mod, deps in g.items():
        if mod.startswith(("datakit.cli", "datakit.demo")) or mod in ("datakit.__main__",):
            continue
        assert not {d for d in deps if d.startswith(("datakit.cli", "datakit.demo"))}, mod
    # and the demo drives the CLI only through the runner it is handed
    assert not {d for m, deps in g.items() if m.startswith("datakit.demo") for d in deps if d.startswith("datakit.cli")}


def test_the_package_root_holds_only_the_subpackages_and_a_few_shared_modules():
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert modules <= ROOT_MODULES, f"new root modules {modules - ROOT_MODULES}: give them a sub-package"
    assert packages == SUBPACKAGES


def test_help_imports_no_heavy_library():
    heavy = ("torch", "transformers", "mlx", "lm_eval", "openai", "trl", "peft", "datasets", "polars", "pyarrow",
             "numpy", "matplotlib")
    code = ("import sys\nfrom datakit import cli\nsys.argv=['datakit','--help']\ntry:\n cli.main()\nexcept SystemExit:\n"
            f" pass\nprint([m for m in {heavy!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "Usage" in out and out.strip().splitlines()[-1] == "[]"
