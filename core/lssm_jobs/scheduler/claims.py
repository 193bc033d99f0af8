"""Tick claims, one scheduler instance's side: claim a tick, keep the claim renewed while firing it,
complete it once fired, and take over the claims of instances that died while firing theirs.

Firing is two-phase, so a crash cannot lose a tick: a claim stays unfinished, renewed every third of
``claim_timeout``, until its tick has fired, and only then is it completed. An instance that dies in
between stops renewing; once its claim is ``claim_timeout`` old, another instance (or the same one,
restarted) takes it over and fires the tick. The store makes each step atomic
(:class:`~lssm_jobs.scheduler.stores.SchedulerStore`); this module decides when to take each.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Callable

from lssm_jobs.scheduler.clock import Clock
from lssm_jobs.scheduler.stores import SchedulerStore, TickClaim
from lssm_jobs.scheduler.ticks import tick_key

log = logging.getLogger("lssm_jobs.scheduler")

_UNFINISHED_SCAN_LIMIT = 500  # unfinished claims read per look for abandoned ones (usually a handful)
_COMPLETE_ATTEMPTS = 3


class TickClaims:
    """The claims one scheduler instance makes in its store.

    :param owner: this instance's id, written into its claims.
    :param claim_timeout: seconds after which an unfinished claim that was not renewed is abandoned.
    :param defines: whether this instance defines a schedule (it takes over, and warns about, only those).
    """

    def __init__(
        self,
        store: SchedulerStore,
        *,
        owner: str,
        clock: Clock,
        claim_timeout: float,
        defines: Callable[[str], bool],
    ) -> None:
        self.store = store
        self.owner = owner
        self.clock = clock
        self.claim_timeout = claim_timeout
        self._defines = defines
        #: (schedule, tick) this instance is firing right now: never taken over from itself.
        self.firing: set[tuple[str, float]] = set()
        self._scan_due = -math.inf  # when to look for abandoned claims next
        self._stale_at = math.inf  # earliest moment a claim seen in flight elsewhere could go stale

    @property
    def stale_at(self) -> float:
        """The earliest moment a claim another instance holds could be abandoned (inf: none seen)."""
        return self._stale_at

    def look_due(self, now: float) -> bool:
        """Whether it is time to look for abandoned claims."""
        return now >= min(self._scan_due, self._stale_at)

    def reset(self) -> None:
        """Forget when to look next: a restarted scheduler looks for abandoned claims first."""
        self._scan_due, self._stale_at = -math.inf, math.inf

    async def claim(self, name: str, tick: float, *, now: float, next_tick: float | None) -> bool:
        """Claim ``tick`` of ``name`` for this instance. :returns: whether it won the tick.

        Lost: another instance holds it (or it was settled). Should that instance die before it fires the
        tick, its claim goes stale one claim timeout from now: :meth:`look_due` says so then.
        """
        won = await self.store.claim(name, tick, owner=self.owner, now=now, next_tick=next_tick)
        if not won:
            self._stale_at = min(self._stale_at, now + self.claim_timeout)
        return won

    async def abandoned(self, now: float) -> list[TickClaim]:
        """The unfinished claims of schedules this instance defines that their instances stopped renewing
        (they died while firing), oldest first. Claims still renewed set when to look again."""
        claims = await self.store.unfinished_claims(limit=_UNFINISHED_SCAN_LIMIT)
        self._scan_due = now + self.claim_timeout / 2
        self._stale_at = math.inf
        stale_before = now - self.claim_timeout
        abandoned = []
        for claim in claims:
            if not self._defines(claim.schedule) or (claim.schedule, claim.tick) in self.firing:
                continue
            if claim.claimed_at > stale_before:  # alive (renewed lately): look again when it would go stale
                stale_at = max(claim.claimed_at + self.claim_timeout, math.nextafter(now, math.inf))
                self._stale_at = min(self._stale_at, stale_at)
                continue
            abandoned.append(claim)
        return abandoned

    async def take_over(self, claim: TickClaim, *, now: float) -> bool:
        """Take an abandoned claim over. :returns: False when another instance was quicker (or it was
        renewed or completed meanwhile)."""
        return await self.store.take_over(
            claim.schedule, claim.tick, owner=self.owner, now=now, stale_before=now - self.claim_timeout
        )

    @contextlib.asynccontextmanager
    async def renewing(self, name: str, tick: float) -> AsyncIterator[None]:
        """Renew this instance's claim on ``tick`` every third of the claim timeout while the body runs."""
        renewer = asyncio.create_task(
            self._renew(name, tick), name=f"lssm-jobs claim {name} {tick_key(tick)}"
        )
        try:
            yield
        finally:
            renewer.cancel()
            await asyncio.gather(renewer, return_exceptions=True)

    async def _renew(self, name: str, tick: float) -> None:
        never = asyncio.Event()
        while True:
            deadline = self.clock.now() + self.claim_timeout / 3
            while self.clock.now() < deadline:
                await self.clock.sleep_until(deadline, never)
            try:
                held = await self.store.renew(name, tick, owner=self.owner, now=self.clock.now())
            except Exception as error:
                # still ours unless this goes on for the rest of the claim timeout
                log.warning(
                    "schedule %r: renewing the claim on tick %s failed (%s: %s); retrying",
                    name,
                    tick_key(tick),
                    type(error).__name__,
                    error,
                )
                continue
            if not held:
                if self._defines(name):
                    log.warning(
                        "schedule %r: another instance took over the claim on tick %s (this one did not renew "
                        "it within the %.0fs claim timeout); the tick may fire twice",
                        name,
                        tick_key(tick),
                        self.claim_timeout,
                    )
                return

    async def complete(self, name: str, tick: float) -> None:
        """Mark the claim finished: the tick has fired (or was deliberately not fired)."""
        for attempt in range(_COMPLETE_ATTEMPTS):
            try:
                held = await self.store.complete(name, tick, owner=self.owner, now=self.clock.now())
            except Exception as error:
                if attempt + 1 == _COMPLETE_ATTEMPTS:
                    log.error(
                        "schedule %r: tick %s fired but could not be marked done (%s: %s); another instance "
                        "fires it again after the %.0fs claim timeout",
                        name,
                        tick_key(tick),
                        type(error).__name__,
                        error,
                        self.claim_timeout,
                    )
                    return
                await asyncio.sleep(0.1 * 2**attempt)
                continue
            if not held and self._defines(name):
                log.warning(
                    "schedule %r: tick %s was taken over by another instance before this one finished it; "
                    "it may have fired twice",
                    name,
                    tick_key(tick),
                )
            return
