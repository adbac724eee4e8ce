"""Events in the reference's words: a debounce machine's transition, a SIGNAL_LOSS period or a
trip becomes a ViolationEvent / TripEvent with its deterministic id, plate, company, permit
or zone and severity — the one place rule output is named, for live and late data alike."""

from __future__ import annotations

import hashlib

import numpy as np

from domain.events import Phase, TripEvent, ViolationEvent
from domain.settings import RuleSettings
from rules.chain import severity
from rules.reference import Reference
from rules.signal_loss import SignalLoss

SIGNAL_LOSS = SignalLoss.name
_PHASES = {"opened": Phase.OPENED, "updated": Phase.UPDATED, "closed": Phase.CLOSED}


def violation_id(device: str, rule: str, start_ts: int) -> str:
    """Derived from (device, rule, start time): a replay or a hand-over reproduces the id, so
    the store upserts instead of duplicating."""
    digest = hashlib.sha1(f"{device}|{rule}|{start_ts}".encode()).hexdigest()[:20]
    return f"{rule[:3].lower()}-{digest}"


class EventMaker:
    def __init__(self, reference: Reference, settings: RuleSettings) -> None:
        self.ref = reference
        self.settings = settings

    def transition(self, device: str, rule: str, t, late: bool) -> ViolationEvent:
        """A debounce machine's transition (rules/machine.py)."""
        return self.violation(device, rule, _PHASES[t.kind], t.start_ts, t.end_ts, t.start_lon,
                              t.start_lat, t.end_lon, t.end_lat, t.peak, t.context, late)

    def violation(self, device: str, rule: str, phase: Phase, start_ts: int,
                  end_ts: int | None, start_lon: float, start_lat: float, end_lon, end_lat,
                  peak, context: int, late: bool) -> ViolationEvent:
        """``context``: the permit (or, for RESTRICTED_ZONE, the zone) index, -1 none."""
        ref = self.ref
        v = int(ref.vehicle_of(np.array([device], dtype=object))[0])
        permit_id = fence_id = None
        if rule == "RESTRICTED_ZONE" and context >= 0:
            fence_id = ref.fence_ids[context]
        elif context >= 0 and rule != SIGNAL_LOSS:
            permit_id = ref.permit_ids[context]
        peak_value = None if peak is None or np.isnan(peak) else float(peak)
        return ViolationEvent(
            id=violation_id(device, rule, start_ts), phase=phase, rule=rule, device_id=device,
            start_ts=int(start_ts), end_ts=None if end_ts is None else int(end_ts),
            start_lon=float(start_lon), start_lat=float(start_lat),
            end_lon=None if end_lon is None else float(end_lon),
            end_lat=None if end_lat is None else float(end_lat),
            peak=peak_value, severity=severity(rule, peak_value or 0.0, self.settings),
            late=late, plate=ref.plates[v] if v >= 0 else None,
            company_id=ref.companies[v] if v >= 0 else None, permit_id=permit_id,
            fence_id=fence_id,
        )

    def trip(self, device: str, vehicle: int, t, late: bool, volume_m3: float | None = None,
             volume_source: str | None = None, load_kg: float | None = None) -> TripEvent:
        """A leg that left its origin (with its estimated volume) and, once arrived, reached
        a destination (with the docks it passed)."""
        ref, v = self.ref, vehicle
        return TripEvent(
            id=violation_id(device, "TRIP", t.left_ts), device_id=device,
            plate=ref.plates[v] if v >= 0 else None,
            company_id=ref.companies[v] if v >= 0 else None,
            permit_id=ref.permit_ids[t.permit] if t.permit >= 0 else None,
            origin=ref.fence_ids[t.origin] if t.origin >= 0 else None,
            left_ts=t.left_ts,
            destination=ref.fence_ids[t.destination] if t.destination >= 0 else None,
            arrived_ts=t.arrived_ts, late=late,
            volume_m3=volume_m3, volume_source=volume_source,
            load_kg=None if load_kg is None or load_kg != load_kg or t.arrived_ts is not None
            else load_kg,
            transfers=tuple(t.transfers))
