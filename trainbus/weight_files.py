"""Named NumPy arrays to and from weight files, framework-free.

The file formats the adapters share, chosen by extension, every write crash-safe
(through :func:`trainbus.io.atomic_write`):

* ``.npz``: a NumPy archive, one ``<name>.npy`` entry per array (any name,
  ``/`` included); extra arrays under ``__trainbus__/<name>``, the metadata as
  JSON bytes in ``__trainbus_metadata__``. ``numpy.load`` reads it.
* ``.weights.h5`` / ``.h5``: an HDF5 file (needs h5py), one dataset per array
  (a ``/`` in a name makes a group), in insertion order; extra arrays in the
  ``__trainbus__`` group, the metadata as a JSON string attribute.
* ``.keras``: a zip holding ``metadata.json``, ``model.weights.npz`` and, when
  there are extra arrays, ``extras.npz``.

Reading is defensive: a truncated or corrupt file raises
:class:`~trainbus.file_errors.CorruptFileError` naming it and what is wrong, and
an HDF5 file whose members are links (external or soft), external or virtual
datasets, which would make h5py read other files, is refused the same way.

An adapter turns its model into ``{name: array}`` (the weights) plus optional
extra arrays (an optimizer state) and a JSON-able metadata dict; reading gives
the same three back.

Example:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "model.weights.h5"
    >>> write_weight_file(path, {"dense/w": np.ones((2, 3))}, metadata={"epoch": 3})
    >>> stored = read_weight_file(path)
    >>> {name: a.shape for name, a in stored.arrays.items()}, stored.metadata["epoch"]
    ({'dense/w': (2, 3)}, 3)
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import IO, Any

import numpy as np

from trainbus._optional import import_optional
from trainbus.file_errors import CorruptFileError, reading
from trainbus.io import atomic_write

FORMAT_VERSION = 1
EXTENSIONS = (".weights.h5", ".h5", ".keras", ".npz")

MARKER = "trainbus_format"
EXTRAS = "__trainbus__"
NPZ_METADATA = "__trainbus_metadata__"
H5_METADATA = "trainbus_metadata"
KERAS_METADATA = "metadata.json"
KERAS_WEIGHTS = "model.weights.npz"
KERAS_EXTRAS = "extras.npz"


@dataclass
class WeightFile:
    """What a weight file holds: the named arrays, extra arrays, and metadata."""

    arrays: dict[str, np.ndarray]
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)


def file_kind(
    path: str | os.PathLike[str], owner: str, supported: Sequence[str] = EXTENSIONS
) -> str:
    """``"npz"``, ``"h5"`` or ``"keras"``, from the extension; a ``ValueError`` naming ``owner``.

    ``supported`` is what the error lists (an owner that handles more extensions
    itself names them too).

    Example:
        >>> file_kind("best.weights.h5", "JaxModel")
        'h5'
    """
    name = Path(path).name.lower()
    if name.endswith(".h5"):  # .weights.h5 included
        return "h5"
    if name.endswith(".keras"):
        return "keras"
    if name.endswith(".npz"):
        return "npz"
    raise ValueError(
        f"unsupported file extension for {owner}: {str(path)!r}; supported: {', '.join(supported)}"
    )


def write_weight_file(
    path: str | os.PathLike[str],
    arrays: Mapping[str, np.ndarray],
    *,
    extras: Mapping[str, np.ndarray] | None = None,
    metadata: Mapping[str, Any] | None = None,
    overwrite: bool = True,
    owner: str = "trainbus",
) -> None:
    """Write ``arrays`` (and ``extras``, ``metadata``) to ``path``, atomically.

    Raises:
        ValueError: the extension is not one of :data:`EXTENSIONS`.
        FileExistsError: ``path`` exists and ``overwrite`` is false.
    """
    kind = file_kind(path, owner)
    meta = {MARKER: FORMAT_VERSION, **(metadata or {})}
    extra = dict(extras or {})
    with atomic_write(path, "wb", overwrite=overwrite) as handle:
        if kind == "h5":
            _write_h5(handle, arrays, extra, meta)
        elif kind == "keras":
            _write_keras(handle, arrays, extra, meta)
        else:
            entries = {**arrays, **{f"{EXTRAS}/{name}": a for name, a in extra.items()}}
            entries[NPZ_METADATA] = _json_bytes(meta)
            write_npz(handle, entries)


def read_weight_file(path: str | os.PathLike[str], owner: str = "trainbus") -> WeightFile:
    """Read a file written by :func:`write_weight_file` (or a plain ``.npz``/``.h5``).

    Raises:
        CorruptFileError: the file is truncated, corrupt, or an HDF5 file that
            links to other files.
    """
    kind = file_kind(path, owner)
    with reading(path, KINDS[kind]):
        if kind == "h5":
            return _read_h5(Path(path))
        if kind == "keras":
            return _read_keras(Path(path))
        return _read_npz(path)


KINDS = {"h5": "the HDF5 file", "keras": "the .keras archive", "npz": "the .npz archive"}
"""What each kind of file is called in the errors of :func:`read_weight_file`."""


# -- npz -------------------------------------------------------------------------------------


def write_npz(handle: IO[bytes], arrays: Mapping[str, np.ndarray]) -> None:
    """One ``.npy`` entry per array, written entry by entry so that any name works."""
    with zipfile.ZipFile(handle, "w") as archive:
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w") as entry:
                np.lib.format.write_array(entry, np.asarray(array), allow_pickle=False)


def _read_npz(source: str | os.PathLike[str] | IO[bytes]) -> WeightFile:
    prefix = f"{EXTRAS}/"
    result = WeightFile({})
    with np.load(source, allow_pickle=False) as archive:
        for name in archive.files:
            if name == NPZ_METADATA:
                result.metadata = json.loads(archive[name].tobytes())
            elif name.startswith(prefix):
                result.extras[name[len(prefix) :]] = archive[name]
            else:
                result.arrays[name] = archive[name]
    return result


def _npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    write_npz(buffer, arrays)
    return buffer.getvalue()


def _json_bytes(metadata: Mapping[str, Any]) -> np.ndarray:
    return np.frombuffer(json.dumps(metadata).encode(), dtype=np.uint8)


# -- h5 --------------------------------------------------------------------------------------


def h5py_module() -> ModuleType:
    """h5py, or an ``ImportError`` saying how to install it."""
    return import_optional("h5py", needed_by=".h5/.weights.h5 files", install="pip install h5py")


def _write_datasets(root: Any, arrays: Mapping[str, np.ndarray]) -> None:
    """One dataset per array; a ``/`` in a name makes groups, which list in insertion order."""
    for name, array in arrays.items():
        parent = root
        *groups, leaf = name.split("/")
        for part in groups:
            parent = parent[part] if part in parent else parent.create_group(part, track_order=True)
        parent.create_dataset(leaf, data=np.asarray(array))


def _write_h5(
    handle: IO[bytes],
    arrays: Mapping[str, np.ndarray],
    extras: Mapping[str, np.ndarray],
    metadata: Mapping[str, Any],
) -> None:
    h5py = h5py_module()
    buffer = io.BytesIO()  # h5py wants a readable, seekable file; the temp file is write-only
    # track_order: readers list the datasets in the order given, not sorted.
    with h5py.File(buffer, "w", track_order=True) as file:
        file.attrs[MARKER] = FORMAT_VERSION
        file.attrs[H5_METADATA] = json.dumps(dict(metadata))
        _write_datasets(file, arrays)
        if extras:
            _write_datasets(file.create_group(EXTRAS, track_order=True), extras)
    handle.write(buffer.getvalue())


def h5_members(group: Any, path: str | os.PathLike[str], prefix: str = "") -> Iterator[Any]:
    """``(name, item)`` for each member of an h5py group, in creation order where tracked.

    Only members stored in the file itself are given: a link (external or
    soft), an external dataset or a virtual dataset (each would make h5py open
    another file, or loop) raises :class:`~trainbus.file_errors.CorruptFileError`.
    """
    h5py = h5py_module()
    for name in group:
        link = group.get(name, getlink=True)
        where = f"{prefix}{name}"
        if isinstance(link, h5py.ExternalLink):
            raise CorruptFileError(
                path,
                f"{os.fspath(path)!r} has an external link {where!r} to "
                f"{link.filename}:{link.path}; only data stored in the file itself is read",
            )
        if not isinstance(link, h5py.HardLink):
            raise CorruptFileError(
                path,
                f"{os.fspath(path)!r} has a {type(link).__name__} {where!r}; "
                "only datasets and groups stored in the file itself are read",
            )
        item = group[name]
        if isinstance(item, h5py.Dataset) and (item.external or item.is_virtual):
            raise CorruptFileError(
                path,
                f"{os.fspath(path)!r} has a dataset {where!r} whose data is stored in other "
                "files (external or virtual); only data stored in the file itself is read",
            )
        yield name, item


def _read_h5(path: Path) -> WeightFile:
    h5py = h5py_module()
    result = WeightFile({})

    def walk(group: Any, prefix: str, into: dict[str, np.ndarray], top: bool) -> None:
        for name, item in h5_members(group, path, prefix):
            if isinstance(item, h5py.Dataset):
                into[prefix + name] = item[()]
            elif not (top and name == EXTRAS):  # a name containing "/" made a group
                walk(item, f"{prefix}{name}/", into, False)

    with h5py.File(path, "r") as file:
        walk(file, "", result.arrays, True)
        if EXTRAS in file:
            walk(file[EXTRAS], "", result.extras, False)
        if H5_METADATA in file.attrs:
            result.metadata = json.loads(file.attrs[H5_METADATA])
    return result


# -- keras zip -------------------------------------------------------------------------------


def _write_keras(
    handle: IO[bytes],
    arrays: Mapping[str, np.ndarray],
    extras: Mapping[str, np.ndarray],
    metadata: Mapping[str, Any],
) -> None:
    with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(KERAS_METADATA, json.dumps(dict(metadata), indent=2))
        archive.writestr(KERAS_WEIGHTS, _npz_bytes(arrays))
        if extras:
            archive.writestr(KERAS_EXTRAS, _npz_bytes(extras))


def _read_keras(path: Path) -> WeightFile:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        if KERAS_WEIGHTS not in names:
            raise CorruptFileError(
                path,
                f"{str(path)!r} has no {KERAS_WEIGHTS} entry "
                "(truncated or corrupt, or not a trainbus .keras file)",
            )
        metadata = json.loads(archive.read(KERAS_METADATA)) if KERAS_METADATA in names else {}
        arrays = _read_npz(io.BytesIO(archive.read(KERAS_WEIGHTS))).arrays
        extras = (
            _read_npz(io.BytesIO(archive.read(KERAS_EXTRAS))).arrays
            if KERAS_EXTRAS in names
            else {}
        )
    return WeightFile(arrays, extras, metadata)


__all__ = [
    "EXTENSIONS",
    "FORMAT_VERSION",
    "KINDS",
    "WeightFile",
    "file_kind",
    "h5_members",
    "h5py_module",
    "read_weight_file",
    "write_npz",
    "write_weight_file",
]
