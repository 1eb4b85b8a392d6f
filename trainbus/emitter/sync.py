"""The points at which the ranks of a distributed run agree: at most two collectives an epoch.

Every rank delivers every event; batch logs stay local. Where the ranks must
agree, the emitter makes one collective each (see :mod:`trainbus.distributed`):

* **train begin** (once per run): every rank attached the same stateful
  callbacks (:func:`check_same_callbacks`);
* **before** ``EpochEnd`` (and a standalone evaluation's ``TestEnd``): the epoch's
  numeric results become exact global weighted means, the same on every rank
  (:func:`global_means`);
* **after** ``EpochEnd``: if any rank asked to stop, every rank stops, and the
  state that must agree (learning rate, stateful callbacks) is compared
  (:func:`agree_on_stop`).

Each packs what it needs into one vector in which every rank fills its own
slots, so one ``all_reduce("sum")`` tells every rank what every other rank has:
a disagreement is seen by all of them at once, and all raise the same
:class:`~trainbus.distributed.DivergedError` instead of one training on.

Example:
    >>> from trainbus.distributed import Local
    >>> global_means(Local(), {"loss": 0.5, "note": "warmup"}, {"loss": (1.5, 3.0)}, batches=3)
    {'loss': 0.5, 'note': 'warmup'}
"""

from __future__ import annotations

import contextlib
import json
import math
import warnings
import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from trainbus.distributed import Collective, DivergedError
from trainbus.state import stateful_callbacks

Part = tuple[Any, float]
"""A key's share of a global mean: its (weighted) sum on this rank, and the weight."""


def crc(text: str) -> int:
    """A CRC32 of ``text``: exact in a float64, cheap to compare across ranks."""
    return zlib.crc32(text.encode())


def syncable(value: Any) -> bool:
    """Whether a log value can be averaged across ranks: a number or a 0-d array."""
    if isinstance(value, (int, float)):
        return True
    return getattr(value, "ndim", None) == 0 and not isinstance(value, (str, bytes))


def own_slots(collective: Collective, value: float) -> list[float]:
    """A vector of ``world_size`` zeros with ``value`` in this rank's slot."""
    slots = [0.0] * collective.world_size
    slots[collective.rank] = float(value)
    return slots


def ranks_where(values: Sequence[float], predicate: Any) -> list[int]:
    """The ranks (indices into ``values``, one value per rank) whose value satisfies ``predicate``.

    Example:
        >>> ranks_where([1.0, 2.0, 1.0], lambda value: value != 1.0)
        [1]
    """
    return [rank for rank, value in enumerate(values) if predicate(value)]


def check_same_callbacks(collective: Collective, callbacks: Iterable[object]) -> None:
    """Raise on every rank unless every rank attached the same stateful callbacks.

    A stateful callback attached on some ranks only (a ``BackupAndRestore`` on
    the primary alone) would restore or decide on those ranks only.
    """
    keys = sorted(stateful_callbacks(callbacks))
    fingerprints = collective.all_reduce(own_slots(collective, crc("\0".join(keys))), "sum")
    if len(set(fingerprints)) == 1:
        return
    primary_keys = collective.broadcast(keys)
    differ = ranks_where(fingerprints, lambda value: value != fingerprints[collective.primary])
    missing = sorted(set(primary_keys) - set(keys))
    extra = sorted(set(keys) - set(primary_keys))
    raise DivergedError(
        f"ranks {differ} attached other stateful callbacks than the primary (rank "
        f"{collective.primary}); this rank ({collective.rank}) lacks {missing or 'none'} and has "
        f"{extra or 'no'} others. Attach the same callbacks on every rank: trainbus's file "
        "writers write on the primary by themselves"
    )


def global_means(
    collective: Collective,
    logs: Mapping[str, Any],
    parts: Mapping[str, Part],
    *,
    batches: int,
    same_batches: bool = False,
) -> dict[str, Any]:
    """``logs`` with every numeric value replaced by its exact global weighted mean.

    ``parts`` gives, for keys that are means of batch values, their weighted sum
    and total weight on this rank (other numeric values count once). Strings and
    arrays stay as this rank has them. ``batches`` is this rank's number of
    batches; with ``same_batches`` every rank must have had as many.

    Raises:
        DivergedError: the ranks logged other keys, or (``same_batches``) other
            numbers of batches.
    """
    keys = [key for key, value in logs.items() if syncable(value)]
    values: list[Any] = []
    for key in keys:
        total, weight = parts.get(key, (logs[key], 1.0))
        values += [total, weight]
    head = own_slots(collective, crc("\0".join(keys))) + own_slots(collective, batches)
    summed = collective.all_reduce(head + values, "sum")
    world = collective.world_size
    fingerprints, counts, sums = summed[:world], summed[world : 2 * world], summed[2 * world :]
    if len(set(fingerprints)) > 1:
        _raise_other_keys(collective, keys, fingerprints)
    if same_batches and len(set(counts)) > 1:
        raise DivergedError(
            f"the ranks ran different numbers of batches this epoch ({[int(c) for c in counts]} "
            "by rank); stop_check_every needs the same on every rank (a DistributedSampler "
            "pads or drops to ensure it)"
        )
    result = dict(logs)
    for index, key in enumerate(keys):
        result[key] = sums[2 * index] / sums[2 * index + 1]
    return result


def _raise_other_keys(collective: Collective, keys: list[str], fingerprints: list[float]) -> None:
    primary_keys = collective.broadcast(keys)
    differ = ranks_where(fingerprints, lambda value: value != fingerprints[collective.primary])
    raise DivergedError(
        f"ranks {differ} logged other numeric keys than the primary (rank {collective.primary}): "
        f"this rank ({collective.rank}) logged {keys}, the primary {primary_keys}. Log the same "
        "keys on every rank (a value that is a number on one rank and a string or an array on "
        "another counts as another key)"
    )


def agree_on_stop(
    collective: Collective, stop: bool, fingerprints: Sequence[tuple[str, int]]
) -> bool:
    """Whether any rank asked to stop; raises if the state that must agree differs.

    ``fingerprints`` name and fingerprint what every rank must have the same of
    (the learning rate, stateful callbacks' states), in the same order on every
    rank.

    Raises:
        DivergedError: a fingerprint differs between ranks (named, with the ranks).
    """
    world = collective.world_size
    vector = own_slots(collective, 1.0 if stop else 0.0)
    for _name, value in fingerprints:
        vector += own_slots(collective, value)
    summed = collective.all_reduce(vector, "sum")
    stops = summed[:world]
    for index, (name, _value) in enumerate(fingerprints):
        seen = summed[world * (index + 1) : world * (index + 2)]
        if len(set(seen)) > 1:
            differ = ranks_where(seen, lambda value, ref=seen[collective.primary]: value != ref)
            raise DivergedError(
                f"{name} differs between the ranks: ranks {differ} disagree with the primary "
                f"(rank {collective.primary}). A callback decided on rank-local values, or "
                "changed the model on some ranks only; training on would diverge"
            )
    asked = ranks_where(stops, lambda value: value > 0)
    if asked and len(asked) < world:  # the run stops here, so this is said once
        warnings.warn(
            f"trainbus: ranks {asked} asked to stop and the others did not; every rank stops "
            "after this epoch",
            UserWarning,
            stacklevel=4,
        )
    return bool(asked)


def any_rank_stops(collective: Collective, stop: bool) -> bool:
    """Whether any rank asked to stop: one ``all_reduce("max")`` of one flag."""
    return collective.all_reduce([1.0 if stop else 0.0], "max")[0] > 0


def state_fingerprints(model: Any, callbacks: Iterable[object]) -> list[tuple[str, int]]:
    """What must be the same on every rank after an epoch, fingerprinted.

    The learning rate of the model's optimizer, if it has one, and the state of
    each stateful callback whose ``state_is_replicated`` is not false (a file
    writer's own bookkeeping differs between the primary and the others).
    """
    found: list[tuple[str, int]] = []
    optimizer = getattr(model, "optimizer", None)
    rate = getattr(optimizer, "learning_rate", None)
    if rate is not None:
        with contextlib.suppress(TypeError, ValueError):  # a rate that is not one number
            found.append(("the learning rate", crc(repr(float(rate)))))
    for key, callback in sorted(stateful_callbacks(callbacks).items()):
        if getattr(callback, "state_is_replicated", True):
            state = json.dumps(callback.state_dict(), sort_keys=True, default=_plain)
            found.append((f"the state of {key!r}", crc(state)))
    return found


def _plain(value: Any) -> Any:
    """JSON for what ``state_dict`` may hold besides JSON: NumPy values and arrays."""
    tolist = getattr(value, "tolist", None)
    if tolist is not None:
        return tolist()
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return repr(value)
