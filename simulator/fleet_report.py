"""The terminals' reports, and the noise in them that must not become a violation.

Why together: the noise classes (``Noise``) are drawn report by report, interleaved with the
clean readings from one seeded generator — GNSS noise, HDOP, multipath jumps, bad-GNSS
bursts, speed, lid, lift, load level or weight, each glitch at its rate per truck-hour on the
road — so one function builds a batch of reports in a fixed draw order (the same seed gives
the same fleet). Every glitch is written to ``Fleet.events`` as a near-miss truth row with its
``kind``: lift-sensor bounces, lid-contact flickers, load-level and weight spikes (one report
each, never two of the same sensor on a truck closer than ``min_gap_reports``), speed-sensor
spikes, bad-GNSS fixes (too few satellites or a poor HDOP, far off), multipath jumps, and the
fixes alternating either side of a site's gate while a truck waits there.

Terminals differ: most report lid, lift and a load level; some have no lift sensor (tipping
shows only as the load dropping), some weigh the load (``load_kg``) instead of a level.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import numpy as np

from simulator.fleet_phases import LOADING, OUTBOUND, RETURNING, TIPPING, is_moving
from simulator.fleet_tick import FleetTick

if TYPE_CHECKING:
    from simulator.fleet import Fleet


@dataclass(frozen=True)
class Noise:
    """Rates of the noise classes; ``*_per_h`` per truck-hour on the road."""

    lift_bounce_per_h: float = 0.05
    lid_flicker_per_h: float = 0.1
    load_spike_per_h: float = 0.05
    kg_spike_per_h: float = 0.2  # on terminals that weigh
    speed_spike_per_h: float = 0.1
    bad_gnss_per_h: float = 0.1  # bursts of 1–3 fixes
    gate_jitter_share: float = 0.03  # of loaded legs: a minute waiting at a gate
    red_light_truth_share: float = 0.01  # of loaded red-light stops, kept in the truth
    min_gap_reports: int = 5

    @classmethod
    def none(cls) -> Noise:
        return cls(**{f.name: 0 for f in fields(cls) if f.name != "min_gap_reports"})


def report(fleet: Fleet, idx: np.ndarray) -> FleetTick:
    """One report per truck ``idx`` (all due now): where it is and what its sensors read, each
    noise class applied at its rate and written to the truth as it happens."""
    k = len(idx)
    rng, noise = fleet.rng, fleet.noise
    phase, timer = fleet.phase[idx], fleet.timer[idx]
    x, y, heading = fleet.paths.position(fleet.route[idx], fleet.s[idx],
                                         backwards=phase == RETURNING)
    # a minute at a gate: fixes alternate either side of the site's boundary
    gate = fleet.gate_active[idx]
    if gate.any():
        sign = fleet.gate_sign[idx] * np.where(fleet.seq[idx] % 2 == 0, 1.0, -1.0)
        rad = np.radians(heading)
        x = np.where(gate, x + sign * fleet.gate_d[idx] * np.sin(rad), x)
        y = np.where(gate, y + sign * fleet.gate_d[idx] * np.cos(rad), y)
    sigma = np.where(gate, min(fleet.noise_m, 3.0), fleet.noise_m)
    x = x + rng.normal(0, 1, k) * sigma
    y = y + rng.normal(0, 1, k) * sigma
    moving = is_moving(phase)
    on_road_h = fleet.interval_ms / 3_600_000  # hours per report
    seq = fleet.seq[idx]
    sats = fleet.sats[idx].copy()
    hdop = np.round(rng.uniform(0.6, 1.6, k), 1)
    if fleet.jump_rate:
        jump = (rng.random(k) < fleet.jump_rate) & ~gate
        angle = rng.uniform(0, 2 * np.pi, k)
        x = np.where(jump, x + 300 * np.cos(angle), x)
        y = np.where(jump, y + 300 * np.sin(angle), y)
        for r in np.flatnonzero(jump).tolist():
            fleet._event(int(idx[r]), "OFF_ROUTE" if moving[r] else "UNAUTHORISED_DUMP",
                        "gnss_jump", fleet.now_ms, fleet.now_ms, "one multipath fix 300 m off")
    # bad GNSS: bursts of 1–3 fixes with too few satellites or a poor HDOP, far off
    bad = fleet._bad_left[idx] > 0
    if noise.bad_gnss_per_h:
        start = moving & ~bad & ~gate & (rng.random(k) < noise.bad_gnss_per_h * on_road_h)
        for r in np.flatnonzero(start).tolist():
            i = int(idx[r])
            count = int(rng.integers(1, 4))
            fleet._bad_left[i] = count
            fleet._event(i, "OFF_ROUTE", "bad_gnss", fleet.now_ms,
                        fleet.now_ms + int((count - 1) * fleet.interval_ms * 1.2),
                        f"{count} bad GNSS fix(es): too few satellites or HDOP over 5")
        bad = fleet._bad_left[idx] > 0
    if bad.any():
        nb = int(bad.sum())
        few = rng.random(nb) < 0.5
        sats[bad] = np.where(few, rng.integers(0, 4, nb), sats[bad])
        hdop[bad] = np.where(few, hdop[bad], np.round(rng.uniform(5.5, 20.0, nb), 1))
        off = rng.uniform(80, 600, nb)
        angle = rng.uniform(0, 2 * np.pi, nb)
        x[bad] += off * np.cos(angle)
        y[bad] += off * np.sin(angle)
        fleet._bad_left[idx[bad]] -= 1
    lon, lat = fleet.paths.to_lonlat.transform(x, y)
    v = fleet.v[idx]
    speed = np.where(v > 0.3, v * 3.6 + rng.normal(0, 1.0, k), 0.0)
    loading = phase == LOADING
    lid = np.where(loading & (timer > 30), 1, 0)  # open while loading, closed to leave
    if fleet.flicker_rate or noise.lid_flicker_per_h:
        p = fleet.flicker_rate + noise.lid_flicker_per_h * on_road_h
        flick = flicker(fleet, "lid", idx, moving & (lid == 0), p)
        lid = np.where(flick, 1, lid)
        for r in np.flatnonzero(flick).tolist():
            fleet._event(int(idx[r]), "UNCOVERED_LOAD", "lid_flicker", fleet.now_ms,
                        fleet.now_ms, "the lid contact reads open for one report")
    lift = np.where((phase == TIPPING) & (timer > 20), 1, 0)
    has_lift = fleet.has_lift[idx]
    if noise.lift_bounce_per_h:
        flick = flicker(fleet, "lift", idx, moving & has_lift & (lift == 0),
                        noise.lift_bounce_per_h * on_road_h)
        lift = np.where(flick, 1, lift)
        for r in np.flatnonzero(flick).tolist():
            where = "while driving" if v[r] > 0.3 else "stopped at a red light"
            fleet._event(int(idx[r]), "UNAUTHORISED_DUMP", "lift_bounce", fleet.now_ms,
                        fleet.now_ms, f"the lift sensor bounces for one report {where}")
    loaded = (phase == OUTBOUND) | ((phase == TIPPING) & (timer > 20))
    load = np.select([phase == OUTBOUND, phase == TIPPING, loading],
                     [2, np.where(timer > 20, 2, 0), np.where(timer > 30, 1, 2)], 0)
    weighs = fleet.weighs[idx]
    kg = np.full(k, np.nan)
    if weighs.any():
        full = fleet.full_kg[idx]
        kg = np.where(load == 2, full, np.where(load == 1, 0.45 * full, 0.0))
        kg = kg + rng.normal(0, 120, k) * (load > 0) + rng.uniform(0, 150, k) * (load == 0)
        kg = np.where(weighs, np.maximum(kg, 0.0), np.nan)
    spike_p = np.where(weighs, noise.kg_spike_per_h, noise.load_spike_per_h) * on_road_h
    if noise.kg_spike_per_h or noise.load_spike_per_h:
        flick = flicker(fleet, "load", idx, moving, spike_p)
        for r in np.flatnonzero(flick).tolist():
            i = int(idx[r])
            was_loaded = bool(loaded[r])
            if weighs[r]:
                kg[r] = rng.uniform(0, 0.5) * kg[r] if was_loaded else rng.uniform(15e3, 3e4)
                kind, what = "kg_spike", f"one wrong weight reading ({kg[r]:.0f} kg)"
            else:
                load[r] = 0 if was_loaded else 2
                kind, what = "load_spike", f"the load sensor reads {load[r]} for one report"
            fleet._event(i, "UNAUTHORISED_DUMP" if was_loaded else "OFF_ROUTE", kind,
                        fleet.now_ms, fleet.now_ms, what)
    if noise.speed_spike_per_h:
        flick = flicker(fleet, "speed", idx, moving & (v > 3),
                        noise.speed_spike_per_h * on_road_h)
        for r in np.flatnonzero(flick).tolist():
            speed[r] = rng.uniform(75, 110)
            fleet._event(int(idx[r]), "OVERSPEED", "speed_spike", fleet.now_ms, fleet.now_ms,
                        f"one speed reading of {speed[r]:.0f} km/h")
    fleet.seq[idx] += 1
    return FleetTick(
        truck=idx, device=fleet.device[idx], ts=fleet.now_ms + fleet.skew_ms[idx],
        lon=np.asarray(lon), lat=np.asarray(lat), speed=np.clip(speed, 0, None),
        heading=heading, lid=lid, lift=np.where(has_lift, lift, -1),
        load=np.where(weighs, -1, load), load_kg=kg, sats=sats, hdop=hdop, seq=seq,
        phase=phase, permit=np.where(phase <= TIPPING, fleet.job[idx], -1),
    )


def flicker(fleet: Fleet, sensor: str, idx: np.ndarray, eligible: np.ndarray, p) -> np.ndarray:
    """Which of these reports carry a one-report glitch of ``sensor``: at rate ``p``, never
    two on a truck closer than ``min_gap_reports`` reports."""
    last = fleet._last_flicker[sensor]
    seq = fleet.seq[idx]
    hit = eligible & (fleet.rng.random(len(idx)) < p) & \
        (seq - last[idx] >= fleet.noise.min_gap_reports)
    last[idx[hit]] = seq[hit]
    return hit
