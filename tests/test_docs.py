"""The Python examples in README.md and docs/ run as written (each file in one namespace)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from trainbus.errors import add_note

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
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
