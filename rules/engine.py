"""The rules engine: classified fixes in, violation and trip events out. Pure, no I/O.

Per batch:

1. ``compute_facts`` (numpy over the batch): permit valid now, sites, active restricted zones,
   speed limit, corridor distance, static GNSS quality.
2. **Reorder**: fixes wait until they are ``reorder_window_s`` older (device time) than the
   newest fix of their vehicle, or have waited that long on the wall clock, then are
   processed in device-time order — so delivery order inside the window never matters.
3. **Late** fixes (older than what the vehicle has already been evaluated up to: blind-area
   backfill) are evaluated on a *copy* of the vehicle's state saved at the start of the gap
   they fill, flagged ``late``; the live state is never touched. A SIGNAL_LOSS whose gap the
   backfill fills is retracted (the terminal was tracking, only its link was down).
4. Per vehicle, in device time: GNSS jumps (> ``max_implied_kmh`` from the last good fix) and
   poor fixes become *unknown*; trip state (left origin → arrived) gives "loaded" where the
   truck has no load sensor; each rule's condition goes through the shared debounce machine.

Violation ids are derived from (device, rule, start time), so replaying the same data gives the
same ids and the store can upsert.
"""

from __future__ import annotations

import numpy as np

from domain.batches import FixBatch
from domain.events import Memberships, Phase
from domain.settings import RuleSettings
from rules.chain import BY_KEY, MACHINE_RULES
from rules.emit import SIGNAL_LOSS, EventMaker
from rules.facts import Facts, compute_facts, permit_facts
from rules.gnss import gnss_known
from rules.late import prune_gaps, reconcile_late, retract_filled_gaps
from rules.legs import ARRIVING, EN_ROUTE, merge_late_leg, walk_legs
from rules.machine import ON, OPEN, OPEN_PHASES, PENDING, feed
from rules.reference import Reference
from rules.situation import situation
from rules.state import (
    VehicleState,
    id_indexes,
    shallow_dict,
    state_from_json,
    state_to_json,
)
from rules.trip_not_closed import TripNotClosed
from rules.unauthorised_dump import load_dropped
from rules.volume import JobVolumes, PermitVolumeExceeded, estimate_volume

__all__ = ["RuleEngine"]

_NEVER = -(2**62)
TRIP_NOT_CLOSED = TripNotClosed.name
# the state before a vehicle's first fix, shared by every vehicle's first gap (snapshots are
# never changed in place): one dict, not one per vehicle
_EMPTY = VehicleState().to_dict()


class RuleEngine:
    """All rules over all vehicles. ``reference`` None means no city: no rules are evaluated
    (the pipeline then only stores telemetry)."""

    max_gap_snapshots = 8
    gap_snapshot_s = 60.0

    def __init__(self, reference: Reference | None = None,
                 settings: RuleSettings | None = None) -> None:
        self.ref = reference
        self.settings = settings or RuleSettings()
        s = self.settings
        self.debounce = {r.machine_key: r.debounce(s) for r in MACHINE_RULES}
        self.vehicles: dict[str, VehicleState] = {}
        self._last_sweep = _NEVER
        self._held: Facts | None = None
        self._held_received: np.ndarray = np.zeros(0, np.int64)
        self._held_codes: np.ndarray = np.zeros(0, np.int64)
        self._codes: dict[str, int] = {}  # device id → small int, interned on first sight
        self._touched: set[str] = set()  # vehicles changed since the last snapshot
        self.dropped_late = 0  # late fixes already evaluated (redeliveries): not re-evaluated
        self._id_indexes: tuple[dict, dict] | None = None  # built on the first hand-over
        self._emit: EventMaker | None = None
        self._jobs: JobVolumes | None = None

    # --- public API -------------------------------------------------------------------------

    def evaluate(self, fixes: FixBatch, memberships: Memberships,
                 now_ms: int | None = None) -> list:
        """Events for one (device, ts)-sorted batch. ``now_ms`` (wall clock) releases fixes
        that waited the reorder window; None (replay) releases by device time only."""
        if self.ref is None:
            return []
        facts = compute_facts(fixes, memberships, self.ref, self.settings)
        return self._release(facts, fixes.received, now_ms, final=False)

    def flush(self) -> list:
        """Process everything held back (end of a replay, or shutdown)."""
        if self.ref is None or self._held is None:
            return []
        return self._release(None, None, None, final=True)

    def sweep(self, now_ms: int) -> list:
        """Fixes whose reorder wait is over on the wall clock, then SIGNAL_LOSS for terminals
        that went silent while moving outside sites (at most once a second: it looks at every
        vehicle)."""
        if self.ref is None or now_ms - self._last_sweep < 1000:
            return []
        self._last_sweep = now_ms
        events: list = self._release(None, None, now_ms, final=False) \
            if self._held is not None else []
        limit = self.settings.signal_loss_s * 1000
        for device, st in self.vehicles.items():
            if not st.last_moving_outside or st.signal_open_ts is not None:
                continue
            silent_ms = now_ms - (st.last_received if st.last_received > 0 else st.last_ts)
            if silent_ms > limit:
                st.signal_open_ts = st.last_ts
                self._touched.add(device)
                events.append(self.emit.violation(
                    device, SIGNAL_LOSS, Phase.OPENED, st.last_ts, None,
                    *self._last_position(device), None, None, silent_ms / 1000, -1, late=False))
        events += self._sweep_trips(now_ms)
        return events

    def _sweep_trips(self, now_ms: int) -> list:
        """TRIP_NOT_CLOSED for a loaded leg whose terminal fell silent: once the silence is
        longer than ``signal_loss_s`` (a terminal that reports opens it with its own fixes)
        and the leg's deadline has passed by the vehicle's clock (its last device time plus
        the silence), it opens at the deadline; the machine is left open, so the next fixes
        continue it and the arrival closes it, as if it had been opened by a fix."""
        s = self.settings
        events: list = []
        for device, st in self.vehicles.items():
            leg = st.leg
            if leg.phase not in (EN_ROUTE, ARRIVING) or not leg.sure_loaded:
                continue
            m = st.machine(TRIP_NOT_CLOSED)
            if m.phase in OPEN_PHASES:
                continue
            silent_ms = now_ms - (st.last_received if st.last_received > 0 else st.last_ts)
            due = leg.left_ts + int(s.trip_close_s * 1000)
            if silent_ms <= s.signal_loss_s * 1000 or st.last_ts + silent_ms <= due:
                continue
            if m.phase != PENDING:
                m.start_ts = max(due, st.last_ts)
                m.start_lon, m.start_lat = self._last_position(device)
                m.context = leg.permits[0] if leg.permits else -1
            m.phase, m.count = OPEN, 0
            m.peak = m.emitted_peak = (st.last_ts + silent_ms - leg.left_ts) / 1000
            self._touched.add(device)
            events.append(self.emit.violation(
                device, TRIP_NOT_CLOSED, Phase.OPENED, m.start_ts, None, m.start_lon,
                m.start_lat, None, None, m.peak, m.context, late=False))
        return events

    @property
    def emit(self) -> EventMaker:
        """Names events in this reference's words (rules are only run with a reference)."""
        if self._emit is None or self._emit.ref is not self.ref:
            if self.ref is None:
                raise RuntimeError("no city reference: rules are not evaluated")
            self._emit = EventMaker(self.ref, self.settings)
        return self._emit

    @property
    def jobs(self) -> JobVolumes:
        """The jobs' volume counts for this reference (PERMIT_VOLUME_EXCEEDED)."""
        if self._jobs is None or self._jobs.ref is not self.ref:
            if self.ref is None:
                raise RuntimeError("no city reference: rules are not evaluated")
            self._jobs = JobVolumes(self.ref)
        return self._jobs

    def _last_position(self, device: str) -> tuple[float, float]:
        st = self.vehicles.get(device)
        return (st.good_lon, st.good_lat) if st else (0.0, 0.0)

    def swap_reference(self, reference: Reference) -> None:
        """New reference data (a reloaded city): open violations keep pointing at the same
        permit or zone by id, whatever their new position."""
        old = self.ref
        self.ref = reference
        self._id_indexes = None
        if old is None:
            return
        permits = {pid: k for k, pid in enumerate(reference.permit_ids)}
        fences = {fid: k for k, fid in enumerate(reference.fence_ids)}
        for st in self.vehicles.values():
            for key, m in st.machines.items():
                if m.context < 0:
                    continue
                if BY_KEY[key].context_kind == "zone":
                    m.context = fences.get(old.fence_ids[m.context], -1)
                else:
                    m.context = permits.get(old.permit_ids[m.context], -1)
            leg = st.leg
            leg.permits = [k for k in (permits.get(old.permit_ids[p], -1) for p in leg.permits)
                           if k >= 0]
            if leg.arrive_permit >= 0:
                leg.arrive_permit = permits.get(old.permit_ids[leg.arrive_permit], -1)
            for name in ("origin", "arrive_site"):
                if getattr(leg, name) >= 0:
                    setattr(leg, name, fences.get(old.fence_ids[getattr(leg, name)], -1))

    def snapshot(self) -> dict:
        """Every vehicle's state, JSON-ready (see ``export_states``)."""
        return self.export_states(list(self.vehicles))

    def restore(self, data: dict) -> None:
        self.vehicles = {}
        self.import_states(data)

    def export_states(self, devices: list[str]) -> dict[str, dict]:
        """The state of these vehicles as plain JSON-ready dicts, for the snapshot another
        worker restores after a hand-over (docs/scaling.md). Permits and zones are named by
        id, not by index, so the state survives a different or reloaded city bundle; NaN is
        written as null."""
        ref, out = self.ref, {}
        for d in devices:
            st = self.vehicles.get(d)
            if st is not None:
                out[d] = state_to_json(shallow_dict(st), ref)
        return out

    def import_states(self, data: dict[str, dict], now_ms: int | None = None) -> None:
        """Adopt snapshots written by ``export_states`` (by this or another worker).

        ``now_ms``: silence (SIGNAL_LOSS) is measured from when this worker took the vehicle
        over, not from the previous owner's last message: the broker may have been holding
        the vehicle's fixes for us all along."""
        if not data:
            return
        if self._id_indexes is None:  # a city of 10,000 fences: ~3 ms, not once per batch
            self._id_indexes = id_indexes(self.ref)
        indexes = self._id_indexes
        for d, raw in data.items():
            st = VehicleState.from_dict(state_from_json(raw, indexes), fresh=True)
            if now_ms is not None:
                st.last_received = max(st.last_received, now_ms)
            self.vehicles[d] = st

    def export_empty_state(self) -> dict:
        """A vehicle seen but not yet evaluated (its fixes are in the reorder window)."""
        return state_to_json(VehicleState().to_dict(), self.ref)

    def forget(self, devices: list[str]) -> None:
        """Drop these vehicles' state (their fixes still in the reorder window stay): a
        worker re-reads it from the database when another may have owned them meanwhile."""
        for d in devices:
            self.vehicles.pop(d, None)
            self._touched.discard(d)

    def take_touched(self) -> set[str]:
        """Vehicles whose state may have changed since the last call (for snapshots)."""
        touched, self._touched = self._touched, set()
        return touched

    # --- reorder window ---------------------------------------------------------------------

    def _release(self, facts: Facts | None, received: np.ndarray | None, now_ms: int | None,
                 final: bool) -> list:
        parts = [p for p in (self._held, facts) if p is not None]
        recv = [r for r in (self._held_received, received) if r is not None]
        if not parts:
            return []
        allf = Facts.concat(parts) if len(parts) > 1 else parts[0]
        received_all = np.concatenate(recv) if recv else np.zeros(len(allf), np.int64)
        # the held fixes (10 s of the whole fleet) are re-sorted with every batch: by small
        # interned ints, not by device strings
        codes = self._held_codes if self._held is not None else np.zeros(0, np.int64)
        if facts is not None:
            codes = np.concatenate([codes, self._device_codes(facts.device)])
        order = np.lexsort((allf.ts, codes))
        allf, received_all, codes = allf.take(order), received_all[order], codes[order]
        # drop repeated (device, ts): a fix already held or delivered twice counts once
        if len(allf) > 1:
            dup = np.zeros(len(allf), bool)
            dup[1:] = (codes[1:] == codes[:-1]) & (allf.ts[1:] == allf.ts[:-1])
            keep = ~dup
            allf, received_all, codes = allf.take(keep), received_all[keep], codes[keep]
        n = len(allf)
        starts = np.flatnonzero(np.concatenate([[True], codes[1:] != codes[:-1]]))
        group = np.repeat(np.arange(len(starts)), np.diff(np.concatenate([starts, [n]])))
        newest = np.maximum.reduceat(allf.ts, starts)[group] if n else np.zeros(0, np.int64)
        window = int(self.settings.reorder_window_s * 1000)
        ready = np.ones(n, bool) if final else (allf.ts <= newest - window)
        if now_ms is not None and not final:
            ready |= received_all <= now_ms - window
        vehicles = self.vehicles
        last = np.array([vehicles[d].last_ts if d in vehicles else _NEVER
                         for d in allf.device[starts].tolist()], np.int64)[group] if n else \
            np.zeros(0, np.int64)
        late = allf.ts <= last
        live = ready & ~late
        hold = ~ready & ~late
        self._held = allf.take(hold) if hold.any() else None
        self._held_received = received_all[hold]
        self._held_codes = codes[hold]
        events: list = []
        if late.any():
            events += self._process(allf.take(late), late=True)
        if live.any():
            events += self._process(allf.take(live), late=False)
            self._note_arrival(allf.device[live], received_all[live])
        return events

    def _device_codes(self, devices: np.ndarray) -> np.ndarray:
        """A stable small int per device id: one dict lookup per distinct device in the
        batch."""
        if not len(devices):
            return np.zeros(0, np.int64)
        unique, inverse = np.unique(devices.astype(str), return_inverse=True)
        codes = self._codes
        return np.array([codes.setdefault(d, len(codes)) for d in unique.tolist()],
                        np.int64)[inverse]

    def _note_arrival(self, devices: np.ndarray, received: np.ndarray) -> None:
        """Remember when each vehicle's newest live fix arrived (wall clock): SIGNAL_LOSS
        measures silence on the wall clock from there, so a terminal whose clock runs behind
        (or a fleet replayed from history) is not silent merely because its device time is
        old."""
        starts = np.flatnonzero(np.concatenate([[True], devices[1:] != devices[:-1]]))
        latest = np.maximum.reduceat(received, starts)
        for device, at in zip(devices[starts].tolist(), latest.tolist(), strict=True):
            st = self.vehicles[device]
            st.last_received = max(st.last_received, at)

    # --- evaluation, vectorised across vehicles ----------------------------------------------

    def _process(self, f: Facts, late: bool) -> list:
        dev = f.device.astype(str)
        starts = np.flatnonzero(np.concatenate([[True], dev[1:] != dev[:-1]]))
        devices = dev[starts].tolist()
        self._touched.update(devices)
        group = np.repeat(np.arange(len(starts)), np.diff(np.concatenate([starts, [len(f)]])))
        if late:
            events: list = []
            ends = np.concatenate([starts[1:], [len(f)]])
            for device, a, b in zip(devices, starts.tolist(), ends.tolist(), strict=True):
                events += self._late_vehicle(device, f.take(slice(a, b)))
            return events
        known = self.vehicles
        states = [known.get(d) or known.setdefault(d, VehicleState()) for d in devices]
        return self._run(f, group, devices, states, late=False, keep_gaps=True)

    def _run(self, f: Facts, group: np.ndarray, devices: list[str],
             states: list[VehicleState], late: bool, keep_gaps: bool) -> list:
        """Evaluate fixes sorted by (vehicle, ts), all newer than each vehicle's ``last_ts``.

        Rows are split into rounds at gaps longer than ``gap_snapshot_s``, so the state at the
        start of each gap can be saved for late data that may fill it later."""
        n = len(f)
        first = np.ones(n, bool)
        first[1:] = group[1:] != group[:-1]
        last_ts = np.array([st.last_ts for st in states], np.int64)
        prev = np.empty(n, np.int64)
        prev[1:] = f.ts[:-1]
        prev[first] = last_ts[group[first]]
        gap = (f.ts - prev > self.gap_snapshot_s * 1000) & (prev > _NEVER)
        counts = np.cumsum(gap)
        seg: np.ndarray = counts - np.maximum.accumulate(np.where(first, counts - gap, 0))
        events: list = []
        if keep_gaps:
            # before a vehicle's first fix lies a gap too: a terminal that comes online with
            # a blind-area backlog still to send (or any vehicle after an ingest restart)
            for k in np.flatnonzero(first & (prev == _NEVER)).tolist():
                states[group[k]].gaps.append((_NEVER, int(f.ts[k]), _EMPTY))
        for r in range(int(seg.max()) + 1 if n else 0):
            rows: np.ndarray = seg == r
            if keep_gaps:
                for k in np.flatnonzero(rows & gap).tolist():
                    st = states[group[k]]
                    snap = st.to_dict(gaps=False)
                    st.gaps.append((st.last_ts, int(f.ts[k]), snap))
                    if len(st.gaps) > self.max_gap_snapshots:
                        prune_gaps(st.gaps, self.max_gap_snapshots)
            events += self._round(f.take(rows), group[rows], devices, states, late)
        return events

    def _round(self, f: Facts, group: np.ndarray, devices: list[str],
               states: list[VehicleState], late: bool) -> list:
        """One round: the handler chain — GNSS gate → legs and trips → situation → every
        rule through its debounce machine → SIGNAL_LOSS."""
        ref = self.ref
        if ref is None:  # no city: evaluate() never gets here
            return []
        s = self.settings
        n = len(f)
        if n == 0:
            return []
        first = np.ones(n, bool)
        first[1:] = group[1:] != group[:-1]
        starts = np.flatnonzero(first)
        ends = np.concatenate([starts[1:], [n]])
        slot = np.cumsum(first) - 1  # index into starts / sts
        sts = [states[g] for g in group[starts].tolist()]
        names = [devices[g] for g in group[starts].tolist()]
        events: list = []

        # where each vehicle was before this round: a gap at its first row starts there
        before = [(st.good_lon, st.good_lat) for st in sts]
        known = gnss_known(f, first, slot, starts, ends, sts, s.max_implied_kmh)
        pf = permit_facts(f, ref, s)
        legs = walk_legs(f, pf, known, first, slot, starts, ends, [st.leg for st in sts], s,
                         ref.dock_ids(f.site))
        events += self._trips(f, legs.trips, names, late)
        x = situation(f, pf, known, legs, ref.corridors, s)
        events += self._signal_loss(f, first, slot, starts, sts, names, before,
                                    x.moving & ~f.in_site, late)
        lift_less = np.flatnonzero((f.lift < 0) & ((f.load >= 0) | ~np.isnan(f.load_kg)))
        for i in np.unique(slot[lift_less]).tolist():
            a, b = int(starts[i]), int(ends[i])
            x.load_dropped[a:b] = load_dropped(sts[i], f, a, b, x.tip_allowed[a:b],
                                               x.moving[a:b], s)

        # vehicles with a machine not idle, per rule: one pass over the vehicles that have any
        running: dict[str, list[int]] = {}
        for i, st in enumerate(sts):
            if st.machines:
                for key, m in st.machines.items():
                    if m.phase:
                        running.setdefault(key, []).append(i)
        for rule in MACHINE_RULES:
            key = rule.machine_key
            c = rule.condition(x, s)
            on = c.known & (c.cond == ON)
            busy = np.bincount(slot[on], minlength=len(starts)) > 0
            busy[running.get(key, [])] = True
            for i in np.flatnonzero(busy).tolist():
                a, b = int(starts[i]), int(ends[i])
                rows = a + np.flatnonzero(c.known[a:b])
                st = sts[i]
                for t in feed(st.machine(key), self.debounce[key], f.ts[rows], c.cond[rows],
                              c.measure[rows], f.lon[rows], f.lat[rows], c.context[rows]):
                    events.append(self.emit.transition(names[i], rule.name, t, late))
                    if t.kind == "closed":
                        st.recent_closed.append((rule.name, t.start_ts, t.end_ts, t.end_lon,
                                                 t.end_lat, t.peak, t.start_lon, t.start_lat))
                        del st.recent_closed[:-16]

        last_rows = ends - 1
        moving_outside = x.moving & ~f.in_site
        for i, st in enumerate(sts):
            st.last_ts = int(f.ts[last_rows[i]])
            st.last_moving_outside = bool(moving_outside[last_rows[i]])
        return events

    def _trips(self, f: Facts, trips: list, names: list[str], late: bool) -> list:
        """Trip events (the manifest's lines) and, for a departure that takes its job over
        the declared volume, a PERMIT_VOLUME_EXCEEDED against that truck and load."""
        events: list = []
        ref = self.ref
        if ref is None:  # rules run only with a reference
            return events
        for t in trips:
            k = t.row
            volume, source = (None, None) if t.arrived_ts is not None else \
                estimate_volume(f, k, ref, self.settings)
            events.append(self.emit.trip(names[t.vehicle], int(f.vehicle[k]), t, late,
                                         volume, source, float(f.load_kg[k])))
            over = self.jobs.add(t.permit, volume) if volume is not None else None
            if over is not None:
                lon, lat = float(f.lon[k]), float(f.lat[k])
                for phase, end in ((Phase.OPENED, None), (Phase.CLOSED, t.left_ts)):
                    events.append(self.emit.violation(
                        names[t.vehicle], PermitVolumeExceeded.name, phase, t.left_ts, end,
                        lon, lat, None if end is None else lon, None if end is None else lat,
                        over, t.permit, late))
        return events

    def _signal_loss(self, f: Facts, first: np.ndarray, slot: np.ndarray, starts: np.ndarray,
                     sts: list[VehicleState], names: list[str],
                     before: list[tuple[float, float]], moving_outside: np.ndarray,
                     late: bool) -> list:
        events = []
        limit = self.settings.signal_loss_s * 1000
        for i, st in enumerate(sts):
            if st.signal_open_ts is not None:  # opened by the sweep; this fix closes it
                k = int(starts[i])
                start = st.signal_open_ts
                events.append(self.emit.violation(names[i], SIGNAL_LOSS, Phase.CLOSED, start,
                                                  int(f.ts[k]), *before[i],
                                                  float(f.lon[k]), float(f.lat[k]),
                                                  (f.ts[k] - start) / 1000, -1, late))
                st.signal_periods.append((start, int(f.ts[k]), *before[i], start))
                st.signal_open_ts = None
        prev_ts = np.empty(len(f), np.int64)
        prev_mo = np.empty(len(f), bool)
        prev_ts[1:], prev_mo[1:] = f.ts[:-1], moving_outside[:-1]
        prev_ts[first] = [sts[i].last_ts for i in slot[first].tolist()]
        prev_mo[first] = [sts[i].last_moving_outside for i in slot[first].tolist()]
        gaps = (f.ts - prev_ts > limit) & prev_mo & (prev_ts > _NEVER)
        for k in np.flatnonzero(gaps).tolist():
            st = sts[slot[k]]
            start, end = int(prev_ts[k]), int(f.ts[k])
            if any(p[0] == start for p in st.signal_periods):
                continue  # already reported (by the sweep)
            lon0, lat0 = (f.lon[k - 1], f.lat[k - 1]) if not first[k] else \
                before[slot[k]]
            peak = (end - start) / 1000
            events.append(self.emit.violation(names[slot[k]], SIGNAL_LOSS, Phase.OPENED, start,
                                              None, lon0, lat0, None, None, peak, -1, late))
            events.append(self.emit.violation(names[slot[k]], SIGNAL_LOSS, Phase.CLOSED, start,
                                              end, lon0, lat0, float(f.lon[k]), float(f.lat[k]),
                                              peak, -1, late))
            st.signal_periods.append((start, end, float(lon0), float(lat0), start))
            del st.signal_periods[:-20]
        return events

    def _late_vehicle(self, device: str, rows: Facts) -> list:
        """Late fixes: evaluated from the state saved at the gap they fill (or a fresh one),
        on a copy; violations still open at the end of the late data close at its last fix."""
        live = self.vehicles.setdefault(device, VehicleState())
        events: list = []
        first, last_ts = int(rows.ts[0]), int(rows.ts[-1])
        snap: dict | None = None
        gap_end: int | None = None
        gap_index: int | None = None
        for k, (start, end, data) in enumerate(live.gaps):
            if start < first < end:
                snap, gap_end, gap_index = data, end, k
        if snap is None:
            # inside stretches the live stream already covered: a redelivery (QoS 1 after a
            # reconnect, a hand-over's overlap) or a fix that trailed its neighbours by more
            # than the reorder window. Evaluating it on a fresh state would open violations
            # with new start times — duplicates — so it is stored but not re-evaluated.
            self.dropped_late += len(rows)
            return retract_filled_gaps(device, live, rows.ts, self.settings.signal_loss_s,
                                       self.emit)
        temp = VehicleState.from_dict(snap)
        temp.signal_periods = []
        # the live state may already hold this device time's fixes: skip those
        rows = rows.take(rows.ts > temp.last_ts)
        if len(rows):
            events += self._run(rows, np.zeros(len(rows), np.int64), [device], [temp],
                                late=True, keep_gaps=False)
            if gap_index is not None and gap_end is not None and int(rows.ts[-1]) < gap_end:
                # more of the blind area may still come: it resumes from here
                resume = temp.to_dict(gaps=False)
                live.gaps[gap_index] = (int(rows.ts[-1]), gap_end, resume)
            if gap_end is not None:
                merge_late_leg(live.leg, temp.leg, first)
            events += reconcile_late(device, live, temp, gap_end, last_ts,
                                     float(rows.lon[-1]), float(rows.lat[-1]), self.emit)
        events += retract_filled_gaps(device, live, rows.ts, self.settings.signal_loss_s,
                                      self.emit)
        return events
