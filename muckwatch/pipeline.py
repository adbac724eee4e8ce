"""The pipeline, top to bottom: decode → sequence → claim → geofence → rules → alerts → store.

Each stage is a named class with a typed batch in and a typed batch out (as in Traccar's
handler chain); this module only wires them. The ack to the broker happens in the service
loop, after ``Pipeline.process`` returned, i.e. after the store committed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from alerts.outbox import AlertRouter
from domain.batches import FixBatch
from domain.city import City
from geofence.index import FenceIndex
from ingest.wire import Decoded, RawBatch, WireDecoder
from muckwatch.handover import StateHandover
from rules.engine import Memberships, RuleEngine
from store.database import RuleStateRow, Store


class Sequencer:
    """Puts each batch in (device, device time) order and drops repeated (device, ts) keys:
    rules must see a vehicle's fixes in order, and the first copy of a fix wins."""

    def sequence(self, fixes: FixBatch) -> FixBatch:
        unique = fixes.take(fixes.first_per_key())
        return unique.take(unique.device_time_order())


class GeofenceStage:
    """FixBatch → fence memberships. The index can be swapped while ingest runs: a batch uses
    whichever complete index it picked up when it started."""

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


@dataclass
class BatchResult:
    messages: int
    fixes: int
    inserted: int
    duplicates: int
    rejects: dict[str, int] = field(default_factory=dict)
    statuses: int = 0
    events: int = 0
    alerts: int = 0
    stage_ms: dict[str, float] = field(default_factory=dict)  # wall time of each stage
    violation_events: dict[tuple[str, str], int] = field(default_factory=dict)  # (rule, phase)


@dataclass
class _Evaluated:
    """What the stages before the store made of one raw batch: kept until it is committed,
    so a retried write never runs the stateful stages twice."""

    raw: RawBatch
    decoded: Decoded
    fixes: FixBatch
    events: list
    alerts: list
    snapshots: list[RuleStateRow]
    clock: _StageClock


class Pipeline:
    def __init__(
        self,
        decoder: WireDecoder,
        sequencer: Sequencer,
        geofence: GeofenceStage,
        rules: RuleEngine,
        store: Store,
        alerts: AlertRouter | None = None,
        handover: StateHandover | None = None,
    ) -> None:
        self.decoder = decoder
        self.sequencer = sequencer
        self.geofence = geofence
        self.rules = rules
        self.alerts = alerts or AlertRouter()
        self.store = store
        self.handover = handover
        self._evaluated: _Evaluated | None = None

    async def process(self, raw: RawBatch, now_ms: int | None = None) -> BatchResult:
        """Run ``raw`` through every stage and commit it. Called again with the same batch
        after a failed write, it only retries the write."""
        ev = self._evaluated
        if ev is None or ev.raw is not raw:
            ev = self._evaluated = await self._evaluate(raw, now_ms)
        clock = ev.clock
        written = await self.store.write(ev.fixes, ev.decoded.rejects, ev.decoded.statuses,
                                         ev.events, ev.alerts, ev.snapshots)  # one transaction
        self._evaluated = None
        clock.lap("store")
        decoded = ev.decoded
        return BatchResult(
            messages=decoded.messages,
            fixes=decoded.fix_count,
            inserted=written.fixes_inserted,
            duplicates=decoded.fix_count - written.fixes_inserted,
            rejects=decoded.rejects.counts(),
            statuses=written.statuses,
            events=len(ev.events),
            alerts=len(ev.alerts),
            stage_ms=clock.laps,
            violation_events=_count_violation_events(ev.events),
        )

    async def _evaluate(self, raw: RawBatch, now_ms: int | None) -> _Evaluated:
        now_ms = now_ms if now_ms is not None else time.time_ns() // 1_000_000
        clock = _StageClock()
        decoded: Decoded = self.decoder.decode(raw, now_ms)  # wire format → fixes + rejects
        clock.lap("decode")
        fixes = self.sequencer.sequence(decoded.fixes)  # device-time order, no repeats
        events: list = []
        if self.handover is not None:  # vehicles new to this worker: their saved state
            restored = await self.handover.claim(fixes, now_ms)
            if len(restored):
                events += self.rules.evaluate(restored, self.geofence.classify(restored),
                                              now_ms)
            clock.lap("claim")
        memberships = self.geofence.classify(fixes)  # which fences cover each fix
        clock.lap("geofence")
        events += self.rules.evaluate(fixes, memberships, now_ms)  # violations and trips
        events += self.rules.sweep(now_ms)  # terminals silent while moving
        clock.lap("rules")
        alerts = self.alerts.route(events)  # outbox rows for the subscriptions that want them
        snapshots = self.snapshots(now_ms, raw.received_ms)
        return _Evaluated(raw, decoded, fixes, events, alerts, snapshots, clock)

    def snapshots(self, now_ms: int, received_ms: np.ndarray, force: bool = False
                  ) -> list[RuleStateRow]:
        """Rule state to commit with this batch (docs/scaling.md, hand-over)."""
        if self.handover is None:
            return []
        newest = int(received_ms.max()) if len(received_ms) else now_ms
        return self.handover.snapshots(now_ms, newest, force)

    async def save_state(self) -> int:
        """Shutdown: every vehicle's state that changed since the last snapshot, so the next
        owner continues exactly here. Returns how many were written."""
        now_ms = time.time_ns() // 1_000_000
        rows = self.snapshots(now_ms, np.zeros(0, np.int64), force=True)
        if rows:
            from domain.batches import DeviceStatus, Rejects

            await self.store.write(FixBatch.empty(), Rejects(), DeviceStatus(), [], [], rows)
        return len(rows)


def _count_violation_events(events: list) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for e in events:
        rule, phase = getattr(e, "rule", None), getattr(e, "phase", None)
        if rule is not None and phase is not None:
            key = (rule, getattr(phase, "value", str(phase)))
            out[key] = out.get(key, 0) + 1
    return out


class _StageClock:
    """Wall time per pipeline stage, for the metrics and the slow-batch log."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.laps[stage] = (now - self._last) * 1000
        self._last = now
