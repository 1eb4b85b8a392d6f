"""The JAX adapter: a model handle and Keras-style ``fit``/``evaluate``/``predict``.

Importing this package imports jax and optax; ``import trainbus`` never does.
If keras is not imported yet, ``KERAS_BACKEND`` is unset and ``keras.json``
names no backend that can run, it sets ``KERAS_BACKEND=jax``, so a later
``import keras`` runs keras's callbacks on JAX (keras would otherwise look
for TensorFlow).

* :class:`JaxModel`: :class:`~trainbus.ModelHandle` over a params pytree and an
  optax optimizer state, with ``.npz``, ``.weights.h5`` and ``.keras`` files.
* :class:`JaxOptimizer`: ``learning_rate``/``iterations`` over an optax state
  built with ``optax.inject_hyperparams`` (a new rate reaches the next jitted
  step without recompiling it).
* :class:`JaxCollective`: trainbus's collectives across JAX processes (found by
  ``collective="auto"`` once ``jax.distributed`` is initialised).
* :func:`fit`, :func:`evaluate`, :func:`predict`: Keras's hook order around your
  own (jitted) step functions, logs kept as JAX arrays (no host sync per step).
"""

try:
    import jax  # noqa: F401
except ImportError as error:  # say which extra brings them, not just "No module named 'jax'"
    raise ImportError(
        "trainbus_jax needs JAX, which is not installed: pip install trainbus[jax]"
    ) from error

from trainbus.fitting import prefer_keras_backend

prefer_keras_backend("jax")

from trainbus_jax.distributed import JaxCollective  # noqa: E402
from trainbus_jax.model import JaxModel, JaxOptimizer  # noqa: E402
from trainbus_jax.training import evaluate, fit, predict  # noqa: E402

__all__ = ["JaxCollective", "JaxModel", "JaxOptimizer", "evaluate", "fit", "predict"]
