"""How the command line fails: one line on stderr, no traceback, an exit code that says why.

:class:`CliError` is what commands raise; :func:`reporting` turns it, and the
errors of reading a log (:class:`~trainbus.event_log.EventLogError`, a missing
file, a missing optional package), into ``trainbus: error: ...`` and exit
code 1 (2 for usage errors), and Ctrl-C into exit code 130.

Example:
    >>> one_line("a\\n  b")
    'a b'
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

DATA_ERROR, USAGE_ERROR, INTERRUPTED = 1, 2, 130


class CliError(Exception):
    """A failure to report in one line; ``code``: the exit code (1 data, 2 usage)."""

    def __init__(self, message: str, code: int = DATA_ERROR) -> None:
        super().__init__(message)
        self.code = code


def one_line(text: str) -> str:
    """``text`` with its line breaks and runs of spaces collapsed to single spaces."""
    return " ".join(text.split())


def report(message: str, *, kind: str = "error", stream: TextIO | None = None) -> None:
    """Print ``trainbus: <kind>: <message>`` as one line on stderr."""
    print(f"trainbus: {kind}: {one_line(message)}", file=stream or sys.stderr, flush=True)


@contextmanager
def reporting() -> Iterator[None]:
    """Run a command body: its errors become one line on stderr and an exit code."""
    from typer import Exit

    from trainbus.event_log import EventLogError

    with warnings.catch_warnings():
        warnings.showwarning = _one_line_warning
        try:
            yield
        except KeyboardInterrupt:
            raise Exit(INTERRUPTED) from None
        except CliError as error:
            report(str(error))
            raise Exit(error.code) from None
        except EventLogError as error:
            report(str(error))
            raise Exit(DATA_ERROR) from None
        except FileNotFoundError as error:
            report(f"{error.filename}: no such file")
            raise Exit(DATA_ERROR) from None
        except OSError as error:
            where = f"{error.filename}: " if error.filename else ""
            report(f"{where}{error.strerror or error}")
            raise Exit(DATA_ERROR) from None
        except ImportError as error:
            report(str(error))
            raise Exit(DATA_ERROR) from None


def _one_line_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    report(str(message), kind="warning", stream=file)
