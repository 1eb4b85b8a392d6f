"""The package surface: public names, type information, and a framework-free import."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import resources

import trainbus

FRAMEWORKS = ("torch", "jax", "jaxlib", "keras", "tensorflow")


def test_import_pulls_in_no_framework() -> None:
    code = (
        "import sys, json\n"
        f"frameworks = {FRAMEWORKS!r}\n"
        "def loaded():\n"
        "    return sorted(m for m in sys.modules if m.split('.')[0] in frameworks)\n"
        "import trainbus\n"
        "core = loaded()\n"
        "import trainbus.numpy_model\n"
        "print(json.dumps({'trainbus': core, 'numpy_model': loaded()}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert json.loads(result.stdout) == {"trainbus": [], "numpy_model": []}


def test_all_names_resolve_and_are_unique() -> None:
    assert len(trainbus.__all__) == len(set(trainbus.__all__))
    for name in trainbus.__all__:
        assert getattr(trainbus, name) is not None, name


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from trainbus import *", namespace)
    namespace.pop("__builtins__")
    assert set(namespace) == set(trainbus.__all__)


def test_public_classes_are_exported() -> None:
    for name in (
        "Bus",
        "Emitter",
        "Event",
        "Logs",
        "ModelHandle",
        "NullModel",
        "Subscription",
        "from_json",
        "to_json",
        "register_converter",
        "__version__",
    ):
        assert name in trainbus.__all__


def test_version_is_a_string() -> None:
    assert isinstance(trainbus.__version__, str)
    assert trainbus.__version__.count(".") >= 1


def test_py_typed_marker_ships_with_the_package() -> None:
    assert resources.files("trainbus").joinpath("py.typed").is_file()
