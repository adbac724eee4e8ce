"""Deterministic generator of a synthetic Shenzhen-area city bundle (see docs/city.md).

Why it exists: muckwatch needs reference data that looks like a real Chinese city — construction
sites beside real arterials, disposal sites at the urban edge, docks on the coast, permits whose
routes follow roads and avoid restricted zones — without shipping surveyed map data, and with a
ground truth that tests, the simulator and benchmarks can rely on. The same seed always yields
byte-identical files; ``scale`` multiplies the numbers of fences, companies, vehicles and permits so
benchmarks can ask for much larger cities.

All geometry is built in a metric CRS (EPSG:4547, CGCS2000 3-degree Gauss-Krüger CM 114°E, which
treats WGS-84 and CGCS2000 as equal) and written as WGS-84 lon/lat rounded to 6 decimals. The road
network is a hand-drawn approximation of Shenzhen's arterials and expressways: plausible, not
accurate — never use it for navigation.

Usage: ``python -m simulator.citygen --out DIR [--seed N] [--scale X]``.
"""

from __future__ import annotations

import argparse
import heapq
import json
import pathlib
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import shapely
from pyproj import Transformer
from shapely import LineString, MultiLineString, MultiPolygon, Point, Polygon, STRtree
from shapely.geometry.base import BaseGeometry
from shapely.ops import substring

from simulator.citymap import (
    AREAS,
    BRAND_HEAD,
    BRAND_TAIL,
    BUSINESS,
    DISPOSAL_ANCHORS,
    DISTRICT_WEIGHTS,
    DOCK_ANCHORS,
    LANDMARK_ZONES,
    PLATE_LETTERS,
    ROADS,
    SHENZHEN_BBOX,
    TIMEZONE,
    ZONE_TEMPLATES,
    RoadSpec,
)

DEFAULT_SEED = 20261122
METRIC_EPSG = 4547

#: Counts at scale 1; ``scale`` multiplies every one of them (landmark zones come first).
BASE_COUNTS: dict[str, int] = {
    "construction_site": 48,
    "disposal_site": 7,
    "transfer_dock": 3,
    "restricted_zone": 8,
    "company": 14,
    "vehicle": 230,
    "permit": 240,
}
FILES = (
    "city.toml",
    "fences.geojson",
    "permits.geojson",
    "vehicles.csv",
    "companies.csv",
    "roads.geojson",
    "README.md",
)

MAIN_VALIDITY = ("2026-01-01T00:00:00+08:00", "2027-12-31T23:59:59+08:00")
EXPIRED_VALIDITY = ("2025-01-01T00:00:00+08:00", "2025-12-31T23:59:59+08:00")
FUTURE_VALIDITY = ("2028-01-01T00:00:00+08:00", "2028-12-31T23:59:59+08:00")
NIGHT_HOURS = "22:00-06:00"

ZONE_ROAD_BUFFER_M = 30.0  # road edges closer than this to a restricted zone are not routable
ZONE_SITE_CLEARANCE_M = 60.0  # no site this close to a restricted zone
LOCAL_STREETS_PER_SCALE = 6  # synthetic side streets per unit of scale above 1




# --------------------------------------------------------------------------------------------
# Coordinates
# --------------------------------------------------------------------------------------------


class _Crs:
    """Vectorised WGS-84 <-> EPSG:4547 transforms for shapely geometries and arrays."""

    def __init__(self) -> None:
        self._fwd = Transformer.from_crs(4326, METRIC_EPSG, always_xy=True)
        self._inv = Transformer.from_crs(METRIC_EPSG, 4326, always_xy=True)

    def to_metric_xy(self, xy: np.ndarray) -> np.ndarray:
        x, y = self._fwd.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    def to_wgs_xy(self, xy: np.ndarray) -> np.ndarray:
        """Metric -> lon/lat rounded to 6 decimals (~0.1 m), the precision we publish."""
        lon, lat = self._inv.transform(xy[:, 0], xy[:, 1])
        return np.round(np.column_stack([lon, lat]), 6)

    def to_metric(self, geom):
        return shapely.transform(geom, self.to_metric_xy)

    def to_wgs(self, geom):
        return shapely.transform(geom, self.to_wgs_xy)


# --------------------------------------------------------------------------------------------
# Road network and routing
# --------------------------------------------------------------------------------------------


@dataclass
class Network:
    """Noded road graph in metric coordinates; ``allowed`` edges avoid zones and are connected."""

    edges: np.ndarray  # LineStrings, metric
    u: np.ndarray
    v: np.ndarray
    length: np.ndarray
    n_nodes: int
    tree_all: STRtree
    allowed: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    adj: list[list[tuple[int, int]]] = field(default_factory=list)
    ok_idx: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    tree_ok: STRtree | None = None

    def restrict(self, zones_m: Sequence[BaseGeometry]) -> None:
        """Drop edges near restricted zones, keep the largest connected rest for routing."""
        blocked = np.zeros(len(self.edges), bool)
        if len(zones_m):
            buf = shapely.buffer(np.asarray(zones_m, dtype=object), ZONE_ROAD_BUFFER_M)
            blocked[self.tree_all.query(buf, predicate="intersects")[1]] = True
        parent = list(range(self.n_nodes))

        def find(a: int) -> int:
            while parent[a] != a:
                parent[a] = parent[parent[a]]
                a = parent[a]
            return a

        for e in np.flatnonzero(~blocked):
            ra, rb = find(int(self.u[e])), find(int(self.v[e]))
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
        roots = np.array([find(i) for i in range(self.n_nodes)])
        sizes = np.bincount(roots[self.u[~blocked]], minlength=self.n_nodes)
        main = int(np.argmax(sizes))
        self.allowed = ~blocked & (roots[self.u] == main)
        self.adj = [[] for _ in range(self.n_nodes)]
        for e in np.flatnonzero(self.allowed):
            a, b = int(self.u[e]), int(self.v[e])
            self.adj[a].append((b, int(e)))
            self.adj[b].append((a, int(e)))
        self.ok_idx = np.flatnonzero(self.allowed)
        self.tree_ok = STRtree(self.edges[self.ok_idx])

    def attach(self, pt: Point) -> tuple[int, float]:
        """Nearest routable edge and the distance along it of the point's projection."""
        assert self.tree_ok is not None
        j = int(np.min(self.tree_ok.query_nearest(pt)))
        e = int(self.ok_idx[j])
        return e, float(shapely.line_locate_point(self.edges[e], pt))

    def shortest(self, seeds: list[tuple[int, float]]) -> tuple[np.ndarray, np.ndarray]:
        """Dijkstra from several (node, initial cost) seeds; returns distances, predecessor edge."""
        dist = np.full(self.n_nodes, np.inf)
        pred = np.full(self.n_nodes, -1, dtype=np.int64)
        heap = [(c, n) for n, c in seeds]
        heapq.heapify(heap)
        for n, c in seeds:
            dist[n] = min(dist[n], c)
        done = np.zeros(self.n_nodes, bool)
        length = self.length
        while heap:
            d, n = heapq.heappop(heap)
            if done[n]:
                continue
            done[n] = True
            for m, e in self.adj[n]:
                nd = d + length[e]
                if nd < dist[m]:
                    dist[m] = nd
                    pred[m] = e
                    heapq.heappush(heap, (nd, m))
        return dist, pred


def _build_roads(crs: _Crs) -> list[tuple[RoadSpec, LineString]]:
    """Project the hand-drawn roads and apply their explicit join hints."""
    lines = {r.name: crs.to_metric(LineString(r.coords)) for r in ROADS}
    out = []
    for r in ROADS:
        xy = shapely.get_coordinates(lines[r.name])
        for end, other in ((0, r.start_join), (-1, r.end_join)):
            if other is None:
                continue
            target = lines[other]
            q = shapely.get_coordinates(target.interpolate(target.project(Point(xy[end]))))
            if np.hypot(*(q[0] - xy[end])) > 0.5:
                xy = np.vstack([q, xy]) if end == 0 else np.vstack([xy, q])
        out.append((r, LineString(xy)))
    return out


def _local_streets(rng: np.random.Generator, roads: list[tuple[RoadSpec, LineString]],
                   crs: _Crs, n: int, namer: _Namer) -> list[tuple[RoadSpec, LineString]]:
    """Synthetic side streets (支路) off the arterials, only for scale > 1.

    Why: the hand-drawn arterials have room beside them for a few thousand sites; larger
    benchmark cities need more roadside. Each street leaves an arterial on its land side and
    stops just past the first road it meets, so it joins the grid.
    """
    if n <= 0:
        return []
    lines = [g for _, g in roads]
    lengths = shapely.length(np.array(lines, dtype=object))
    zones = shapely.buffer(np.array([crs.to_metric(Polygon(z.coords)) for z in LANDMARK_ZONES],
                                    dtype=object), 150.0)
    lo = crs.to_metric_xy(np.array([SHENZHEN_BBOX[:2], SHENZHEN_BBOX[2:]]))
    inside = shapely.box(*(lo[0] + 1500), *(lo[1] - 1500))
    centers = crs.to_metric_xy(np.array([(a[2], a[3]) for a in AREAS]))
    boxes = _Boxes()
    for g in lines:
        boxes.add(g.bounds)
    local: list[LineString] = []
    out = []
    for _ in range(30 * n):
        if len(out) == n:
            break
        i = int(rng.choice(len(roads), p=lengths / lengths.sum()))
        spec, parent = roads[i]
        d = rng.uniform(0.05, 0.95) * lengths[i]
        p = shapely.get_coordinates(parent.interpolate(d))[0]
        t = shapely.get_coordinates(parent.interpolate(d + 5)) - shapely.get_coordinates(
            parent.interpolate(d - 5))
        t = t[0] / np.hypot(*t[0])
        nrm = np.array([-t[1], t[0]])
        off = float(np.dot(nrm, spec.off_side)) if spec.off_side else 0.0
        side = -np.sign(off) if off else (1.0 if rng.random() < 0.5 else -1.0)
        ang = rng.uniform(-0.25, 0.25)
        rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
        direction = rot @ (side * nrm)
        length = rng.uniform(600.0, 2000.0)
        street = LineString([p - 5 * direction, p + length * direction])
        cut = length + 5
        for j in boxes.near(street.bounds, 0.0):
            if j == i:
                continue
            hits = shapely.get_parts(street.intersection(lines[j]))
            along = [street.project(h) for h in hits if h.geom_type == "Point"]
            along = [a for a in along if a > 60.0]
            if along:
                cut = min(cut, min(along))
        if cut < 300:
            continue
        street = LineString([p - 5 * direction, p + cut * direction])  # 5 m past the crossing
        if not inside.contains(street) or np.any(shapely.intersects(zones, street)):
            continue
        probe = shapely.points([street.interpolate(0.5, normalized=True).coords[0],
                                street.coords[-1]])
        if local and np.min(shapely.distance(probe[:, None], np.array(local)[None])) < 180:
            continue
        mid = shapely.get_coordinates(probe[0])[0]
        area = int(np.argmin(((centers - mid) ** 2).sum(1)))
        out.append((RoadSpec(namer(area, "支路"), "local", ()), street))
        local.append(street)
        lines.append(street)
        boxes.add(street.bounds)
    return out


def _build_network(roads: list[tuple[RoadSpec, LineString]]) -> Network:
    """Node all roads at their crossings (shapely.node) and make a graph of the pieces."""
    parts = shapely.get_parts(shapely.node(MultiLineString([g for _, g in roads])))
    parts = parts[shapely.length(parts) > 1.0]
    ends = np.vstack([
        shapely.get_coordinates(shapely.get_point(parts, 0)),
        shapely.get_coordinates(shapely.get_point(parts, -1)),
    ])
    _, inv = np.unique(np.round(ends, 1), axis=0, return_inverse=True)
    inv = inv.ravel()
    n = len(parts)
    return Network(
        edges=parts, u=inv[:n], v=inv[n:], length=shapely.length(parts),
        n_nodes=int(inv.max()) + 1, tree_all=STRtree(parts),
    )


def _piece(line: LineString, a: float, b: float) -> np.ndarray:
    """Coordinates of the part of ``line`` from distance a to b (reversed when b < a)."""
    if abs(a - b) < 1e-9:
        return shapely.get_coordinates(line.interpolate(a))
    return shapely.get_coordinates(substring(line, a, b))


# --------------------------------------------------------------------------------------------
# Shapes (local frame: x along the road, y away from it, metres)
# --------------------------------------------------------------------------------------------


def _parcel(rng: np.random.Generator, a: float, b: float, n: int) -> np.ndarray:
    """A land parcel: a rectangle with n-4 extra, slightly jittered vertices on its sides."""
    corners = np.array([(-a, -b), (a, -b), (a, b), (-a, b)]) / 2
    corners += rng.uniform(-0.04, 0.04, (4, 2)) * min(a, b)
    extra = rng.multinomial(max(n - 4, 0), [0.25] * 4)
    ring = []
    for k in range(4):
        p0, p1 = corners[k], corners[(k + 1) % 4]
        ring.append(p0[None])
        t = np.sort(rng.uniform(0.15, 0.85, extra[k]))
        normal = np.array([-(p1 - p0)[1], (p1 - p0)[0]]) / np.hypot(*(p1 - p0))
        off = rng.uniform(-0.07, 0.07, extra[k]) * min(a, b)
        ring.append(p0 + t[:, None] * (p1 - p0) + off[:, None] * normal)
    return np.vstack(ring)


def _blob(rng: np.random.Generator, r: float, n: int, aspect: float) -> np.ndarray:
    """An irregular star-shaped outline (always simple: angles strictly increase)."""
    ang = (np.arange(n) + rng.uniform(-0.3, 0.3, n)) * (2 * np.pi / n)
    rad = r * rng.uniform(0.72, 1.0, n)
    return np.column_stack([rad * np.cos(ang) * aspect, rad * np.sin(ang)])


def _construction_shape(rng: np.random.Generator, style: str) -> BaseGeometry:
    """A 80–300 m site with 5–12 vertices; ``style`` is plain, hole or multi."""
    if style == "multi":
        a1, a2 = rng.uniform(70, 140, 2)
        b1, b2 = rng.uniform(80, 180, 2)
        gap = rng.uniform(20, 45)
        p1 = _parcel(rng, a1, b1, int(rng.integers(4, 7))) + np.array([-(a1 + gap) / 2, 0])
        p2 = _parcel(rng, a2, b2, int(rng.integers(4, 7))) + np.array([(a2 + gap) / 2, 0])
        return MultiPolygon([Polygon(p1), Polygon(p2)])
    n = int(rng.integers(5, 13))
    if style == "hole" or rng.random() < 0.6:
        a = rng.uniform(110 if style == "hole" else 80, 300)
        b = float(np.clip(a * rng.uniform(0.55, 1.5), 100 if style == "hole" else 80, 300))
        shell = Polygon(_parcel(rng, a, b, n))
        if style != "hole":
            return shell
        hw, hh = a * rng.uniform(0.12, 0.2), b * rng.uniform(0.12, 0.2)
        hole = np.array([(-hw, -hh), (hw, -hh), (hw, hh), (-hw, hh)])
        hole += rng.uniform(-0.05, 0.05, 2) * [a, b]
        return Polygon(shell.exterior.coords, [hole])
    aspect = rng.uniform(1.0, 1.5)
    return Polygon(_blob(rng, rng.uniform(45, 150 / aspect), n, aspect))


def _disposal_shape(rng: np.random.Generator) -> BaseGeometry:
    """A 300–800 m landfill/quarry outline."""
    aspect = rng.uniform(1.0, 1.6)
    return Polygon(_blob(rng, rng.uniform(150, 400 / aspect), int(rng.integers(8, 15)), aspect))


def _dock_shape(rng: np.random.Generator) -> BaseGeometry:
    """A quay: long along the shore, shallow inland."""
    a, b = rng.uniform(180, 450), rng.uniform(80, 200)
    return Polygon(_parcel(rng, a, b, int(rng.integers(4, 7))))


def _zone_shape(rng: np.random.Generator) -> BaseGeometry:
    """A small (150–500 m) school/hospital/residential block."""
    if rng.random() < 0.5:
        a, b = rng.uniform(150, 500), rng.uniform(150, 400)
        return Polygon(_parcel(rng, a, b, int(rng.integers(4, 8))))
    return Polygon(_blob(rng, rng.uniform(80, 220), int(rng.integers(6, 11)), 1.0))


# --------------------------------------------------------------------------------------------
# Placement
# --------------------------------------------------------------------------------------------


@dataclass
class Site:
    """A placed fence; routable kinds also carry the interior point and access edge."""

    id: str
    kind: str
    name: str
    geom: BaseGeometry  # WGS-84, rounded as published
    geom_m: BaseGeometry  # metric
    inner_m: np.ndarray | None = None  # metric point inside ``geom`` where routes start/end
    edge: int = -1
    along: float = 0.0
    windows: tuple[str, ...] | None = None
    speed_limit_kmh: float | None = None


@dataclass(frozen=True)
class Rule:
    """How one kind is placed beside roads."""

    road_clear: float  # min distance from the fence to any road centreline
    gap: tuple[float, float]  # distance from its own road
    site_gap: float  # min distance to other fences
    max_spur: float  # longest access spur (0: not routable, no spur)
    side: str  # "land", "sea" or "any"
    crowding: float  # extra setback allowed once the roadside is crowded (large scales)


RULES: dict[str, Rule] = {
    "restricted_zone": Rule(40, (40, 300), 60, 0, "land", 900),
    "disposal_site": Rule(30, (40, 200), 150, 900, "land", 1500),
    "transfer_dock": Rule(10, (10, 60), 80, 500, "sea", 900),
    "construction_site": Rule(15, (20, 150), 40, 500, "land", 900),
}


class _Boxes:
    """Growable array of bounding boxes, for cheap "what is near" filtering."""

    def __init__(self) -> None:
        self._b = np.empty((64, 4))
        self.n = 0

    def add(self, bounds: tuple[float, float, float, float]) -> None:
        if self.n == len(self._b):
            self._b = np.vstack([self._b, np.empty_like(self._b)])
        self._b[self.n] = bounds
        self.n += 1

    def near(self, bounds: tuple[float, float, float, float], pad: float) -> np.ndarray:
        b = self._b[: self.n]
        hit = ((b[:, 0] <= bounds[2] + pad) & (b[:, 2] >= bounds[0] - pad)
               & (b[:, 1] <= bounds[3] + pad) & (b[:, 3] >= bounds[1] - pad))
        return np.flatnonzero(hit)


class _Pool:
    """Many candidate points along the roads, with tangent, side rules and area."""

    def __init__(self, rng: np.random.Generator, roads: list[tuple[RoadSpec, LineString]],
                 crs: _Crs, size: int) -> None:
        lines = np.array([g for _, g in roads], dtype=object)
        lengths = shapely.length(lines)
        self.road = rng.choice(len(lines), size=size, p=lengths / lengths.sum())
        d = rng.uniform(0.02, 0.98, size) * lengths[self.road]
        p = shapely.get_coordinates(shapely.line_interpolate_point(lines[self.road], d))
        ahead = shapely.line_interpolate_point(lines[self.road], d + 5.0)
        behind = shapely.line_interpolate_point(lines[self.road], d - 5.0)
        t = shapely.get_coordinates(ahead) - shapely.get_coordinates(behind)
        self.xy = p
        self.t = t / np.hypot(t[:, 0], t[:, 1])[:, None]
        self.n = np.column_stack([-self.t[:, 1], self.t[:, 0]])
        off = np.array([r.off_side or (0.0, 0.0) for r, _ in roads])[self.road]
        self.off_dot = np.sign(np.einsum("ij,ij->i", self.n, off))  # +1: left is water/border
        self.port = np.array([r.port for r, _ in roads])[self.road]
        centers = crs.to_metric_xy(np.array([(a[2], a[3]) for a in AREAS]))
        d2 = ((p[:, None, :] - centers[None, :, :]) ** 2).sum(-1)
        self.area = np.argmin(d2, axis=1)
        self.area_centers = centers


class _Placer:
    """Places fences beside roads without overlaps, then attaches them to the road graph."""

    def __init__(self, rng: np.random.Generator, crs: _Crs, net: Network, pool: _Pool) -> None:
        self.rng, self.crs, self.net, self.pool = rng, crs, net, pool
        self.sites: list[Site] = []
        self._box = _Boxes()  # metric bounds per site
        self._spurs: list[LineString] = []
        self._spur_box = _Boxes()
        self.zone_tree: STRtree | None = None
        lo = crs.to_metric_xy(np.array([SHENZHEN_BBOX[:2], SHENZHEN_BBOX[2:]]))
        self._bbox = (lo[0, 0] + 500, lo[0, 1] + 500, lo[1, 0] - 500, lo[1, 1] - 500)

    def add_fixed(self, site: Site) -> None:
        self.sites.append(site)
        self._box.add(site.geom_m.bounds)

    def place(self, kind: str, shape: Callable[[], BaseGeometry], candidates: np.ndarray,
              make_site: Callable[[BaseGeometry], Site | None]) -> Site | None:
        """Try candidate road points in order until the shape fits every rule.

        Later attempts may set the fence further back from the road (``Rule.crowding``), so
        large scales fill second rows instead of failing; at scale 1 most fit at once. The
        local shape is reused for a few attempts because building shapes dominates the cost.
        """
        rule = RULES[kind]
        pool, rng = self.pool, self.rng
        local = xy = None
        for k, c in enumerate(candidates):
            if k % 8 == 0:
                local = shape()
                while not local.is_valid:
                    local = shape()
                xy = shapely.get_coordinates(local)
            relief = rule.crowding * min(1.0, k / 60)
            if rule.side == "sea":
                side = float(pool.off_dot[c]) or 1.0
            elif rule.side == "land" and pool.off_dot[c] != 0:
                side = -float(pool.off_dot[c])
            else:
                side = 1.0 if rng.random() < 0.5 else -1.0
            off = rng.uniform(rule.gap[0], rule.gap[1] + relief) - float(np.min(side * xy[:, 1]))
            p, t, nrm = pool.xy[c], pool.t[c], pool.n[c]
            world = p + xy[:, :1] * t + (side * xy[:, 1:2] + off) * nrm
            lo, hi = world.min(0), world.max(0)
            bounds = (lo[0], lo[1], hi[0], hi[1])
            if not self._free(bounds, rule):
                continue
            geom = shapely.transform(local, lambda _, world=world: world)
            if not self._fits(geom, rule):
                continue
            access = self._access(geom, rule.max_spur + relief) if rule.max_spur else None
            if rule.max_spur and access is None:
                continue
            site = make_site(shapely.orient_polygons(geom))
            if site is None:
                continue
            if access is not None:
                inner_xy, site.edge, site.along, spur = access
                # The published (rounded) polygon must cover the published start point.
                if not shapely.covers(site.geom, Point(self.crs.to_wgs_xy(inner_xy[None])[0])):
                    continue
                site.inner_m = inner_xy
                self._spurs.append(spur)
                self._spur_box.add(spur.bounds)
            self.add_fixed(site)
            return site
        return None

    def _free(self, b: tuple[float, float, float, float], rule: Rule) -> bool:
        """Cheap box tests: inside the city and not obviously on top of another fence."""
        if b[0] < self._bbox[0] or b[1] < self._bbox[1] or b[2] > self._bbox[2] \
                or b[3] > self._bbox[3]:
            return False
        near = self._box.near(b, 0.0)
        return not len(near) or not np.any(shapely.intersects(
            shapely.box(*b), [self.sites[i].geom_m for i in near]))

    def _fits(self, geom: BaseGeometry, rule: Rule) -> bool:
        for i in self._box.near(geom.bounds, rule.site_gap):
            if geom.distance(self.sites[i].geom_m) < rule.site_gap:
                return False
        if self.zone_tree is not None and len(self.zone_tree.query(
                geom, predicate="dwithin", distance=ZONE_SITE_CLEARANCE_M)):
            return False
        if len(self.net.tree_all.query(geom, predicate="dwithin", distance=rule.road_clear)):
            return False
        near_spurs = [self._spurs[i] for i in self._spur_box.near(geom.bounds, 5.0)]
        return not np.any(shapely.intersects(geom, near_spurs))

    def _access(self, geom: BaseGeometry, max_spur: float
                ) -> tuple[np.ndarray, int, float, LineString] | None:
        """Interior point (of the part nearest the road) and a short, clear access spur."""
        parts = shapely.get_parts(geom)
        inner = shapely.point_on_surface(parts)
        probe = inner[0]
        if len(parts) > 1:
            e0, _ = self.net.attach(Point(shapely.get_coordinates(inner).mean(0)))
            probe = inner[int(np.argmin(shapely.distance(parts, self.net.edges[e0])))]
        e, along = self.net.attach(probe)
        spur = LineString([probe, self.net.edges[e].interpolate(along)])
        if spur.length > max_spur:
            return None
        if self.zone_tree is not None and len(self.zone_tree.query(
                spur, predicate="dwithin", distance=ZONE_ROAD_BUFFER_M)):
            return None
        near = self._box.near(spur.bounds, 1.0)
        if len(near) and np.any(shapely.intersects(spur, [self.sites[i].geom_m for i in near])):
            return None
        return shapely.get_coordinates(probe)[0], e, along, spur


# --------------------------------------------------------------------------------------------
# The generator
# --------------------------------------------------------------------------------------------


def _count(kind: str, scale: float) -> int:
    return max(1, round(BASE_COUNTS[kind] * scale))


class _Namer:
    """Chinese names like 南山区蛇口工地12号, numbered per area so they stay unique."""

    def __init__(self) -> None:
        self._seq: dict[tuple[str, str], int] = {}

    def __call__(self, area: int, what: str) -> str:
        name, district = AREAS[area][0], AREAS[area][1]
        k = self._seq.get((name, what), 0) + 1
        self._seq[(name, what)] = k
        return f"{district}{name}{what}{k}号"


def _area_of(pool: _Pool, geom_m: BaseGeometry) -> int:
    c = shapely.get_coordinates(geom_m.centroid)[0]
    return int(np.argmin(((pool.area_centers - c) ** 2).sum(1)))


def _anchor_order(pool: _Pool, mask: np.ndarray, anchor_xy: np.ndarray) -> np.ndarray:
    idx = np.flatnonzero(mask)
    d = np.hypot(*(pool.xy[idx] - anchor_xy).T)
    return idx[np.argsort(d, kind="stable")[:300]]


def _shuffled(rng: np.random.Generator, idx: np.ndarray, k: int = 400) -> np.ndarray:
    """Up to k random candidates (pool indices) from ``idx``."""
    return rng.choice(idx, size=min(k, len(idx)), replace=False) if len(idx) else idx


def _place_zones(placer: _Placer, crs: _Crs, n: int, namer: _Namer) -> list[Site]:
    """Landmark zones first (they cut real roads); extras avoid roads entirely."""
    zones, width = [], max(2, len(str(n)))
    for i, spec in enumerate(LANDMARK_ZONES[:n]):
        g = shapely.orient_polygons(Polygon(spec.coords))
        zones.append(Site(f"RZ{i + 1:0{width}d}", "restricted_zone", spec.name, g, crs.to_metric(g),
                          windows=spec.windows, speed_limit_kmh=spec.speed_limit_kmh))
        placer.add_fixed(zones[-1])
    pool, rng = placer.pool, placer.rng
    urban = np.flatnonzero(~np.array([a[4] for a in AREAS])[pool.area])
    while len(zones) < n:
        label, windows, speed = ZONE_TEMPLATES[int(rng.integers(len(ZONE_TEMPLATES)))]
        zid = f"RZ{len(zones) + 1:0{width}d}"

        def make(geom_m: BaseGeometry, zid=zid, label=label, windows=windows,
                 speed=speed) -> Site:
            name = namer(_area_of(pool, geom_m), label)
            return _finish(Site(zid, "restricted_zone", name, geom_m, geom_m, windows=windows,
                                speed_limit_kmh=speed), crs)

        site = placer.place("restricted_zone", lambda: _zone_shape(rng),
                            _shuffled(rng, urban), make)
        if site is None:
            break
        zones.append(site)
    return zones


def _finish(site: Site, crs: _Crs) -> Site:
    """Round to the published precision and re-derive the metric shape from it."""
    site.geom = shapely.orient_polygons(crs.to_wgs(site.geom_m))
    site.geom_m = crs.to_metric(site.geom)
    return site


def _place_sites(placer: _Placer, crs: _Crs, scale: float, namer: _Namer) -> list[Site]:
    """Disposal sites and docks (anchored, then random), then construction sites."""
    pool, rng = placer.pool, placer.rng
    edge_area = np.array([a[4] for a in AREAS])[pool.area]
    out: list[Site] = []

    def maker(kind: str, sid: str, fixed_name: str | None, what: str):
        def make(geom_m: BaseGeometry) -> Site | None:
            name = fixed_name or namer(_area_of(pool, geom_m), what)
            site = _finish(Site(sid, kind, name, geom_m, geom_m), crs)
            return site if site.geom.is_valid else None
        return make

    plans = (
        ("disposal_site", "DS", DISPOSAL_ANCHORS, edge_area, "消纳场", _disposal_shape),
        ("transfer_dock", "TD", DOCK_ANCHORS, pool.port & (pool.off_dot != 0), "中转码头",
         _dock_shape),
    )
    for kind, prefix, anchors, mask, what, shape_fn in plans:
        n = _count(kind, scale)
        idx, placed = np.flatnonzero(mask), 0
        for i in range(n):
            sid = f"{prefix}{placed + 1:0{max(2, len(str(n)))}d}"
            if i < len(anchors):
                name, lon, lat = anchors[i]
                cand = _anchor_order(pool, mask, crs.to_metric_xy(np.array([[lon, lat]]))[0])
            else:
                name, cand = None, _shuffled(rng, idx)
            site = placer.place(kind, lambda f=shape_fn: f(rng), cand, maker(kind, sid, name, what))
            if site is not None:
                out.append(site)
                placed += 1

    n = _count("construction_site", scale)
    styles = np.array(["plain"] * n, dtype=object)
    special = rng.choice(n, size=min(n, max(3, round(0.11 * n))), replace=False)
    n_multi = max(1, round(0.03 * n))
    styles[special[:n_multi]] = "multi"
    styles[special[n_multi:]] = "hole"
    districts = sorted(DISTRICT_WEIGHTS)
    district_of = np.array([a[1] for a in AREAS])[pool.area]
    by_district = {d: np.flatnonzero(district_of == d) for d in districts}
    present = [d for d in districts if len(by_district[d])]
    w = np.array([DISTRICT_WEIGHTS[d] for d in present])
    placed = 0
    for i in range(n):
        sid = f"CS{placed + 1:0{max(4, len(str(n)))}d}"
        site = None
        for _ in range(4):
            district = present[int(rng.choice(len(present), p=w / w.sum()))]
            site = placer.place(
                "construction_site", lambda s=styles[i]: _construction_shape(rng, s),
                _shuffled(rng, by_district[district], 100),
                maker("construction_site", sid, None, "工地"))
            if site is not None:
                break
        if site is not None:
            out.append(site)
            placed += 1
    return out


def _companies(rng: np.random.Generator, n: int) -> list[tuple[str, str]]:
    """Plausible transport-company names, unique."""
    brands = [h + t for h in BRAND_HEAD for t in BRAND_TAIL]
    combos = len(brands) * len(BUSINESS)
    picks = rng.choice(combos, size=min(n, combos), replace=False)
    names = [f"深圳市{brands[p // len(BUSINESS)]}{BUSINESS[p % len(BUSINESS)]}有限公司"
             for p in picks]
    names += [f"深圳市鹏城第{k + 1}渣土运输有限公司" for k in range(n - len(names))]
    width = max(2, len(str(n)))
    return [(f"C{i + 1:0{width}d}", name) for i, name in enumerate(names)]


def _vehicles(rng: np.random.Generator, n: int, companies: list[tuple[str, str]]
              ) -> list[tuple[str, str, str]]:
    """Unique 粤B plates and 12-digit JT/T 808 terminal numbers, uneven fleet sizes."""
    plates: dict[str, None] = {}
    while len(plates) < n:
        m = 2 * (n - len(plates)) + 8
        digits = rng.integers(0, 10, (m, 5)).astype(str)
        letters = np.array(list(PLATE_LETTERS))[rng.integers(0, len(PLATE_LETTERS), (m, 5))]
        n_letters = rng.choice(3, size=m, p=[0.55, 0.3, 0.15])
        use = (rng.random((m, 5)).argsort(1) < n_letters[:, None])
        chars = np.where(use, letters, digits)
        for row in chars:
            plates.setdefault("粤B" + "".join(row), None)
            if len(plates) == n:
                break
    devices: dict[str, None] = {}
    while len(devices) < n:
        m = 2 * (n - len(devices)) + 8
        head = np.array(["13", "15", "18", "14", "17"])[rng.integers(0, 5, m)]
        tail = rng.integers(0, 10**9, m)
        for h, t in zip(head, tail, strict=True):
            devices.setdefault(f"0{h}{t:09d}", None)
            if len(devices) == n:
                break
    floor = 3 if n >= 3 * len(companies) else 0
    weights = rng.gamma(2.0, 1.0, len(companies))
    sizes = floor + rng.multinomial(n - floor * len(companies), weights / weights.sum())
    owner = np.repeat(np.arange(len(companies)), sizes)
    rows = [(p, d, companies[int(c)][0]) for p, d, c in zip(plates, devices, owner, strict=True)]
    return sorted(rows, key=lambda r: (r[2], r[1]))


@dataclass
class Permit:
    id: str
    plate: str
    origin: Site
    destinations: list[Site]
    route_m: np.ndarray
    corridor_m: int
    valid: tuple[str, str]
    hours: str | None


def _route(net: Network, origin: Site, dest: Site, dist: np.ndarray, pred: np.ndarray
           ) -> np.ndarray:
    """Interior point → spur → road shortest path → spur → interior point (metric coords).

    ``dist``/``pred`` are a shortest-path tree rooted at the destination's access point.
    """
    eo, do, et, dt = origin.edge, origin.along, dest.edge, dest.along
    lo, lt = net.length[eo], net.length[et]
    via_u, via_v = dist[net.u[eo]] + do, dist[net.v[eo]] + lo - do
    if eo == et and abs(do - dt) <= min(via_u, via_v):
        middle = [_piece(net.edges[eo], do, dt)]
    else:
        node = int(net.u[eo]) if via_u <= via_v else int(net.v[eo])
        middle = [_piece(net.edges[eo], do, 0.0 if node == net.u[eo] else lo)]
        while pred[node] >= 0:
            e = int(pred[node])
            coords = shapely.get_coordinates(net.edges[e])
            fwd = net.u[e] == node
            middle.append(coords if fwd else coords[::-1])
            node = int(net.v[e]) if fwd else int(net.u[e])
        middle.append(_piece(net.edges[et], 0.0 if node == net.u[et] else lt, dt))
    xy = np.vstack([origin.inner_m[None], *middle, dest.inner_m[None]])
    keep = np.ones(len(xy), bool)
    keep[1:] = np.any(np.abs(np.diff(xy, axis=0)) > 1e-6, axis=1)
    return xy[keep]


def _permits(rng: np.random.Generator, net: Network, sites: list[Site],
             vehicles: list[tuple[str, str, str]], companies: list[tuple[str, str]],
             n_permits: int) -> list[Permit]:
    """~95% of vehicles get a permit from a site their company works, to a nearby destination."""
    origins = [s for s in sites if s.kind == "construction_site"]
    dests = [s for s in sites if s.kind in ("disposal_site", "transfer_dock")]
    dest_xy = np.array([d.inner_m for d in dests])

    comp_index = {c[0]: i for i, c in enumerate(companies)}
    fleet = np.bincount([comp_index[v[2]] for v in vehicles], minlength=len(companies))
    site_owner = rng.choice(len(companies), size=len(origins), p=fleet / fleet.sum())
    works: list[list[int]] = [[] for _ in companies]
    for s, c in enumerate(site_owner):
        works[c].append(s)

    n_with = min(len(vehicles), round(0.95 * len(vehicles)), n_permits)
    holders = np.sort(rng.choice(len(vehicles), size=n_with, replace=False))
    extra = n_permits - n_with
    seconds = rng.choice(holders, size=extra, replace=extra > len(holders))
    plan = np.sort(np.concatenate([holders, seconds]), kind="stable")

    n = len(plan)
    validity = [MAIN_VALIDITY] * n
    odd = rng.choice(n, size=min(n, 2 * max(2, round(0.04 * n))), replace=False)
    half = len(odd) // 2
    for k in odd[:half]:
        validity[k] = EXPIRED_VALIDITY
    for k in odd[half:]:
        validity[k] = FUTURE_VALIDITY
    night = np.zeros(n, bool)
    night[rng.choice(n, size=round(0.3 * n), replace=False)] = True

    trees: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # per destination: one Dijkstra each

    def tree(j: int) -> tuple[np.ndarray, np.ndarray]:
        if j not in trees:
            e, a = dests[j].edge, dests[j].along
            trees[j] = net.shortest([(int(net.u[e]), a), (int(net.v[e]), net.length[e] - a)])
        return trees[j]

    width = max(4, len(str(n)))
    permits = []
    for k, vi in enumerate(plan):
        plate, _, company = vehicles[int(vi)]
        choices = works[comp_index[company]] or list(range(len(origins)))
        origin = origins[int(choices[int(rng.integers(len(choices)))])]
        eo, do, lo = origin.edge, origin.along, net.length[origin.edge]
        # Rank the few nearest destinations (as the crow flies) by road distance.
        near = np.argsort(np.hypot(*(dest_xy - origin.inner_m).T), kind="stable")[:5]
        cost = []
        for j in near:
            dist, _ = tree(int(j))
            c = min(dist[net.u[eo]] + do, dist[net.v[eo]] + lo - do)
            if dests[j].edge == eo:
                c = min(c, abs(do - dests[j].along))
            cost.append(c)
        ranked = [int(near[i]) for i in np.argsort(cost, kind="stable") if np.isfinite(cost[i])]
        ranked = ranked[:3]
        p = np.array([0.6, 0.3, 0.1][: len(ranked)])
        first = ranked[int(rng.choice(len(ranked), p=p / p.sum()))]
        chosen = [dests[first]]
        if len(ranked) > 1 and rng.random() < 0.15:
            chosen.append(dests[next(i for i in ranked if i != first)])
        permits.append(Permit(
            id=f"P{k + 1:0{width}d}", plate=plate, origin=origin, destinations=chosen,
            route_m=_route(net, origin, dests[first], *tree(first)),
            corridor_m=int(rng.integers(5, 16)) * 10, valid=validity[k],
            hours=NIGHT_HOURS if night[k] else None,
        ))
    context = {"origins": origins, "dests": dests, "works": works, "comp_index": comp_index,
               "tree": tree}
    return permits, context


#: How many permits a vehicle holding a current permit ends up with (1–4), and their shares.
PERMITS_PER_TRUCK = ((1, 0.3), (2, 0.3), (3, 0.25), (4, 0.15))
EXTRA_NIGHT_SHARE = 0.3


def _extra_permits(rng: np.random.Generator, net: Network, vehicles: list[tuple[str, str, str]],
                   permits: list[Permit], context: dict) -> list[Permit]:
    """More jobs for the trucks that hold a current permit, so a truck holds 1–4 at once.

    Appended after the first permits (ids continue the numbering), which stay exactly as they
    were: each extra job shares the origin of one of the truck's jobs (another destination,
    often a transfer dock), or its destination (another site of the company), or is a new
    pair; some are night-only (``22:00-06:00``), the rest all-day, all valid in 2026–2027."""
    origins, dests, works = context["origins"], context["dests"], context["works"]
    comp_index, tree = context["comp_index"], context["tree"]
    dest_xy = np.array([d.inner_m for d in dests])
    docks = [j for j, d in enumerate(dests) if d.kind == "transfer_dock"]
    company = {p: c for p, _, c in vehicles}
    held: dict[str, list[Permit]] = {}
    for p in permits:
        if p.valid == MAIN_VALIDITY:
            held.setdefault(p.plate, []).append(p)
    counts, shares = zip(*PERMITS_PER_TRUCK, strict=True)

    def cost(origin: Site, j: int) -> float:
        dist, _ = tree(j)
        eo, do, lo = origin.edge, origin.along, net.length[origin.edge]
        c = min(dist[net.u[eo]] + do, dist[net.v[eo]] + lo - do)
        if dests[j].edge == eo:
            c = min(c, abs(do - dests[j].along))
        return float(c)

    def ranked(origin: Site, pool: list[int] | None = None) -> list[int]:
        near = np.argsort(np.hypot(*(dest_xy - origin.inner_m).T), kind="stable")
        near = [int(j) for j in near if pool is None or int(j) in pool][:5]
        costs = [cost(origin, j) for j in near]
        return [near[i] for i in np.argsort(costs, kind="stable") if np.isfinite(costs[i])]

    width = max(4, len(str(len(permits))))
    extra: list[Permit] = []
    n = len(permits)
    for plate in sorted(held, key=lambda p: held[p][0].id):
        mine = held[plate]
        want = int(rng.choice(counts, p=shares))
        sites = works[comp_index[company[plate]]] or list(range(len(origins)))
        for _ in range(want - len(mine)):
            base = mine[int(rng.integers(len(mine)))]
            pairs = {(p.origin.id, p.destinations[0].id) for p in mine}
            how = rng.choice(4, p=[0.35, 0.3, 0.15, 0.2])
            candidates: list[tuple[Site, int]] = []
            if how == 0:  # same origin, another destination
                candidates = [(base.origin, j) for j in ranked(base.origin)]
            elif how == 1:  # same destination, another origin of the company
                j = dests.index(base.destinations[0])
                for s in rng.permutation(sites):
                    candidates.append((origins[int(s)], j))
            elif how == 2 and docks:  # to a transfer dock
                origin = origins[int(sites[int(rng.integers(len(sites)))])]
                candidates = [(origin, j) for j in ranked(origin, docks)]
            else:  # a new pair
                origin = origins[int(sites[int(rng.integers(len(sites)))])]
                candidates = [(origin, j) for j in ranked(origin)[:3]]
            candidates = [(o, j) for o, j in candidates
                          if (o.id, dests[j].id) not in pairs
                          and np.isfinite(cost(o, j))]
            if not candidates:
                continue
            origin, j = candidates[0]
            permit = Permit(
                id=f"P{n + len(extra) + 1:0{width}d}", plate=plate, origin=origin,
                destinations=[dests[j]], route_m=_route(net, origin, dests[j], *tree(j)),
                corridor_m=int(rng.integers(5, 16)) * 10, valid=MAIN_VALIDITY,
                hours=NIGHT_HOURS if rng.random() < EXTRA_NIGHT_SHARE else None)
            mine.append(permit)
            extra.append(permit)
    return extra


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def _rings(poly: Polygon) -> list[list[list[float]]]:
    return [shapely.get_coordinates(r).tolist() for r in (poly.exterior, *poly.interiors)]


def _geometry(g: BaseGeometry) -> dict:
    """GeoJSON geometry from already-rounded coordinates."""
    if isinstance(g, Polygon):
        return {"type": "Polygon", "coordinates": _rings(g)}
    if isinstance(g, MultiPolygon):
        return {"type": "MultiPolygon", "coordinates": [_rings(p) for p in g.geoms]}
    return {"type": "LineString", "coordinates": shapely.get_coordinates(g).tolist()}


def _feature_collection(features: list[dict]) -> str:
    """One feature per line: diffable, deterministic, UTF-8 (ensure_ascii=False)."""
    lines = [json.dumps(f, ensure_ascii=False, separators=(",", ":")) for f in features]
    return '{"type":"FeatureCollection","features":[\n' + ",\n".join(lines) + "\n]}\n"


def _feature(props: dict, geom: dict) -> dict:
    return {"type": "Feature", "properties": props, "geometry": geom}


def _fence_feature(s: Site) -> dict:
    props: dict = {"id": s.id, "kind": s.kind, "name": s.name}
    if s.windows is not None:
        props["windows"] = list(s.windows)
    if s.speed_limit_kmh is not None:
        props["speed_limit_kmh"] = s.speed_limit_kmh
    return _feature(props, _geometry(s.geom))


def _readme(counts: dict[str, int], seed: int, scale: float) -> str:
    out = "data/sample-city" if (seed, scale) == (DEFAULT_SEED, 1.0) else "OUT_DIR"
    rows = "\n".join(f"| {k} | {v} |" for k, v in counts.items())
    return f"""# Sample city bundle (synthetic Shenzhen)

**Everything here is synthetic.** Roads are a hand-drawn approximation of Shenzhen's arterials and
expressways; sites, zones, companies, plates, device ids and permits are invented. Do not use any
of it for navigation or enforcement. Coordinates are WGS-84 (`crs = "wgs84"` in `city.toml`).

Generated from the repository root with:

```
python -m simulator.citygen --out {out} --seed {seed} --scale {scale:g}
```

The same command reproduces these files byte for byte (`tests/simulator/test_citygen.py` checks
it). The format of every file is described in `docs/city.md`.

| kind | count |
| --- | --- |
{rows}
"""


def _write(out_dir: pathlib.Path, name: str, text: str) -> None:
    (out_dir / name).write_text(text, encoding="utf-8", newline="\n")


def generate_city(out_dir: pathlib.Path, *, seed: int = DEFAULT_SEED, scale: float = 1.0
                  ) -> dict[str, int]:
    """Write a synthetic Shenzhen city bundle to ``out_dir``; return the count of each kind."""
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    crs = _Crs()
    namer = _Namer()
    roads = _build_roads(crs)
    roads += _local_streets(rng, roads, crs, round(LOCAL_STREETS_PER_SCALE * (scale - 1)), namer)
    net = _build_network(roads)
    pool = _Pool(rng, roads, crs, size=max(40_000, round(1_500 * scale)))
    placer = _Placer(rng, crs, net, pool)

    zones = _place_zones(placer, crs, _count("restricted_zone", scale), namer)
    net.restrict([z.geom_m for z in zones])
    placer.zone_tree = STRtree([z.geom_m for z in zones])
    sites = _place_sites(placer, crs, scale, namer)
    sites.sort(key=lambda s: ("construction_site", "disposal_site", "transfer_dock").index(s.kind))

    companies = _companies(rng, _count("company", scale))
    vehicles = _vehicles(rng, _count("vehicle", scale), companies)
    permits, context = _permits(rng, net, sites, vehicles, companies, _count("permit", scale))
    # extra jobs from a generator of their own: the first permits stay byte for byte the same
    permits += _extra_permits(np.random.default_rng([seed, 2]), net, vehicles, permits,
                              context)
    _self_check(crs, zones, permits)

    fences = [_fence_feature(s) for s in [*sites, *zones]]
    permit_features = []
    for p in permits:
        ids = [d.id for d in p.destinations]
        props: dict = {"id": p.id, "plate": p.plate, "origin": p.origin.id,
                       "destination": ids[0] if len(ids) == 1 else ids,
                       "corridor_m": p.corridor_m, "valid_from": p.valid[0], "valid_to": p.valid[1]}
        if p.hours:
            props["hours"] = p.hours
        line = LineString(crs.to_wgs_xy(p.route_m))
        permit_features.append(_feature(props, _geometry(line)))
    road_features = [
        _feature({"id": f"R{i + 1:02d}", "name": r.name, "class": r.cls},
                 _geometry(crs.to_wgs(g)))
        for i, (r, g) in enumerate(roads)
    ]

    kinds = ("construction_site", "disposal_site", "transfer_dock", "restricted_zone")
    counts = {k: sum(s.kind == k for s in [*sites, *zones]) for k in kinds}
    counts |= {"company": len(companies), "vehicle": len(vehicles), "permit": len(permits),
               "road": len(roads)}

    _write(out_dir, "city.toml", (
        f"# Synthetic sample city written by simulator.citygen (seed {seed}, scale {scale:g}).\n"
        f'name = "Shenzhen (synthetic sample)"\ntimezone = "{TIMEZONE}"\n'
        f'crs = "wgs84"\nmetric_epsg = {METRIC_EPSG}\n'))
    _write(out_dir, "fences.geojson", _feature_collection(fences))
    _write(out_dir, "permits.geojson", _feature_collection(permit_features))
    _write(out_dir, "roads.geojson", _feature_collection(road_features))
    _write(out_dir, "companies.csv", "id,name\n" + "".join(f"{i},{n}\n" for i, n in companies))
    _write(out_dir, "vehicles.csv",
           "plate,device_id,company_id\n" + "".join(f"{p},{d},{c}\n" for p, d, c in vehicles))
    _write(out_dir, "README.md", _readme(counts, seed, scale))
    return counts


def _self_check(crs: _Crs, zones: list[Site], permits: list[Permit]) -> None:
    """Guarantee the ground truth the tests and simulator rely on, on the published coordinates."""
    if not permits:
        return
    lines = np.array([LineString(crs.to_wgs_xy(p.route_m)) for p in permits], dtype=object)
    starts = shapely.points(np.array([shapely.get_coordinates(g)[0] for g in lines]))
    ends = shapely.points(np.array([shapely.get_coordinates(g)[-1] for g in lines]))
    if not np.all(shapely.covers([p.origin.geom for p in permits], starts)):
        raise RuntimeError("a route does not start inside its origin")
    if not np.all(shapely.covers([p.destinations[0].geom for p in permits], ends)):
        raise RuntimeError("a route does not end inside its destination")
    if zones and len(STRtree(lines).query([z.geom for z in zones], predicate="intersects")[0]):
        raise RuntimeError("a route crosses a restricted zone")


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: ``python -m simulator.citygen --out DIR --seed N --scale X``."""
    parser = argparse.ArgumentParser(prog="python -m simulator.citygen", description=__doc__
                                     .split("\n\n")[0])
    parser.add_argument("--out", type=pathlib.Path, required=True, help="output directory")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiplies the numbers of fences, companies, vehicles and permits")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    counts = generate_city(args.out, seed=args.seed, scale=args.scale)
    summary = ", ".join(f"{v} {k}" for k, v in counts.items())
    print(f"wrote {args.out} in {time.perf_counter() - t0:.1f}s: {summary}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
