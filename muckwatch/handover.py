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
import time

import numpy as np
import orjson

from muckwatch.batches import FixBatch
from rules.engine import RuleEngine
from store.database import RuleStateRow, Store

_NEVER = -(2**62)
log = logging.getLogger(__name__)


class StateHandover:
    def __init__(self, rules: RuleEngine, store: Store, owner: str, snapshot_s: float) -> None:
        self.rules = rules
        self.store = store
        self.owner = owner
        self.snapshot_ms = int(snapshot_s * 1000)
        self._claimed: set[str] = set()  # vehicles this worker has looked up
        self._unsaved_claims: set[str] = set()  # claimed, no snapshot written yet
        self._last_snapshot_ms = time.time_ns() // 1_000_000
        self.restored = 0  # vehicles whose state came from a previous owner
        self.replayed = 0  # stored fixes re-evaluated after a restore

    async def claim(self, fixes: FixBatch, now_ms: int) -> FixBatch:
        """Restore the vehicles in ``fixes`` this worker has not seen; return the stored
        fixes to re-evaluate before this batch (empty when there is nothing to restore)."""
        if not len(fixes):
            return FixBatch.empty()
        claimed = self._claimed
        new = [d for d in np.unique(fixes.device.astype(str)).tolist() if d not in claimed]
        if not new:
            return FixBatch.empty()
        window_ms = int(self.rules.settings.reorder_window_s * 1000)
        states, replay = await self.store.load_rule_state(new, window_ms)
        self.rules.import_states(states, now_ms)
        claimed.update(new)
        self._unsaved_claims.update(new)
        self.restored += len(states)
        self.replayed += len(replay)
        if states:
            log.info("took over %d vehicles: rule state restored, %d stored fixes "
                     "re-evaluated", len(states), len(replay))
        return replay

    def release(self, devices: set[str] | None = None) -> None:
        """Forget vehicles (all when None): the next fix of one of them claims it again from
        the database — for partitions this worker gives up."""
        if devices is None:
            self._claimed.clear()
        else:
            self._claimed -= devices

    def snapshots(self, now_ms: int, received_ms: int, force: bool = False
                  ) -> list[RuleStateRow]:
        """The rows to write with this batch: newly claimed vehicles always; every vehicle
        that changed once ``snapshot_s`` has passed, or when ``force`` (shutdown). The
        pipeline keeps them with the batch until they are committed."""
        devices = self._unsaved_claims
        self._unsaved_claims = set()
        if force or now_ms - self._last_snapshot_ms >= self.snapshot_ms:
            devices |= self.rules.take_touched()
            self._last_snapshot_ms = now_ms
        if not devices:
            return []
        ordered = sorted(devices)
        states = self.rules.export_states(ordered)
        empty = None
        rows = []
        for d in ordered:
            state = states.get(d)
            if state is None:  # claimed, all its fixes still in the reorder window
                empty = empty or self.rules.export_empty_state()
                state = empty
            evaluated = state["last_ts"]
            rows.append(RuleStateRow(d, self.owner, evaluated if evaluated > _NEVER else None,
                                     received_ms, orjson.dumps(state).decode()))
        return rows
