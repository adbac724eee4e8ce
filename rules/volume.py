"""The manifest's estimated volume of a load, and PERMIT_VOLUME_EXCEEDED.

A load's volume is estimated as it leaves its origin: the weighed load / ``spoil_density
_kg_m3`` when the truck weighs its load, else the vehicle's rated volume from the registry
(half of it when the level sensor says "half"), else unknown (the manifest says so and the
job's count skips it — an estimate the city cannot defend accuses nobody).

A job (出土申报: one application, one permit per plate) declares its volume; every departure
on one of its permits adds its load. The departure that takes the job past the declared
volume, and every one after it, is a PERMIT_VOLUME_EXCEEDED against that truck and load:
peak = m³ the job is over after this load. It is debounced by the departure itself (a leg
leaves its origin only after the site-exit hysteresis), so a truck waiting at the gate never
counts twice. The count is what the manifest held when the reference was loaded
(``Reference.job_hauled_m3``) plus this engine's departures since; a reload takes the
database's count again (docs/permits.md "The manifest").
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from domain.settings import RuleSettings
from rules.facts import Facts
from rules.legs import LOADED_KG
from rules.reference import Reference

HALF = 1  # load level "half" (0 empty, 1 half, 2 full)


class PermitVolumeExceeded:
    name: ClassVar[str] = "PERMIT_VOLUME_EXCEEDED"
    context_kind: ClassVar[str] = "permit"
    evidence: ClassVar[str] = "the departure that took the job over its declared volume"

    def severity(self, peak: float, s: RuleSettings) -> int:
        return 2


def estimate_volume(f: Facts, row: int, ref: Reference,
                    s: RuleSettings) -> tuple[float | None, str | None]:
    """(m³, source) of the load that left on fix ``row``; source 'load_sensor' or 'rated'."""
    kg = float(f.load_kg[row])
    if kg == kg and kg > LOADED_KG:
        return round(kg / s.spoil_density_kg_m3, 2), "load_sensor"
    v = int(f.vehicle[row])
    rated = float(ref.vehicle_volume_m3[v]) if v >= 0 and len(ref.vehicle_volume_m3) else \
        float("nan")
    if rated == rated:
        return (rated / 2 if int(f.load[row]) == HALF else rated), "rated"
    return None, None


class JobVolumes:
    """Per job: volume hauled since the reference was loaded (reset with a new reference,
    whose ``job_hauled_m3`` holds what was committed meanwhile)."""

    def __init__(self, ref: Reference) -> None:
        self.ref = ref
        self.added = np.zeros(len(ref.job_ids))

    def add(self, permit: int, volume: float) -> float | None:
        """Count a departure's load against its permit's job; the m³ the job is over its
        declared volume after it, or None when it is within it (or declares none)."""
        if permit < 0:
            return None
        job = int(self.ref.permit_job[permit])
        self.added[job] += volume
        declared = self.ref.job_declared_m3[job]
        total = self.ref.job_hauled_m3[job] + self.added[job]
        if declared == declared and total > declared + 1e-9:
            return round(float(total - declared), 2)
        return None
