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


def main(argv: list[str] | None = None) -> int:
    """Run the command line on ``argv`` (default: ``sys.argv[1:]``); the exit code."""
    from trainbus.cli.app import run

    return run(argv)


__all__ = ["main"]
