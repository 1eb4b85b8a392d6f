"""The PyTorch adapter: a model handle and Keras-style ``fit``/``evaluate``/``predict``.

Importing this package imports torch; ``import trainbus`` never does.

* :class:`TorchModel`: :class:`~trainbus.ModelHandle` over an ``nn.Module``
  (``DataParallel``/``DistributedDataParallel`` unwrapped), with ``.pt``,
  ``.weights.h5``, ``.keras`` and ``.npz`` files.
* :class:`TorchOptimizer`: ``learning_rate``/``iterations`` over a
  ``torch.optim.Optimizer``.
* :func:`fit`, :func:`evaluate`, :func:`predict`: Keras's hook order on a plain
  PyTorch model, logs kept as detached tensors (no host sync per step).
"""

from trainbus.adapters.torch.model import TorchModel, TorchOptimizer
from trainbus.adapters.torch.training import evaluate, fit, predict

__all__ = ["TorchModel", "TorchOptimizer", "evaluate", "fit", "predict"]
