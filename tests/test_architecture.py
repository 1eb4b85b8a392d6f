"""The shape of the code base: no import cycle in ``trainbus``.

Python tolerates some cycles (an import inside a function, one under ``if
TYPE_CHECKING``), but each is two modules that cannot be understood, tested
or moved apart, and the next refactoring turns it into an ``ImportError``. So
here every import statement counts, wherever it stands. The contracts with the
outside world (no framework in the core, adapters independent of each other)
are import-linter's: see ``test_import_contracts.py``.
"""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

import trainbus

PACKAGE_DIR = Path(trainbus.__file__).resolve().parent

Graph = Mapping[str, frozenset[str]]


def package_modules(package_dir: Path) -> dict[str, Path]:
    """Module name → source file, for every ``.py`` file of the package in ``package_dir``."""
    root = package_dir.name
    modules: dict[str, Path] = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = [root, *path.relative_to(package_dir).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def ancestors(module: str) -> list[str]:
    """The packages ``module`` lies in, nearest first: ``a.b.c`` → ``a.b``, ``a``."""
    parts = module.split(".")
    return [".".join(parts[:end]) for end in range(len(parts) - 1, 0, -1)]


def imported_names(module: str, is_package: bool, tree: ast.AST) -> Iterator[tuple[str, str]]:
    """``(name, fallback)`` for everything an import statement anywhere in ``tree`` imports.

    ``import a.b`` gives ``("a.b", "a.b")``; ``from a.b import c`` gives
    ``("a.b.c", "a.b")``: the module ``a.b.c`` if it is one, else ``a.b``.
    Relative imports are resolved against ``module``.
    """
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):  # every statement: top level, in functions, under TYPE_CHECKING
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, node.module] if node.module else parts)
            else:
                base = node.module or ""
            for alias in node.names:
                yield f"{base}.{alias.name}", base


def import_graph(package_dir: Path) -> dict[str, frozenset[str]]:
    """Module → the modules of the same package that importing it runs, read from the source.

    Every import statement counts. ``from a.b import c`` imports the module
    ``a.b.c`` if there is one, else ``a.b``. Importing ``a.b.c`` also runs the
    ``__init__`` of each package above it, so those count too, except the root
    package and the importer's own packages (already being imported when it
    runs). Imports of other packages are left out.
    """
    modules = package_modules(package_dir)
    root = package_dir.name
    graph: dict[str, frozenset[str]] = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        own_packages = set(ancestors(module))
        targets: set[str] = set()
        for name, fallback in imported_names(module, path.name == "__init__.py", tree):
            target = name if name in modules else fallback
            if target.split(".")[0] != root:
                continue
            while target not in modules and "." in target:  # ``import pkg.missing``
                target = target.rpartition(".")[0]
            targets.add(target)
            targets.update(p for p in ancestors(target) if p != root and p not in own_packages)
        targets.discard(module)
        graph[module] = frozenset(targets)
    return graph


def find_cycle(graph: Graph) -> list[str]:
    """One import cycle as a chain of modules (its first one repeated at the end), or ``[]``."""
    finished: set[str] = set()
    for start in sorted(graph):
        if start in finished:
            continue
        chain = [start]
        pending = [iter(sorted(graph[start]))]
        while pending:
            following = next(pending[-1], None)
            if following is None:
                finished.add(chain.pop())
                pending.pop()
            elif following in chain:
                return [*chain[chain.index(following) :], following]
            elif following not in finished:
                chain.append(following)
                pending.append(iter(sorted(graph.get(following, ()))))
    return []


def test_trainbus_has_no_import_cycle() -> None:
    graph = import_graph(PACKAGE_DIR)
    assert "trainbus.bus" in graph  # the walk found the package
    cycle = find_cycle(graph)
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def test_the_core_modules_stay_apart_from_the_callbacks_package() -> None:
    graph = import_graph(PACKAGE_DIR)
    for core in ("trainbus.bus", "trainbus.subscription", "trainbus.attachment", "trainbus.hooks"):
        assert not {m for m in graph[core] if m.startswith("trainbus.callbacks")}, core
    assert "trainbus.bus" not in graph["trainbus.subscription"]
    assert "trainbus.bus" not in graph["trainbus.attachment"]
    assert "trainbus.bus" not in graph["trainbus.hooks"]


# -- the checker itself ----------------------------------------------------------------------


def write_package(root: Path, files: dict[str, str]) -> Path:
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source), encoding="utf-8")
    return root / next(iter(files)).split("/")[0]


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    """A small package: ``a`` imports ``b`` at the top; ``b`` imports ``a`` in a function;
    ``c`` imports ``sub.d`` under TYPE_CHECKING; nothing imports ``c``."""
    return write_package(
        tmp_path,
        {
            "demo/__init__.py": "from demo.a import A\n",
            "demo/a.py": "from demo import b\n\nA = 1\n",
            "demo/b.py": """\
                import os

                def late():
                    from . import a
                    return a.A
                """,
            "demo/c.py": """\
                from typing import TYPE_CHECKING

                if TYPE_CHECKING:
                    from demo.sub.d import D
                """,
            "demo/sub/__init__.py": "",
            "demo/sub/d.py": "from .. import c\nfrom ..sub import e\nD = 1\n",
            "demo/sub/e.py": "import json\nimport demo.a\n",
        },
    )


def test_the_checker_finds_a_cycle_through_an_import_inside_a_function(demo: Path) -> None:
    graph = import_graph(demo)

    assert graph["demo.a"] == {"demo.b"}  # ``from demo import b``: b is a module
    assert graph["demo.b"] == {"demo.a"}  # the in-function relative import; ``os`` left out
    assert find_cycle(graph) in (["demo.a", "demo.b", "demo.a"], ["demo.b", "demo.a", "demo.b"])


def test_the_checker_sees_type_checking_imports_and_the_packages_they_run(demo: Path) -> None:
    graph = import_graph(demo)

    assert graph["demo.c"] == {"demo.sub.d", "demo.sub"}  # sub's __init__ runs first
    # relative imports resolve; a module's own package does not count as imported
    assert graph["demo.sub.d"] == {"demo.c", "demo.sub.e"}
    assert graph["demo.sub.e"] == {"demo.a"}
    assert graph["demo"] == {"demo.a"}  # ``from demo.a import A``: A is no module


def test_the_checker_finds_a_cycle_under_type_checking(tmp_path: Path) -> None:
    package = write_package(
        tmp_path,
        {
            "loop/__init__.py": "",
            "loop/one.py": "from loop.two import Two\n",
            "loop/two.py": """\
                from typing import TYPE_CHECKING

                if TYPE_CHECKING:
                    from loop.one import One
                """,
            "loop/three.py": "import loop.one\n",
        },
    )

    assert find_cycle(import_graph(package)) == ["loop.one", "loop.two", "loop.one"]


def test_the_checker_passes_a_package_without_cycles(tmp_path: Path) -> None:
    package = write_package(
        tmp_path,
        {
            "tree/__init__.py": "from tree.top import run\n",
            "tree/top.py": "from tree.low import helper\n\ndef run():\n    import tree.low\n",
            "tree/low.py": "import json\n",
        },
    )

    assert import_graph(package) == {
        "tree": {"tree.top"},
        "tree.top": {"tree.low"},
        "tree.low": frozenset(),
    }
    assert find_cycle(import_graph(package)) == []
