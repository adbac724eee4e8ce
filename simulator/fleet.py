"""The compliant fleet: every truck hauls on its permit, the whole fleet advanced at once.

A truck loads at its origin site (lid open, then closed, load half → full), drives its permit
route, tips at the destination (lift raised, load → empty) and drives back empty. On the road
it accelerates (0.6 m/s²) to its own cruising speed (25–45 km/h), brakes (1.5 m/s²) for the
red lights at junctions (one every ``junction_spacing_m`` on average, 5–60 s wait) and for the
end of the route. Its terminal reports every ``interval_s`` with ``jitter`` (each interval
drawn from ±jitter of it), from its own phase, so reports of the fleet are spread over time;
a share of terminals has a skewed clock (constant offset up to ``max_skew_s``).

Vectorised: every truck's state is a numpy column; routes are concatenated into one array of
cumulative distances, offset per route, so a single ``searchsorted`` positions every truck.
Time advances in sub-steps of ``step_s`` (1 s) and a truck reports in the sub-step where its
next report falls due. Same seed → same fleet.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pyproj
import shapely

from muckwatch.city import City, parse_window

# phases of a truck's cycle
LOADING, OUTBOUND, TIPPING, RETURNING = 0, 1, 2, 3
_LOADING_S = (60.0, 180.0)
_TIPPING_S = (60.0, 180.0)
_SPEED_KMH = (25.0, 45.0)
_ACCELERATION = 0.6  # m/s², a loaded 8×4 tipper pulling away
_BRAKING = 1.5  # m/s², comfortable braking
_RED_LIGHT_S = (5.0, 60.0)
_MIN_JUNCTION_GAP_M = 150.0
_ROUTE_OFFSET_M = 1e9  # separates routes in the concatenated distance array


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
    lift: np.ndarray
    load: np.ndarray
    sats: np.ndarray
    hdop: np.ndarray
    seq: np.ndarray
    phase: np.ndarray  # the truck's phase when it reported

    def __len__(self) -> int:
        return len(self.truck)

    @classmethod
    def concat(cls, ticks: list[FleetTick]) -> FleetTick:
        names = cls.__dataclass_fields__
        if not ticks:
            kinds = {"device": object, "truck": np.int64, "ts": np.int64, "seq": np.int64,
                     "phase": np.int8}
            return cls(**{n: np.zeros(0, kinds.get(n, float)) for n in names})
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
        return [
            (dev, {"v": 1, "ts": ts, "lon": lon, "lat": lat, "spd": spd, "hdg": hdg,
                   "lid": lid, "lift": lift, "load": load, "sats": sats, "hdop": hdop,
                   "seq": seq})
            for dev, ts, lon, lat, spd, hdg, lid, lift, load, sats, hdop, seq in columns
        ]


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
    ) -> None:
        if not 0.1 <= interval_s <= 3600:
            raise ValueError(f"interval_s must be 0.1…3600 s, not {interval_s}")
        if not 0 <= jitter < 1:
            raise ValueError(f"jitter must be 0 ≤ jitter < 1, not {jitter}")
        rng = np.random.default_rng(seed)
        self.rng = rng
        self.interval_ms = interval_s * 1000
        self.jitter = jitter
        self.noise_m = noise_m
        self.jump_rate = jump_rate  # share of fixes thrown ~300 m off by multipath
        self.flicker_rate = flicker_rate  # share of fixes whose lid reads open for one sample
        self.junction_spacing_m = junction_spacing_m
        self.step_ms = round(min(step_s, interval_s) * 1000)
        at = datetime.fromtimestamp(start_ms / 1000, ZoneInfo(city.timezone))
        minute = at.hour * 60 + at.minute
        by_plate = {v.plate: v for v in city.vehicles}
        usable = [p for p in city.permits
                  if p.valid_from <= at <= p.valid_to and p.plate in by_plate
                  and (p.hours is None or _within(minute, parse_window(p.hours)))]
        # one permit per truck: the first usable one of each plate, in file order
        chosen: dict[str, object] = {}
        for p in usable:
            chosen.setdefault(p.plate, p)
        permits = list(chosen.values())[:trucks]
        if not permits:
            raise ValueError("no vehicle in the city has a permit valid now")
        self.device = np.array([by_plate[p.plate].device_id for p in permits], dtype=object)
        self.plate = [p.plate for p in permits]
        self.permit_id = [p.id for p in permits]
        n = len(permits)

        self._to_metric = pyproj.Transformer.from_crs(4326, city.metric_epsg, always_xy=True)
        self._to_lonlat = pyproj.Transformer.from_crs(city.metric_epsg, 4326, always_xy=True)
        xs, ys, cum, length = [], [], [], []
        for k, p in enumerate(permits):
            coords = shapely.get_coordinates(p.route)
            x, y = self._to_metric.transform(coords[:, 0], coords[:, 1])
            d = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(x), np.diff(y)))])
            xs.append(x)
            ys.append(y)
            cum.append(d + k * _ROUTE_OFFSET_M)
            length.append(d[-1])
        self._x = np.concatenate(xs)
        self._y = np.concatenate(ys)
        self._cum = np.concatenate(cum)
        self._length = np.asarray(length)
        self._offset = np.arange(n) * _ROUTE_OFFSET_M
        counts = np.array([len(x) for x in xs])
        self._first_vertex = np.concatenate([[0], np.cumsum(counts)[:-1]])
        self._last_segment = self._first_vertex + counts - 2

        # a fleet already at work: trucks spread over the four phases and along their routes
        self.now_ms = start_ms  # true time
        self.phase = rng.choice(np.array([LOADING, OUTBOUND, TIPPING, RETURNING], np.int8),
                                n, p=[0.15, 0.4, 0.1, 0.35])
        self.timer = np.where(self.phase == LOADING, rng.uniform(0, _LOADING_S[1], n),
                              rng.uniform(0, _TIPPING_S[1], n))  # s left when stationary
        self.s = np.where(self.phase == OUTBOUND, rng.uniform(0.05, 0.9, n) * self._length,
                          np.where(self.phase == RETURNING,
                                   rng.uniform(0.1, 0.95, n) * self._length,
                                   np.where(self.phase == TIPPING, self._length, 0.0)))
        self.cruise = rng.uniform(*_SPEED_KMH, n) / 3.6  # m/s
        moving = self._moving()
        self.v = np.where(moving, self.cruise, 0.0)
        self.stop_at = self.s + self._direction() * self._junction_gap(n)
        self.stop_timer = np.zeros(n)
        self.sats = rng.integers(9, 20, n)
        skewed = rng.random(n) < skew_share
        self.skew_ms = np.where(skewed, rng.uniform(-max_skew_s, max_skew_s, n) * 1000,
                                0).astype(np.int64)
        self.next_report = start_ms + (rng.random(n) * self.interval_ms).astype(np.int64)
        self.seq = np.zeros(n, np.int64)

    def __len__(self) -> int:
        return len(self.device)

    def _moving(self) -> np.ndarray:
        return (self.phase == OUTBOUND) | (self.phase == RETURNING)

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
                self.next_report[due] = np.maximum(self.next_report[due] + gap.astype(np.int64),
                                                   self.now_ms + 1)
        return FleetTick.concat(reports)

    def _move(self, dt: float) -> None:
        phase, timer, s, n = self.phase, self.timer, self.s, len(self)
        stationary = (phase == LOADING) | (phase == TIPPING)
        timer[stationary] -= dt
        leaving = stationary & (timer <= 0)
        phase[leaving & (phase == LOADING)] = OUTBOUND
        phase[leaving & (phase == TIPPING)] = RETURNING
        direction = self._direction()
        gaps = self._junction_gap(n)
        self.stop_at[leaving] = s[leaving] + direction[leaving] * gaps[leaving]
        self.v[leaving] = 0.0

        moving = self._moving()
        waiting = moving & (self.stop_timer > 0)
        self.stop_timer[waiting] -= dt
        green = waiting & (self.stop_timer <= 0)
        self.stop_at[green] = s[green] + direction[green] * gaps[green]
        driving = moving & ~waiting
        to_stop = np.maximum((self.stop_at - s) * direction, 0.0)
        to_end = np.maximum(np.where(phase == OUTBOUND, self._length - s, s), 0.0)
        ahead = np.minimum(to_stop, to_end)
        v_new = np.minimum(np.minimum(self.v + _ACCELERATION * dt, self.cruise),
                           np.sqrt(2 * _BRAKING * ahead))
        step = np.minimum(0.5 * (self.v + v_new) * dt + 0.5, ahead)
        step = np.where(driving, step, 0.0)
        self.v = np.where(driving, v_new, self.v)
        s += direction * step
        at_light = driving & (to_stop - step <= 0.01) & (to_stop < to_end)
        at_end = driving & (to_end - step <= 0.01)
        waits = self.rng.uniform(*_RED_LIGHT_S, n)
        self.stop_timer[at_light] = waits[at_light]
        self.v[at_light | at_end] = 0.0
        outbound_done = at_end & (phase == OUTBOUND)
        home = at_end & (phase == RETURNING)
        s[outbound_done] = self._length[outbound_done]
        s[home] = 0.0
        phase[outbound_done] = TIPPING
        phase[home] = LOADING
        stays = self.rng.uniform(*_TIPPING_S, n)
        timer[outbound_done | home] = stays[outbound_done | home]

    def _report(self, idx: np.ndarray) -> FleetTick:
        k = len(idx)
        phase, timer = self.phase[idx], self.timer[idx]
        x, y, heading = self._position(idx, backwards=phase == RETURNING)
        x = x + self.rng.normal(0, self.noise_m, k)
        y = y + self.rng.normal(0, self.noise_m, k)
        if self.jump_rate:
            jump = self.rng.random(k) < self.jump_rate
            angle = self.rng.uniform(0, 2 * np.pi, k)
            x = np.where(jump, x + 300 * np.cos(angle), x)
            y = np.where(jump, y + 300 * np.sin(angle), y)
        lon, lat = self._to_lonlat.transform(x, y)
        v = self.v[idx]
        speed = np.where(v > 0.3, v * 3.6 + self.rng.normal(0, 1.0, k), 0.0)
        loading = phase == LOADING
        lid = np.where(loading & (timer > 30), 1, 0)  # open while loading, closed to leave
        if self.flicker_rate:
            lid = np.where(self.rng.random(k) < self.flicker_rate, 1, lid)
        lift = np.where((phase == TIPPING) & (timer > 20), 1, 0)
        load = np.select([phase == OUTBOUND, phase == TIPPING, phase == RETURNING, loading],
                         [2, np.where(lift == 1, 2, 0), 0, np.where(timer > 30, 1, 2)])
        seq = self.seq[idx]
        self.seq[idx] += 1
        return FleetTick(
            truck=idx, device=self.device[idx], ts=self.now_ms + self.skew_ms[idx],
            lon=np.asarray(lon), lat=np.asarray(lat), speed=np.clip(speed, 0, None),
            heading=heading, lid=lid, lift=lift, load=load, sats=self.sats[idx],
            hdop=np.round(self.rng.uniform(0.6, 1.6, k), 1), seq=seq, phase=phase,
        )

    def _position(self, idx: np.ndarray, backwards: np.ndarray):
        target = self.s[idx] + self._offset[idx]
        seg = np.searchsorted(self._cum, target, side="right") - 1
        # keep each truck on its own route, also exactly at either end
        seg = np.clip(seg, self._first_vertex[idx], self._last_segment[idx])
        d0, d1 = self._cum[seg], self._cum[seg + 1]
        frac = np.clip((target - d0) / np.maximum(d1 - d0, 1e-9), 0.0, 1.0)
        dx = self._x[seg + 1] - self._x[seg]
        dy = self._y[seg + 1] - self._y[seg]
        x = self._x[seg] + frac * dx
        y = self._y[seg] + frac * dy
        heading = (np.degrees(np.arctan2(dx, dy)) + np.where(backwards, 180.0, 0.0)) % 360.0
        return x, y, heading


def _within(minute: int, window: tuple[int, int]) -> bool:
    start, end = window
    return start <= minute < end if start <= end else (minute >= start or minute < end)
