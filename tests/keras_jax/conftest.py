"""Real ``keras.callbacks`` on JAX loops: keras must run its jax backend in this process.

``tests/conftest.py`` collects this directory only when ``KERAS_BACKEND=jax``;
the digits MLP helpers are shared with ``tests/jax_adapter`` (``_jax_digits``).
"""

from __future__ import annotations

import sys
from pathlib import Path

ADAPTER_TESTS = str(Path(__file__).resolve().parents[1] / "jax_adapter")
if ADAPTER_TESTS not in sys.path:
    sys.path.insert(0, ADAPTER_TESTS)
