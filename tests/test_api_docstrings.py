"""Every public name of trainbus, trainbus_torch and trainbus_jax: a docstring, an API entry.

A module's public names are its ``__all__``, or, without one, the classes and
functions it defines whose names do not start with ``_``; a public module is one
whose dotted path has no part starting with ``_``. The API reference is
docs/api/: a name is in it when a ``::: path`` directive there renders it, either
itself (``::: trainbus.Bus``, or the same object under another path) or as a
member of a module directive (``::: trainbus.event_log``, or only the names its
``members:`` option lists). mkdocs builds those pages (`make docs`); a name
without a directive would be left out silently, which this test refuses.
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import inspect
import pkgutil
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
API_PAGES = ROOT / "docs" / "api"
PACKAGES = ("trainbus", "trainbus_torch", "trainbus_jax")
# `::: dotted.path`, then its indented YAML options, if any.
DIRECTIVE = re.compile(r"^::: *([\w.]+)[ \t]*\n((?:[ \t]+\S.*\n?)*)", re.MULTILINE)


# The command line's own modules: their reference is each command's ``--help`` (tests/cli
# checks it) and docs/looking-at-runs.md; the Python entry is ``trainbus.cli.main``.
COMMAND_LINE = "trainbus.cli."


def public_modules(packages: tuple[str, ...] = PACKAGES) -> Iterator[ModuleType]:
    """The packages and each of their submodules without a ``_``-prefixed part."""
    for name in packages:
        package = importlib.import_module(name)
        yield package
        for info in pkgutil.walk_packages(package.__path__, f"{name}."):
            hidden = any(part.startswith("_") for part in info.name.split("."))
            if not hidden and not info.name.startswith(COMMAND_LINE):
                yield importlib.import_module(info.name)


def public_names(module: ModuleType) -> list[str]:
    """``module.__all__``, or the public classes and functions ``module`` defines."""
    exported = getattr(module, "__all__", None)
    if exported is not None:
        return list(exported)
    return [
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and getattr(value, "__module__", None) == module.__name__
    ]


def resolve(path: str) -> object:
    """The object a directive's dotted ``path`` names (a module, or a name in one)."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            target = getattr(target, attribute)
        return target
    raise ModuleNotFoundError(f"no module in the directive's path {path!r}")


def referenced(pages: Path = API_PAGES) -> set[int]:
    """The ids of the objects the ``:::`` directives of ``pages`` render."""
    ids: set[int] = set()
    for page in sorted(pages.glob("*.md")):
        for path, options in DIRECTIVE.findall(page.read_text()):
            try:
                target = resolve(path)
            except (ModuleNotFoundError, AttributeError) as error:
                raise AssertionError(f"{page.name}: `::: {path}` names nothing: {error}") from None
            ids.add(id(target))
            if isinstance(target, ModuleType):
                members = (yaml.safe_load(options) or {}).get("options", {}).get("members")
                names = public_names(target) if members is None else members or []
                ids.update(id(getattr(target, name)) for name in names)
    return ids


def undocumented(module: ModuleType) -> list[str]:
    """The public classes and functions of ``module`` without a docstring of their own."""
    missing = []
    for name in public_names(module):
        value = getattr(module, name)
        is_code = inspect.isclass(value) or inspect.isfunction(value)
        if is_code and not (value.__doc__ or "").strip():  # a class's own, never its base's
            missing.append(name)
    return missing


def unreferenced(module: ModuleType, ids: set[int]) -> list[str]:
    """The public names of ``module`` no API page renders."""
    return [name for name in public_names(module) if id(getattr(module, name)) not in ids]


MODULES = list(public_modules())


def test_the_packages_have_public_modules_to_check() -> None:
    names = {module.__name__ for module in MODULES}
    assert {"trainbus", "trainbus.callbacks", "trainbus_torch", "trainbus_jax"} <= names
    assert "trainbus.event_log" in names
    assert not any("._" in name for name in names)


@pytest.mark.parametrize("module", MODULES, ids=lambda module: module.__name__)
def test_every_public_class_and_function_has_a_docstring(module: ModuleType) -> None:
    missing = undocumented(module)
    assert not missing, f"{module.__name__}: public names without a docstring: {missing}"


@pytest.fixture(scope="module")
def reference() -> set[int]:
    return referenced()


@pytest.mark.parametrize("module", MODULES, ids=lambda module: module.__name__)
def test_every_public_name_is_in_the_api_reference(module: ModuleType, reference: set[int]) -> None:
    missing = unreferenced(module, reference)
    assert not missing, (
        f"{module.__name__}: public names no page of docs/api/ renders: {missing}; add a "
        f"`::: {module.__name__}.<name>` directive to the page they belong to"
    )


def test_a_new_undocumented_unreferenced_name_is_caught(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checks above on a package of their own: one documented name, one bare one."""
    package = tmp_path / "newpkg"
    package.mkdir()
    (package / "__init__.py").write_text('"""A package."""\n')
    (package / "tools.py").write_text(
        'def helper():\n    """Help."""\n\n\ndef bare():\n    pass\n\n\ndef _private():\n    pass\n'
    )
    pages = tmp_path / "api"
    pages.mkdir()
    (pages / "tools.md").write_text(
        "# Tools\n\n::: newpkg.tools\n    options:\n      members:\n        - helper\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        tools = next(m for m in public_modules(("newpkg",)) if m.__name__ == "newpkg.tools")
        assert undocumented(tools) == ["bare"]
        assert unreferenced(tools, referenced(pages)) == ["bare"]
        (pages / "tools.md").write_text("::: newpkg.tools\n")  # the whole module
        assert unreferenced(tools, referenced(pages)) == []
        (pages / "tools.md").write_text("::: newpkg.tools.nothing\n")
        with pytest.raises(AssertionError, match=r"`::: newpkg.tools.nothing` names nothing"):
            referenced(pages)
    finally:
        for name in [name for name in sys.modules if name.split(".")[0] == "newpkg"]:
            del sys.modules[name]


def test_the_reference_s_docstring_rewrite_runs_its_examples() -> None:
    """docs/griffe_docstrings.py (the griffe extension mkdocs.yml loads) passes its doctests."""
    path = ROOT / "docs" / "griffe_docstrings.py"
    spec = importlib.util.spec_from_file_location("griffe_docstrings", path)
    assert spec is not None
    assert spec.loader is not None
    extension = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(extension)
    result = doctest.testmod(extension, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 2
    assert result.failed == 0
