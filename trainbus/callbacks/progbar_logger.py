"""``ProgbarLogger``: a progress bar per epoch in a terminal, a line per epoch elsewhere.

Keras's semantics, read from ``params``: ``verbose=1`` (or ``"auto"``) draws one
bar per epoch, advanced at every batch end and showing the batch logs, the rate
and the time left; ``verbose=2`` prints one line per epoch at its end, with the
epoch logs; ``verbose=0`` prints nothing. ``Epoch 3/10`` heads each epoch when
there is more than one. Validation inside training is silent; a standalone
evaluation or prediction run gets its own bar (or line).

It writes to ``sys.stderr`` (Keras prints to stdout). A bar needs a terminal:
where jobs really run (SLURM, ``nohup``, CI logs, pipes) ``verbose=1`` prints
the ``verbose=2`` line per epoch instead, so a log file gets one readable line
an epoch rather than nothing or thousands of redraws; pass ``force=True`` to
draw bars anyway, for example into a notebook. Bars are drawn with tqdm, which
the ``torch`` and ``jax`` extras install; without it a terminal gets the line
per epoch and one warning. ``import trainbus`` does not need tqdm.

Example:
    >>> import io
    >>> from trainbus import Bus, Emitter
    >>> out = io.StringIO()
    >>> bus = Bus()
    >>> _ = bus.attach(ProgbarLogger(stream=out))  # not a terminal: a line per epoch
    >>> emitter = Emitter(bus, params={"verbose": 1})
    >>> with emitter.training(epochs=2) as epochs:
    ...     for epoch in epochs:
    ...         for batch in emitter.batches(range(3)):
    ...             emitter.log(loss=1.0 / (epoch + batch + 1))
    >>> print(out.getvalue())
    Epoch 1/2
    3/3 - 0s - ...s/step - loss: 0.6111
    Epoch 2/2
    3/3 - 0s - ...s/step - loss: 0.3611
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from collections.abc import Mapping
from contextlib import suppress
from typing import Annotated, Any, Protocol

from pydantic import AfterValidator, Field, validate_call

from trainbus._optional import import_optional
from trainbus.callbacks.base import Callback
from trainbus.callbacks.writer import PrimaryWriter
from trainbus.logs import Logs, raw_items, to_python

NonNegativeFloat = Annotated[float, Field(ge=0)]


class TextStream(Protocol):
    """What the bar writes to: ``write`` and ``flush`` (``isatty`` if it has one)."""

    def write(self, text: str, /) -> Any: ...

    def flush(self) -> Any: ...


def _check_stream(stream: Any) -> Any:
    if stream is not None and not (
        callable(getattr(stream, "write", None)) and callable(getattr(stream, "flush", None))
    ):
        raise ValueError(
            f"stream must be a text stream with write() and flush() (such as sys.stderr "
            f"or an open file), got {stream!r}"
        )
    return stream


Stream = Annotated[Any, AfterValidator(_check_stream)]

_BAR_FORMAT = "{n_fmt}/{total_fmt} |{bar}| {elapsed}<{remaining}, {rate_fmt}{postfix}"
_bar_class: Any = None


def _tqdm() -> Any:
    """tqdm's bar class, without its monitor thread (imported on first use).

    Raises:
        ImportError: tqdm is not installed (the message says how to install it).
    """
    global _bar_class
    if _bar_class is None:
        module = import_optional(
            "tqdm",
            needed_by="ProgbarLogger's progress bar",
            install="pip install tqdm (the 'torch' and 'jax' extras of trainbus install it)",
        )
        # The monitor thread only tunes update(); this callback redraws by itself.
        _bar_class = type("_Bar", (module.tqdm,), {"monitor_interval": 0})
    return _bar_class


def resolve_verbose(verbose: Any) -> int:
    """Keras's ``params["verbose"]`` as an int: ``"auto"`` is 1.

    Raises:
        ValueError: ``verbose`` is not ``"auto"`` or a non-negative int.
    """
    if verbose == "auto":
        return 1
    if isinstance(verbose, int) and verbose >= 0:
        return int(verbose)
    raise ValueError(
        f'params["verbose"] must be "auto", 0 (silent), 1 (a progress bar) or 2 '
        f"(one line per epoch), got {verbose!r}"
    )


def format_value(value: float) -> str:
    """A metric as Keras shows it: 4 decimals above 1e-3, else scientific (negatives too).

    Example:
        >>> format_value(0.25), format_value(0.0001), format_value(-0.25)
        ('0.2500', '1.0000e-04', '-2.5000e-01')
    """
    return f"{value:.4f}" if value > 1e-3 else f"{value:.4e}"


def format_logs(logs: Mapping[str, Any] | None) -> str:
    """``"loss: 0.1234 - acc: 0.5000"``: the scalar numbers in ``logs``, in their order.

    Arrays and tensors with more than one element (prediction ``outputs``) and
    non-numbers are left out without being converted; a :class:`~trainbus.Logs`
    converts each shown value once and keeps it converted.
    """
    if not logs:
        return ""
    lazy = isinstance(logs, Logs)
    parts = []
    for key, raw in raw_items(logs):
        if getattr(raw, "ndim", 0) != 0:
            continue
        value = logs[key] if lazy else to_python(raw)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            parts.append(f"{key}: {format_value(value)}")
    return " - ".join(parts)


def _format_time(seconds: float) -> str:
    if seconds >= 1 or seconds == 0:
        return f"{seconds:.0f}s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms"
    return f"{seconds * 1e6:.0f}us"


def _is_terminal(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    if isatty is None:
        return False
    try:
        return bool(isatty())
    except (ValueError, OSError):  # closed or detached
        return False


class ProgbarLogger(PrimaryWriter, Callback):
    """Show training progress: a tqdm bar per epoch, or a line per epoch.

    What it shows follows ``params["verbose"]`` (set by the emitter, as Keras's
    ``fit(verbose=...)``): ``1`` or ``"auto"``, a bar per epoch when the stream
    is a terminal, advanced by the batches each batch event covers (so it stays
    right with ``steps_per_execution``) and closed at the epoch's end with the
    epoch logs, and the ``verbose=2`` line per epoch when it is not; ``2``, one
    line per epoch, ``7/7 - 1s - 143ms/step - loss: 0.1234``, terminal or not;
    ``0``, nothing. ``params["steps"]`` is the bar's total (``None``: unknown,
    shown as ``?`` until the epoch ends).

    =================  ==========================  ==========================
    ``verbose``        terminal                    file, pipe, CI log
    =================  ==========================  ==========================
    ``0``              nothing                     nothing
    ``1``, ``"auto"``  a bar per epoch             a line per epoch
    ``2``              a line per epoch            a line per epoch
    =================  ==========================  ==========================

    A bar needs tqdm; where it is missing, a terminal gets the line per epoch
    and one ``UserWarning`` saying how to install it.

    Args:
        stream: Where to write; ``None`` means ``sys.stderr``, looked up when a
            run starts (so redirections made before it apply). The stream is
            never closed by the callback.
        force: With ``verbose=1``, draw bars even when ``stream`` is not a
            terminal (notebooks, or a log meant to hold every redraw).
            Otherwise a stream that is not a TTY gets a line per epoch.
        interval: Minimum seconds between two redraws of a bar. The batch logs
            are read (a tensor converted to a number) only when the bar is
            redrawn, and only the values it shows; with ``verbose=2`` never.

    Arguments are validated when the callback is built; a bad one raises a
    ``pydantic.ValidationError`` (a ``ValueError``) naming it.

    Differences from Keras's ``ProgbarLogger``: output goes to stderr, and
    ``verbose=1`` prints lines, not a bar, where the stream is not a terminal
    (unless forced); metrics appear in the order the loop logged
    them (Keras sorts them); a bar cut short by ``stop_training`` ends at the
    batch reached (Keras jumps to the total); a run that raised leaves its bar
    closed at the batch reached (trainbus's ``on_aborted``); a standalone
    evaluation or prediction bar has an unknown total until it ends (the
    emitter keeps the training ``steps`` in ``params``; Keras sets the run's);
    in a distributed run only the primary draws (see
    :mod:`trainbus.callbacks.writer`; ``fit``, ``evaluate`` and ``predict``
    also attach it on the primary only), showing its own batch values and the
    global epoch results.
    """

    @validate_call
    def __init__(
        self, stream: Stream = None, force: bool = False, interval: NonNegativeFloat = 0.1
    ) -> None:
        super().__init__()
        self.stream: TextStream | None = stream
        self.force = force
        self.interval = interval
        self.verbose = 1
        self.epochs = 1
        self._out: TextStream | None = None  # the current run's stream; None: silent
        self._bars = False  # the current run draws bars (else a line per epoch or run)
        self._warned = False  # the missing-tqdm warning was given
        self._in_fit = False
        self._bar: Any = None
        self._seen = 0  # batches done in the current epoch or run
        self._started = 0.0  # monotonic time the epoch or run started
        self._drawn = 0.0  # monotonic time of the last redraw

    def set_params(self, params: dict[str, Any]) -> None:
        """Read ``verbose`` and ``epochs``; a bad ``verbose`` raises ``ValueError``."""
        super().set_params(params)
        self.verbose = resolve_verbose(params.get("verbose", "auto"))
        self.epochs = int(params.get("epochs") or 1)

    # -- training ----------------------------------------------------------------------

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        self._in_fit = True
        self._open_run()

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        out = self._out
        if out is None:
            return
        self._close_bar()  # an epoch left open by a loop that skipped on_epoch_end
        if self.epochs > 1:
            out.write(f"Epoch {epoch + 1}/{self.epochs}\n")
            out.flush()
        self._start(self.params.get("steps"))

    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        if self._out is not None:
            self._advance(batch, logs)

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        if self._out is not None:
            self._finish(logs)

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        self._in_fit = False
        self._release()

    # -- standalone evaluation and prediction (silent inside training) ---------------------

    def on_test_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        if not self._in_fit:
            self._open_run()
            self._start(None)

    def on_test_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        if not self._in_fit and self._out is not None:
            self._advance(batch, logs)

    def on_test_end(self, logs: Mapping[str, Any] | None = None) -> None:
        if not self._in_fit and self._out is not None:
            self._finish(logs)
            self._release()

    def on_predict_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        if not self._in_fit:
            self._open_run()
            self._start(None)

    def on_predict_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        if not self._in_fit and self._out is not None:
            self._advance(batch, None)  # outputs are not metrics

    def on_predict_end(self, logs: Mapping[str, Any] | None = None) -> None:
        if not self._in_fit and self._out is not None:
            self._finish(None)
            self._release()

    def on_aborted(self, phase: str, error: str, logs: Mapping[str, Any] | None = None) -> None:
        """The loop raised: close the bar where it stood and let go of the stream.

        Never raises (a broken stream included), so the loop's own exception is
        the one that propagates.
        """
        with suppress(Exception):
            self._close_bar()
        self._in_fit = False
        self._out = None

    # -- drawing --------------------------------------------------------------------------

    def _open_run(self) -> None:
        """Pick this run's stream (None: silent) and whether it draws bars or lines."""
        self._close_bar()
        stream = self.stream if self.stream is not None else sys.stderr
        quiet = self.verbose == 0 or stream is None or not self.writes_here
        self._out = None if quiet else stream
        self._bars = (
            not quiet
            and self.verbose == 1
            and (self.force or _is_terminal(stream))
            and self._have_tqdm()
        )

    def _have_tqdm(self) -> bool:
        """Whether bars can be drawn; if not, warn once (lines are printed instead)."""
        try:
            _tqdm()
        except ImportError as error:
            if not self._warned:
                self._warned = True
                warnings.warn(
                    f"{error}; printing one line per epoch instead of a progress bar",
                    UserWarning,
                    stacklevel=2,
                )
            return False
        return True

    def _start(self, total: int | None) -> None:
        if self._out is None:
            return
        self._seen = 0
        self._started = self._drawn = time.monotonic()
        if self._bars:
            self._bar = _tqdm()(
                total=total,
                file=self._out,
                unit="step",
                bar_format=_BAR_FORMAT,
                leave=True,
                dynamic_ncols=True,
            )

    def _advance(self, batch: int, logs: Mapping[str, Any] | None) -> None:
        self._seen = seen = batch + 1
        bar = self._bar
        if bar is None:  # a line per epoch: count only, the logs are not read
            return
        bar.n = seen  # advances by batch + 1 - previous: a whole steps_per_execution chunk
        now = time.monotonic()
        if now - self._drawn < self.interval:
            return
        self._drawn = now
        if bar.total is None and self._in_fit:
            bar.total = self.params.get("steps")  # learned from the data after epoch begin
        bar.set_postfix_str(format_logs(logs), refresh=False)
        bar.refresh()

    def _finish(self, logs: Mapping[str, Any] | None) -> None:
        seen = self._seen
        bar = self._bar
        if bar is not None:
            if bar.total is None:
                steps = self.params.get("steps") if self._in_fit else None
                bar.total = steps if steps is not None and steps >= seen else seen
            bar.n = seen
            bar.set_postfix_str(format_logs(logs), refresh=False)
            self._close_bar()
            return
        out = self._out
        if out is None:
            return
        steps = self.params.get("steps") if self._in_fit else None
        target = steps if steps is not None and steps >= seen else seen
        width = int(math.log10(target)) + 1 if target > 0 else 1
        elapsed = time.monotonic() - self._started
        per_step = _format_time(elapsed / max(seen, 1))
        line = f"{seen:{width}d}/{target} - {elapsed:.0f}s - {per_step}/step"
        shown = format_logs(logs)
        out.write(f"{line} - {shown}\n" if shown else f"{line}\n")
        out.flush()

    def _close_bar(self) -> None:
        bar = self._bar
        if bar is not None:
            self._bar = None
            bar.close()

    def _release(self) -> None:
        self._close_bar()
        self._out = None
