"""The PyTorch adapter: a model handle and Keras-style ``fit``/``evaluate``/``predict``.

Importing this package imports torch; ``import trainbus`` never does.
If keras is not imported yet, ``KERAS_BACKEND`` is unset and ``keras.json``
names no backend that can run, it sets ``KERAS_BACKEND=torch``, so a later
``import keras`` runs keras's callbacks on torch (keras would otherwise look
for TensorFlow).

* :class:`TorchModel`: :class:`~trainbus.ModelHandle` over an ``nn.Module``
  (``DataParallel``/``DistributedDataParallel`` unwrapped), with ``.pt``,
  ``.weights.h5``, ``.keras`` and ``.npz`` files.
* :class:`TorchOptimizer`: ``learning_rate``/``iterations`` over a
  ``torch.optim.Optimizer``.
* :class:`TorchCollective`: trainbus's collectives over ``torch.distributed``
  (found by ``collective="auto"`` once the process group is initialised).
* torch's CPU/CUDA generators, ``torch.Generator``, ``DataLoader`` and
  ``Sampler`` states saved by ``BackupAndRestore`` (:mod:`trainbus_torch.rng`).
* :func:`fit`, :func:`evaluate`, :func:`predict`: Keras's hook order on a plain
  PyTorch model, logs kept as detached tensors (no host sync per step).
  The step is open (:mod:`trainbus_torch.step`): a ``TorchModel`` subclass may
  override ``train_step``/``test_step``/``predict_step``, and ``fit`` takes
  ``precision``, ``clip_norm``/``clip_value``, ``accumulate`` and ``scheduler``.
"""

try:
    import torch  # noqa: F401
except ImportError as error:  # say which extra brings it, not just "No module named 'torch'"
    raise ImportError(
        "trainbus_torch needs PyTorch, which is not installed: "
        "pip install trainbus[torch] (or install torch as its docs say for your platform)"
    ) from error

from trainbus.fitting import prefer_keras_backend

prefer_keras_backend("torch")

import trainbus_torch.rng  # noqa: E402,F401  (registers torch's generators with trainbus.rng)
from trainbus_torch.distributed import TorchCollective  # noqa: E402
from trainbus_torch.model import TorchModel, TorchOptimizer  # noqa: E402
from trainbus_torch.training import evaluate, fit, predict  # noqa: E402

__all__ = ["TorchCollective", "TorchModel", "TorchOptimizer", "evaluate", "fit", "predict"]
