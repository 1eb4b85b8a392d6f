"""The ``trainbus`` command line: look at, replay, follow and export event logs.

One module per command (``show``, ``plot``, ``replay``, ``tail``, ``export``),
built on typer; :mod:`trainbus.cli.app` puts them together. Nothing here is
imported by ``import trainbus``, and typer, rich and matplotlib (the ``cli``
extra: ``pip install 'trainbus[cli]'``) are imported only when :func:`main`
runs. See ``docs/looking-at-runs.md``.

Exit codes: 0 done, 1 a file or data error (one line on stderr naming the
file, the line and what is wrong), 2 a usage error (a bad option, a bad
``--callback`` spec), 130 interrupted (Ctrl-C).

Example:
    >>> main(["--help"])  # doctest: +ELLIPSIS
    Usage: trainbus [OPTIONS] COMMAND [ARGS]...
    ...
    0
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    """Run the command line on ``argv`` (default: ``sys.argv[1:]``); the exit code."""
    from trainbus.cli.app import run

    return run(argv)


def shell_command() -> str:
    """What to type in a shell to run this environment's ``trainbus`` command.

    ``trainbus`` when the shell finds this environment's script (an active
    virtual environment); else the script's path, relative when it lies below
    the working directory (``.venv/bin/trainbus`` after ``make demo``); else,
    where no script is installed, ``python -m trainbus.cli`` with this Python.

    Example:
        >>> shell_command().endswith(("trainbus", "trainbus.cli"))
        True
    """
    script = shutil.which("trainbus", path=str(Path(sys.executable).parent))
    if script is None:
        return f"{sys.executable} -m trainbus.cli"
    found = shutil.which("trainbus")
    if found is not None and os.path.samefile(found, script):
        return "trainbus"
    relative = os.path.relpath(script)
    return script if relative.startswith("..") else relative


__all__ = ["main", "shell_command"]
