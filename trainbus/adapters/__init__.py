"""Framework adapters: the only code in trainbus that imports a framework.

* :mod:`trainbus.adapters.loop`: plain Python/NumPy loops (``NumpyModel``).
* :mod:`trainbus.adapters.torch`: PyTorch (``TorchModel``, ``fit``, ``evaluate``,
  ``predict``); needs the ``torch`` extra.
* :mod:`trainbus.adapters.jax`: JAX and optax (``JaxModel``, ``fit``,
  ``evaluate``, ``predict`` around your jitted step); needs the ``jax`` extra.
"""
