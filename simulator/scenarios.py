"""Hand-built truck tracks over a city, for rule scenario tests and demos.

A ``TruckTrack`` drives one truck in metric coordinates (the city's projection) and records
wire-format v1 fixes: along its permit's route, off it, parked, with the lid open or the
tipper raised, with GPS noise or a multipath jump — each behaviour a method, so a scenario
reads like what the truck did.
"""

from __future__ import annotations

import numpy as np
import shapely
import shapely.ops

from domain.city import City
from domain.wire import fix_message
from geofence.projection import Projector

_PROJECTORS: dict[int, Projector] = {}


def _projector(epsg: int) -> Projector:
    """One per CRS: building the transformers costs ~0.1 s, and episodes are many."""
    if epsg not in _PROJECTORS:
        _PROJECTORS[epsg] = Projector(epsg)
    return _PROJECTORS[epsg]


def inner_spot(site: shapely.Geometry, at: tuple[float, float], step_m: float = 5.0
               ) -> tuple[float, float]:
    """Where a truck that entered ``site`` (metric) at ``at`` loads or tips: the point of
    the site's part holding ``at`` farthest from every edge (holes included) that it reaches
    in a straight line without leaving the site; ``at`` itself if nothing is deeper.

    A permit's route ends just inside its fence (its access point); a truck stopping there
    stands a few GPS errors from the boundary — or, on a narrow dock, right on it."""
    here = shapely.Point(at)
    parts = shapely.get_parts(site)
    holding = [p for p in parts if p.covers(here)]
    if not holding:
        return float(at[0]), float(at[1])
    part = holding[0]
    x0, y0, x1, y1 = part.bounds
    step = max(step_m, float(np.sqrt(part.area / 5000)))
    gx, gy = np.meshgrid(np.arange(x0 + step / 2, x1, step), np.arange(y0 + step / 2, y1, step))
    points = shapely.points(gx.ravel(), gy.ravel())
    points = points[shapely.contains(part, points)]
    if not len(points):
        return float(at[0]), float(at[1])
    depth = shapely.distance(part.boundary, points)
    deeper = np.flatnonzero(depth > part.boundary.distance(here) + 1.0)
    deeper = deeper[np.argsort(-depth[deeper], kind="stable")]
    xy = shapely.get_coordinates(points[deeper])
    lines = shapely.linestrings(np.stack([np.broadcast_to([at[0], at[1]], xy.shape), xy], 1))
    reachable = np.flatnonzero(shapely.covers(part, lines))
    if not len(reachable):
        return float(at[0]), float(at[1])
    x, y = xy[reachable[0]]
    return float(x), float(y)


class TruckTrack:
    def __init__(self, city: City, device: str, start_ms: int, *, interval_s: float = 5.0,
                 noise_m: float = 0.0, seed: int = 0) -> None:
        self.city = city
        self.device = device
        self.t = start_ms
        self.interval_ms = int(interval_s * 1000)
        self.noise_m = noise_m
        self.rng = np.random.default_rng(seed)
        self.projector = _projector(city.metric_epsg)
        self.fixes: list[dict] = []
        self.x = 0.0
        self.y = 0.0
        self.seq = 0
        self._last_xy: tuple[float, float] | None = None
        self._last_lonlat = (0.0, 0.0)
        self._lonlat: tuple[float, float] | None = None

    # --- geometry helpers -------------------------------------------------------------------

    def metric(self, geometry) -> shapely.Geometry:
        return shapely.transform(geometry, lambda xy: np.column_stack(
            self.projector.to_metric(xy[:, 0], xy[:, 1])))

    def route(self, permit_id: str) -> shapely.LineString:
        permits = _permits_by_id(self.city)
        if permit_id not in permits:  # the city's permits changed since: index them again
            _PERMITS.pop(id(self.city), None)
            permits = _permits_by_id(self.city)
        return self.metric(permits[permit_id].route)

    @staticmethod
    def part(line: shapely.LineString, a: float, b: float) -> shapely.LineString:
        """The piece of ``line`` between fractions a and b of its length (a > b reverses)."""
        sub = shapely.ops.substring(line, min(a, b) * line.length, max(a, b) * line.length)
        return sub if a <= b else shapely.reverse(sub)

    @staticmethod
    def offset(line: shapely.LineString, metres: float) -> shapely.LineString:
        return line.offset_curve(metres)

    @staticmethod
    def beside(line: shapely.LineString, fraction: float, metres: float) -> tuple[float, float]:
        """The point ``metres`` to the left of the line at ``fraction`` of its length."""
        at = line.length * fraction
        p = line.interpolate(at)
        q = line.interpolate(min(at + 1.0, line.length))
        if q.equals(p):
            q, p = p, line.interpolate(max(at - 1.0, 0.0))
        dx, dy = q.x - p.x, q.y - p.y
        norm = float(np.hypot(dx, dy)) or 1.0
        return p.x - dy / norm * metres, p.y + dx / norm * metres

    def centre(self, fence_id: str) -> tuple[float, float]:
        fence = next(f for f in self.city.fences if f.id == fence_id)
        p = self.metric(fence.geometry).representative_point()
        return p.x, p.y

    # --- behaviours ---------------------------------------------------------------------------

    def emit(self, speed: float, heading: float = 0.0, x: float | None = None,
             y: float | None = None, **sensors: object) -> dict:
        x = self.x if x is None else x
        y = self.y if y is None else y
        if self.noise_m:
            x += self.rng.normal(0, self.noise_m)
            y += self.rng.normal(0, self.noise_m)
        lonlat, self._lonlat = self._lonlat, None  # drive() projected it already
        if lonlat is None or self.noise_m:
            if self._last_xy == (x, y):  # standing: the same fix position
                lonlat = self._last_lonlat
            else:
                lon, lat = self.projector.to_lonlat([x], [y])
                lonlat = (round(float(lon[0]), 7), round(float(lat[0]), 7))
                self._last_xy, self._last_lonlat = (x, y), lonlat
        fix = fix_message(self.t, lonlat[0], lonlat[1],
                          spd=round(speed, 1), hdg=round(heading), sats=12, hdop=0.9,
                          seq=self.seq, dev=self.device)
        fix.update({k: v for k, v in sensors.items() if v is not None})
        self.fixes.append(fix)
        self.seq += 1
        self.t += self.interval_ms
        return fix

    def go_to(self, x: float, y: float) -> None:
        self.x, self.y = x, y

    # heading, x and y are passed by position, so no sensor keyword can land on them
    def dwell(self, seconds: float, **sensors: float | None) -> None:
        for _ in range(max(1, round(seconds * 1000 / self.interval_ms))):
            self.emit(0.0, 0.0, None, None, **sensors)

    def drive(self, path: shapely.LineString, speed_kmh: float, **sensors: float | None
              ) -> None:
        """Along ``path`` at a steady speed, one fix per interval."""
        step = speed_kmh / 3.6 * self.interval_ms / 1000
        n = max(1, int(path.length // step))
        at = np.minimum(np.arange(n + 1) * step, path.length)
        p = shapely.get_coordinates(shapely.line_interpolate_point(path, at))
        ahead = shapely.get_coordinates(shapely.line_interpolate_point(
            path, np.minimum(at + 1, path.length)))
        headings = (np.degrees(np.arctan2(ahead[:, 0] - p[:, 0], ahead[:, 1] - p[:, 1]))
                    + 360) % 360
        lon, lat = self.projector.to_lonlat(p[:, 0], p[:, 1])
        for k, (lo, la) in enumerate(zip(lon.tolist(), lat.tolist(), strict=True)):
            self.go_to(float(p[k, 0]), float(p[k, 1]))
            self._lonlat = (round(lo, 7), round(la, 7))
            self.emit(speed_kmh, float(headings[k]), None, None, **sensors)

    def jump(self, metres: float, speed_kmh: float, **sensors: int | None) -> None:
        """One multipath fix ``metres`` away from the true position."""
        self.emit(speed_kmh, 0.0, self.x + metres, self.y, **sensors)

    def silence(self, seconds: float) -> None:
        self.t += int(seconds * 1000)

    def lines(self) -> list[str]:
        import json

        return [json.dumps(f, ensure_ascii=False) for f in self.fixes]


_PERMITS: dict[int, tuple[City, dict]] = {}


def _permits_by_id(city: City) -> dict:
    """A city's permits by id, built once: a 70,000-permit city made every route lookup a
    scan of all of them (and the benchmark's feed quadratic)."""
    entry = _PERMITS.get(id(city))
    if entry is None or entry[0] is not city:
        entry = _PERMITS[id(city)] = (city, {p.id: p for p in city.permits})
    return entry[1]


def example_detour(city: City, start_ms: int, permit_id: str = "P0001") -> TruckTrack:
    """A loaded truck leaves its corridor for a 400 m detour, parks there for three minutes,
    and drives back: one OFF_ROUTE. Shipped as data/examples/detour.jsonl."""
    permit = next(p for p in city.permits if p.id == permit_id)
    device = next(v.device_id for v in city.vehicles if v.plate == permit.plate)
    t = TruckTrack(city, device, start_ms, interval_s=5.0)
    route = t.route(permit_id)
    x, y = t.centre(permit.origin)
    t.go_to(x, y)
    t.dwell(60, lid=1, lift=0, load=1)
    t.dwell(30, lid=0, lift=0, load=2)
    loaded = {"lid": 0, "lift": 0, "load": 2}
    t.drive(t.part(route, 0.0, 0.3), 35, **loaded)
    detour = t.offset(t.part(route, 0.3, 0.36), 400)
    t.drive(shapely.LineString([(t.x, t.y), detour.coords[0]]), 30, **loaded)
    t.drive(detour, 30, **loaded)
    t.dwell(180, **loaded)
    back = route.interpolate(0.36, normalized=True)
    t.drive(shapely.LineString([(t.x, t.y), (back.x, back.y)]), 30, **loaded)
    t.drive(t.part(route, 0.36, 1.0), 35, **loaded)
    x, y = t.centre(permit.destinations[0])
    t.go_to(x, y)
    t.dwell(20, **loaded)
    t.dwell(90, lid=1, lift=1, load=2)
    t.dwell(20, lid=0, lift=0, load=0)
    return t


def main(argv: list[str] | None = None) -> int:
    """Write the shipped example tracks: python -m simulator.scenarios --out data/examples"""
    import argparse
    from pathlib import Path

    from domain.city import load_city

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--city", default="data/sample-city")
    parser.add_argument("--out", default="data/examples")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    track = example_detour(load_city(args.city), 1_795_053_600_000)  # 2026-11-19 10:00 +08
    (out / "detour.jsonl").write_text("\n".join(track.lines()) + "\n", encoding="utf-8")
    print(f"wrote {out / 'detour.jsonl'} ({len(track.fixes)} fixes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
