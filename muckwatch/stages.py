"""The pipeline's stages and the typed batches that pass between them.

Each stage is a named class with one method: a typed batch in, a typed batch out (as in
Traccar's handler chain). ``muckwatch/pipeline.py`` lists them in order; the live service,
its shutdown and a hand-over all go through these same objects, so there is one path from a
fix to a committed row.

    RawBatch ─decode→ Decoded ─media→ MediaRows ─sequence→ FixBatch ─hand-over→ Claimed
             ─geofence→ Located ─rules→ Judged ─alert routing→ Routed ─store→ WriteReport
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import numpy as np

from alerts.outbox import AlertRouter, OutboxRow
from domain.batches import (
    CommandStates,
    DeviceStatus,
    FixBatch,
    MediaBatch,
    Rejects,
    TerminalAlarms,
)
from domain.city import City
from domain.events import Memberships
from geofence.index import FenceIndex
from muckwatch.handover import StateHandover
from rules.engine import RuleEngine
from store.database import RuleStateRow, Store, WriteReport
from store.media import BlobStore, sha256_hex
from store.writer import MediaRow


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
    the events, the outbox rows the subscriptions want, and the rule-state snapshots; and
    what terminals sent besides fixes — media rows (bytes already in the blob store), alarm
    words, command states."""

    fixes: FixBatch
    events: list
    alerts: list[OutboxRow]
    rejects: Rejects = field(default_factory=Rejects)
    statuses: DeviceStatus = field(default_factory=DeviceStatus)
    snapshots: list[RuleStateRow] = field(default_factory=list)
    media: list[MediaRow] = field(default_factory=list)
    alarms: TerminalAlarms = field(default_factory=TerminalAlarms)
    command_states: CommandStates = field(default_factory=CommandStates)


class MediaStage:
    """MediaBatch → MediaRow: each item's bytes into the blob store under their SHA-256, on
    worker threads (disk or network must not stall the event loop), BEFORE the batch's
    transaction — the ack follows the commit, so a crash in between loses nothing: the
    redelivery writes the same bytes under the same name again. Runs before the stateful
    stages, so a blob store that fails (BlobStoreError, a DatabaseError) is retried with the
    batch and no rule ever sees a fix twice."""

    PARALLEL = 8  # puts in flight at once (an S3 round trip each)

    def __init__(self, blobs: BlobStore) -> None:
        self.blobs = blobs

    async def store(self, media: MediaBatch) -> list[MediaRow]:
        if not len(media):
            return []
        hashes = await asyncio.gather(*(asyncio.to_thread(sha256_hex, d) for d in media.data))
        wanted = {(h, fmt): data for h, fmt, data
                  in zip(hashes, media.media_format, media.data, strict=True)}
        gate = asyncio.Semaphore(self.PARALLEL)

        async def put(key: tuple[str, str], data: bytes) -> None:
            async with gate:
                await asyncio.to_thread(self.blobs.put, key[0], key[1], data)

        await asyncio.gather(*(put(key, data) for key, data in wanted.items()))
        return [MediaRow(device_id=media.device[i], terminal_id=media.media_id[i],
                         sha256=hashes[i], size=len(media.data[i]),
                         media_type=media.media_type[i], media_format=media.media_format[i],
                         event=media.event[i], channel=media.channel[i], taken_ms=media.ts[i],
                         lon=media.lon[i], lat=media.lat[i], storage=self.blobs.name,
                         command_id=media.command[i], received_ms=media.received_ms[i])
                for i in range(len(media))]


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
              snapshots: list[RuleStateRow] | None = None, *,
              media: list[MediaRow] | None = None, alarms: TerminalAlarms | None = None,
              command_states: CommandStates | None = None) -> Routed:
        return Routed(judged.fixes, judged.events, self.router.route(judged.events),
                      rejects if rejects is not None else Rejects(),
                      statuses if statuses is not None else DeviceStatus(),
                      snapshots or [], media or [],
                      alarms if alarms is not None else TerminalAlarms(),
                      command_states if command_states is not None else CommandStates())


class StoreStage:
    """Routed → WriteReport, in ONE transaction (store/database.py); raises DatabaseError, and
    the caller retries the same Routed batch."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def write(self, routed: Routed) -> WriteReport:
        return await self.store.write(routed.fixes, routed.rejects, routed.statuses,
                                      routed.events, routed.alerts, routed.snapshots,
                                      media=routed.media, alarms=routed.alarms,
                                      command_states=routed.command_states)

    async def close(self) -> None:
        await self.store.close()
