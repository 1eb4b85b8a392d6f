"""Where the trainbus a benchmark measures comes from, for its report.

A copy is either a checkout (its git commit, ``+dirty`` when its files differ
from the commit) or a snapshot made by ``benchmarks/snapshot.py`` (the commit
its ``SNAPSHOT.json`` records).

Example::

    >>> describe_copy("trainbus")                 # doctest: +SKIP
    '4f0dcc2 at /work/main/trainbus'
    >>> describe_copy("trainbus_before")          # doctest: +SKIP
    'snapshot of 6dd6667 at /tmp/trainbus-snapshots/trainbus_before'
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path


def describe_copy(module_name: str) -> str:
    """The source of the importable package ``module_name``, in words."""
    spec = importlib.util.find_spec(module_name)
    if spec is None or spec.origin is None:
        return "not importable"
    folder = Path(spec.origin).resolve().parent
    marker = folder / "SNAPSHOT.json"
    if marker.is_file():
        info = json.loads(marker.read_text())
        return f"snapshot of {str(info.get('commit', '?'))[:7]} at {folder}"
    revision = git_revision(folder)
    return f"{revision} at {folder}" if revision else str(folder)


def git_revision(folder: Path) -> str | None:
    """The short commit of the checkout holding ``folder``, ``+dirty`` if its files changed."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=folder, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--", ".")
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+dirty" if dirty else "")
