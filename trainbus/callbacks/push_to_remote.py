"""``PushToRemote``: mirror a local output directory to any fsspec URL during training.

The hub-agnostic analogue of Hugging Face's ``PushToHubCallback``. At each
push the callback (optionally) saves the model into ``output_dir`` through the
model handle, uploads the files of ``output_dir`` that changed since the last
push (checkpoints written by :class:`~trainbus.callbacks.ModelCheckpoint`, or
anything else put there), then writes a small JSON model card (the last epoch
logs, the epoch, the global step, a UTC timestamp and the size and SHA-256 of
every file it names) into ``output_dir`` with
:func:`~trainbus.io.atomic_write` and uploads it **last**, so a card on the
remote side only names files that are already there, complete.

When it pushes (``save_strategy``):

* ``"epoch"``: at every epoch end, and at train end;
* ``"steps"``: whenever the global training step crosses a multiple of
  ``save_steps`` (a ``steps_per_execution`` chunk that crosses one or more
  multiples pushes once, at its end), and at train end;
* ``"no"``: once, at train end.

Reliability:

* **No half-uploaded file under its final name**, where the backend allows:
  on filesystems with a real rename (``file://``, ``memory://``, ``sftp://``,
  ``smb://``, and unknown ones) each file is uploaded to a hidden temporary
  name in the same remote folder, then moved into place (``fs.mv``). Object
  stores (``s3://``, ``gs://``, ``az://``/``abfs://``, ``hf://``) make an
  object visible only once its upload completes, and their "move" is a copy
  plus a delete, so files go straight to their final names there.
  ``publish=`` overrides the choice.
* **Only changed files are uploaded**: a file whose size and modification
  time are those of the last upload is skipped without being read; one
  whose content hash is unchanged (a checkpoint rewritten with the same
  bytes) is skipped too.
* **An aborted run pushes nothing**: ``on_aborted`` records the phase and
  returns, never raising; the remote keeps the last complete push.
* **Resumable**: ``state_dict()`` holds the global step, the epoch count and
  the upload records, so a run resumed by ``BackupAndRestore`` pushes at the
  same steps as an unbroken one and does not upload unchanged files again.
* A failed upload raises :class:`RemotePushError` (``on_error="raise"``) or
  warns and is retried at the next push (``on_error="warn"``); the old card
  stays in place either way.
* **Credentials in the URL are never shown or stored**
  (:mod:`trainbus.redact`): ``url`` (the attribute), ``repr``, ``state_key``
  (which ``BackupAndRestore`` writes to disk), verbose lines, warnings and
  errors show ``scheme://***@host/path`` (query values as ``***`` too), and
  the text of an fsspec error that names a path holding the token is
  scrubbed; such an error is then not chained (its own message would show
  the token). The state key does not change when the token does, so a run
  resumes after a credential rotation.

In a distributed run, attached on every rank, it counts steps and epochs on
every rank and saves (``model_filename``) and uploads on the primary only (see
:mod:`trainbus.callbacks.writer`; a model whose save is collective is saved by
every rank first). Its upload records are then the primary's alone, so it sets
``state_is_replicated = False``: the emitter's end-of-epoch check that the
ranks' callback states agree leaves it out.

fsspec is the optional ``remote`` extra (``pip install 'trainbus[remote]'``);
it is imported when a ``PushToRemote`` is built, never by ``import trainbus``.
Attach ``PushToRemote`` *after* the callbacks that write into ``output_dir``:
callbacks run in attach order.

Example:
    >>> import json, tempfile
    >>> import fsspec, numpy as np
    >>> from trainbus import Bus, Emitter
    >>> from trainbus.numpy_model import NumpyModel
    >>> pusher = PushToRemote(tempfile.mkdtemp(), "memory://doctest/run",
    ...                       model_filename="model.npz")
    >>> bus = Bus()
    >>> _ = bus.attach(pusher)
    >>> emitter = Emitter(bus, model=NumpyModel({"w": np.zeros(2)}))
    >>> with emitter.training(epochs=2) as epochs:
    ...     for epoch in epochs:
    ...         for _ in emitter.batches(range(3)):
    ...             emitter.log(loss=1.0 / (epoch + 1))
    >>> remote = fsspec.filesystem("memory")
    >>> sorted(path.rsplit("/", 1)[-1] for path in remote.ls("/doctest/run", detail=False))
    ['model.npz', 'model_card.json']
    >>> card = json.loads(remote.cat_file("/doctest/run/model_card.json"))
    >>> card["epoch"], card["step"], card["logs"], card["trigger"], sorted(card["files"])
    (2, 6, {'loss': 0.5}, 'train_end', ['model.npz'])
    >>> pusher.push_count
    3
    >>> remote.rm("/doctest", recursive=True)
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import math
import os
import posixpath
import uuid
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal

from pydantic import StrictInt, validate_call

from trainbus._optional import import_optional
from trainbus.callbacks.base import Callback
from trainbus.callbacks.monitor import NonNegativeInt
from trainbus.callbacks.writer import PrimaryWriter
from trainbus.io import atomic_write
from trainbus.redact import redact_text, redact_url, secrets_in

SaveStrategy = Literal["epoch", "steps", "no"]
Publish = Literal["auto", "rename", "direct"]
OnError = Literal["raise", "warn"]

INSTALL_HINT = "pip install 'trainbus[remote]'"
CARD_FORMAT = "trainbus.model_card/1"

# Filesystems on which an object only becomes visible once its upload has completed,
# and whose mv is a copy plus a delete: uploading straight to the final name is the
# atomic choice there.
_OBJECT_STORES = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "hf"})
# Filesystems with real directories that put_file does not create.
_LOCAL_PROTOCOLS = frozenset({"file", "local"})


class RemotePushError(RuntimeError):
    """A push to the remote URL failed (the cause is chained as ``__cause__``)."""


@dataclass(frozen=True)
class _Uploaded:
    """What was uploaded for one file: its local size and mtime then, and its hash."""

    size: int
    mtime_ns: int
    sha256: str


def import_fsspec() -> ModuleType:
    """Import fsspec, or raise an ``ImportError`` that says how to install it."""
    return import_optional("fsspec", needed_by="PushToRemote", install=INSTALL_HINT)


class PushToRemote(PrimaryWriter, Callback):
    """Mirror ``output_dir`` and a JSON model card to ``url`` during training.

    Args:
        output_dir: The local folder to mirror (created at train begin if
            missing). Files in sub-folders are mirrored with their relative
            paths; ``atomic_write``'s temporary files are skipped.
        url: Where to mirror it: any URL fsspec resolves to a filesystem
            (``file:///abs/path``, ``memory://name``, ``s3://bucket/prefix``,
            ``hf://user/repo`` ...), with its backend installed. Credentials
            in it (``scheme://user:token@host/...``) reach the filesystem only:
            :attr:`url` and everything shown or stored hold ``***`` instead
            (prefer ``storage_options`` or the backend's own configuration).
        save_strategy: ``"epoch"``, ``"steps"`` or ``"no"`` (see the module
            docstring); every strategy also pushes at train end.
        save_steps: With ``save_strategy="steps"`` (and only then): push when
            the global training step crosses a multiple of this.
        model_filename: If given, the model handle saves itself to this path
            inside ``output_dir`` before each push (``model.save``, or
            ``model.save_weights`` with ``save_weights_only``).
        save_weights_only: Use ``model.save_weights`` for ``model_filename``.
        card_filename: The model card's file name, in ``output_dir`` and at
            the top of ``url``.
        publish: ``"rename"``: upload to a temporary name, then ``fs.mv`` it
            into place; ``"direct"``: upload to the final name; ``"auto"``:
            ``"direct"`` on object stores (S3, GCS, Azure, HF Hub), where an
            upload is all-or-nothing already, ``"rename"`` elsewhere.
        on_error: ``"raise"``: a failed push raises :class:`RemotePushError`
            (training stops, the run is aborted); ``"warn"``: it warns and
            the next push retries what was not uploaded.
        storage_options: Keyword arguments for the fsspec filesystem
            (credentials, endpoints, ...).
        verbose: 1 prints a line for each push.

    Attributes:
        url: The URL with its credentials redacted (``scheme://***@host/...``).
        fs: The fsspec filesystem; ``root`` the path of ``url`` in it.
        push_count: Pushes completed (model card uploaded).
        upload_count: Files uploaded in all, model cards included.
        last_uploaded: The relative paths uploaded by the last push.
        last_card: The last model card pushed, as a dict.
        aborted_phase: The phase of the last ``on_aborted`` (``None`` if none).

    Arguments are validated when the callback is built; a bad one raises a
    ``ValueError`` (a ``pydantic.ValidationError`` for a bad type or literal)
    naming it. Differences from Hugging Face's ``PushToHubCallback``: any fsspec
    URL instead of a Hub repository; ``"steps"`` counts the global step
    (HF tests ``(batch + 1) % save_steps`` per epoch, which misses pushes
    under ``steps_per_execution`` and restarts each epoch); pushes are
    synchronous and incremental (HF saves and pushes the whole folder as a
    background git commit, skipping a push while the last is running); the
    card is JSON metadata, not a README; an aborted run pushes nothing; in a
    distributed run the primary pushes.
    """

    state_is_replicated = False
    """Its upload records are the primary's only (see :class:`trainbus.state.Stateful`)."""

    @validate_call
    def __init__(
        self,
        output_dir: str | os.PathLike[str],
        url: str,
        save_strategy: SaveStrategy = "epoch",
        save_steps: StrictInt | None = None,
        model_filename: str | None = None,
        save_weights_only: bool = False,
        card_filename: str = "model_card.json",
        publish: Publish = "auto",
        on_error: OnError = "raise",
        storage_options: Mapping[str, Any] | None = None,
        verbose: NonNegativeInt = 0,
    ) -> None:
        super().__init__()
        if not os.fspath(output_dir):
            raise ValueError("PushToRemote output_dir must not be empty")
        self.output_dir = os.path.abspath(os.fspath(output_dir))
        if os.path.exists(self.output_dir) and not os.path.isdir(self.output_dir):
            raise ValueError(
                f"PushToRemote output_dir {self.output_dir!r} exists and is not a directory"
            )
        if save_strategy == "steps":
            if save_steps is None or save_steps <= 0:
                raise ValueError(
                    "PushToRemote save_steps must be a positive int when "
                    f"save_strategy='steps', got {save_steps!r}"
                )
        elif save_steps is not None:
            raise ValueError(
                f"PushToRemote save_steps is only used with save_strategy='steps'; "
                f"got save_steps={save_steps!r} with save_strategy={save_strategy!r} "
                "(leave save_steps unset, or use save_strategy='steps')"
            )
        self.card_filename = _checked_name("card_filename", card_filename)
        self.model_filename = (
            None
            if model_filename is None
            else _checked_relative("model_filename", model_filename, self.card_filename)
        )
        self.url = redact_url(url)  # the URL with credentials is never kept
        self._secrets = secrets_in(url)
        self.save_strategy: SaveStrategy = save_strategy
        self.save_steps = save_steps
        self.save_weights_only = save_weights_only
        self.on_error: OnError = on_error
        self.verbose = verbose
        self.storage_options = dict(storage_options or {})
        self.fs, self.root = _resolve(url, self.storage_options, self._secrets)
        self.protocol = _protocol(self.fs)
        self.publish: Literal["rename", "direct"] = (
            publish
            if publish != "auto"
            else ("direct" if self.protocol in _OBJECT_STORES else "rename")
        )
        if self.protocol in _LOCAL_PROTOCOLS:
            _check_no_overlap(self.output_dir, self.root, self.url)
        self.push_count = 0
        self.upload_count = 0
        self.last_uploaded: list[str] = []
        self.last_card: dict[str, Any] | None = None
        self.aborted_phase: str | None = None
        self._uploaded: dict[str, _Uploaded] = {}
        self._step = 0
        self._last_batch: int | None = None
        self._epochs_done = 0
        self._epoch_logs: dict[str, Any] = {}
        self._resumed = False

    # -- hooks ------------------------------------------------------------------------

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        if self.writes_here:
            os.makedirs(self.output_dir, exist_ok=True)
        self.aborted_phase = None
        self._last_batch = None
        if self._resumed:  # state restored for this run: keep the step and epoch counts
            self._resumed = False
            return
        self._step = 0
        self._epochs_done = 0
        self._epoch_logs = {}

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._last_batch = None  # batch indices restart at 0

    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        # Counts the global step for every strategy (the model card reports it). A
        # steps_per_execution chunk ends at its last index: it counts as all its batches.
        last = self._last_batch
        added = batch + 1 if last is None or batch <= last else batch - last
        self._last_batch = batch
        before = self._step
        self._step += added
        steps = self.save_steps
        if steps is not None and self._step // steps > before // steps:
            self._push("steps")

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._epochs_done = epoch + 1
        self._epoch_logs = dict(logs or {})
        if self.save_strategy == "epoch":
            self._push("epoch")

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        if logs:
            self._epoch_logs = dict(logs)
        self._push("train_end")

    def on_aborted(self, phase: str, error: str, logs: Mapping[str, Any] | None = None) -> None:
        """Record the abort; push nothing (the remote keeps the last complete push)."""
        self.aborted_phase = phase
        if self.verbose > 0:
            print(
                f"PushToRemote: {phase} aborted ({redact_text(error, self._secrets)}); "
                "nothing pushed"
            )

    # -- pushing ----------------------------------------------------------------------

    def push(self, trigger: str = "manual") -> None:
        """Push now: save the model (if ``model_filename``), upload changes, then the card.

        In a distributed run only the primary pushes; call it on every rank if
        the model's save is collective (every rank saves).
        """
        self._push(trigger)

    def _push(self, trigger: str) -> None:
        try:
            self._push_unchecked(trigger)
        except Exception as error:
            failure: Exception = error
        else:
            return
        # Raised outside the except block: an error whose text shows the credentials
        # must not ride along as the implicit __context__ either.
        text = redact_text(f"{type(failure).__name__}: {failure}", self._secrets)
        clean = text == f"{type(failure).__name__}: {failure}"
        message = f"PushToRemote could not push {self.output_dir!r} to {self.url!r}: {text}"
        if self.on_error == "raise":
            if clean:
                raise RemotePushError(message) from failure
            raise RemotePushError(f"{message} (credentials redacted; the cause is not chained)")
        warnings.warn(f"{message}; retrying at the next push", RuntimeWarning, stacklevel=3)

    def _push_unchecked(self, trigger: str) -> None:
        if self.model_filename is not None:
            path = os.path.join(self.output_dir, self.model_filename)
            self._write_model(path, weights_only=self.save_weights_only, barrier="PushToRemote")
        if not self.writes_here:  # another rank of a distributed run: the primary pushes
            return
        uploaded: list[str] = []
        manifest: dict[str, dict[str, Any]] = {}
        for relative in self._local_files():
            local = os.path.join(self.output_dir, *relative.split("/"))
            record = self._uploaded.get(relative)
            stat = os.stat(local)
            if record is None or (record.size, record.mtime_ns) != (
                stat.st_size,
                stat.st_mtime_ns,
            ):
                digest = _sha256(local)
                if record is None or record.sha256 != digest:
                    self._upload(local, relative)
                    uploaded.append(relative)
                record = _Uploaded(stat.st_size, stat.st_mtime_ns, digest)
                self._uploaded[relative] = record
            manifest[relative] = {"size": record.size, "sha256": record.sha256}
        card = self._card(trigger, manifest)
        card_path = os.path.join(self.output_dir, self.card_filename)
        with atomic_write(card_path) as handle:
            json.dump(card, handle, indent=2, sort_keys=True)
            handle.write("\n")
        self._upload(card_path, self.card_filename)  # last: it names a complete set
        uploaded.append(self.card_filename)
        self.last_uploaded = uploaded
        self.last_card = card
        self.push_count += 1
        if self.verbose > 0:
            print(
                f"PushToRemote ({trigger}, step {self._step}): uploaded "
                f"{len(uploaded) - 1} changed file(s) and the model card to {self.url}"
            )

    def _local_files(self) -> list[str]:
        """The files to mirror, as sorted ``/``-separated relative paths."""
        found: list[str] = []
        for directory, folders, names in os.walk(self.output_dir):
            folders.sort()
            for name in names:
                if name.startswith(".") and name.endswith(".tmp"):
                    continue  # an atomic_write in progress (or left by a crash)
                path = os.path.join(directory, name)
                relative = os.path.relpath(path, self.output_dir).replace(os.sep, "/")
                if relative != self.card_filename and os.path.isfile(path):
                    found.append(relative)
        return sorted(found)

    def _remote_path(self, relative: str) -> str:
        root = self.root.rstrip("/")
        if not root:
            return f"/{relative}" if self.root.startswith("/") else relative
        return f"{root}/{relative}"

    def _upload(self, local: str, relative: str) -> None:
        """Upload one file so that its final name only ever names a complete file."""
        final = self._remote_path(relative)
        folder, name = posixpath.split(final)
        if self.protocol in _LOCAL_PROTOCOLS and folder:
            self.fs.makedirs(folder, exist_ok=True)
        if self.publish == "direct":
            self.fs.put_file(local, final)
        else:
            temporary = posixpath.join(folder, f".{name}.{uuid.uuid4().hex[:12]}.tmp")
            try:
                self.fs.put_file(local, temporary)
                self.fs.mv(temporary, final)
            except BaseException:
                with contextlib.suppress(Exception):
                    self.fs.rm_file(temporary)
                raise
        self.upload_count += 1

    def _card(self, trigger: str, manifest: dict[str, dict[str, Any]]) -> dict[str, Any]:
        return {
            "format": CARD_FORMAT,
            "trigger": trigger,
            "epoch": self._epochs_done,
            "step": self._step,
            "logs": {str(key): _jsonable(value) for key, value in self._epoch_logs.items()},
            "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "files": manifest,
        }

    # -- state ------------------------------------------------------------------------

    @property
    def state_key(self) -> str:
        """``PushToRemote[url=..., output_dir=...]``."""
        return f"PushToRemote[url={self.url}, output_dir={self.output_dir}]"

    def state_dict(self) -> dict[str, Any]:
        """The global step, the epochs done, the last epoch logs and what was uploaded.

        Restored, a resumed run pushes at the same steps as an unbroken one and
        does not upload again the files that are already on the remote side.
        """
        return {
            "step": self._step,
            "epochs_done": self._epochs_done,
            "epoch_logs": {str(k): _jsonable(v) for k, v in self._epoch_logs.items()},
            "uploaded": {
                name: [record.size, record.mtime_ns, record.sha256]
                for name, record in self._uploaded.items()
            },
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a saved state; the next ``on_train_begin`` keeps it instead of resetting."""
        self._step = int(state["step"])
        self._epochs_done = int(state["epochs_done"])
        self._epoch_logs = dict(state["epoch_logs"])
        self._uploaded = {
            str(name): _Uploaded(int(size), int(mtime_ns), str(sha256))
            for name, (size, mtime_ns, sha256) in state["uploaded"].items()
        }
        self._resumed = True

    def __repr__(self) -> str:
        return (
            f"PushToRemote(output_dir={self.output_dir!r}, url={self.url!r}, "
            f"save_strategy={self.save_strategy!r}, save_steps={self.save_steps!r})"
        )


# -- helpers --------------------------------------------------------------------------


def _resolve(
    url: str, storage_options: dict[str, Any], secrets: tuple[str, ...]
) -> tuple[Any, str]:
    """The filesystem and path of ``url``, with errors that name the ``url`` parameter
    (its credentials redacted)."""
    fsspec = import_fsspec()
    if not url:
        raise ValueError("PushToRemote url must not be empty (e.g. 'file:///path', 's3://b/p')")
    shown = redact_url(url)
    protocol = fsspec.core.split_protocol(url)[0] or "file"
    for part in protocol.split("::"):
        try:
            fsspec.get_filesystem_class(part)
        except ValueError:
            known = ", ".join(sorted(fsspec.available_protocols()))
            raise ValueError(
                f"PushToRemote url {shown!r}: fsspec knows no protocol {part!r}; "
                f"known protocols: {known}"
            ) from None
        except ImportError as error:
            raise ImportError(
                f"PushToRemote url {shown!r} needs the fsspec backend for {part!r}: {error}"
            ) from error
    failure: Exception | None = None
    try:
        fs, root = fsspec.core.url_to_fs(url, **storage_options)
    except (ValueError, TypeError, OSError) as error:
        failure = error
    if failure is None:
        return fs, str(root)
    # Raised outside the except block, chained only when the error's text is clean.
    text = f"{type(failure).__name__}: {failure}"
    redacted = redact_text(text, secrets)
    message = f"PushToRemote url {shown!r} could not be opened: {redacted}"
    kind: type[Exception] = OSError if isinstance(failure, OSError) else ValueError
    if redacted == text:
        raise kind(message) from failure
    raise kind(f"{message} (credentials redacted; the cause is not chained)")


def _protocol(fs: Any) -> str:
    protocol = fs.protocol
    return str(protocol[0] if isinstance(protocol, (tuple, list)) else protocol)


def _check_no_overlap(output_dir: str, root: str, shown: str) -> None:
    local = os.path.realpath(output_dir)
    remote = os.path.realpath(root)
    if (
        local == remote
        or remote.startswith(local.rstrip(os.sep) + os.sep)
        or local.startswith(remote.rstrip(os.sep) + os.sep)
    ):
        raise ValueError(
            f"PushToRemote url {shown!r} and output_dir {output_dir!r} overlap: the mirror "
            "must be outside the folder it mirrors, and the other way round"
        )


def _checked_name(parameter: str, name: str) -> str:
    if not name or name in (".", "..") or "/" in name or os.sep in name:
        raise ValueError(
            f"PushToRemote {parameter} must be a plain file name (no folders), got {name!r}"
        )
    return name


def _checked_relative(parameter: str, path: str, card_filename: str) -> str:
    parts = path.replace(os.sep, "/").split("/")
    if not path or os.path.isabs(path) or any(part in ("", ".", "..") for part in parts):
        raise ValueError(
            f"PushToRemote {parameter} must be a relative path inside output_dir, got {path!r}"
        )
    if path == card_filename:
        raise ValueError(
            f"PushToRemote {parameter} {path!r} is the model card's name (card_filename)"
        )
    return path


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _jsonable(value: Any) -> Any:
    """``value`` as JSON: numbers and NumPy scalars/arrays as numbers, others as text."""
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    tolist = getattr(value, "tolist", None)  # NumPy, torch and JAX scalars and arrays
    if callable(tolist):
        with contextlib.suppress(Exception):
            return _jsonable(tolist())
    return repr(value)


__all__ = ["PushToRemote", "RemotePushError", "import_fsspec"]
