"""How the whole fleet moves through one sub-step: timers, red lights, gates, path ends.

Why a module of its own: this is the vectorised core — every truck advanced at once as numpy
columns (a distance along its path, a speed), no geometry — and the only place that knows the
driving model: a truck accelerates (``ACCELERATION``) to its own cruising speed and brakes
(``BRAKING``) for the next red light (one every ``junction_spacing_m`` on average, 5–60 s
wait) and for the end of its path. A sample of loaded legs waits a minute at a site's gate
(``Noise.gate_jitter_share``) and a sample of loaded red-light stops goes into the truth
(``Noise.red_light_truth_share``), both near misses written as they start. Per-truck
decisions happen only where a truck finishes something, and are handed to ``fleet_jobs``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from simulator.fleet_jobs import decide, start_loading
from simulator.fleet_phases import (
    LOADING,
    OUTBOUND,
    PARKED,
    RETURNING,
    TIPPING,
    TIPPING_S,
    is_moving,
)

if TYPE_CHECKING:
    from simulator.fleet import Fleet

ACCELERATION = 0.6  # m/s², a loaded 8×4 tipper pulling away
BRAKING = 1.5  # m/s², comfortable braking
RED_LIGHT_S = (5.0, 60.0)
MIN_JUNCTION_GAP_M = 150.0
GATE_WAIT_S = (60.0, 80.0)


def junction_gap(fleet: Fleet, n: int) -> np.ndarray:
    """Distances to the next red light, one per truck."""
    return np.maximum(MIN_JUNCTION_GAP_M, fleet.rng.exponential(fleet.junction_spacing_m, n))


def move(fleet: Fleet, dt: float) -> None:
    """Advance every truck ``dt`` seconds."""
    phase, timer, s, n = fleet.phase, fleet.timer, fleet.s, len(fleet)
    stationary = (phase == LOADING) | (phase == TIPPING) | (phase == PARKED)
    timer[stationary] -= dt
    leaving = np.flatnonzero(stationary & (timer <= 0))
    for i in leaving.tolist():
        if phase[i] == LOADING:
            phase[i] = OUTBOUND
            fleet.v[i] = 0.0
            fleet.stop_at[i] = s[i] + fleet._gap()
            if fleet.rng.random() < fleet.noise.gate_jitter_share:
                j = int(fleet.route[i])
                if fleet.rng.random() < 0.5:
                    fleet.gate_target[i], fleet.gate_sign[i] = fleet.paths.exit_s[j], -1.0
                else:
                    fleet.gate_target[i], fleet.gate_sign[i] = fleet.paths.entry_s[j], 1.0
        else:  # tipping done, or parked long enough
            decide(fleet, i)

    moving = is_moving(fleet.phase)
    direction = np.where(fleet.phase == RETURNING, -1.0, 1.0)
    gate = moving & (fleet.gate_target >= 0) & (phase == OUTBOUND)
    if gate.any():
        fleet.stop_at[gate] = np.where(s[gate] < fleet.gate_target[gate],
                                      np.minimum(fleet.stop_at[gate], fleet.gate_target[gate]),
                                      fleet.stop_at[gate])
    waiting = moving & (fleet.stop_timer > 0)
    fleet.stop_timer[waiting] -= dt
    green = waiting & (fleet.stop_timer <= 0)
    if green.any():
        gaps = junction_gap(fleet, n)
        fleet.stop_at[green] = s[green] + direction[green] * gaps[green]
        fleet.gate_active[green] = False
        fleet.red_truth[green] = False
    driving = moving & ~waiting
    length = fleet.paths.length[fleet.route]
    to_stop = np.maximum((fleet.stop_at - s) * direction, 0.0)
    to_end = np.maximum(np.where(phase == RETURNING, s, length - s), 0.0)
    ahead = np.minimum(to_stop, to_end)
    v_new = np.minimum(np.minimum(fleet.v + ACCELERATION * dt, fleet.cruise),
                       np.sqrt(2 * BRAKING * ahead))
    step = np.minimum(0.5 * (fleet.v + v_new) * dt + 0.5, ahead)
    step = np.where(driving, step, 0.0)
    fleet.v = np.where(driving, v_new, fleet.v)
    outbound = driving & (phase == OUTBOUND)
    if outbound.any():  # a loaded truck passing its destination's gate: it has arrived
        entry = fleet.paths.entry_s[np.where(outbound, fleet.route, 0)]
        for i in np.flatnonzero(outbound & (s < entry) & (s + step >= entry)).tolist():
            fleet.arrivals.append((i, fleet.paths.dest[int(fleet.route[i])],
                                   fleet.now_ms + round(dt * 1000)))
    s += direction * step
    at_light = driving & (to_stop - step <= 0.01) & (to_stop < to_end)
    at_end = driving & (to_end - step <= 0.01)
    if at_light.any():
        waits = fleet.rng.uniform(*RED_LIGHT_S, n)
        fleet.stop_timer[at_light] = waits[at_light]
        fleet.v[at_light] = 0.0
        for i in np.flatnonzero(at_light).tolist():
            if fleet.gate_target[i] >= 0 and abs(s[i] - fleet.gate_target[i]) < 1.0:
                wait = fleet.rng.uniform(*GATE_WAIT_S)
                fleet.stop_timer[i] = wait
                fleet.gate_target[i] = -1.0
                fleet.gate_active[i] = True
                fleet.gate_d[i] = fleet.rng.uniform(12.0, 20.0)
                where = "leaving its origin" if fleet.gate_sign[i] < 0 else \
                    "entering its destination"
                fleet._event(i, "OFF_ROUTE", "gate_jitter", fleet.now_ms,
                            fleet.now_ms + int(wait * 1000),
                            f"waits loaded at the gate {where}, fixes alternating in and "
                            "out of the site")
            elif phase[i] == OUTBOUND and fleet.noise.red_light_truth_share and \
                    fleet.rng.random() < fleet.noise.red_light_truth_share:
                fleet.red_truth[i] = True
                fleet._event(i, "UNAUTHORISED_DUMP", "red_light", fleet.now_ms,
                            fleet.now_ms + int(fleet.stop_timer[i] * 1000),
                            f"loaded, stopped {fleet.stop_timer[i]:.0f} s at a red light")
    if at_end.any():
        fleet.v[at_end] = 0.0
        for i in np.flatnonzero(at_end).tolist():
            if phase[i] == OUTBOUND:
                s[i] = length[i]
                phase[i] = TIPPING
                timer[i] = fleet.rng.uniform(*TIPPING_S)
                fleet.gate_target[i] = -1.0
            elif phase[i] == RETURNING:
                s[i] = 0.0
                start_loading(fleet, i)
            else:  # TRANSFER: at the new job's origin
                s[i] = length[i]
                start_loading(fleet, i)
