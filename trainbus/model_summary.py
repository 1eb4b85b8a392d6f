"""``count_params()`` and ``summary()`` for model handles, as Keras models have them.

Callbacks copied from Keras tutorials call ``self.model.count_params()`` and
``self.model.summary()``. A handle describes its model as a list of
:class:`LayerInfo` (one row per layer: a torch module that holds parameters,
a group of JAX leaves, a NumPy array) and :func:`render_summary` prints the
table, in the spirit of Keras's: one row per layer with its name, type,
weight shapes and parameter count, then the totals. Output shapes are not
known without running the model, so the shapes shown are the weights'.

Example:
    >>> layers = [LayerInfo("dense", "Linear", [(3, 2), (2,)], 8),
    ...           LayerInfo("norm", "BatchNorm", [(2,)], 2, trainable=False)]
    >>> render_summary("demo", layers)
    Model: "demo"
    ┌──────────────────────┬──────────────────────┬────────────────┐
    │ Layer (type)         │ Weight shapes        │        Param # │
    ├──────────────────────┼──────────────────────┼────────────────┤
    │ dense (Linear)       │ (3, 2), (2,)         │              8 │
    │ norm (BatchNorm)     │ (2,)                 │              2 │
    └──────────────────────┴──────────────────────┴────────────────┘
     Total params: 10
     Trainable params: 8
     Non-trainable params: 2
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class LayerInfo:
    """One row of a summary.

    Attributes:
        name: The layer's name (a torch module path, a JAX key path).
        kind: Its type (the module's class, ``ndarray``...).
        shapes: The shapes of its weights.
        params: How many scalars its weights hold.
        trainable: Whether its weights are trained (a frozen torch module's are not).
    """

    name: str
    kind: str
    shapes: Sequence[tuple[int, ...]] = field(default_factory=list)
    params: int = 0
    trainable: bool = True


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def render_summary(
    title: str,
    layers: Sequence[LayerInfo],
    line_length: int | None = None,
    print_fn: Callable[..., object] | None = None,
) -> None:
    """Print the summary table of ``layers`` (Keras's ``summary`` arguments of the same names).

    Args:
        title: The model's name, shown as ``Model: "<title>"``.
        layers: The rows.
        line_length: The table's total width (at least 40; default 64).
        print_fn: Called with each line (default ``print``).

    Raises:
        ValueError: ``line_length`` is below 40.
    """
    width = 64 if line_length is None else line_length
    if width < 40:
        raise ValueError(f"line_length must be at least 40, got {line_length!r}")
    out = print if print_fn is None else print_fn
    columns = [(width - 4) * 3 // 8, (width - 4) * 3 // 8]
    columns.append(width - 4 - sum(columns))

    def row(cells: Sequence[str], right_last: bool = True) -> str:
        texts = []
        for index, (cell, size) in enumerate(zip(cells, columns)):
            text = cell if len(cell) <= size - 2 else cell[: size - 3] + "…"
            right = right_last and index == len(columns) - 1
            texts.append(" " + (text.rjust(size - 2) if right else text.ljust(size - 2)) + " ")
        return "│" + "│".join(texts) + "│"

    def rule(left: str, middle: str, right: str) -> str:
        return left + middle.join("─" * size for size in columns) + right

    out(f'Model: "{title}"')
    out(rule("┌", "┬", "┐"))
    out(row(["Layer (type)", "Weight shapes", "Param #"]))
    out(rule("├", "┼", "┤"))
    for layer in layers:
        shapes = ", ".join(_shape(tuple(shape)) for shape in layer.shapes)
        out(row([f"{layer.name} ({layer.kind})", shapes, f"{layer.params:,}"]))
    out(rule("└", "┴", "┘"))
    total = sum(layer.params for layer in layers)
    trainable = sum(layer.params for layer in layers if layer.trainable)
    out(f" Total params: {total:,}")
    out(f" Trainable params: {trainable:,}")
    out(f" Non-trainable params: {total - trainable:,}")


__all__ = ["LayerInfo", "render_summary"]
