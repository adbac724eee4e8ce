"""The compliant fleet: trucks working their permits, the whole fleet advanced at once.

A truck holds 1–4 permits (jobs). It works one job per loaded leg: it loads at that permit's
origin site (lid open, then closed, load half → full), drives the permit's route, tips inside
its destination (lift raised, load → empty) — both well inside the site, at the spot farthest
from its edges reached in a straight line from the route's end — and then picks its next job
among its permits that are valid — validity and ``hours`` in the city's timezone — for the
whole of the next leg with a margin: the same job again (it drives the route back empty), or
another one (it drives empty from where it is to that job's origin: back along a route they
share, or a straight run clear of every restricted zone). It never drives a permit loaded
outside that permit's validity. With ``daily`` each truck works a shift (day or night; trucks
whose jobs are night-only work nights) and parks inside the site it is at between shifts,
reporting only every 60–300 s; a truck with no job it may start also parks.

On the road a truck accelerates (0.6 m/s²) to its own cruising speed (25–45 km/h), brakes
(1.5 m/s²) for red lights (one every ``junction_spacing_m`` on average, 5–60 s wait) and for
the end of its path. Its terminal reports every ``interval_s`` with ``jitter``, from its own
phase; a share of terminals has a skewed clock (constant offset up to ``max_skew_s``).

Terminals differ: most report lid, lift and a load level; ``no_lift_share`` have no lift
sensor (tipping shows only as the load dropping); ``weighing_share`` weigh the load
(``load_kg``) instead of reporting a level — a full load within the truck's rated load in
the registry (``FILL``), so the compliant fleet never overloads. A truck takes no job whose
loaded drive it expects to last over 90 minutes (``fleet_jobs.workable``: TRIP_NOT_CLOSED
waits 2 hours), and the trucks of the registry's small jobs (simulator.cityregistry) are
not the fleet's. Each loaded truck passing its destination's gate is an arrival
(``arrivals``: the site operator's receipt).

Noise that must *not* become a violation (``Noise``), each event written to ``events`` as a
near-miss truth row with its ``kind``: lift-sensor bounces, lid-contact flickers, load-level
and weight spikes (one report each, never two of the same sensor on a truck closer than
``min_gap_reports``), speed-sensor spikes, bad-GNSS fixes (too few satellites or a poor
HDOP, far off), multipath jumps, a minute's GNSS jitter across a site gate while waiting
there, a sample of loaded red-light stops, and parking.

Vectorised: every truck's state is a numpy column; all routes (and one transfer path slot per
truck) are concatenated into one array of cumulative distances, offset per route, so a single
``searchsorted`` positions every truck. Decisions (next job, parking) are per truck, only when
a truck reaches the end of something. Same seed → same fleet.

This module holds the fleet's state (one numpy column per truck attribute, built from the
city and the seed) and its clock (``advance``: sub-steps, and which terminals report when).
Each concern it drives has a module of its own, one seeded generator shared by all, so the
order of the random draws — and with it every run — stays that of a single loop:

* ``fleet_phases`` — the phases of a truck's day and the timings of its cycle;
* ``fleet_paths`` — the routes and transfer slots in one distance array, and positions on it;
* ``fleet_motion`` — one sub-step of driving for the whole fleet: lights, gates, path ends;
* ``fleet_jobs`` — permit validity, shifts, the next job or parking, one truck at a time;
* ``fleet_report`` — the terminals' reports and the noise classes (``Noise``) in them;
* ``fleet_tick`` — the reports as columns (``FleetTick``) and their wire encoding.

The names other modules import from here (``Fleet``, ``FleetTick``, ``Noise``,
``permit_valid_until`` and the phases) stay importable from here.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np

from domain.city import City, parse_window
from simulator.cityregistry import episode_job
from simulator.fleet_jobs import permit_valid_until, start_state, unpark, within
from simulator.fleet_motion import MIN_JUNCTION_GAP_M, move
from simulator.fleet_paths import Paths
from simulator.fleet_phases import (
    LOADING,
    MOVING_PHASES,
    OUTBOUND,
    PARKED,
    PARKED_REPORT_S,
    RETURNING,
    SPEED_KMH,
    TIPPING,
    TRANSFER,
)
from simulator.fleet_report import Noise, report
from simulator.fleet_tick import FleetTick

__all__ = [
    "LOADING",
    "MOVING_PHASES",
    "OUTBOUND",
    "PARKED",
    "RETURNING",
    "TIPPING",
    "TRANSFER",
    "Fleet",
    "FleetTick",
    "Noise",
    "permit_valid_until",
]

KG_FULL = (24_000.0, 32_000.0)  # a full load, on terminals that weigh (rated load unknown)
# a full load as a share of the truck's rated load (registry), on terminals that weigh: an
# honest company loads at most 2 % over (with the sensor's noise, ≈ 1.04 × rated at the most)
FILL = (0.85, 1.02)


def full_load_kg(draw: np.ndarray | float, rated: np.ndarray | float) -> np.ndarray:
    """A full load in kg from a draw in ``KG_FULL``: the draw itself when the rated load is
    unknown (NaN), else the same position in ``FILL`` × rated (the same random draw either
    way, so the registry changes no other number of a run)."""
    u = (np.asarray(draw, float) - KG_FULL[0]) / (KG_FULL[1] - KG_FULL[0])
    rated = np.asarray(rated, float)
    return np.where(np.isnan(rated), draw, rated * (FILL[0] + (FILL[1] - FILL[0]) * u))


class Fleet:
    """The compliant fleet of ``trucks`` trucks holding permits valid at ``start_ms``; see the
    module's docstring for the model and the options."""

    def __init__(
        self,
        city: City,
        *,
        trucks: int,
        start_ms: int,
        seed: int = 1,
        interval_s: float = 5.0,
        jitter: float = 0.1,
        noise_m: float = 8.0,
        jump_rate: float = 0.0,
        flicker_rate: float = 0.0,
        skew_share: float = 0.0,
        max_skew_s: float = 90.0,
        junction_spacing_m: float = 800.0,
        step_s: float = 1.0,
        noise: Noise | None = None,
        daily: bool = False,
        no_lift_share: float = 0.0,
        weighing_share: float = 0.0,
        switch_share: float = 0.4,
        exclude: frozenset[str] | set[str] = frozenset(),
    ) -> None:
        if not 0.1 <= interval_s <= 3600:
            raise ValueError(f"interval_s must be 0.1…3600 s, not {interval_s}")
        if not 0 <= jitter < 1:
            raise ValueError(f"jitter must be 0 ≤ jitter < 1, not {jitter}")
        rng = np.random.default_rng(seed)
        self.rng = rng
        self.city = city
        self.interval_ms = interval_s * 1000
        self.jitter = jitter
        self.noise_m = noise_m
        self.jump_rate = jump_rate  # share of fixes thrown ~300 m off by multipath
        self.flicker_rate = flicker_rate  # share of fixes whose lid reads open for one sample
        self.noise = noise or Noise.none()
        self.daily = daily
        self.switch_share = switch_share
        self.junction_spacing_m = junction_spacing_m
        self.step_ms = round(min(step_s, interval_s) * 1000)
        self.tz = ZoneInfo(city.timezone)
        self.events: list[dict] = []  # near-miss truth rows of the noise, drained by the caller
        # (truck, destination site, true ms) of each loaded truck entering its destination,
        # drained by the caller (the site operator's receipts)
        self.arrivals: list[tuple[int, str, int]] = []

        # trucks: vehicles holding a permit valid now (in file order), then those whose
        # permits are valid later today or tomorrow (night-only ones)
        by_plate = {v.plate: v for v in city.vehicles}
        at = datetime.fromtimestamp(start_ms / 1000, self.tz)
        minute = at.hour * 60 + at.minute
        held: dict[str, list] = {}
        # the episodes' small jobs (simulator.cityregistry): their trucks are not the fleet's
        small = {p.plate for p in city.permits if episode_job(p.declared_volume_m3)}
        for p in city.permits:
            if p.plate in by_plate and by_plate[p.plate].device_id not in exclude \
                    and p.plate not in small and p.valid_from <= at <= p.valid_to:
                held.setdefault(p.plate, []).append(p)
        now_ok = [pl for pl, ps in held.items()
                  if any(p.hours is None or within(minute, parse_window(p.hours)) for p in ps)]
        later = [pl for pl in held if pl not in set(now_ok)]
        plates = (now_ok + later)[:trucks]
        if not plates:
            raise ValueError("no vehicle in the city has a permit valid now")
        n = len(plates)
        self.plate = plates
        self.device = np.array([by_plate[pl].device_id for pl in plates], dtype=object)
        # the permits of the fleet, and each truck's jobs (indices into self.permits)
        self.permits = [p for pl in plates for p in held[pl]]
        self.jobs: list[list[int]] = []
        k = 0
        for pl in plates:
            self.jobs.append(list(range(k, k + len(held[pl]))))
            k += len(held[pl])
        self._windows = [parse_window(p.hours) if p.hours else None for p in self.permits]

        self.paths = Paths(city, self.permits, n)

        # per truck
        self.now_ms = start_ms  # true time
        self.cruise = rng.uniform(*SPEED_KMH, n) / 3.6  # m/s
        self.phase = np.zeros(n, np.int8)
        self.route = np.zeros(n, np.int64)  # the path it is on (or parked at the end of)
        self.job = np.zeros(n, np.int64)  # the permit of its current/next loaded leg
        self.timer = np.zeros(n)  # s left when stationary (loading, tipping, parked)
        self.s = np.zeros(n)
        self.v = np.zeros(n)
        self.stop_at = np.zeros(n)
        self.stop_timer = np.zeros(n)
        self.sats = rng.integers(9, 20, n)
        skewed = rng.random(n) < skew_share
        self.skew_ms = np.where(skewed, rng.uniform(-max_skew_s, max_skew_s, n) * 1000,
                                0).astype(np.int64)
        self.next_report = start_ms + (rng.random(n) * self.interval_ms).astype(np.int64)
        self.seq = np.zeros(n, np.int64)
        profile = rng.random(n)
        self.has_lift = profile >= no_lift_share
        self.weighs = rng.random(n) < weighing_share
        rated = np.array([by_plate[pl].rated_load_kg or np.nan for pl in plates], float)
        self.rated_kg = rated
        self.full_kg = full_load_kg(rng.uniform(*KG_FULL, n), rated)
        self.volume_m3 = np.array([by_plate[pl].volume_m3 or np.nan for pl in plates], float)
        # shifts (local minutes): night for trucks whose jobs are all night-only, else either
        night_only = np.array([all(self._windows[j] is not None for j in js) for js in self.jobs])
        has_night = np.array([any(self._windows[j] is not None for j in js) for js in self.jobs])
        night = night_only | (rng.random(n) < np.where(has_night, 0.6, 0.35))
        self.shift_start = np.where(night, rng.uniform(21 * 60, 22.5 * 60, n),
                                    rng.uniform(6.5 * 60, 8.5 * 60, n))
        self.shift_len = np.where(night, rng.uniform(7.5 * 60, 9 * 60, n),
                                  rng.uniform(10 * 60, 13 * 60, n))
        # noise bookkeeping
        big = np.full(n, -10**6, np.int64)
        self._last_flicker = {k: big.copy() for k in ("lift", "lid", "load", "speed")}
        self._bad_left = np.zeros(n, np.int64)
        self.gate_target = np.full(n, -1.0)  # distance along the route of a gate to wait at
        self.gate_sign = np.zeros(n)  # +1 forward is inside the site, -1 backward is
        self.gate_active = np.zeros(n, bool)
        self.gate_d = np.zeros(n)
        self.red_truth = np.zeros(n, bool)
        self.park_since = np.full(n, -1, np.int64)
        self.permit_id = [self.permits[js[0]].id for js in self.jobs]
        for i in range(n):
            start_state(self, i)
        self.permit_id = [self.permits[int(j)].id for j in self.job]

    def __len__(self) -> int:
        return len(self.device)

    def valid_until(self, j: int, ms: float) -> float | None:
        """Until when (epoch ms) permit ``j`` stays valid without a break, from ``ms``; None
        if it is not valid at ``ms``."""
        return permit_valid_until(self.permits[j], ms, self.tz)

    def _gap(self) -> float:
        """How far the next red light is, for one truck pulling away."""
        return max(MIN_JUNCTION_GAP_M, float(self.rng.exponential(self.junction_spacing_m)))

    def _event(self, i: int, rule: str, kind: str, start_ms: int, end_ms: int, what: str
               ) -> None:
        """A near-miss truth row for truck ``i``, in its device time (skew included)."""
        skew = int(self.skew_ms[i])
        self.events.append({"rule": rule, "device": self.device[i], "plate": self.plate[i],
                            "start_ts": int(start_ms) + skew, "end_ts": int(end_ms) + skew,
                            "what": what, "negative": True, "kind": kind})

    def advance(self, seconds: float) -> FleetTick:
        """Move the fleet ``seconds`` on and return every report that fell due meanwhile."""
        end = self.now_ms + round(seconds * 1000)
        reports = []
        while self.now_ms < end:
            dt_ms = min(self.step_ms, end - self.now_ms)
            move(self, dt_ms / 1000)
            self.now_ms += dt_ms
            due = np.flatnonzero(self.next_report <= self.now_ms)
            if len(due):
                reports.append(report(self, due))
                gap = self.interval_ms * self.rng.uniform(1 - self.jitter, 1 + self.jitter,
                                                          len(due))
                parked = self.phase[due] == PARKED
                if parked.any():
                    gap = np.where(parked, self.rng.uniform(*PARKED_REPORT_S, len(due)) * 1000,
                                   gap)
                self.next_report[due] = np.maximum(self.next_report[due] + gap.astype(np.int64),
                                                   self.now_ms + 1)
        return FleetTick.concat(reports)

    def close(self) -> None:
        """The end of the run: parking still going on goes into the truth too."""
        for i in np.flatnonzero(self.phase == PARKED).tolist():
            unpark(self, i)
