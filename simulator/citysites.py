"""Placing fences beside the roads: restricted zones (landmarks first), disposal sites and docks
(at their anchors first), then construction sites weighted by district — no overlaps, clear of
zones and roads, each routable site with a short access spur to the road graph.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial

import numpy as np
import shapely
from shapely import LineString, Point, Polygon, STRtree
from shapely.geometry.base import BaseGeometry

from geofence.projection import Projector
from simulator.citycoords import metric_xy, published_xy, to_metric, to_published
from simulator.citymap import (
    AREAS,
    DISPOSAL_ANCHORS,
    DISTRICT_WEIGHTS,
    DOCK_ANCHORS,
    LANDMARK_ZONES,
    SHENZHEN_BBOX,
    ZONE_TEMPLATES,
)
from simulator.cityroads import ZONE_ROAD_BUFFER_M, Boxes, Network, Road
from simulator.cityshapes import construction_shape, disposal_shape, dock_shape, zone_shape

ZONE_SITE_CLEARANCE_M = 60.0  # no site this close to a restricted zone


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


class Pool:
    """Many candidate points along the roads, with tangent, side rules and area."""

    def __init__(self, rng: np.random.Generator, roads: list[Road], proj: Projector,
                 size: int) -> None:
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
        centers = metric_xy(proj, np.array([(a[2], a[3]) for a in AREAS]))
        d2 = ((p[:, None, :] - centers[None, :, :]) ** 2).sum(-1)
        self.area = np.argmin(d2, axis=1)
        self.area_centers = centers


class Placer:
    """Places fences beside roads without overlaps, then attaches them to the road graph."""

    def __init__(self, rng: np.random.Generator, proj: Projector, net: Network, pool: Pool) -> None:
        self.rng, self.proj, self.net, self.pool = rng, proj, net, pool
        self.sites: list[Site] = []
        self._box = Boxes()  # metric bounds per site
        self._spurs: list[LineString] = []
        self._spur_box = Boxes()
        self.zone_tree: STRtree | None = None
        lo = metric_xy(proj, np.array([SHENZHEN_BBOX[:2], SHENZHEN_BBOX[2:]]))
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
        local, xy = None, np.empty((0, 2))
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
                if not shapely.covers(site.geom, Point(published_xy(self.proj, inner_xy[None])[0])):
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


class Namer:
    """Chinese names like 南山区蛇口工地12号, numbered per area so they stay unique."""

    def __init__(self) -> None:
        self._seq: dict[tuple[str, str], int] = {}

    def __call__(self, area: int, what: str) -> str:
        name, district = AREAS[area][0], AREAS[area][1]
        k = self._seq.get((name, what), 0) + 1
        self._seq[(name, what)] = k
        return f"{district}{name}{what}{k}号"


def area_of(pool: Pool, geom_m: BaseGeometry) -> int:
    c = shapely.get_coordinates(geom_m.centroid)[0]
    return int(np.argmin(((pool.area_centers - c) ** 2).sum(1)))


def anchor_order(pool: Pool, mask: np.ndarray, anchor_xy: np.ndarray) -> np.ndarray:
    idx = np.flatnonzero(mask)
    d = np.hypot(*(pool.xy[idx] - anchor_xy).T)
    return idx[np.argsort(d, kind="stable")[:300]]


def shuffled(rng: np.random.Generator, idx: np.ndarray, k: int = 400) -> np.ndarray:
    """Up to k random candidates (pool indices) from ``idx``."""
    return rng.choice(idx, size=min(k, len(idx)), replace=False) if len(idx) else idx


def place_zones(placer: Placer, proj: Projector, n: int, namer: Namer) -> list[Site]:
    """Landmark zones first (they cut real roads); extras avoid roads entirely."""
    zones, width = [], max(2, len(str(n)))
    for i, spec in enumerate(LANDMARK_ZONES[:n]):
        g = shapely.orient_polygons(Polygon(spec.coords))
        zones.append(Site(f"RZ{i + 1:0{width}d}", "restricted_zone", spec.name, g,
                          to_metric(proj, g), windows=spec.windows,
                          speed_limit_kmh=spec.speed_limit_kmh))
        placer.add_fixed(zones[-1])
    pool, rng = placer.pool, placer.rng
    urban = np.flatnonzero(~np.array([a[4] for a in AREAS])[pool.area])
    while len(zones) < n:
        label, windows, speed = ZONE_TEMPLATES[int(rng.integers(len(ZONE_TEMPLATES)))]
        zid = f"RZ{len(zones) + 1:0{width}d}"

        def make(geom_m: BaseGeometry, zid=zid, label=label, windows=windows,
                 speed=speed) -> Site:
            name = namer(area_of(pool, geom_m), label)
            return finish(Site(zid, "restricted_zone", name, geom_m, geom_m, windows=windows,
                               speed_limit_kmh=speed), proj)

        site = placer.place("restricted_zone", lambda: zone_shape(rng),
                            shuffled(rng, urban), make)
        if site is None:
            break
        zones.append(site)
    return zones


def finish(site: Site, proj: Projector) -> Site:
    """Round to the published precision and re-derive the metric shape from it."""
    site.geom = shapely.orient_polygons(to_published(proj, site.geom_m))
    site.geom_m = to_metric(proj, site.geom)
    return site


def place_sites(placer: Placer, proj: Projector, counts: Mapping[str, int], namer: Namer
                ) -> list[Site]:
    """Disposal sites and docks (anchored, then random), then construction sites."""
    pool, rng = placer.pool, placer.rng
    edge_area = np.array([a[4] for a in AREAS])[pool.area]
    out: list[Site] = []

    def maker(kind: str, sid: str, fixed_name: str | None, what: str
              ) -> Callable[[BaseGeometry], Site | None]:
        def make(geom_m: BaseGeometry) -> Site | None:
            name = fixed_name or namer(area_of(pool, geom_m), what)
            site = finish(Site(sid, kind, name, geom_m, geom_m), proj)
            return site if site.geom.is_valid else None
        return make

    plans = (
        ("disposal_site", "DS", DISPOSAL_ANCHORS, edge_area, "消纳场", disposal_shape),
        ("transfer_dock", "TD", DOCK_ANCHORS, pool.port & (pool.off_dot != 0), "中转码头",
         dock_shape),
    )
    for kind, prefix, anchors, mask, what, shape_fn in plans:
        n = counts[kind]
        idx, placed = np.flatnonzero(mask), 0
        for i in range(n):
            sid = f"{prefix}{placed + 1:0{max(2, len(str(n)))}d}"
            if i < len(anchors):
                name, lon, lat = anchors[i]
                cand = anchor_order(pool, mask, metric_xy(proj, np.array([[lon, lat]]))[0])
            else:
                name, cand = None, shuffled(rng, idx)
            site = placer.place(kind, partial(shape_fn, rng), cand, maker(kind, sid, name, what))
            if site is not None:
                out.append(site)
                placed += 1

    n = counts["construction_site"]
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
                "construction_site", partial(construction_shape, rng, styles[i]),
                shuffled(rng, by_district[district], 100),
                maker("construction_site", sid, None, "工地"))
            if site is not None:
                break
        if site is not None:
            out.append(site)
            placed += 1
    return out
