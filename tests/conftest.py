"""Shared test set-up.

Keras picks its backend when first imported and defaults to TensorFlow, which
is not installed: select the torch backend before any test module imports it.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")
