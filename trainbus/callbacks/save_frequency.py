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

from typing import Literal


class BatchSaveCounter:
    """Mixin counting batches toward ``save_freq`` (``"epoch"`` never saves on batches)."""

    save_freq: int | Literal["epoch"] = "epoch"
    _batches_seen_since_last_saving: int = 0
    _last_batch_seen: int | None = None

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
