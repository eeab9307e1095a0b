"""The shape of the source tree: module imports without cycles, dependencies that are used.

These read the source (ast), not the running program: an import inside a function is a
dependency too, only a later one, and a cycle through it still means two modules that
cannot be understood, tested or changed apart.
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"tracekeeper": ROOT / "client" / "tracekeeper", "tracekeeperd": ROOT / "tracekeeperd"}


def _modules() -> dict[str, Path]:
    """Dotted module name -> source file, for every module of our two packages."""
    found: dict[str, Path] = {}
    for package, base in PACKAGES.items():
        for path in sorted(base.rglob("*.py")):
            parts = [package, *path.relative_to(base).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _is_package(name: str, modules: dict[str, Path]) -> bool:
    return modules[name].name == "__init__.py"


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node that can run: the body of `if TYPE_CHECKING:` is for the type checker only."""
    out: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        out.append(node)
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))
    return out


def _dynamic_import(node: ast.AST) -> str | None:
    """`importlib.import_module("re2")`, the one way a module is imported by name here."""
    if (
        isinstance(node, ast.Call)
        and ast.unparse(node.func) in ("importlib.import_module", "import_module")
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    ):
        return node.args[0].value
    return None


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of ours it imports anywhere in its body (function-level too)."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if _is_package(name, modules) else name.rpartition(".")[0]
        for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if (dynamic := _dynamic_import(node)) is not None:
                targets = [dynamic]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    origin = ".".join([*base, node.module] if node.module else base)
                else:
                    origin = node.module or ""
                targets = [origin]
                # `from . import install` imports the module `tracekeeper.install`.
                targets += [f"{origin}.{alias.name}" for alias in node.names]
            for raw in targets:
                # `import a.b.c` runs a/__init__, a/b/__init__ and a/b/c: the nearest known module stands for it.
                target = raw
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
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
    return sorted(found)


def _package_modules(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The graph without edges into a package's own `__init__` from inside that package.

    `from . import x` in a submodule names the package, which Python has already initialised
    by then; it is not a dependency of the submodule on the package's contents.
    """
    modules = _modules()
    out: dict[str, set[str]] = {}
    for name, targets in graph.items():
        out[name] = {t for t in targets if not (_is_package(t, modules) and name.startswith(t + "."))}
    return out


def test_the_cycle_finder_reports_a_cycle_through_a_function_level_import() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_type_checking_imports_are_not_runtime_dependencies() -> None:
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import a\nelse:\n    import b\n")
    seen = {alias.name for node in _runtime_nodes(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert seen == {"b"}


def test_the_import_graph_sees_relative_and_function_level_imports() -> None:
    graph = import_graph()
    # install.py imports sync inside a function, with `from . import rewrite, sync`.
    assert "tracekeeper.sync" in graph["tracekeeper.install"]
    assert "tracekeeperd.git" in graph["tracekeeper.sync"]


def test_no_import_cycle_among_our_modules() -> None:
    assert cycles(_package_modules(import_graph())) == []


def test_every_declared_dependency_is_imported() -> None:
    """A dependency nothing imports only costs install time (and a supply-chain risk)."""

    def canonical(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    import importlib.metadata

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {canonical(re.split(r"[^A-Za-z0-9._-]", req, maxsplit=1)[0]) for req in project["dependencies"]}
    providers = importlib.metadata.packages_distributions()
    imported: set[str] = set()
    for path in _modules().values():
        for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
            names = []
            if (dynamic := _dynamic_import(node)) is not None:
                names = [dynamic]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                imported.update(canonical(dist) for dist in providers.get(name.split(".")[0], []))
    assert sorted(declared - imported) == []


# --- one git runner ---------------------------------------------------------------------------

#: Modules that may start processes themselves. git.py is the git runner; service.py runs
#: systemctl/launchctl, never git; hookcmd.py spawns git with posix_spawn because importing
#: `subprocess` would cost its start-up budget (its docstring and _run_git say so).
SPAWNERS = {"tracekeeperd.git", "tracekeeper.service", "tracekeeper.hookcmd"}
GIT_SPAWNERS = {"tracekeeperd.git", "tracekeeper.hookcmd"}
SPAWN_MODULES = ("subprocess", "asyncio.subprocess")
SPAWN_CALLS = re.compile(
    r"^(subprocess\.\w+|asyncio\.create_subprocess_\w+|os\.(posix_spawnp?|spawn\w*|exec\w*|system|popen))$"
)


def _spawns(source: str, filename: str) -> list[tuple[int, str]]:
    """(line, call) of every process start in `source`, and of every import of `subprocess`."""
    found: list[tuple[int, str]] = []
    for node in _runtime_nodes(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, f"import {a.name}") for a in node.names if a.name in SPAWN_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.module in SPAWN_MODULES:
            found.append((node.lineno, f"from {node.module} import ..."))
        elif isinstance(node, ast.Call) and SPAWN_CALLS.match(ast.unparse(node.func)):
            found.append((node.lineno, ast.get_source_segment(source, node) or ast.unparse(node)))
    return sorted(found)


def test_the_spawn_finder_sees_runtime_calls_and_imports_but_not_type_only_ones() -> None:
    source = (
        "import subprocess\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from subprocess import run\n"
        "def f():\n    subprocess.run(['git', 'log'])\n    os.posix_spawnp('git', ['git'], {})\n"
    )
    assert [line for line, _ in _spawns(source, "x.py")] == [1, 6, 7]


def test_git_runs_only_through_tracekeeperd_git() -> None:
    """Every other module calls `tracekeeperd.git.run` (argv list, clean environment,
    timeout, GitError); only the modules of SPAWNERS start processes at all."""
    modules = _modules()
    strays = sorted(
        f"{modules[name].relative_to(ROOT)}:{line}: {call}"
        for name in modules
        if name not in SPAWNERS
        for line, call in _spawns(modules[name].read_text(), str(modules[name]))
    )
    assert strays == []
    git_calls = sorted(
        f"{modules[name].relative_to(ROOT)}:{line}: {call}"
        for name in SPAWNERS - GIT_SPAWNERS
        for line, call in _spawns(modules[name].read_text(), str(modules[name]))
        if "git" in call.lower()
    )
    assert git_calls == []


# --- the client is a library; the CLI is a thin shell over it -----------------------------------

#: The modules that may end the process: the console script, the one runner, the hook (stdlib only,
#: its own exit codes) and `python -m tracekeeper`. Everything else raises (errors_table says it).
EXITERS = {"tracekeeper.entry", "tracekeeper.cli.runner", "tracekeeper.hookcmd", "tracekeeper.__main__"}
EXIT_CALLS = re.compile(
    r"^(sys\.exit|exit|quit|os\._exit|SystemExit|click\.exceptions\.Exit|(click\.get_current_context\(\)|ctx)\.exit)$"
)


def _script_block(node: ast.AST) -> bool:
    """`if __name__ == "__main__":`: a module run as a script may end it like any script."""
    return isinstance(node, ast.If) and ast.unparse(node.test) in ("__name__ == '__main__'", '__name__ == "__main__"')


def _exits(source: str, filename: str) -> list[tuple[int, str]]:
    """(line, what) of every sys.exit()/SystemExit outside a script block, and of `import click`."""
    found: list[tuple[int, str]] = []
    todo: list[ast.AST] = [ast.parse(source, filename)]
    while todo:
        node = todo.pop()
        if _script_block(node):
            continue
        if isinstance(node, ast.Call) and EXIT_CALLS.match(ast.unparse(node.func)):
            found.append((node.lineno, ast.unparse(node.func)))
        todo.extend(ast.iter_child_nodes(node))
    return sorted(found)


def _imports_click(source: str, filename: str) -> bool:
    for node in _runtime_nodes(ast.parse(source, filename)):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "click" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "click":
            return True
    return False


def test_the_exit_finder_sees_exits_but_not_in_a_script_block() -> None:
    source = (
        "import sys\ndef f():\n    raise SystemExit(1)\ndef g():\n    sys.exit(2)\n"
        "if __name__ == '__main__':\n    sys.exit(f())\n"
    )
    assert _exits(source, "x.py") == [(3, "SystemExit"), (5, "sys.exit")]
    assert _imports_click("def f():\n    import click\n", "x.py")
    assert not _imports_click("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import click\n", "x.py")


def test_no_client_library_module_imports_click_or_exits() -> None:
    """click lives in cli/ only; library code returns or raises (a ClientError for errors_table)."""
    modules = _modules()
    library = [n for n in modules if n.startswith("tracekeeper.") and not n.startswith("tracekeeper.cli")]
    library += ["tracekeeper"]
    clicky = sorted(n for n in library if _imports_click(modules[n].read_text(), n))
    assert clicky == []
    exits = sorted(
        f"{modules[name].relative_to(ROOT)}:{line}: {call}"
        for name in modules
        if name.startswith("tracekeeper") and name not in EXITERS and not name.startswith("tracekeeperd")
        for line, call in _exits(modules[name].read_text(), str(modules[name]))
    )
    assert exits == []


def test_every_public_client_exception_is_a_ClientError() -> None:
    """So errors_table's one ClientError row says each (message, hint, exit code) and no command
    needs an `except` of its own."""
    import importlib

    from tracekeeper.errors import ClientError

    strays = []
    for name in _modules():
        if not name.startswith("tracekeeper.") or name.startswith("tracekeeper.cli") or name.endswith("__main__"):
            continue
        module = importlib.import_module(name)
        for attr, value in vars(module).items():
            if (
                isinstance(value, type)
                and issubclass(value, Exception)
                and not issubclass(value, Warning)
                and value.__module__ == name
                and not attr.startswith("_")
                and not issubclass(value, ClientError)
            ):
                strays.append(f"{name}.{attr}")
    assert strays == []
