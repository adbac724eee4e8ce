"""Rule state that moves with the vehicle from one ingest worker to another.

When partitions move (a worker crashed, or an operator rebalanced), the new owner of a
vehicle must continue its open violations, debounce counters, trip and last good fix — else a
violation already reported opens again under a new id, or a pending one is never reported.

* **Claim**: the first time a worker sees a vehicle it reads the vehicle's saved state from
  ``rule_state`` and re-evaluates the fixes stored after it (what the previous owner held in
  its reorder window, evaluated after its last snapshot, or received late). Rules are
  deterministic and violation ids derive from (device, rule, start), so re-evaluation
  reproduces the ids the previous owner wrote; the upserts and the outbox's webhook-id key
  absorb the repeats.
* **Snapshot**: a vehicle's state is written in the same transaction as the batch it
  reflects: when the worker claims it (so its successor knows where the stored fixes start),
  every ``snapshot_s`` for the vehicles that changed, and for all of them on shutdown.

A crash loses nothing: what happened after the last snapshot is in ``telemetry`` (committed
before the broker was acked) or still in the broker (not acked, so redelivered).
"""

from __future__ import annotations

import logging

import numpy as np
import orjson

from domain.batches import FixBatch
from rules.engine import RuleEngine
from rules.late import late_windows
from store.database import FixRange, RuleStateRow, SavedState, Store

_NEVER = -(2**62)
log = logging.getLogger(__name__)


class StateHandover:
    def __init__(self, rules: RuleEngine, store: Store, owner: str, snapshot_s: float,
                 reclaim_after_s: float = 0.0) -> None:
        """``reclaim_after_s`` > 0: a vehicle silent here for that long is claimed again from
        the database when it reappears — with a shared subscription the broker may have
        sent it to another worker meanwhile (docs/scaling.md); 0 = vehicles never move
        without this worker knowing (topic partitions, one worker)."""
        self.rules = rules
        self.store = store
        self.owner = owner
        self.snapshot_ms = int(snapshot_s * 1000)
        self.reclaim_after_ms = int(reclaim_after_s * 1000)
        self._claimed: set[str] = set()  # vehicles this worker has looked up
        self._unsaved_claims: set[str] = set()  # claimed, no snapshot written yet
        self._due: list[str] = []  # changed vehicles whose periodic snapshot is due
        self._last_snapshot_ms: int | None = None  # the pipeline's clock, from its first batch
        self.restored = 0  # vehicles whose state came from a previous owner
        self.replayed = 0  # stored fixes re-evaluated after a restore
        self.snapshots_written = 0

    async def claim(self, fixes: FixBatch, now_ms: int) -> FixBatch:
        """Restore the vehicles in ``fixes`` this worker has not seen; return the stored
        fixes to re-evaluate before this batch (empty when there is nothing to restore)."""
        if not len(fixes):
            return FixBatch.empty()
        claimed = self._claimed
        devices = np.unique(fixes.device.astype(str)).tolist()
        new = [d for d in devices if d not in claimed]
        if self.reclaim_after_ms:
            # everything this worker evaluated is committed (snapshot + telemetry), so its
            # own state is never lost by re-reading it; another owner's may be newer
            vehicles, cutoff = self.rules.vehicles, now_ms - self.reclaim_after_ms
            new += [d for d in devices if d in claimed and d in vehicles
                    and vehicles[d].last_received < cutoff]
        if not new:
            return FixBatch.empty()
        saved = await self.store.load_rule_state(new)
        replay = await self.store.fixes_in_ranges(_unevaluated(saved))
        # only now, with everything read: a failed read leaves the state as it was
        self.rules.forget(new)
        states = {d: s.state for d, s in saved.items()}
        self.rules.import_states(states, now_ms)
        claimed.update(new)
        self._unsaved_claims.update(new)
        self.restored += len(states)
        self.replayed += len(replay)
        if states:
            log.info("took over %d vehicles: rule state restored, %d stored fixes "
                     "re-evaluated", len(states), len(replay))
        return replay

    # periodic snapshots are spread over batches, at most this many vehicles per batch
    # (≈ 40 µs each to serialise, bench/rule_state.py): a worker with 100,000 changed
    # vehicles must not stall its event loop for seconds every ``snapshot_s``
    per_batch = 1_000

    def snapshots(self, now_ms: int, received_ms: int, force: bool = False
                  ) -> list[RuleStateRow]:
        """The rows to write with this batch: newly claimed vehicles always; the vehicles
        that changed, every ``snapshot_s`` (spread over the following batches), or all of
        them when ``force`` (shutdown). The pipeline keeps them with the batch until they
        are committed."""
        claims = self._unsaved_claims
        self._unsaved_claims = set()
        devices = set(claims)
        if self._last_snapshot_ms is None:
            self._last_snapshot_ms = now_ms
        if force or now_ms - self._last_snapshot_ms >= self.snapshot_ms:
            self._due = sorted(set(self._due) | self.rules.take_touched())
            self._last_snapshot_ms = now_ms
        if self._due:
            cut = len(self._due) if force else self.per_batch
            devices.update(self._due[:cut])
            del self._due[:cut]
        if not devices:
            return []
        ordered = sorted(devices)
        states = self.rules.export_states(ordered)
        empty = None
        rows = []
        for d in ordered:
            state = states.get(d)
            if state is None:
                if d not in claims:  # forgotten since it changed: its owner saves it
                    continue
                # claimed, all its fixes still in the reorder window
                empty = empty or self.rules.export_empty_state()
                state = empty
            evaluated = state["last_ts"]
            rows.append(RuleStateRow(d, self.owner, evaluated if evaluated > _NEVER else None,
                                     received_ms, orjson.dumps(state).decode()))
        self.snapshots_written += len(rows)
        return rows

    @property
    def repeats(self) -> int:
        """Fixes that arrived again after they were evaluated (not evaluated twice)."""
        return self.rules.dropped_late


def _unevaluated(saved: dict[str, SavedState]) -> list[FixRange]:
    """Where the fixes a snapshot does not reflect can be, per vehicle: newer than what it
    evaluated (held in the reorder window, or evaluated after the snapshot), and — received
    after it — inside the gaps it keeps for late data (a late fix anywhere else is a repeat
    and would not be evaluated). Each is a primary-key range scan, however long ago the
    vehicle last reported."""
    ranges = []
    for device, s in saved.items():
        evaluated = s.evaluated_ms if s.evaluated_ms is not None else _NEVER
        ranges.append(FixRange(device, evaluated, 2**62, _NEVER))
        ranges += [FixRange(device, lo, hi, s.received_ms)
                   for lo, hi in late_windows(s.state) if hi <= evaluated]
    return ranges
