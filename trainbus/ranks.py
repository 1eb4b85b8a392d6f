"""Which ranks of a distributed run a subscriber is delivered on.

Every rank of a distributed run delivers every event (see
:mod:`trainbus.distributed`). A subscriber that should run on some ranks only
(a progress bar, your own file writer) says so with ``ranks=``:
``bus.on(EpochEnd, ranks="primary")``, ``bus.attach(callbacks, ranks={0, 3})``.
The choice is made when an emitter compiles its plans, so it costs nothing per
batch. An emitter's rank is known from its first begin event on; before that,
and without a collective, every emitter counts as the primary of a world of one.

Example:
    >>> class Rank1Of2:
    ...     rank, is_primary = 1, False
    >>> Ranks.parse("primary").admits(Rank1Of2()), Ranks.parse({0, 1}).admits(Rank1Of2())
    (False, True)
    >>> Ranks.parse("all") is None
    True
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

RanksSpec = Literal["all", "primary"] | Iterable[int] | None
"""``"all"`` (or ``None``), ``"primary"``, or the rank numbers to deliver on."""


class Ranks:
    """The ranks a subscriber is delivered on: the primary, or a set of rank numbers."""

    __slots__ = ("numbers", "primary")

    def __init__(self, *, primary: bool = False, numbers: frozenset[int] = frozenset()) -> None:
        self.primary = primary
        self.numbers = numbers

    @classmethod
    def parse(cls, spec: RanksSpec) -> Ranks | None:
        """The :class:`Ranks` for ``spec``; ``None`` for every rank (no filtering at all)."""
        if spec is None or spec == "all":
            return None
        if spec == "primary":
            return cls(primary=True)
        if isinstance(spec, (str, bytes)) or not isinstance(spec, Iterable):
            raise ValueError(
                f"ranks must be 'all', 'primary' or a set of rank numbers such as {{0, 3}}, "
                f"got {spec!r}"
            )
        numbers = frozenset(spec)
        bad = [n for n in numbers if isinstance(n, bool) or not isinstance(n, int) or n < 0]
        if bad or not numbers:
            raise ValueError(
                f"ranks must hold rank numbers (ints >= 0), got {sorted(map(repr, spec))}"
            )
        return cls(numbers=numbers)

    def admits(self, sender: object) -> bool:
        """Whether events from ``sender`` (an emitter; ``None`` counts as rank 0) reach it."""
        if self.primary:
            return bool(getattr(sender, "is_primary", True))
        return int(getattr(sender, "rank", 0)) in self.numbers

    def __repr__(self) -> str:
        if self.primary:
            return "'primary'"
        return "{" + ", ".join(map(str, sorted(self.numbers))) + "}"
