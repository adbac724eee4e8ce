"""A first, simple fleet: trucks shuttle along their permit routes, all of them at once.

Each truck loads at its origin site (lid open, then closed, load full), drives its permit route
at a steady 25–45 km/h, tips at the destination (lift raised, load → empty) and drives back
empty. Positions of the whole fleet advance with a handful of numpy operations per tick: the
routes are concatenated into one array of cumulative distances, offset per route, so a single
``searchsorted`` finds every truck's segment. The full simulator (junction stops, noise models,
blind areas, injected violations with ground truth) grows from this in issue #6.
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
_ROUTE_OFFSET_M = 1e9  # separates routes in the concatenated distance array


@dataclass(frozen=True, slots=True)
class FleetTick:
    """Positions and sensors of every truck at one device time."""

    device: np.ndarray  # object array of device ids
    ts: int  # epoch ms
    lon: np.ndarray
    lat: np.ndarray
    speed: np.ndarray
    heading: np.ndarray
    lid: np.ndarray
    lift: np.ndarray
    load: np.ndarray
    sats: np.ndarray
    hdop: np.ndarray

    def wire_fixes(self, seq: int) -> list[tuple[str, dict]]:
        """(device id, wire-format v1 object) per truck."""
        columns = zip(
            self.device.tolist(), self.lon.round(7).tolist(), self.lat.round(7).tolist(),
            self.speed.round(1).tolist(), self.heading.round(0).tolist(), self.lid.tolist(),
            self.lift.tolist(), self.load.tolist(), self.sats.tolist(),
            self.hdop.round(1).tolist(), strict=True,
        )
        return [
            (dev, {"v": 1, "ts": self.ts, "lon": lon, "lat": lat, "spd": spd, "hdg": hdg,
                   "lid": lid, "lift": lift, "load": load, "sats": sats, "hdop": hdop,
                   "seq": seq})
            for dev, lon, lat, spd, hdg, lid, lift, load, sats, hdop in columns
        ]


class SimpleFleet:
    def __init__(
        self,
        city: City,
        *,
        trucks: int,
        start_ms: int,
        seed: int = 1,
        noise_m: float = 3.0,
        jump_rate: float = 0.0,
        flicker_rate: float = 0.0,
    ) -> None:
        rng = np.random.default_rng(seed)
        self.rng = rng
        self.noise_m = noise_m
        self.jump_rate = jump_rate  # share of fixes thrown ~300 m off by multipath
        self.flicker_rate = flicker_rate  # share of fixes whose lid reads open for one sample
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

        self.ts = start_ms
        self.phase = np.full(n, LOADING, np.int8)
        self.timer = rng.uniform(0, _LOADING_S[1], n)  # seconds left in a stationary phase
        self.s = np.zeros(n)  # metres along the route from the origin
        self.cruise = rng.uniform(*_SPEED_KMH, n) / 3.6  # m/s
        self.sats = rng.integers(9, 20, n)

    def __len__(self) -> int:
        return len(self.device)

    def step(self, dt_s: float) -> FleetTick:
        """Advance every truck by ``dt_s`` seconds of device time and report where it is."""
        self.ts += round(dt_s * 1000)
        phase, timer, s = self.phase, self.timer, self.s
        stationary = (phase == LOADING) | (phase == TIPPING)
        timer[stationary] -= dt_s
        done_loading = (phase == LOADING) & (timer <= 0)
        done_tipping = (phase == TIPPING) & (timer <= 0)
        phase[done_loading] = OUTBOUND
        phase[done_tipping] = RETURNING

        moving_out = phase == OUTBOUND
        moving_back = phase == RETURNING
        s[moving_out] += self.cruise[moving_out] * dt_s
        s[moving_back] -= self.cruise[moving_back] * dt_s
        arrived = moving_out & (s >= self._length)
        home = moving_back & (s <= 0)
        s[arrived] = self._length[arrived]
        s[home] = 0.0
        phase[arrived] = TIPPING
        timer[arrived] = self.rng.uniform(*_TIPPING_S, arrived.sum())
        phase[home] = LOADING
        timer[home] = self.rng.uniform(*_LOADING_S, home.sum())

        x, y, heading = self._position(s, backwards=phase == RETURNING)
        n = len(self)
        x = x + self.rng.normal(0, self.noise_m, n)
        y = y + self.rng.normal(0, self.noise_m, n)
        if self.jump_rate:
            jump = self.rng.random(n) < self.jump_rate
            angle = self.rng.uniform(0, 2 * np.pi, n)
            x = np.where(jump, x + 300 * np.cos(angle), x)
            y = np.where(jump, y + 300 * np.sin(angle), y)
        lon, lat = self._to_lonlat.transform(x, y)
        moving = (phase == OUTBOUND) | (phase == RETURNING)
        speed = np.where(moving, self.cruise * 3.6 + self.rng.normal(0, 1.5, n), 0.0)
        loading = phase == LOADING
        lid = np.where(loading & (timer > 30), 1, 0)  # open while loading, closed to leave
        if self.flicker_rate:
            lid = np.where(self.rng.random(n) < self.flicker_rate, 1, lid)
        lift = np.where((phase == TIPPING) & (timer > 20), 1, 0)
        load = np.select([phase == OUTBOUND, phase == TIPPING, phase == RETURNING, loading],
                         [2, np.where(lift == 1, 2, 0), 0, np.where(timer > 30, 1, 2)])
        return FleetTick(
            device=self.device, ts=self.ts, lon=np.asarray(lon), lat=np.asarray(lat),
            speed=np.clip(speed, 0, None), heading=heading, lid=lid, lift=lift, load=load,
            sats=self.sats, hdop=np.round(self.rng.uniform(0.6, 1.6, n), 1),
        )

    def _position(self, s: np.ndarray, backwards: np.ndarray):
        target = s + self._offset
        seg = np.searchsorted(self._cum, target, side="right") - 1
        # keep each truck on its own route, also exactly at either end
        seg = np.clip(seg, self._first_vertex, self._last_segment)
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
