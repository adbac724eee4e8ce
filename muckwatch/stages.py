"""The pipeline's stages and the typed batches that pass between them.

Each stage is a named class with one method: a typed batch in, a typed batch out (as in
Traccar's handler chain). ``muckwatch/pipeline.py`` lists them in order; the live service,
its shutdown and a hand-over all go through these same objects, so there is one path from a
fix to a committed row.

    RawBatch ─decode→ Decoded ─sequence→ FixBatch ─hand-over→ Claimed ─geofence→ Located
             ─rules→ Judged ─alert routing→ Routed ─store→ WriteReport
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from alerts.outbox import AlertRouter, OutboxRow
from domain.batches import DeviceStatus, FixBatch, Rejects
from domain.city import City
from domain.events import Memberships
from geofence.index import FenceIndex
from muckwatch.handover import StateHandover
from rules.engine import RuleEngine
from store.database import RuleStateRow, Store, WriteReport


@dataclass(frozen=True, slots=True)
class Claimed:
    """This batch's fixes and, before them, the stored fixes of vehicles this worker just took
    over that their saved state does not reflect yet (evaluated first, in that order)."""

    replay: FixBatch
    fixes: FixBatch


@dataclass(frozen=True, slots=True)
class Located:
    """Fixes with the fences that cover them, in the order the rules must see them."""

    parts: tuple[tuple[FixBatch, Memberships], ...]
    fixes: FixBatch  # this batch's own fixes (the ones the store writes)


@dataclass(frozen=True, slots=True)
class Judged:
    """What the rules concluded: violation and trip events."""

    fixes: FixBatch
    events: list


@dataclass(frozen=True, slots=True)
class Routed:
    """Everything one transaction commits: the batch's fixes, its rejects and device statuses,
    the events, the outbox rows the subscriptions want, and the rule-state snapshots."""

    fixes: FixBatch
    events: list
    alerts: list[OutboxRow]
    rejects: Rejects = field(default_factory=Rejects)
    statuses: DeviceStatus = field(default_factory=DeviceStatus)
    snapshots: list[RuleStateRow] = field(default_factory=list)


class Sequencer:
    """Puts each batch in (device, device time) order and drops repeated (device, ts) keys:
    rules must see a vehicle's fixes in order, and the first copy of a fix wins."""

    def sequence(self, fixes: FixBatch) -> FixBatch:
        unique = fixes.take(fixes.first_per_key())
        return unique.take(unique.device_time_order())


class HandoverStage:
    """FixBatch → Claimed. Vehicles new to this worker get their saved rule state back, and
    the stored fixes after it are put in front of the batch (docs/scaling.md); without a
    hand-over (one worker, replay) nothing is claimed."""

    def __init__(self, handover: StateHandover | None) -> None:
        self.handover = handover

    async def claim(self, fixes: FixBatch, now_ms: int) -> Claimed:
        if self.handover is None:
            return Claimed(FixBatch.empty(), fixes)
        return Claimed(await self.handover.claim(fixes, now_ms), fixes)

    def snapshots(self, now_ms: int, received_ms: np.ndarray, force: bool = False
                  ) -> list[RuleStateRow]:
        """Rule state to commit with this batch (all of it on shutdown, ``force``)."""
        if self.handover is None:
            return []
        newest = int(received_ms.max()) if len(received_ms) else now_ms
        return self.handover.snapshots(now_ms, newest, force)


class GeofenceStage:
    """FixBatch → fence memberships (``locate``: Claimed → Located). The index can be swapped
    while ingest runs: a batch uses whichever complete index it picked up when it started."""

    def __init__(self, fence_ids: list[str], index: FenceIndex) -> None:
        self._current = (np.asarray(fence_ids, dtype=object), index)

    @classmethod
    def for_city(cls, city: City) -> GeofenceStage:
        return cls([f.id for f in city.fences], FenceIndex([f.geometry for f in city.fences]))

    def swap(self, fence_ids: list[str], index: FenceIndex) -> None:
        self._current = (np.asarray(fence_ids, dtype=object), index)

    def swap_from(self, other: GeofenceStage) -> None:
        self._current = other._current  # one reference assignment: atomic for readers

    @property
    def fence_count(self) -> int:
        return len(self._current[0])

    def classify(self, fixes: FixBatch) -> Memberships:
        fence_ids, index = self._current
        fix_index, fence_index = index.covering(fixes.lon, fixes.lat)
        return Memberships(fix_index=fix_index, fence_id=fence_ids[fence_index])

    def locate(self, claimed: Claimed) -> Located:
        parts = [(claimed.replay, self.classify(claimed.replay))] if len(claimed.replay) else []
        parts.append((claimed.fixes, self.classify(claimed.fixes)))
        return Located(tuple(parts), claimed.fixes)


class RuleStage:
    """Located → Judged: every part through the rule engine in order, then the sweep for
    terminals gone silent; ``flush`` (shutdown) judges what the reorder window still holds."""

    def __init__(self, engine: RuleEngine) -> None:
        self.engine = engine

    def judge(self, located: Located, now_ms: int) -> Judged:
        events: list = []
        for fixes, memberships in located.parts:
            events += self.engine.evaluate(fixes, memberships, now_ms)
        events += self.engine.sweep(now_ms)
        return Judged(located.fixes, events)

    def flush(self) -> Judged:
        return Judged(FixBatch.empty(), self.engine.flush())


class AlertStage:
    """Judged → Routed: the outbox rows the alert subscriptions want, committed with the
    events that caused them."""

    def __init__(self, router: AlertRouter) -> None:
        self.router = router

    def route(self, judged: Judged, rejects: Rejects | None = None,
              statuses: DeviceStatus | None = None,
              snapshots: list[RuleStateRow] | None = None) -> Routed:
        return Routed(judged.fixes, judged.events, self.router.route(judged.events),
                      rejects if rejects is not None else Rejects(),
                      statuses if statuses is not None else DeviceStatus(),
                      snapshots or [])


class StoreStage:
    """Routed → WriteReport, in ONE transaction (store/database.py); raises DatabaseError, and
    the caller retries the same Routed batch."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def write(self, routed: Routed) -> WriteReport:
        return await self.store.write(routed.fixes, routed.rejects, routed.statuses,
                                      routed.events, routed.alerts, routed.snapshots)

    async def close(self) -> None:
        await self.store.close()
