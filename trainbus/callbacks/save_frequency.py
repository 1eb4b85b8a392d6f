"""Keras's rule for ``save_freq=N``: save when N more batches have run.

``ModelCheckpoint`` and ``BackupAndRestore`` count batches from the end indices
their ``on_train_batch_end`` receives, so a ``steps_per_execution`` chunk counts
as all the batches it ran; the count runs on across epoch ends (indices restart
at 0), a save is due once the count reaches ``N``, and what a chunk overshoots
is dropped, as Keras does.

Example:
    >>> counter = BatchSaveCounter()
    >>> counter.save_freq = 3
    >>> [counter._should_save_on_batch(end) for end in (1, 3, 5, 1, 3, 5)]  # chunks of 2
    [False, True, False, True, False, True]
"""

from __future__ import annotations

from typing import Any, Literal

from trainbus.hooks import hook_is_skippable


class BatchSaveCounter:
    """Mixin counting batches toward ``save_freq`` (``"epoch"`` never saves on batches).

    Put it before the ``Callback`` base. With ``save_freq="epoch"``, call
    :meth:`_skip_batch_hook` once ``save_freq`` is set: the instance then has the
    base class's default ``on_train_batch_end``, so ``Bus.attach`` does not subscribe
    it and the callback costs nothing per batch (Keras calls it every batch),
    unless a subclass overrides the hook.
    """

    save_freq: int | Literal["epoch"] = "epoch"
    _batches_seen_since_last_saving: int = 0
    _last_batch_seen: int | None = None

    def _skip_batch_hook(self) -> None:
        if self.save_freq == "epoch" and hook_is_skippable(self, "on_train_batch_end"):
            self.on_train_batch_end = super().on_train_batch_end  # type: ignore[misc]

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("on_train_batch_end", None)  # a bound method: re-made on unpickling
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._skip_batch_hook()

    def _should_save_on_batch(self, batch: int) -> bool:
        """Count the batches that end index ``batch`` completes; True when a save is due."""
        if self.save_freq == "epoch":
            return False
        if self._last_batch_seen is None or batch <= self._last_batch_seen:
            added = batch + 1  # a new epoch: indices restart at 0
        else:
            added = batch - self._last_batch_seen
        self._batches_seen_since_last_saving += added
        self._last_batch_seen = batch
        if self._batches_seen_since_last_saving >= self.save_freq:
            self._batches_seen_since_last_saving = 0
            return True
        return False
