"""A Keras callback that keeps the model's weights at every epoch end, for tests of any loop."""

from __future__ import annotations

from typing import Any

import numpy as np


def weight_snapshots() -> tuple[dict[int, list[np.ndarray]], Any]:
    """A LambdaCallback that keeps ``model.get_weights()`` at every epoch end."""
    import keras

    snapshots: dict[int, list[np.ndarray]] = {}
    holder: dict[str, Any] = {}

    def at_epoch_end(epoch: int, logs: Any) -> None:
        snapshots[epoch] = holder["cb"].model.get_weights()

    holder["cb"] = keras.callbacks.LambdaCallback(on_epoch_end=at_epoch_end)
    return snapshots, holder["cb"]
