"""trainbus demo: one training job, three frameworks, the same callbacks.

``make demo`` runs the PyTorch demo; ``make demo FRAMEWORK=numpy`` or
``FRAMEWORK=jax`` runs the same digits classifier written in NumPy or JAX. Each
one is a script of its own (``examples/demo_<framework>.py``); options after
``--framework`` go to it (``--help`` lists them):

    .venv/bin/python examples/demo.py --framework torch --epochs 30 --out /tmp/run
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import Any

FRAMEWORKS = ("torch", "numpy", "jax")
HERE = Path(__file__).resolve().parent


def load_demo(framework: str) -> Any:
    """The ``main`` of ``examples/demo_<framework>.py``."""
    path = HERE / f"demo_{framework}.py"
    spec = importlib.util.spec_from_file_location(f"trainbus_demo_{framework}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module.main


def main(argv: list[str] | None = None) -> Any:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], add_help=False)
    parser.add_argument("--framework", choices=FRAMEWORKS, default="torch")
    args, rest = parser.parse_known_args(argv)
    return load_demo(args.framework)(rest)


if __name__ == "__main__":
    main()
