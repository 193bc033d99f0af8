"""Which of its queues a worker leases from first: strict order, or weights.

A worker given plain queue names (``queues=["a", "b"]``) leases from all of them at once, and the backend
picks the best ready jobs across them (by priority, then age). A :class:`QueueSelection` instead decides,
for every lease round, how many of the free slots each queue gets:

* :class:`StrictOrder` (``--queues high,low --strict``): ``low`` gets only what ``high`` cannot fill, so
  ``low`` runs only while ``high`` has nothing ready (Celery's and Sidekiq's strict ordering);
* :class:`WeightedQueues` (``--queues high=3,low=1``): each free slot goes to a queue drawn at random with
  these weights, so under a backlog in both about three ``high`` jobs run for each ``low`` one, and
  neither starves (Sidekiq's weighted queues); a queue's unused share goes to the others.

It works on every pull backend, because it only calls :meth:`~lssm_jobs.backends.base.PullBackend.lease`
with one queue at a time (``wait=0``, no blocking), then, when nothing at all was ready, once with every
queue and the usual wait, so an idle worker still blocks (and is woken) as without a selection.

A selection is a ``Sequence[str]`` of its queue names, so it is passed where queue names go
(``JobQueue(queues=...)``, ``ConsumeOptions.queues``) and backends that consume by themselves see names.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, overload

if TYPE_CHECKING:
    from lssm_jobs.backends.base import Delivery, PullBackend


class QueueSelection(Sequence[str], ABC):
    """Queue names plus how a lease round shares free slots among them."""

    def __init__(self, names: Sequence[str]) -> None:
        if not names:
            raise ValueError("a queue selection needs at least one queue name")
        if len(set(names)) != len(names):
            raise ValueError(f"queue names repeat: {', '.join(names)}")
        self.names: tuple[str, ...] = tuple(names)

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...

    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        return self.names[index]

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, QueueSelection)
            and type(other) is type(self)
            and self.describe() == other.describe()
        )

    def __hash__(self) -> int:
        return hash(self.describe())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()!r})"

    @abstractmethod
    def shares(self, slots: int) -> list[tuple[str, int]]:
        """How many of ``slots`` free slots each queue gets first, in the order to ask; a queue's unused
        share goes to the queues after it, then back to the first ones."""

    @abstractmethod
    def describe(self) -> str:
        """The selection as the command line writes it (``high=3,low=1`` or ``high>low``)."""

    async def lease(self, backend: PullBackend, *, limit: int, lease_ms: int, wait: float) -> list[Delivery]:
        """Lease up to ``limit`` jobs following this selection (what the pull consumer calls per round)."""
        leased: list[Delivery] = []
        order = self.shares(limit)
        may_have_more: list[str] = []
        for name, share in order:
            if share <= 0:
                may_have_more.append(name)
                continue
            got = await backend.lease(queues=[name], limit=share, lease_ms=lease_ms, wait=0)
            leased.extend(got)
            if len(got) >= share:
                may_have_more.append(name)
        for name in may_have_more:  # unused shares, to the queues that may still have ready jobs
            missing = limit - len(leased)
            if missing <= 0:
                break
            leased.extend(await backend.lease(queues=[name], limit=missing, lease_ms=lease_ms, wait=0))
        if leased or wait <= 0:
            return leased
        # Nothing ready anywhere: wait for a job in any of the queues, as a worker without a selection does.
        return await backend.lease(queues=list(self.names), limit=limit, lease_ms=lease_ms, wait=wait)


class StrictOrder(QueueSelection):
    """Lease from the first queue first; a later queue only gets the slots earlier ones leave free."""

    def shares(self, slots: int) -> list[tuple[str, int]]:
        return [(self.names[0], slots), *((name, 0) for name in self.names[1:])]

    def describe(self) -> str:
        return ">".join(self.names)


class WeightedQueues(QueueSelection):
    """Share free slots among queues at random, in proportion to their weights (positive integers)."""

    def __init__(self, weights: Mapping[str, int], *, rng: random.Random | None = None) -> None:
        super().__init__(list(weights))
        for name, weight in weights.items():
            if not isinstance(weight, int) or isinstance(weight, bool) or weight < 1:
                raise ValueError(f"queue {name!r}: a weight is an integer >= 1, got {weight!r}")
        self.weights: dict[str, int] = dict(weights)
        self._rng = rng or random.Random()
        self._population = list(self.weights)
        self._cumulative = [sum(list(self.weights.values())[: i + 1]) for i in range(len(self.weights))]

    def shares(self, slots: int) -> list[tuple[str, int]]:
        drawn = self._rng.choices(self._population, cum_weights=self._cumulative, k=max(slots, 1))
        counts = dict.fromkeys(self._population, 0)
        for name in drawn:
            counts[name] += 1
        # Ask the queues with the biggest draw first; the rest of the order is random by weight too, so
        # unused shares also go to heavier queues more often.
        order = sorted(self._population, key=lambda name: (-counts[name], self._rng.random()))
        return [(name, counts[name]) for name in order]

    def describe(self) -> str:
        return ",".join(f"{name}={weight}" for name, weight in self.weights.items())


def parse_queues(text: str, *, strict: bool = False) -> Sequence[str]:
    """Parse the ``--queues`` option: ``a,b`` (plain names), ``a=3,b=1`` (weights), ``a>b`` or
    ``a,b`` with ``strict`` (strict order).

    :raises ValueError: empty, a bad weight, weights mixed with plain names or with strict order.
    """
    if ">" in text:
        if "=" in text or "," in text:
            raise ValueError(f"strict order is written a>b>c, without ',' or weights: {text!r}")
        strict = True
        parts = [part.strip() for part in text.split(">")]
    else:
        parts = [part.strip() for part in text.split(",")]
    if not parts or any(not part for part in parts):
        raise ValueError(f"needs queue names separated by ',' (or '>' for strict order): {text!r}")
    weighted = [part for part in parts if "=" in part]
    if weighted:
        if len(weighted) != len(parts):
            raise ValueError(f"give every queue a weight, or none: {text!r}")
        if strict:
            raise ValueError("weights and strict order do not mix: use a=3,b=1 or a,b with --strict")
        weights: dict[str, int] = {}
        for part in parts:
            name, _, value = part.partition("=")
            name = name.strip()
            try:
                weight = int(value)
            except ValueError:
                raise ValueError(
                    f"queue {name!r}: a weight is an integer >= 1, got {value.strip()!r}"
                ) from None
            if name in weights:
                raise ValueError(f"queue {name!r} is named twice")
            weights[name] = weight
        return WeightedQueues(weights)
    if strict:
        return StrictOrder(parts)
    if len(set(parts)) != len(parts):
        raise ValueError(f"queue names repeat: {text!r}")
    return parts
