"""The package surface: public names, type information, and a framework-free import."""

from __future__ import annotations

import email.parser
import json
import shutil
import subprocess
import sys
import zipfile
from email.message import Message
from importlib import resources
from pathlib import Path

import pytest

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


# -- the built distribution ------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel_metadata(tmp_path_factory: pytest.TempPathFactory) -> tuple[Message, list[str]]:
    """The METADATA of a wheel built from a copy of this checkout, and the wheel's file names."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, source / name)
    for folder in ("trainbus", "adapters"):
        shutil.copytree(
            ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__")
        )
    out = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    built = subprocess.run(
        [*pip, "--wheel-dir", str(out), str(source)],
        capture_output=True,
        text=True,
        check=False,
    )
    if built.returncode != 0 and "No module named pip" in built.stderr:
        pytest.skip("pip is not installed in this environment")
    assert built.returncode == 0, built.stderr
    (wheel,) = out.glob("trainbus-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (metadata_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = email.parser.BytesParser().parsebytes(archive.read(metadata_name))
        (license_name,) = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
        assert archive.read(license_name) == (ROOT / "LICENSE").read_bytes()
    return metadata, names


def test_the_licence_file_matches_the_declared_licence() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n")
    assert "Copyright (c) 2026 the trainbus authors" in text


def test_the_wheel_declares_the_licence_and_ships_its_file(
    wheel_metadata: tuple[Message, list[str]],
) -> None:
    metadata, _ = wheel_metadata
    assert metadata["License-Expression"] == "MIT"
    assert metadata.get_all("License-File") == ["LICENSE"]


def test_the_wheel_has_the_classifiers_and_project_urls(
    wheel_metadata: tuple[Message, list[str]],
) -> None:
    metadata, names = wheel_metadata
    classifiers = set(metadata.get_all("Classifier") or [])
    versions = {f"Programming Language :: Python :: 3.{minor}" for minor in range(10, 14)}
    assert versions <= classifiers
    assert {
        "Operating System :: OS Independent",
        "Typing :: Typed",
        "Intended Audience :: Developers",
        "Intended Audience :: Science/Research",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    } <= classifiers
    assert metadata["Requires-Python"] == ">=3.10"
    urls = dict(entry.split(", ", 1) for entry in metadata.get_all("Project-URL") or [])
    assert set(urls) == {"Homepage", "Documentation", "Source", "Issues"}
    assert urls["Source"] == "https://github.com/trainbus/trainbus"
    assert urls["Issues"] == "https://github.com/trainbus/trainbus/issues"
    for package in ("trainbus", "trainbus_torch", "trainbus_jax"):  # "Typing :: Typed" holds
        assert f"{package}/py.typed" in names
