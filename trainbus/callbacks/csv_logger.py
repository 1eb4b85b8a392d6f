"""``CSVLogger``: one CSV row per epoch, in Keras's format, crash-safe.

Keras 3's format, byte for byte: an ``epoch`` column (0-based) first, then the
first epoch's log keys sorted; if none of them starts with ``val_``, a
``val_<key>`` column is added for every key (filled with ``NA`` until such
values appear). The columns are fixed by the first epoch: later keys are not
written, missing ones are ``NA``. Non-string iterables (arrays, lists) are
written as ``[a, b]`` inside literal double quotes (which the CSV quoting
then doubles), as Keras does; rows end with ``\\r\\n`` (the ``excel``
dialect). With ``append=True`` an existing file is continued, with a header
only if it was empty; its rows keep the file's columns, and a run that logs a
key the file has no column for is refused with a ``ValueError`` naming the new
columns (Keras would write rows that do not match the header).

Unlike Keras, which keeps the file open and appends, the whole file (what it
held before, plus every row so far) is rewritten through
:func:`trainbus.io.atomic_write` at every epoch end: a crash at any instant
leaves the file as it was after the last complete epoch, never a partial row.
Rewriting costs time proportional to the file's size, once per epoch.

**A run resumed by** :class:`~trainbus.callbacks.BackupAndRestore` (which sets
``model._initial_epoch`` before ``on_train_begin``) continues the file, with
or without ``append``: the rows of the epochs before the resumed one are
kept, with their header and columns, and the rows at the end of the file for
the resumed epoch or later ones (written before the crash, after the last
backup) are dropped, so no epoch appears twice. The file then equals an
unbroken run's. Keras's ``CSVLogger`` with ``append=False`` would start the
file over at the resumed epoch.

In a distributed run, attached on every rank, it fixes its columns on every
rank and writes the file on the primary only (see
:mod:`trainbus.callbacks.writer`): one header, one row per epoch, holding the
global epoch results. Keras's ``CSVLogger`` has no notion of ranks.

Example:
    >>> import pathlib, tempfile
    >>> from trainbus import Bus, Emitter
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "log.csv"
    >>> bus = Bus()
    >>> _ = bus.attach(CSVLogger(path))
    >>> emitter = Emitter(bus)
    >>> with emitter.training(epochs=2) as epochs:
    ...     for epoch in epochs:
    ...         emitter.log(loss=1.0 / (epoch + 1), acc=0.5)
    >>> print(path.read_text(), end="")
    epoch,acc,loss,val_acc,val_loss
    0,0.5,1.0,NA,NA
    1,0.5,0.5,NA,NA
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import AfterValidator, validate_call

from trainbus.callbacks.base import Callback
from trainbus.callbacks.writer import PrimaryWriter
from trainbus.io import atomic_write
from trainbus.logs import to_python


def _check_separator(separator: str) -> str:
    if len(separator) != 1:
        raise ValueError(f"separator must be exactly one character, got {separator!r}")
    if separator in ('"', "\r", "\n"):
        raise ValueError(
            f"separator must not be a quote or a line break (it would make rows "
            f"unreadable), got {separator!r}"
        )
    return separator


Separator = Annotated[str, AfterValidator(_check_separator)]


def _cell(value: Any) -> Any:
    """Keras's ``handle_value``: non-string iterables become ``"[a, b]"``."""
    value = to_python(value)  # a 0-d tensor in a plain dict is a number, not an iterable
    if isinstance(value, str):
        return value
    if isinstance(value, Iterable) and not (isinstance(value, np.ndarray) and value.ndim == 0):
        return f'"[{", ".join(map(str, value))}]"'
    return value


class CSVLogger(PrimaryWriter, Callback):
    """Write every epoch's logs as a row of a CSV file.

    Args:
        filename: The CSV file; its directory is created if missing.
        separator: The one-character field separator.
        append: Continue an existing file (header only if it is empty or
            missing) instead of replacing it.

    Attributes:
        filename: ``filename`` as a string.
        sep: The separator.
        keys: The log keys written (fixed by the first epoch), or ``None``.

    Arguments are validated when the callback is built; a bad one raises a
    ``pydantic.ValidationError`` (a ``ValueError``) naming it.

    Differences from Keras (all deliberate):

    * Crash safety: the file is rewritten atomically each epoch (see the
      module docstring); ``on_train_end`` has nothing left to flush or close.
    * Encoding is always UTF-8 and rows always end with ``\\r\\n`` (Keras
      uses the locale's encoding and the platform's text mode, which on
      Windows turns ``\\r\\n`` into ``\\r\\r\\n``).
    * ``separator`` is checked when the callback is built (Keras fails at the
      first epoch for a multi-character one and accepts ``"`` or a line
      break, which make the file unreadable).
    * With ``append=True`` whether to write a header is decided afresh at
      every ``on_train_begin``; Keras keeps the previous run's decision when
      the file has since disappeared, and then writes no header.
    """

    @validate_call
    def __init__(
        self,
        filename: str | os.PathLike[str],
        separator: Separator = ",",
        append: bool = False,
    ) -> None:
        super().__init__()
        self.filename = os.fspath(filename)
        if not self.filename or os.path.isdir(self.filename):
            raise ValueError(
                f"CSVLogger filename must name a file, got {self.filename!r}"
                + (" (a directory)" if self.filename else "")
            )
        self.sep = separator
        self.append = append
        self.keys: list[str] | None = None
        self.append_header = True
        self._data = b""  # the whole file as it should be now
        self._file_keys: list[str] | None = None  # the columns of the file appended to

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        self.keys = None
        self._file_keys = None
        self._data = b""
        self.append_header = True
        if not self.writes_here:  # another rank of a distributed run: the primary writes
            return
        path = Path(self.filename)
        resumed = getattr(self.model, "_initial_epoch", None)
        existing = (self.append or resumed is not None) and path.exists()
        self._data = path.read_bytes() if existing else b""
        if resumed is not None and self._data:
            self._data, self.keys = _before_epoch(self._data, resumed, self.sep)
            self._save()
        self.append_header = not self._data
        if self._data and self.keys is None:  # appending: the rows go under this header
            self._file_keys = _before_epoch(self._data, -1, self.sep)[1]
        if not existing:
            self._save()  # an empty file now, as Keras's open(filename, "w" or "a") leaves

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        logs = logs or {}
        first = self.keys is None
        if self.keys is None:  # fixed by the first epoch (or the resumed file's header)
            self.keys = sorted(logs.keys())
            if self.keys and not any(key.startswith("val_") for key in self.keys):
                self.keys.extend([f"val_{key}" for key in self.keys])
            if self._file_keys is not None:
                self.keys = self._columns_of_file(self._file_keys, sorted(logs.keys()))
        if not self.writes_here:
            return
        buffer = io.StringIO()
        if first and self.append_header:
            self._writer(buffer).writeheader()
        row: dict[str, Any] = {"epoch": epoch}
        row.update((key, _cell(logs.get(key, "NA"))) for key in self.keys)
        self._writer(buffer).writerow(row)
        self._data += buffer.getvalue().encode("utf-8")
        self._save()

    def _columns_of_file(self, file_keys: list[str], keys: list[str]) -> list[str]:
        """The appended file's columns, if they hold every key this run's first epoch logged.

        The ``val_`` columns added for a run without validation are not new columns.
        """
        new = [key for key in keys if key not in file_keys]
        if new:
            self.keys = None  # refused: the next epoch end decides again
            raise ValueError(
                f"CSVLogger cannot append to {self.filename!r}: its header has the columns "
                f"{file_keys}, and this run logs new columns {new}; expected the same log "
                f"keys as the rows already there: log to another filename, or pass append=False"
            )
        return file_keys

    def _writer(self, buffer: io.StringIO) -> csv.DictWriter[str]:
        return csv.DictWriter(
            buffer, fieldnames=["epoch", *(self.keys or [])], dialect="excel", delimiter=self.sep
        )

    def _save(self) -> None:
        with atomic_write(self.filename, "wb") as handle:
            handle.write(self._data)


def _before_epoch(data: bytes, epoch: int, separator: str) -> tuple[bytes, list[str] | None]:
    r"""The file without its last rows of ``epoch`` or later, and its header's columns.

    Rows are lines (a cell never holds a line break); the rows at the end of
    the file whose epoch is ``epoch`` or later were written after the backup
    being resumed, and are run again.

    Example:
        >>> text = b"epoch,loss\r\n0,0.5\r\n1,0.4\r\n2,0.3\r\n"
        >>> _before_epoch(text, 2, ",")
        (b'epoch,loss\r\n0,0.5\r\n1,0.4\r\n', ['loss'])
    """
    lines = data.decode("utf-8").splitlines(keepends=True)
    header = next(csv.reader(lines[:1], delimiter=separator), None)
    keys = header[1:] if header and header[0] == "epoch" else None
    while len(lines) > 1:
        first_cell = lines[-1].split(separator, 1)[0].strip()
        if not (first_cell.isdigit() and int(first_cell) >= epoch):
            break
        lines.pop()
    return "".join(lines).encode("utf-8"), keys
