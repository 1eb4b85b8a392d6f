"""Crash-safe file writing: a reader sees the old file or the new one, never half.

Every file trainbus writes goes through :func:`atomic_write`: the data goes to
a temporary file in the same directory, is flushed and ``fsync``-ed, then
``os.replace``-d over the target (atomic on POSIX and Windows), and the
directory entry is ``fsync``-ed where the platform allows.

A writer killed mid-write (``SIGKILL``, a power cut) leaves its temporary
file behind. Its name ties it to the target and to the process that wrote it,
``.<target name>.tb<host>-<pid>-<random>.tmp`` (``<host>``: a short hash of
the host name), so a process's first write into a folder removes the
temporary files of that pattern whose process, on this host, is gone (on
POSIX; on Windows leftovers stay): those of the same target, and those of
targets that are not written again (a checkpoint template's
``ckpt-{epoch}.npz``, a backup generation). Nothing else in the folder is
touched: files of another pattern, of another host, or of a writer still
running. The folder is looked through once per process, not at every write: a
folder of many checkpoints would otherwise be listed at every save, a cost
that grows with the run (a writer that another process loses in the same
folder later is cleaned up by the next process).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import socket
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike[str], mode: str = "w", *, overwrite: bool = True
) -> Iterator[IO[Any]]:
    """Open a temporary file that replaces ``path`` only when the block succeeds.

    If the block raises, the temporary file is removed and ``path`` is left
    as it was. A write the operating system refuses (a full disk) raises an
    ``OSError`` with its ``errno`` whose message names ``path`` and the reason,
    also when a serializer (``torch.save``) raised its own error over it.

    Args:
        path: The final file name; its parent directory is created if missing.
        mode: ``"w"`` (text, UTF-8) or ``"wb"``.
        overwrite: If false and ``path`` exists, raise ``FileExistsError``.

    Example:
        >>> import tempfile, pathlib
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "metrics.json"
        >>> with atomic_write(target) as f:
        ...     _ = f.write('{"loss": 0.1}')
        >>> target.read_text()
        '{"loss": 0.1}'
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write mode must be 'w' or 'wb', got {mode!r}")
    target = Path(path)
    try:
        existing: os.stat_result | None = os.stat(target)
    except (FileNotFoundError, NotADirectoryError):
        existing = None
    if existing is not None and stat.S_ISDIR(existing.st_mode):
        raise IsADirectoryError(f"cannot write {str(target)!r}: it is an existing directory")
    if existing is not None and not overwrite:
        raise FileExistsError(f"{str(target)!r} exists and overwrite=False")
    _remove_stale_temporaries(target)
    fd, tmp_name = _temporary_file(target)
    try:
        if existing is not None:  # the new file keeps the old one's permissions
            os.chmod(tmp_name, existing.st_mode & 0o7777)
        encoding = "utf-8" if mode == "w" else None
        with os.fdopen(fd, mode, encoding=encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        failure = _system_error(error)
        if failure is None:
            raise
        raise OSError(
            failure.errno, f"cannot write {str(target)!r}: {failure.strerror}", str(target)
        ) from error
    _fsync_directory(target.parent)


_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]
"""This host, in the temporary names: a process id means something on its own host only."""
_MARK = f".tb{_HOST}-"
_TEMPORARY = re.compile(r"\..+" + re.escape(_MARK) + r"(\d+)-[a-z0-9_]+\.tmp")
"""A temporary name of this host: ``.<target name>.tb<host>-<pid>-<random>.tmp`` (the
random part is 8 hexadecimal digits)."""


def _temporary_file(target: Path) -> tuple[int, str]:
    """Create the temporary file for ``target`` (and its missing parent folders).

    It is created with mode ``0o666`` for the kernel to apply the umask (or
    the folder's default ACL) to, as for any new file: what the target gets.
    """
    prefix = os.path.join(target.parent, f".{target.name}{_MARK}{os.getpid()}-")
    for attempt in range(100):
        name = f"{prefix}{secrets.token_hex(4)}.tmp"
        try:
            return os.open(name, _CREATE_NEW, 0o666), name
        except FileExistsError:  # pragma: no cover - a 1 in 4 billion clash
            continue
        except FileNotFoundError:  # the folder is missing: asked only then, not at every write
            if attempt:
                raise
            target.parent.mkdir(parents=True, exist_ok=True)
        except NotADirectoryError as error:
            raise NotADirectoryError(
                error.errno, f"cannot write {str(target)!r}: a folder in its path is a file"
            ) from None
    raise FileExistsError(f"no free temporary name for {str(target)!r}")  # pragma: no cover


_CREATE_NEW = (
    os.O_RDWR
    | os.O_CREAT
    | os.O_EXCL
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)


_SWEPT: set[str] = set()
"""The folders this process has looked through for leftovers (see the module docstring)."""


def _remove_stale_temporaries(target: Path) -> None:
    """Remove the temporary files that killed writers left in ``target``'s folder.

    Only names of :func:`atomic_write`'s own pattern for this host, whose
    process is gone, are removed; each folder is looked through once per process.
    """
    if sys.platform == "win32":  # os.kill(pid, 0) would terminate the process there
        return
    folder = os.path.abspath(target.parent)
    if folder in _SWEPT:
        return
    _SWEPT.add(folder)
    try:
        entries = [
            entry
            for entry in os.scandir(target.parent)
            if entry.name.endswith(".tmp") and _MARK in entry.name
        ]
    except OSError:
        return
    for entry in entries:
        match = _TEMPORARY.fullmatch(entry.name)
        if match is None or not entry.is_file(follow_symlinks=False):
            continue
        if _running(int(match.group(1))):
            continue
        with contextlib.suppress(OSError):
            os.unlink(entry.path)


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (this process counts as running)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, owned by another user
        return True
    return True


def _system_error(error: BaseException) -> OSError | None:
    """The operating system's error behind a failed write, if the message lacks the path.

    A serializer writing through the file object may hide it behind its own
    error (torch: ``unexpected pos 1536 vs 1430``, with the ``OSError`` as its
    context); an ``OSError`` that names a file already is left as it is.
    """
    seen: BaseException | None = error
    for _ in range(8):  # the cause/context chain, a few links deep
        if seen is None:
            return None
        if isinstance(seen, OSError):
            if seen.filename is not None or seen.errno is None:
                return None
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse
        pass
    finally:
        os.close(fd)
