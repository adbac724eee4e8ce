"""The pipeline, top to bottom: decode → media (bytes into the blob store) → sequence →
hand-over → geofence → rules → alert routing → store.

A fixed list of named stages (``muckwatch/stages.py``), each a typed batch in and a typed batch
out; this module only wires them. Everything that reaches the database goes through the
same stages — a live batch, the vehicles a worker takes over (their stored fixes are
judged in front of the batch), and the shutdown (state snapshots, then the fixes still in
the reorder window). The ack to the broker happens in the service loop, after
``Pipeline.process`` returned, i.e. after the store committed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from alerts.outbox import AlertRouter
from domain.batches import FixBatch
from domain.settings import MediaSettings
from ingest.wire import Decoded, RawBatch, WireDecoder
from muckwatch.handover import StateHandover
from muckwatch.stages import (
    AlertStage,
    GeofenceStage,
    HandoverStage,
    MediaStage,
    Routed,
    RuleStage,
    Sequencer,
    StoreStage,
)
from rules.engine import RuleEngine
from store.database import Store
from store.media import BlobStore, LocalBlobStore


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
    media: int = 0  # items decoded (their bytes are in the blob store)
    media_inserted: int = 0  # new rows; the rest were redeliveries
    alarms: int = 0
    alarms_inserted: int = 0
    command_states: int = 0
    command_states_applied: int = 0  # moved a command forward
    command_states_unknown: int = 0  # no such command of that device
    commands_skipped: int = 0  # platform → terminal messages a wide subscription saw


@dataclass
class _Evaluated:
    """What the stages before the store made of one raw batch: kept until it is committed,
    so a retried write never runs the stateful stages twice."""

    raw: RawBatch
    decoded: Decoded
    routed: Routed
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
        blobs: BlobStore | None = None,
    ) -> None:
        self.decoder = decoder  # RawBatch → Decoded
        # MediaBatch → MediaRow, bytes stored (default: [media] dir's default directory)
        self.media = MediaStage(blobs or LocalBlobStore(MediaSettings().dir))
        self.sequencer = sequencer  # FixBatch → FixBatch (device-time order, no repeats)
        self.handover = HandoverStage(handover)  # FixBatch → Claimed
        self.geofence = geofence  # Claimed → Located
        self.rules = RuleStage(rules)  # Located → Judged
        self.alerts = AlertStage(alerts or AlertRouter())  # Judged → Routed
        self.store = StoreStage(store)  # Routed → WriteReport, one transaction
        self._evaluated: _Evaluated | None = None

    async def process(self, raw: RawBatch, now_ms: int | None = None) -> BatchResult:
        """Run ``raw`` through every stage and commit it. Called again with the same batch
        after a failed write, it only retries the write."""
        ev = self._evaluated
        if ev is None or ev.raw is not raw:
            ev = self._evaluated = await self._evaluate(raw, now_ms)
        clock = ev.clock
        written = await self.store.write(ev.routed)
        self._evaluated = None
        clock.lap("store")
        decoded, routed = ev.decoded, ev.routed
        return BatchResult(
            messages=decoded.messages,
            fixes=decoded.fix_count,
            inserted=written.fixes_inserted,
            duplicates=decoded.fix_count - written.fixes_inserted,
            rejects=decoded.rejects.counts(),
            statuses=written.statuses,
            events=len(routed.events),
            alerts=len(routed.alerts),
            stage_ms=clock.laps,
            violation_events=_count_violation_events(routed.events),
            media=len(routed.media),
            media_inserted=written.media_inserted,
            alarms=len(routed.alarms),
            alarms_inserted=written.alarms_inserted,
            command_states=len(routed.command_states),
            command_states_applied=written.command_states_applied,
            command_states_unknown=written.command_states_unknown,
            commands_skipped=decoded.commands_skipped,
        )

    async def _evaluate(self, raw: RawBatch, now_ms: int | None) -> _Evaluated:
        now_ms = now_ms if now_ms is not None else time.time_ns() // 1_000_000
        clock = _StageClock()
        decoded = self.decoder.decode(raw, now_ms)
        clock.lap("decode")
        # before any stateful stage: a blob store that fails retries the batch from here
        media = await self.media.store(decoded.media)
        if media:
            clock.lap("media")
        fixes = self.sequencer.sequence(decoded.fixes)
        claimed = await self.handover.claim(fixes, now_ms)
        clock.lap("claim")
        located = self.geofence.locate(claimed)
        clock.lap("geofence")
        judged = self.rules.judge(located, now_ms)
        clock.lap("rules")
        routed = self.alerts.route(judged, decoded.rejects, decoded.statuses,
                                   self.handover.snapshots(now_ms, raw.received_ms),
                                   media=media, alarms=decoded.alarms,
                                   command_states=decoded.command_states)
        return _Evaluated(raw, decoded, routed, clock)

    async def shutdown(self) -> tuple[int, int, int]:
        """Before the worker exits, through the same stages: first every changed vehicle's
        rule state (so the next owner continues exactly here), then what the reorder window
        still holds, judged now. Returns (snapshots, events, alerts) written."""
        now_ms = time.time_ns() // 1_000_000
        snapshots = self.handover.snapshots(now_ms, np.zeros(0, np.int64), force=True)
        if snapshots:
            await self.store.write(Routed(FixBatch.empty(), [], [], snapshots=snapshots))
        routed = self.alerts.route(self.rules.flush())
        if routed.events:
            await self.store.write(routed)
        return len(snapshots), len(routed.events), len(routed.alerts)


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
