"""Direct construction of frozen attrs records on the enqueue and dispatch hot paths.

attrs' ``__init__`` of a frozen class sets every field through ``object.__setattr__`` from keyword arguments
(about 0.1 µs a field). ``enqueue_many`` builds a :class:`~lssm_jobs.jobs.Job` and an
:class:`~lssm_jobs.backends.base.OutgoingJob` for every job, and a worker an ``Envelope`` and a ``Job``, so
:func:`~lssm_jobs.jobs.new_job`, :func:`~lssm_jobs.backends.base.new_outgoing_job` and the serializer's
plain-envelope path set the slots through their descriptors instead, at about half the cost. They run no
validators, converters or defaults, so they serve only records that have none; tests compare what they
build with what the attrs constructor builds, field by field.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs


def slot_setters(cls: type[Any]) -> tuple[Callable[[Any, Any], None], ...]:
    """The setters of ``cls``'s field slots, in field order (the order of the attrs constructor's arguments).

    :raises TypeError: ``cls`` is not a slotted attrs class, or has slots that are not fields (a cached
        hash, say), which a direct construction would leave unset.
    """
    names = [field.name for field in attrs.fields(cls)]
    slots = [name for name in getattr(cls, "__slots__", ()) if name != "__weakref__"]
    if sorted(slots) != sorted(names):
        raise TypeError(f"{cls.__name__}: slots {slots} are not exactly its fields {names}")
    return tuple(vars(cls)[name].__set__ for name in names)
