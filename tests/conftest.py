"""Shared test set-up.

Keras picks its backend when first imported and defaults to TensorFlow, which
is not installed: select the torch backend before any test module imports it.
One process runs one keras backend, so the suite of real ``keras.callbacks`` on
JAX loops (``tests/keras_jax``) runs in a pytest run of its own
(``KERAS_BACKEND=jax pytest tests/keras_jax``; ``make test`` does both).
"""

from __future__ import annotations

import os

KERAS_BACKEND = os.environ.setdefault("KERAS_BACKEND", "torch")

collect_ignore = [] if KERAS_BACKEND == "jax" else ["keras_jax"]
