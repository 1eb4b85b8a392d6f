"""The Python examples in README.md and docs/ run as written (each file in one namespace)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from trainbus.errors import add_note

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


@pytest.mark.parametrize("page", [p for p in PAGES if BLOCK.search(p.read_text())], ids=str)
def test_the_examples_of_a_page_run(
    page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    namespace: dict[str, object] = {"__name__": "__docs__"}
    for number, block in enumerate(BLOCK.findall(page.read_text()), start=1):
        try:
            exec(compile(block, f"{page.name}, example {number}", "exec"), namespace)
        except Exception as error:
            add_note(error, f"in example {number} of {page.relative_to(ROOT)}")
            raise


# A path into the repository, as docs and docstrings name one: `trainbus/means.py`, docs/x.md.
REPO_PATH = re.compile(
    r"(?<![\w/.-])((?:trainbus|adapters|tests|benchmarks|docs|examples|research|shared)"
    r"/[\w/.-]*[\w/])(?![\w/.-]*[<{*])"  # not a pattern such as examples/demo_<framework>.py
)
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
SOURCES = [
    *PAGES,
    ROOT / "DEVELOPERS.md",
    ROOT / "mkdocs.yml",
    *sorted(ROOT.glob("docs/*.py")),
    *sorted(ROOT.glob("trainbus/**/*.py")),
    *sorted(ROOT.glob("adapters/**/*.py")),
    *sorted(ROOT.glob("benchmarks/*.py")),
    *sorted(ROOT.glob("examples/*.py")),
]


@pytest.mark.parametrize("source", SOURCES, ids=lambda path: str(path.relative_to(ROOT)))
def test_the_files_a_page_or_module_names_are_in_the_repository(source: Path) -> None:
    text = source.read_text()
    named = {match.rstrip(".") for match in REPO_PATH.findall(text)}
    missing = sorted(path for path in named if not (ROOT / path).exists())
    if source.suffix == ".md":
        links = (target for target in LINK.findall(text) if "://" not in target)
        missing += sorted(link for link in links if not (source.parent / link).exists())
    assert not missing, f"{source.relative_to(ROOT)} names files that are not in the repository"
