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
(``load_kg``) instead of reporting a level.

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
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pyproj
import shapely

from domain.city import City, parse_window
from domain.wire import fix_message
from simulator.scenarios import inner_spot

# phases of a truck's day
LOADING, OUTBOUND, TIPPING, RETURNING, TRANSFER, PARKED = 0, 1, 2, 3, 4, 5
MOVING_PHASES = (OUTBOUND, RETURNING, TRANSFER)
_LOADING_S = (60.0, 180.0)
_TIPPING_S = (60.0, 180.0)
_SPEED_KMH = (25.0, 45.0)
_ACCELERATION = 0.6  # m/s², a loaded 8×4 tipper pulling away
_BRAKING = 1.5  # m/s², comfortable braking
_RED_LIGHT_S = (5.0, 60.0)
_MIN_JUNCTION_GAP_M = 150.0
_ROUTE_OFFSET_M = 1e9  # separates routes in the concatenated distance array
_SLOT = 4  # vertices of a transfer path
_PARKED_REPORT_S = (60.0, 300.0)
_GATE_WAIT_S = (60.0, 80.0)
_ZONE_CLEARANCE_M = 150.0  # transfers keep this far from restricted zones
_LEG_MARGIN_S = 900.0  # a job is started only if its permit stays valid this much longer
_PARK_TRUTH_MIN_S = 1800.0  # parking this long or longer is written to the truth
_KG_FULL = (24_000.0, 32_000.0)


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


@dataclass(frozen=True, slots=True)
class FleetTick:
    """The reports of the trucks whose terminals reported during one ``advance``, one row
    each, in report order."""

    truck: np.ndarray  # index of the truck in the fleet
    device: np.ndarray  # object array of device ids
    ts: np.ndarray  # epoch ms, device time (a skewed clock included)
    lon: np.ndarray
    lat: np.ndarray
    speed: np.ndarray
    heading: np.ndarray
    lid: np.ndarray
    lift: np.ndarray  # -1: the terminal has no lift sensor (key left out)
    load: np.ndarray  # -1: no load-level sensor (key left out)
    load_kg: np.ndarray  # NaN: no weighing sensor
    sats: np.ndarray
    hdop: np.ndarray
    seq: np.ndarray
    phase: np.ndarray  # the truck's phase when it reported
    permit: np.ndarray  # index into Fleet.permits of the job it works (-1 none)

    def __len__(self) -> int:
        return len(self.truck)

    @classmethod
    def concat(cls, ticks: list[FleetTick]) -> FleetTick:
        names = cls.__dataclass_fields__
        if not ticks:
            kinds = {"device": object, "truck": np.int64, "ts": np.int64, "seq": np.int64,
                     "phase": np.int8, "permit": np.int64}
            return cls(**{n: np.zeros(0, kinds.get(n, float)) for n in names})
        if len(ticks) == 1:
            return ticks[0]
        return cls(**{n: np.concatenate([getattr(t, n) for t in ticks]) for n in names})

    def wire_fixes(self) -> list[tuple[str, dict]]:
        """(device id, wire-format v1 object) per report."""
        columns = zip(
            self.device.tolist(), self.ts.tolist(), self.lon.round(7).tolist(),
            self.lat.round(7).tolist(), self.speed.round(1).tolist(),
            self.heading.round(0).tolist(), self.lid.tolist(), self.lift.tolist(),
            self.load.tolist(), self.sats.tolist(), self.hdop.round(1).tolist(),
            self.seq.tolist(), strict=True,
        )
        out = [
            (dev, fix_message(ts, lon, lat, spd=spd, hdg=hdg, lid=lid, lift=lift, load=load,
                              sats=sats, hdop=hdop, seq=seq))
            for dev, ts, lon, lat, spd, hdg, lid, lift, load, sats, hdop, seq in columns
        ]
        odd = np.flatnonzero((self.lift < 0) | (self.load < 0) | ~np.isnan(self.load_kg))
        if len(odd):
            kg = self.load_kg.round(0)
            for r in odd.tolist():
                fix = out[r][1]
                if fix["lift"] < 0:
                    del fix["lift"]
                if fix["load"] < 0:
                    del fix["load"]
                if not np.isnan(kg[r]):
                    fix["load_kg"] = float(kg[r])
        return out


def _within(minute: int, window: tuple[int, int]) -> bool:
    start, end = window
    return start <= minute < end if start <= end else (minute >= start or minute < end)


def permit_valid_until(permit, ms: float, tz: ZoneInfo) -> float | None:
    """Until when (epoch ms) a permit stays valid without a break, from ``ms``; None if it is
    not valid at ``ms``. Minutes as the rules count them (HH:MM of local time)."""
    at = datetime.fromtimestamp(ms / 1000, tz)
    if not permit.valid_from <= at <= permit.valid_to:
        return None
    b = permit.valid_to.timestamp() * 1000
    if permit.hours is None:
        return float(b)
    window = parse_window(permit.hours)
    sod = at.hour * 3600 + at.minute * 60 + at.second + at.microsecond / 1e6
    minute = int(sod // 60)
    if not _within(minute, window):
        return None
    start, end = window
    left = (end * 60 - sod) if (start <= end or minute < end) else (86400 - sod + end * 60)
    return float(min(b, ms + left * 1000))


class Fleet:
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

        # trucks: vehicles holding a permit valid now (in file order), then those whose
        # permits are valid later today or tomorrow (night-only ones)
        by_plate = {v.plate: v for v in city.vehicles}
        at = datetime.fromtimestamp(start_ms / 1000, self.tz)
        minute = at.hour * 60 + at.minute
        held: dict[str, list] = {}
        for p in city.permits:
            if p.plate in by_plate and by_plate[p.plate].device_id not in exclude \
                    and p.valid_from <= at <= p.valid_to:
                held.setdefault(p.plate, []).append(p)
        now_ok = [pl for pl, ps in held.items()
                  if any(p.hours is None or _within(minute, parse_window(p.hours)) for p in ps)]
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
        m = len(self.permits)
        self._windows = [parse_window(p.hours) if p.hours else None for p in self.permits]

        self._to_metric = pyproj.Transformer.from_crs(4326, city.metric_epsg, always_xy=True)
        self._to_lonlat = pyproj.Transformer.from_crs(city.metric_epsg, 4326, always_xy=True)
        fences = {f.id: f for f in city.fences}
        metric = {}

        def fence_m(fid: str):
            if fid not in metric:
                metric[fid] = shapely.transform(fences[fid].geometry, lambda xy: np.column_stack(
                    self._to_metric.transform(xy[:, 0], xy[:, 1])))
            return metric[fid]

        zones = [fence_m(f.id) for f in city.fences if f.kind == "restricted_zone"]
        self._zones = shapely.STRtree(zones) if zones else None
        xs, ys, cum, length, exit_s, entry_s = [], [], [], [], [], []
        spots: dict[tuple, tuple[float, float]] = {}

        def spot(fid: str, x: float, y: float) -> tuple[float, float]:
            if (fid, x, y) not in spots:
                spots[(fid, x, y)] = inner_spot(fence_m(fid), (x, y))
            return spots[(fid, x, y)]

        for r, p in enumerate(self.permits):
            coords = shapely.get_coordinates(p.route)
            x, y = self._to_metric.transform(coords[:, 0], coords[:, 1])
            # it loads and tips well inside the sites, not where the route meets them
            load = spot(p.origin, float(x[0]), float(y[0]))
            tip = spot(p.destinations[0], float(x[-1]), float(y[-1]))
            x = np.concatenate([[load[0]], x, [tip[0]]])
            y = np.concatenate([[load[1]], y, [tip[1]]])
            keep = np.concatenate([[True], np.hypot(np.diff(x), np.diff(y)) > 1e-6])
            x, y = x[keep], y[keep]
            d = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(x), np.diff(y)))])
            xs.append(x)
            ys.append(y)
            cum.append(d + r * _ROUTE_OFFSET_M)
            length.append(d[-1])
            line = shapely.LineString(np.column_stack([x, y]))
            exit_s.append(_boundary_distance(line, fence_m(p.origin), forward=True))
            entry_s.append(_boundary_distance(line, fence_m(p.destinations[0]), forward=False))
        # one transfer path slot per truck, after the routes
        for i in range(n):
            xs.append(np.zeros(_SLOT))
            ys.append(np.zeros(_SLOT))
            cum.append(np.zeros(_SLOT) + (m + i) * _ROUTE_OFFSET_M)
            length.append(0.0)
        self._x = np.concatenate(xs)
        self._y = np.concatenate(ys)
        self._cum = np.concatenate(cum)
        self._length = np.asarray(length)
        self._offset = np.arange(m + n) * _ROUTE_OFFSET_M
        counts = np.array([len(x) for x in xs])
        self._first_vertex = np.concatenate([[0], np.cumsum(counts)[:-1]])
        self._last_segment = self._first_vertex + counts - 2
        self._exit_s = np.asarray(exit_s)
        self._entry_s = np.asarray(entry_s)
        self._origin = [p.origin for p in self.permits]
        self._dest = [p.destinations[0] for p in self.permits]
        self._start_xy = [(xs[r][0], ys[r][0]) for r in range(m)]
        self._end_xy = [(xs[r][-1], ys[r][-1]) for r in range(m)]

        # per truck
        self.now_ms = start_ms  # true time
        self.cruise = rng.uniform(*_SPEED_KMH, n) / 3.6  # m/s
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
        self.full_kg = rng.uniform(*_KG_FULL, n)
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
            self._start_state(i)
        self.permit_id = [self.permits[int(j)].id for j in self.job]

    def __len__(self) -> int:
        return len(self.device)

    # --- time and permits -------------------------------------------------------------------

    def _local_s(self, ms: float) -> float:
        at = datetime.fromtimestamp(ms / 1000, self.tz)
        return at.hour * 3600 + at.minute * 60 + at.second + at.microsecond / 1e6

    def valid_until(self, j: int, ms: float) -> float | None:
        """Until when (epoch ms) permit ``j`` stays valid without a break, from ``ms``; None
        if it is not valid at ``ms``."""
        return permit_valid_until(self.permits[j], ms, self.tz)

    def _in_shift(self, i: int, ms: float) -> float:
        """Seconds left of truck ``i``'s shift at ``ms`` (0 when off shift)."""
        if not self.daily:
            return 1e9
        minute = self._local_s(ms) / 60
        into = (minute - self.shift_start[i]) % 1440
        return max(0.0, (self.shift_len[i] - into) * 60)

    def _next_shift_s(self, i: int, ms: float) -> float:
        minute = self._local_s(ms) / 60
        return ((self.shift_start[i] - minute) % 1440) * 60

    def _leg_s(self, i: int, j: int) -> float:
        """A generous estimate of a loaded leg on permit ``j``: loading, the route with red
        lights, a gate, tipping."""
        return _LOADING_S[1] + self._length[j] / (0.4 * self.cruise[i]) + 120 + _TIPPING_S[1]

    # --- decisions --------------------------------------------------------------------------

    def _position_of(self, i: int) -> tuple[float, float]:
        x, y, _ = self._position(np.array([i]), np.array([False]))
        return float(x[0]), float(y[0])

    def _site_of(self, i: int) -> str | None:
        """The site a stationary truck is at (the end of the route it drove)."""
        r = int(self.route[i])
        if r >= len(self.permits):
            return self._origin[int(self.job[i])]
        return self._dest[r] if self.s[i] > 0.5 * self._length[r] else self._origin[r]

    def _start_state(self, i: int) -> None:
        """A fleet already at work: a truck on shift is somewhere in a leg of a job that
        allows it, the others are parked at one of their sites."""
        rng, now = self.rng, self.now_ms
        jobs = self.jobs[i]
        ok = [j for j in jobs if self._in_shift(i, now) > 0
              and (u := self.valid_until(j, now)) is not None and u >= now + 1000 * (
                  self._leg_s(i, j) + _LEG_MARGIN_S)]
        if not ok:
            j = jobs[int(rng.integers(len(jobs)))]
            self.route[i] = self.job[i] = j
            self.s[i] = self._length[j] if rng.random() < 0.5 else 0.0
            self._park(i, self._until_wake(i))
            self.next_report[i] = now + int(rng.random() * _PARKED_REPORT_S[1] * 1000)
            return
        j = ok[int(rng.integers(len(ok)))]
        self.route[i] = self.job[i] = j
        phase = rng.choice(np.array([LOADING, OUTBOUND, TIPPING, RETURNING], np.int8),
                           p=[0.15, 0.4, 0.1, 0.35])
        length = self._length[j]
        self.phase[i] = phase
        self.timer[i] = rng.uniform(0, (_LOADING_S if phase == LOADING else _TIPPING_S)[1])
        self.s[i] = {OUTBOUND: rng.uniform(0.05, 0.9) * length,
                     RETURNING: rng.uniform(0.1, 0.95) * length,
                     TIPPING: length}.get(int(phase), 0.0)
        if phase in (OUTBOUND, RETURNING):
            self.v[i] = self.cruise[i]
        self.stop_at[i] = self.s[i] + (-1 if phase == RETURNING else 1) * self._gap()

    def _gap(self) -> float:
        return max(_MIN_JUNCTION_GAP_M, float(self.rng.exponential(self.junction_spacing_m)))

    def _until_wake(self, i: int) -> float:
        """How long a truck with nothing to do now parks: until its next shift, or a while."""
        if self._in_shift(i, self.now_ms) <= 0:
            return self._next_shift_s(i, self.now_ms) + self.rng.uniform(0, 1200)
        return self.rng.uniform(900, 2400)

    def _park(self, i: int, seconds: float) -> None:
        if self.phase[i] != PARKED or self.park_since[i] < 0:
            self.park_since[i] = self.now_ms
        self.phase[i] = PARKED
        self.timer[i] = seconds
        self.v[i] = 0.0

    def _unpark(self, i: int) -> None:
        since = int(self.park_since[i])
        if since >= 0 and self.now_ms - since >= _PARK_TRUTH_MIN_S * 1000:
            self._event(i, "SIGNAL_LOSS", "parking", since, self.now_ms,
                        "parked inside a site, reporting every 60–300 s")
        self.park_since[i] = -1
        # report soon: the terminal wakes up with the engine
        self.next_report[i] = min(int(self.next_report[i]),
                                  self.now_ms + int(self.rng.random() * self.interval_ms))

    def _decide(self, i: int) -> None:
        """At a site with nothing loaded: the next job, or parking."""
        rng, now = self.rng, self.now_ms
        left = self._in_shift(i, now)
        here_x, here_y = self._position_of(i)
        site = self._site_of(i)
        choices = []
        for j in self.jobs[i]:
            plan = self._way_to(i, j, site, here_x, here_y)
            if plan is None:
                continue
            travel = plan[2] / (0.4 * self.cruise[i])
            begin = now + 1000 * travel
            u = self.valid_until(j, begin)
            if u is None or u < begin + 1000 * (self._leg_s(i, j) + _LEG_MARGIN_S):
                continue
            if left < travel + 600:
                continue
            choices.append((j, plan))
        if not choices:
            if self.phase[i] == PARKED:
                self.timer[i] = self._until_wake(i)
            else:
                self._park(i, self._until_wake(i))
            return
        current = [c for c in choices if c[0] == self.job[i]]
        if current and rng.random() >= self.switch_share:
            j, plan = current[0]
        else:
            j, plan = choices[int(rng.integers(len(choices)))]
        if self.phase[i] == PARKED:
            self._unpark(i)
        self.job[i] = j
        how, path, _ = plan
        if how == "load":
            self._start_loading(i)
            return
        if how == "back":  # drive a route backwards, empty, to its origin
            self.route[i] = path
            self.s[i] = self._length[path]
            self.phase[i] = RETURNING
        else:
            self._set_transfer(i, path)
            self.phase[i] = TRANSFER
        self.v[i] = 0.0
        self.stop_at[i] = self.s[i] + (-1 if self.phase[i] == RETURNING else 1) * self._gap()

    def _way_to(self, i: int, j: int, site: str | None, x: float, y: float):
        """How truck ``i`` gets from here (site) to job ``j``'s origin, empty: (how, path,
        metres); None if there is no compliant way."""
        r = int(self.route[i])
        if site == self._origin[j]:
            return ("load", None, 0.0)
        if r < len(self.permits) and site == self._dest[r] and self._origin[r] == self._origin[j]:
            return ("back", r, float(self._length[r]))
        if site == self._dest[j]:
            return ("back", j, float(self._length[j]))
        ox, oy = self._start_xy[j]
        path = self._clear_path((x, y), (ox, oy))
        if path is None:
            return None
        return ("transfer", path, float(shapely.LineString(path).length))

    def _clear_path(self, a, b):
        """A straight run from a to b, or one with a bend, that keeps clear of every
        restricted zone; None if neither does."""
        ax, ay = a
        bx, by = b
        dx, dy = bx - ax, by - ay
        d = float(np.hypot(dx, dy)) or 1.0
        options = [[a, b]]
        for side in (0.25, -0.25, 0.5, -0.5):
            mx, my = ax + dx / 2 - dy / d * side * d, ay + dy / 2 + dx / d * side * d
            options.append([a, (mx, my), b])
        for path in options:
            line = shapely.LineString(path)
            if self._zones is None or not len(self._zones.query(line, "dwithin",
                                                                 _ZONE_CLEARANCE_M)):
                return path
        return None

    def _set_transfer(self, i: int, path) -> None:
        r = len(self.permits) + i
        base = self._first_vertex[r]
        pts = np.array(path + [path[-1]] * (_SLOT - len(path)), float)
        d = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(pts, axis=0).T))])
        self._x[base:base + _SLOT] = pts[:, 0]
        self._y[base:base + _SLOT] = pts[:, 1]
        self._cum[base:base + _SLOT] = d + r * _ROUTE_OFFSET_M
        self._length[r] = d[-1]
        self.route[i] = r
        self.s[i] = 0.0

    def _start_loading(self, i: int) -> None:
        j = int(self.job[i])
        u = self.valid_until(j, self.now_ms)
        if u is None or u < self.now_ms + 1000 * (self._leg_s(i, j) + _LEG_MARGIN_S) \
                or self._in_shift(i, self.now_ms) <= 0:
            self.route[i] = j
            self.s[i] = 0.0
            self._decide(i)
            return
        self.route[i] = j
        self.s[i] = 0.0
        self.v[i] = 0.0
        self.phase[i] = LOADING
        self.timer[i] = self.rng.uniform(*_LOADING_S)

    # --- motion -----------------------------------------------------------------------------

    def _moving(self) -> np.ndarray:
        return _is_moving(self.phase)

    def _direction(self) -> np.ndarray:
        return np.where(self.phase == RETURNING, -1.0, 1.0)

    def _junction_gap(self, n: int) -> np.ndarray:
        return np.maximum(_MIN_JUNCTION_GAP_M, self.rng.exponential(self.junction_spacing_m, n))

    def advance(self, seconds: float) -> FleetTick:
        """Move the fleet ``seconds`` on and return every report that fell due meanwhile."""
        end = self.now_ms + round(seconds * 1000)
        reports = []
        while self.now_ms < end:
            dt_ms = min(self.step_ms, end - self.now_ms)
            self._move(dt_ms / 1000)
            self.now_ms += dt_ms
            due = np.flatnonzero(self.next_report <= self.now_ms)
            if len(due):
                reports.append(self._report(due))
                gap = self.interval_ms * self.rng.uniform(1 - self.jitter, 1 + self.jitter,
                                                          len(due))
                parked = self.phase[due] == PARKED
                if parked.any():
                    gap = np.where(parked, self.rng.uniform(*_PARKED_REPORT_S, len(due)) * 1000,
                                   gap)
                self.next_report[due] = np.maximum(self.next_report[due] + gap.astype(np.int64),
                                                   self.now_ms + 1)
        return FleetTick.concat(reports)

    def _move(self, dt: float) -> None:
        phase, timer, s, n = self.phase, self.timer, self.s, len(self)
        stationary = (phase == LOADING) | (phase == TIPPING) | (phase == PARKED)
        timer[stationary] -= dt
        leaving = np.flatnonzero(stationary & (timer <= 0))
        for i in leaving.tolist():
            if phase[i] == LOADING:
                phase[i] = OUTBOUND
                self.v[i] = 0.0
                self.stop_at[i] = s[i] + self._gap()
                if self.rng.random() < self.noise.gate_jitter_share:
                    j = int(self.route[i])
                    if self.rng.random() < 0.5:
                        self.gate_target[i], self.gate_sign[i] = self._exit_s[j], -1.0
                    else:
                        self.gate_target[i], self.gate_sign[i] = self._entry_s[j], 1.0
            else:  # tipping done, or parked long enough
                self._decide(i)

        moving = self._moving()
        direction = self._direction()
        gate = moving & (self.gate_target >= 0) & (phase == OUTBOUND)
        if gate.any():
            self.stop_at[gate] = np.where(s[gate] < self.gate_target[gate],
                                          np.minimum(self.stop_at[gate], self.gate_target[gate]),
                                          self.stop_at[gate])
        waiting = moving & (self.stop_timer > 0)
        self.stop_timer[waiting] -= dt
        green = waiting & (self.stop_timer <= 0)
        if green.any():
            gaps = self._junction_gap(n)
            self.stop_at[green] = s[green] + direction[green] * gaps[green]
            self.gate_active[green] = False
            self.red_truth[green] = False
        driving = moving & ~waiting
        length = self._length[self.route]
        to_stop = np.maximum((self.stop_at - s) * direction, 0.0)
        to_end = np.maximum(np.where(phase == RETURNING, s, length - s), 0.0)
        ahead = np.minimum(to_stop, to_end)
        v_new = np.minimum(np.minimum(self.v + _ACCELERATION * dt, self.cruise),
                           np.sqrt(2 * _BRAKING * ahead))
        step = np.minimum(0.5 * (self.v + v_new) * dt + 0.5, ahead)
        step = np.where(driving, step, 0.0)
        self.v = np.where(driving, v_new, self.v)
        s += direction * step
        at_light = driving & (to_stop - step <= 0.01) & (to_stop < to_end)
        at_end = driving & (to_end - step <= 0.01)
        if at_light.any():
            waits = self.rng.uniform(*_RED_LIGHT_S, n)
            self.stop_timer[at_light] = waits[at_light]
            self.v[at_light] = 0.0
            for i in np.flatnonzero(at_light).tolist():
                if self.gate_target[i] >= 0 and abs(s[i] - self.gate_target[i]) < 1.0:
                    wait = self.rng.uniform(*_GATE_WAIT_S)
                    self.stop_timer[i] = wait
                    self.gate_target[i] = -1.0
                    self.gate_active[i] = True
                    self.gate_d[i] = self.rng.uniform(12.0, 20.0)
                    where = "leaving its origin" if self.gate_sign[i] < 0 else \
                        "entering its destination"
                    self._event(i, "OFF_ROUTE", "gate_jitter", self.now_ms,
                                self.now_ms + int(wait * 1000),
                                f"waits loaded at the gate {where}, fixes alternating in and "
                                "out of the site")
                elif phase[i] == OUTBOUND and self.noise.red_light_truth_share and \
                        self.rng.random() < self.noise.red_light_truth_share:
                    self.red_truth[i] = True
                    self._event(i, "UNAUTHORISED_DUMP", "red_light", self.now_ms,
                                self.now_ms + int(self.stop_timer[i] * 1000),
                                f"loaded, stopped {self.stop_timer[i]:.0f} s at a red light")
        if at_end.any():
            self.v[at_end] = 0.0
            for i in np.flatnonzero(at_end).tolist():
                if phase[i] == OUTBOUND:
                    s[i] = length[i]
                    phase[i] = TIPPING
                    timer[i] = self.rng.uniform(*_TIPPING_S)
                    self.gate_target[i] = -1.0
                elif phase[i] == RETURNING:
                    s[i] = 0.0
                    self._start_loading(i)
                else:  # TRANSFER: at the new job's origin
                    s[i] = length[i]
                    self._start_loading(i)

    # --- reports ----------------------------------------------------------------------------

    def _event(self, i: int, rule: str, kind: str, start_ms: int, end_ms: int, what: str
               ) -> None:
        skew = int(self.skew_ms[i])
        self.events.append({"rule": rule, "device": self.device[i], "plate": self.plate[i],
                            "start_ts": int(start_ms) + skew, "end_ts": int(end_ms) + skew,
                            "what": what, "negative": True, "kind": kind})

    def close(self) -> None:
        """The end of the run: parking still going on goes into the truth too."""
        for i in np.flatnonzero(self.phase == PARKED).tolist():
            self._unpark(i)

    def _report(self, idx: np.ndarray) -> FleetTick:
        k = len(idx)
        rng, noise = self.rng, self.noise
        phase, timer = self.phase[idx], self.timer[idx]
        x, y, heading = self._position(idx, backwards=phase == RETURNING)
        # a minute at a gate: fixes alternate either side of the site's boundary
        gate = self.gate_active[idx]
        if gate.any():
            sign = self.gate_sign[idx] * np.where(self.seq[idx] % 2 == 0, 1.0, -1.0)
            rad = np.radians(heading)
            x = np.where(gate, x + sign * self.gate_d[idx] * np.sin(rad), x)
            y = np.where(gate, y + sign * self.gate_d[idx] * np.cos(rad), y)
        sigma = np.where(gate, min(self.noise_m, 3.0), self.noise_m)
        x = x + rng.normal(0, 1, k) * sigma
        y = y + rng.normal(0, 1, k) * sigma
        moving = _is_moving(phase)
        on_road_h = self.interval_ms / 3_600_000  # hours per report
        seq = self.seq[idx]
        sats = self.sats[idx].copy()
        hdop = np.round(rng.uniform(0.6, 1.6, k), 1)
        if self.jump_rate:
            jump = (rng.random(k) < self.jump_rate) & ~gate
            angle = rng.uniform(0, 2 * np.pi, k)
            x = np.where(jump, x + 300 * np.cos(angle), x)
            y = np.where(jump, y + 300 * np.sin(angle), y)
            for r in np.flatnonzero(jump).tolist():
                self._event(int(idx[r]), "OFF_ROUTE" if moving[r] else "UNAUTHORISED_DUMP",
                            "gnss_jump", self.now_ms, self.now_ms, "one multipath fix 300 m off")
        # bad GNSS: bursts of 1–3 fixes with too few satellites or a poor HDOP, far off
        bad = self._bad_left[idx] > 0
        if noise.bad_gnss_per_h:
            start = moving & ~bad & ~gate & (rng.random(k) < noise.bad_gnss_per_h * on_road_h)
            for r in np.flatnonzero(start).tolist():
                i = int(idx[r])
                count = int(rng.integers(1, 4))
                self._bad_left[i] = count
                self._event(i, "OFF_ROUTE", "bad_gnss", self.now_ms,
                            self.now_ms + int((count - 1) * self.interval_ms * 1.2),
                            f"{count} bad GNSS fix(es): too few satellites or HDOP over 5")
            bad = self._bad_left[idx] > 0
        if bad.any():
            nb = int(bad.sum())
            few = rng.random(nb) < 0.5
            sats[bad] = np.where(few, rng.integers(0, 4, nb), sats[bad])
            hdop[bad] = np.where(few, hdop[bad], np.round(rng.uniform(5.5, 20.0, nb), 1))
            off = rng.uniform(80, 600, nb)
            angle = rng.uniform(0, 2 * np.pi, nb)
            x[bad] += off * np.cos(angle)
            y[bad] += off * np.sin(angle)
            self._bad_left[idx[bad]] -= 1
        lon, lat = self._to_lonlat.transform(x, y)
        v = self.v[idx]
        speed = np.where(v > 0.3, v * 3.6 + rng.normal(0, 1.0, k), 0.0)
        loading = phase == LOADING
        lid = np.where(loading & (timer > 30), 1, 0)  # open while loading, closed to leave
        if self.flicker_rate or noise.lid_flicker_per_h:
            p = self.flicker_rate + noise.lid_flicker_per_h * on_road_h
            flick = self._flicker("lid", idx, moving & (lid == 0), p)
            lid = np.where(flick, 1, lid)
            for r in np.flatnonzero(flick).tolist():
                self._event(int(idx[r]), "UNCOVERED_LOAD", "lid_flicker", self.now_ms,
                            self.now_ms, "the lid contact reads open for one report")
        lift = np.where((phase == TIPPING) & (timer > 20), 1, 0)
        has_lift = self.has_lift[idx]
        if noise.lift_bounce_per_h:
            flick = self._flicker("lift", idx, moving & has_lift & (lift == 0),
                                  noise.lift_bounce_per_h * on_road_h)
            lift = np.where(flick, 1, lift)
            for r in np.flatnonzero(flick).tolist():
                where = "while driving" if v[r] > 0.3 else "stopped at a red light"
                self._event(int(idx[r]), "UNAUTHORISED_DUMP", "lift_bounce", self.now_ms,
                            self.now_ms, f"the lift sensor bounces for one report {where}")
        loaded = (phase == OUTBOUND) | ((phase == TIPPING) & (timer > 20))
        load = np.select([phase == OUTBOUND, phase == TIPPING, loading],
                         [2, np.where(timer > 20, 2, 0), np.where(timer > 30, 1, 2)], 0)
        weighs = self.weighs[idx]
        kg = np.full(k, np.nan)
        if weighs.any():
            full = self.full_kg[idx]
            kg = np.where(load == 2, full, np.where(load == 1, 0.45 * full, 0.0))
            kg = kg + rng.normal(0, 120, k) * (load > 0) + rng.uniform(0, 150, k) * (load == 0)
            kg = np.where(weighs, np.maximum(kg, 0.0), np.nan)
        spike_p = np.where(weighs, noise.kg_spike_per_h, noise.load_spike_per_h) * on_road_h
        if noise.kg_spike_per_h or noise.load_spike_per_h:
            flick = self._flicker("load", idx, moving, spike_p)
            for r in np.flatnonzero(flick).tolist():
                i = int(idx[r])
                was_loaded = bool(loaded[r])
                if weighs[r]:
                    kg[r] = rng.uniform(0, 0.5) * kg[r] if was_loaded else rng.uniform(15e3, 3e4)
                    kind, what = "kg_spike", f"one wrong weight reading ({kg[r]:.0f} kg)"
                else:
                    load[r] = 0 if was_loaded else 2
                    kind, what = "load_spike", f"the load sensor reads {load[r]} for one report"
                self._event(i, "UNAUTHORISED_DUMP" if was_loaded else "OFF_ROUTE", kind,
                            self.now_ms, self.now_ms, what)
        if noise.speed_spike_per_h:
            flick = self._flicker("speed", idx, moving & (v > 3), noise.speed_spike_per_h
                                  * on_road_h)
            for r in np.flatnonzero(flick).tolist():
                speed[r] = rng.uniform(75, 110)
                self._event(int(idx[r]), "OVERSPEED", "speed_spike", self.now_ms, self.now_ms,
                            f"one speed reading of {speed[r]:.0f} km/h")
        self.seq[idx] += 1
        return FleetTick(
            truck=idx, device=self.device[idx], ts=self.now_ms + self.skew_ms[idx],
            lon=np.asarray(lon), lat=np.asarray(lat), speed=np.clip(speed, 0, None),
            heading=heading, lid=lid, lift=np.where(has_lift, lift, -1),
            load=np.where(weighs, -1, load), load_kg=kg, sats=sats, hdop=hdop, seq=seq,
            phase=phase, permit=np.where(phase <= TIPPING, self.job[idx], -1),
        )

    def _flicker(self, sensor: str, idx: np.ndarray, eligible: np.ndarray, p) -> np.ndarray:
        """Which of these reports carry a one-report glitch of ``sensor``: at rate ``p``, never
        two on a truck closer than ``min_gap_reports`` reports."""
        last = self._last_flicker[sensor]
        seq = self.seq[idx]
        hit = eligible & (self.rng.random(len(idx)) < p) & \
            (seq - last[idx] >= self.noise.min_gap_reports)
        last[idx[hit]] = seq[hit]
        return hit

    def _position(self, idx: np.ndarray, backwards: np.ndarray):
        route = self.route[idx]
        target = self.s[idx] + self._offset[route]
        seg = np.searchsorted(self._cum, target, side="right") - 1
        # keep each truck on its own path, also exactly at either end
        seg = np.clip(seg, self._first_vertex[route], self._last_segment[route])
        d0, d1 = self._cum[seg], self._cum[seg + 1]
        frac = np.clip((target - d0) / np.maximum(d1 - d0, 1e-9), 0.0, 1.0)
        dx = self._x[seg + 1] - self._x[seg]
        dy = self._y[seg + 1] - self._y[seg]
        x = self._x[seg] + frac * dx
        y = self._y[seg] + frac * dy
        heading = (np.degrees(np.arctan2(dx, dy)) + np.where(backwards, 180.0, 0.0)) % 360.0
        return x, y, heading


def _is_moving(phase: np.ndarray) -> np.ndarray:
    return (phase == OUTBOUND) | (phase == RETURNING) | (phase == TRANSFER)


def _boundary_distance(line: shapely.LineString, site, forward: bool) -> float:
    """Distance along ``line`` where it crosses the site's boundary: leaving it (``forward``,
    from the start) or entering it (from the end)."""
    length = line.length
    span = min(length, 3000.0)
    d = np.arange(0.0, span, 2.0)
    at = d if forward else length - d
    pts = shapely.line_interpolate_point(line, at)
    inside = shapely.contains_xy(site, shapely.get_x(pts), shapely.get_y(pts))
    out = np.flatnonzero(~inside)
    if not len(out):
        return float(span if forward else length - span)
    return float(at[out[0]])
