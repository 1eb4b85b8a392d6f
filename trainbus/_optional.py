"""Optional dependencies, imported on first use with an error that says how to install them.

Example:
    >>> import_optional("json", needed_by="this example", install="it ships with Python").dumps(1)
    '1'
    >>> import_optional("no_such_module", needed_by="Frobnicator", install="pip install frob")
    Traceback (most recent call last):
    ...
    ImportError: Frobnicator needs no_such_module, which is not installed: pip install frob
"""

from __future__ import annotations

import importlib
from types import ModuleType


def import_optional(module: str, *, needed_by: str, install: str) -> ModuleType:
    """Import ``module``, or raise an ``ImportError`` naming who needs it and how to get it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"{needed_by} needs {module}, which is not installed: {install}"
        ) from error
