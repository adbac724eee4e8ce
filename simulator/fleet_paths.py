"""The paths trucks drive, in one array: every permit route, then a transfer slot per truck.

Why one array: all routes (each from where the truck loads, well inside its origin, to where
it tips, well inside its destination) and one transfer path slot per truck are concatenated
into one array of cumulative distances, each path offset by ``ROUTE_OFFSET_M``, so a single
``searchsorted`` positions every truck of the fleet at once. A truck is then just a path index
and a distance along it; the motion never touches geometry. A transfer (an empty run between
two jobs) is written into the truck's own slot, so the array never grows.

This module owns the geometry in metres (the city's metric CRS): the routes and sites, the
distances where a route leaves its origin and enters its destination (the gates), and the
straight runs that keep clear of every restricted zone.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyproj
import shapely

from domain.city import City
from simulator.scenarios import inner_spot

ROUTE_OFFSET_M = 1e9  # separates routes in the concatenated distance array
SLOT = 4  # vertices of a transfer path
ZONE_CLEARANCE_M = 150.0  # transfers keep this far from restricted zones


class Paths:
    """The routes of ``permits`` (path ``r`` is permit ``r``), then ``trucks`` transfer slots
    (path ``len(permits) + i`` is truck ``i``'s)."""

    def __init__(self, city: City, permits: Sequence, trucks: int) -> None:
        n, m = trucks, len(permits)
        self.routes = m
        self.to_metric = pyproj.Transformer.from_crs(4326, city.metric_epsg, always_xy=True)
        self.to_lonlat = pyproj.Transformer.from_crs(city.metric_epsg, 4326, always_xy=True)
        fences = {f.id: f for f in city.fences}
        metric = {}

        def fence_m(fid: str):
            if fid not in metric:
                metric[fid] = shapely.transform(fences[fid].geometry, lambda xy: np.column_stack(
                    self.to_metric.transform(xy[:, 0], xy[:, 1])))
            return metric[fid]

        zones = [fence_m(f.id) for f in city.fences if f.kind == "restricted_zone"]
        self.zones = shapely.STRtree(zones) if zones else None
        xs, ys, cum, length, exit_s, entry_s = [], [], [], [], [], []
        spots: dict[tuple, tuple[float, float]] = {}

        def spot(fid: str, x: float, y: float) -> tuple[float, float]:
            if (fid, x, y) not in spots:
                spots[(fid, x, y)] = inner_spot(fence_m(fid), (x, y))
            return spots[(fid, x, y)]

        for r, p in enumerate(permits):
            coords = shapely.get_coordinates(p.route)
            x, y = self.to_metric.transform(coords[:, 0], coords[:, 1])
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
            cum.append(d + r * ROUTE_OFFSET_M)
            length.append(d[-1])
            line = shapely.LineString(np.column_stack([x, y]))
            exit_s.append(boundary_distance(line, fence_m(p.origin), forward=True))
            entry_s.append(boundary_distance(line, fence_m(p.destinations[0]), forward=False))
        # one transfer path slot per truck, after the routes
        for i in range(n):
            xs.append(np.zeros(SLOT))
            ys.append(np.zeros(SLOT))
            cum.append(np.zeros(SLOT) + (m + i) * ROUTE_OFFSET_M)
            length.append(0.0)
        self.x = np.concatenate(xs)
        self.y = np.concatenate(ys)
        self.cum = np.concatenate(cum)
        self.length = np.asarray(length)
        self.offset = np.arange(m + n) * ROUTE_OFFSET_M
        counts = np.array([len(x) for x in xs])
        self.first_vertex = np.concatenate([[0], np.cumsum(counts)[:-1]])
        self.last_segment = self.first_vertex + counts - 2
        self.exit_s = np.asarray(exit_s)  # where each route leaves its origin
        self.entry_s = np.asarray(entry_s)  # where each route enters its destination
        self.origin = [p.origin for p in permits]
        self.dest = [p.destinations[0] for p in permits]
        self.start_xy = [(xs[r][0], ys[r][0]) for r in range(m)]

    def position(self, route: np.ndarray, s: np.ndarray, backwards: np.ndarray):
        """(x, y, heading) of trucks ``s`` metres along paths ``route``."""
        target = s + self.offset[route]
        seg = np.searchsorted(self.cum, target, side="right") - 1
        # keep each truck on its own path, also exactly at either end
        seg = np.clip(seg, self.first_vertex[route], self.last_segment[route])
        d0, d1 = self.cum[seg], self.cum[seg + 1]
        frac = np.clip((target - d0) / np.maximum(d1 - d0, 1e-9), 0.0, 1.0)
        dx = self.x[seg + 1] - self.x[seg]
        dy = self.y[seg + 1] - self.y[seg]
        x = self.x[seg] + frac * dx
        y = self.y[seg] + frac * dy
        heading = (np.degrees(np.arctan2(dx, dy)) + np.where(backwards, 180.0, 0.0)) % 360.0
        return x, y, heading

    def clear_path(self, a, b):
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
            if self.zones is None or not len(self.zones.query(line, "dwithin",
                                                              ZONE_CLEARANCE_M)):
                return path
        return None

    def set_transfer(self, i: int, path) -> int:
        """Write ``path`` into truck ``i``'s transfer slot; the slot's path index."""
        r = self.routes + i
        base = self.first_vertex[r]
        pts = np.array(path + [path[-1]] * (SLOT - len(path)), float)
        d = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(pts, axis=0).T))])
        self.x[base:base + SLOT] = pts[:, 0]
        self.y[base:base + SLOT] = pts[:, 1]
        self.cum[base:base + SLOT] = d + r * ROUTE_OFFSET_M
        self.length[r] = d[-1]
        return r


def boundary_distance(line: shapely.LineString, site, forward: bool) -> float:
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
