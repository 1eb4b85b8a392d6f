"""Errors that name the file that cannot be read or written, and what is wrong with it.

A truncated or corrupt weight file otherwise surfaces as whatever the parser
met first (``BadZipFile``, ``KeyError: 1785425525``, ``invalid literal for
int()``, torch's ``PytorchStreamReader failed ...``), without the file's name.
The readers wrap their parsing in :func:`reading`, which turns such errors into
a :class:`CorruptFileError`. (Failed writes, a full disk, are named by
:func:`trainbus.io.atomic_write`.)

Example:
    >>> import pathlib, tempfile, zipfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "model.npz"
    >>> _ = path.write_bytes(b"PK\\x03\\x04 cut short")
    >>> with reading(path, "the .npz archive"):
    ...     zipfile.ZipFile(path)
    Traceback (most recent call last):
    ...
    trainbus.file_errors.CorruptFileError: cannot read the .npz archive '...model.npz' (...
    ...): BadZipFile: File is not a zip file
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

_MISSING_OR_DENIED = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


class CorruptFileError(ValueError):
    """A file exists but cannot be read as what it should be; the message names it.

    Attributes:
        path: The file.
    """

    def __init__(self, path: str | os.PathLike[str], message: str) -> None:
        super().__init__(message)
        self.path = os.fspath(path)


@contextlib.contextmanager
def reading(path: str | os.PathLike[str], what: str) -> Iterator[None]:
    """Turn an error raised while parsing ``path`` into a :class:`CorruptFileError`.

    ``what`` says what is read (``"the .keras archive"``, ``"the optimizer
    state (optimizer.pt) in the .keras archive"``); the path follows it. A missing
    or unreadable file (``FileNotFoundError``, ``PermissionError``), a missing
    optional module (``ImportError``) and a ``CorruptFileError`` raised inside
    pass through unchanged: their messages are clear already.
    """
    try:
        yield
    except (CorruptFileError, ImportError, *_MISSING_OR_DENIED):
        raise
    except Exception as error:
        detail = str(error) or "(no detail)"
        raise CorruptFileError(
            path,
            f"cannot read {what} {os.fspath(path)!r} (truncated or corrupt?): "
            f"{type(error).__name__}: {detail}",
        ) from error


__all__ = ["CorruptFileError", "reading"]
