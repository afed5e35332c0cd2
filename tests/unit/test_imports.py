"""How syncsim's modules import each other: no cycles, and ``import syncsim`` loads no optional part."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import syncsim

PACKAGE = Path(syncsim.__file__).parent

#: What ``import syncsim`` must not load: the test double, the web stack, the database drivers and the
#: simulator's data and chart libraries load when something that needs them is used.
NOT_ON_IMPORT = ("syncsim.strava.fake", "syncsim.sim", "starlette", "psycopg", "pandas", "matplotlib", "supabase")


def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import a module runs, at its top or inside a function; not those only a type checker reads."""
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for statement in node.body
        for inner in ast.walk(statement)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom) and id(node) not in typing_only:
            yield node


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports. Importing a module imports its parent packages first: that
    is not an edge of the module's own (a package's ``__init__`` that imports its submodules is no cycle)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
                continue
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from pkg import mod`` imports the module pkg.mod; ``from mod import name`` imports mod.
            targets.update(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names)
        graph[name] = {t for t in targets if t in modules and t != name and not name.startswith(t + ".")}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The graph's strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = [stack.pop()]
            while component[-1] != node:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle_made_by_an_import_inside_a_function() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    tree = ast.parse("import x\ndef f():\n    from y import z\nif TYPE_CHECKING:\n    import w\n")
    assert [ast.unparse(n) for n in _imports(tree)] == ["import x", "from y import z"]


def test_no_module_of_syncsim_imports_itself_through_others() -> None:
    """A cycle, even through an import inside a function, means two concepts that cannot be read apart."""
    graph = import_graph()
    assert len(graph) > 50 and graph["syncsim.api.app"], "the graph should see the whole package"
    assert cycles(graph) == []


#: What the real server, store, runner and Strava client are made of must not depend on these: the simulator,
#: its charts, the command line and the test doubles are built on production code, never under it.
ABOVE_PRODUCTION = ("syncsim.sim", "syncsim.plots", "syncsim.cli", "syncsim.strava.fake", "syncsim.testing")


def _within(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def test_production_code_imports_no_simulator_chart_command_line_or_test_double() -> None:
    graph = import_graph()
    wrong = sorted(
        f"{module} -> {target}"
        for module, targets in graph.items()
        if not _within(module, ABOVE_PRODUCTION)
        for target in targets
        if _within(target, ABOVE_PRODUCTION)
    )
    assert graph["syncsim.sim.engine"] & {"syncsim.api.app"}, "the simulator runs the real app: the graph sees it"
    assert wrong == []


def test_importing_syncsim_loads_no_optional_part() -> None:
    """The worker and the API start fast: FakeStrava, the web stack, the drivers and pandas load when used."""
    code = (
        "import sys, syncsim; syncsim.open_store; syncsim.Job\n"
        f"print(sorted(m for m in sys.modules if any(m == p or m.startswith(p + '.') for p in {NOT_ON_IMPORT!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# A base install (`pip install syncsim`) running a command of an extra: the library is missing, as a None in
# sys.modules makes it (the import raises ModuleNotFoundError naming it).
MISSING_EXTRA = """\
import sys
sys.modules[sys.argv[1]] = None
from syncsim.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize(
    ("library", "argv", "extra"),
    [
        ("starlette", ["serve", "--port", "0"], "api"),
        ("uvicorn", ["fake-strava", "--port", "0"], "api"),
        ("jwt", ["token", "00000000-0000-4000-8000-000000000001"], "api"),
        ("pandas", ["simulate", "--athletes", "2"], "sim"),
        ("matplotlib", ["report", "--athletes", "2", "--out", "report"], "notebooks"),
    ],
)
def test_a_command_whose_extra_is_missing_names_the_extra_in_one_line(
    tmp_path: Path, library: str, argv: list[str], extra: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", MISSING_EXTRA, library, *argv],
        cwd=tmp_path,
        env={**os.environ, "SYNCSIM_JWT_SECRET": "x" * 40},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        f"syncsim {argv[0]}: error: this needs {library}, which comes with an extra: pip install 'syncsim[{extra}]'\n"
    )
