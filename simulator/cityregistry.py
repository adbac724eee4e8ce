"""The registry of a generated city (issue #22): each truck's rated load and body volume, each
permit's declared volume and the jobs (出土申报) that group permits of several plates.

Drawn from a generator of its own, after everything else, so the rest of the bundle stays the
same bytes whatever is drawn here (the registry only *adds* a column and two properties).

* **Trucks**: a company runs one or two models of 8×4 dump truck (``MODELS``: rated load
  15.5–24.5 t, body 12.5–19 m³); ``UNKNOWN_SHARE`` of the trucks have no registry entry (empty
  cells: never judged for OVERLOAD, their loads of unknown volume unless weighed). The first
  vehicle of the bundle is always unknown: ``tests/rules`` drive it with made-up weights.
* **Jobs**: permits of one company from the same origin to the same destinations, with the
  same hours and validity, are one application (one job, ``job`` = ``J0001`` …) with
  ``JOB_SHARE``; a job declares 30,000–200,000 m³ — far more than a fleet hauls in a
  simulated month, as an honest company declares. A permit of no job is its own.
* **Episode jobs**: ``EPISODE_TRUCKS`` trucks (× scale; the last permit holders, so a
  compliant fleet of any usual size leaves them out) hold only small jobs, each of its own,
  declaring one or two loads of the truck's body volume (``episode_job``: at most
  ``EPISODE_JOB_MAX_M3``). They are the mixed scenario's PERMIT_VOLUME_EXCEEDED trucks
  (simulator.episodes): the compliant fleet never drives them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from simulator.cityfleet import Vehicle
from simulator.citypermits import MAIN_VALIDITY, Permit

#: (rated load kg, body volume m³) of the dump-truck models companies run
MODELS = ((15_500, 12.5), (17_800, 14.0), (19_600, 15.5), (21_800, 17.0), (24_500, 19.0))
UNKNOWN_SHARE = 0.08
JOB_SHARE = 0.6  # of the groups of permits that could be one job, the share that are
JOB_M3 = (30_000.0, 200_000.0)
EPISODE_TRUCKS = 6  # per unit of scale
# declared volume in whole loads of the truck's body: one haul never takes a small job over
# (tests/rules haul every permit of the sample city once), the next one may
EPISODE_JOB_LOADS = (1.0, 1.0, 1.0, 2.0)
EPISODE_JOB_MAX_M3 = 100.0
EPISODE_ROUTE_MAX_M = 35_000.0  # an episode's route (simulator.episodes)


def episode_job(declared_m3: float | None) -> bool:
    """A job this small is the episodes' (PERMIT_VOLUME_EXCEEDED), never the fleet's."""
    return declared_m3 is not None and declared_m3 <= EPISODE_JOB_MAX_M3


@dataclass
class Registry:
    """Per plate (rated load kg, volume m³), None when unknown; per permit id its declared
    volume and its job ("" when it is its own)."""

    vehicle: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    declared: dict[str, float] = field(default_factory=dict)
    job: dict[str, str] = field(default_factory=dict)


def draw_registry(rng: np.random.Generator, vehicles: list[Vehicle], permits: list[Permit],
                  scale: float) -> Registry:
    reg = Registry()
    companies = sorted({c for _, _, c in vehicles})
    fleet_models = {c: rng.choice(len(MODELS), size=2, replace=False) for c in companies}
    second = {c: float(rng.uniform(0.0, 0.4)) for c in companies}
    for k, (plate, _, company) in enumerate(vehicles):
        a, b = fleet_models[company]
        model = MODELS[int(b if rng.random() < second[company] else a)]
        unknown = rng.random() < UNKNOWN_SHARE or k == 0
        reg.vehicle[plate] = (None, None) if unknown else (float(model[0]), float(model[1]))

    # episode jobs: the last permit holders whose permits are all current, with a known
    # volume and at least one all-day permit on a route an episode may take
    held: dict[str, list[Permit]] = {}
    for p in permits:
        held.setdefault(p.plate, []).append(p)

    def length(p: Permit) -> float:
        return float(np.hypot(*np.diff(p.route_m, axis=0).T).sum())

    eligible = [pl for pl, ps in held.items()
                if pl != vehicles[0][0] and reg.vehicle[pl][1] is not None
                and all(p.valid == MAIN_VALIDITY for p in ps)
                and any(p.hours is None and length(p) <= EPISODE_ROUTE_MAX_M for p in ps)]
    small = eligible[::-1][:max(1, round(EPISODE_TRUCKS * scale))]
    width = max(2, len(str(sum(len(held[pl]) for pl in small))))
    n = 0
    for pl in sorted(small, key=lambda pl: held[pl][0].id):
        volume = reg.vehicle[pl][1]
        assert volume is not None
        for p in held[pl]:
            n += 1
            loads = EPISODE_JOB_LOADS[int(rng.integers(len(EPISODE_JOB_LOADS)))]
            reg.declared[p.id] = round(loads * volume, 1)
            reg.job[p.id] = f"S{n:0{width}d}"

    # the others: jobs of several plates, generous declared volumes
    owner = {pl: c for pl, _, c in vehicles}
    groups: dict[tuple, list[Permit]] = {}
    for p in permits:
        if p.id in reg.declared:
            continue
        key = (owner[p.plate], p.origin.id, tuple(d.id for d in p.destinations), p.hours,
               p.valid)
        groups.setdefault(key, []).append(p)
    jobs = 0
    for members in groups.values():  # in the order of their first permit
        plates = {p.plate for p in members}
        if len(plates) >= 2 and rng.random() < JOB_SHARE:
            jobs += 1
            declared = round(float(rng.uniform(*JOB_M3)), -2)
            seen: set[str] = set()
            for p in members:  # one permit per plate (a second is a job of its own)
                if p.plate in seen:
                    reg.declared[p.id] = round(float(rng.uniform(*JOB_M3)), -2)
                    continue
                seen.add(p.plate)
                reg.declared[p.id] = declared
                reg.job[p.id] = f"J{jobs:04d}"
        else:
            for p in members:
                reg.declared[p.id] = round(float(rng.uniform(*JOB_M3)), -2)
    return reg
