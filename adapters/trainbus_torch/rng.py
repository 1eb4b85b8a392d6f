"""torch's random generators, registered with :mod:`trainbus.rng` by ``import trainbus_torch``.

* process-wide: ``"torch"`` (the CPU generator) and ``"torch.cuda"`` (one
  state per CUDA device, saved only when CUDA is available and initialised:
  a run that never used CUDA draws nothing from it);
* sources: a ``torch.Generator``; a ``DataLoader`` (its ``generator``, which
  seeds its workers and a shuffling ``RandomSampler``, and its sampler's);
  a ``Sampler`` (its ``generator`` and, for a ``DistributedSampler``, its
  ``epoch``, put back with ``set_epoch``).

Example:
    >>> import torch
    >>> from torch.utils.data import DataLoader
    >>> from trainbus.rng import capture, restore
    >>> loader = DataLoader(range(6), batch_size=2, shuffle=True,
    ...                     generator=torch.Generator().manual_seed(0))
    >>> saved = capture([loader])
    >>> first = [batch.tolist() for batch in loader]
    >>> restore(saved, [loader])
    >>> [batch.tolist() for batch in loader] == first
    True
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from trainbus.rng import register_global_rng, register_rng_source


def _bytes(state: torch.Tensor) -> np.ndarray:
    array: np.ndarray = state.detach().cpu().numpy().copy()
    return array


def _tensor(state: Any) -> torch.Tensor:
    return torch.from_numpy(np.asarray(state, dtype=np.uint8).copy())


def _cpu_state() -> Any:
    return _bytes(torch.get_rng_state())


def _set_cpu_state(state: Any) -> None:
    torch.set_rng_state(_tensor(state))


def _cuda_state() -> Any:
    if not (torch.cuda.is_available() and torch.cuda.is_initialized()):  # type: ignore[no-untyped-call]
        return None
    return [_bytes(state) for state in torch.cuda.get_rng_state_all()]


def _set_cuda_state(state: Any) -> None:
    if not torch.cuda.is_available() or len(state) != torch.cuda.device_count():
        raise RuntimeError(
            f"trainbus: the backup holds the RNG states of {len(state)} CUDA devices, "
            f"this process sees {torch.cuda.device_count() if torch.cuda.is_available() else 0}"
        )
    torch.cuda.set_rng_state_all([_tensor(one) for one in state])


def _generator_state(generator: torch.Generator) -> Any:
    return _bytes(generator.get_state())


def _set_generator_state(generator: torch.Generator, state: Any) -> None:
    generator.set_state(_tensor(state))


def _own_generator(obj: object) -> torch.Generator | None:
    generator = getattr(obj, "generator", None)
    return generator if isinstance(generator, torch.Generator) else None


def _sampler_state(sampler: Sampler[Any]) -> dict[str, Any]:
    generator = _own_generator(sampler)
    epoch = getattr(sampler, "epoch", None)
    return {
        "generator": None if generator is None else _generator_state(generator),
        "epoch": epoch if isinstance(epoch, int) else None,
    }


def _set_sampler_state(sampler: Sampler[Any], state: Any) -> None:
    generator = _own_generator(sampler)
    if generator is not None and state.get("generator") is not None:
        _set_generator_state(generator, state["generator"])
    set_epoch = getattr(sampler, "set_epoch", None)
    if state.get("epoch") is not None and callable(set_epoch):
        set_epoch(state["epoch"])


def _samplers(loader: DataLoader[Any]) -> list[Any]:
    """The loader's samplers whose generator is not the loader's own (saved once)."""
    found = []
    for sampler in (loader.sampler, getattr(loader.batch_sampler, "sampler", None)):
        if isinstance(sampler, Sampler) and sampler not in found:
            found.append(sampler)
    return found


def _loader_state(loader: DataLoader[Any]) -> dict[str, Any]:
    generator = _own_generator(loader)
    return {
        "generator": None if generator is None else _generator_state(generator),
        "samplers": [_sampler_state(sampler) for sampler in _samplers(loader)],
    }


def _set_loader_state(loader: DataLoader[Any], state: Any) -> None:
    generator = _own_generator(loader)
    if generator is not None and state.get("generator") is not None:
        _set_generator_state(generator, state["generator"])
    for sampler, saved in zip(_samplers(loader), state.get("samplers", [])):
        if _own_generator(sampler) is generator:  # the loader's, already put back
            saved = {**saved, "generator": None}
        _set_sampler_state(sampler, saved)


def register() -> None:
    """Register torch's generators with :mod:`trainbus.rng` (done on import)."""
    register_global_rng("torch", _cpu_state, _set_cpu_state)
    register_global_rng("torch.cuda", _cuda_state, _set_cuda_state)
    register_rng_source(torch.Generator, "torch.Generator", _generator_state, _set_generator_state)
    register_rng_source(DataLoader, "torch.DataLoader", _loader_state, _set_loader_state)
    register_rng_source(Sampler, "torch.Sampler", _sampler_state, _set_sampler_state)


register()

__all__ = ["register"]
