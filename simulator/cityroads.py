"""The road network: hand-drawn roads projected and joined, synthetic side streets for large
scales, the noded graph and shortest paths over the edges that avoid restricted zones.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import shapely
from shapely import LineString, MultiLineString, Point, Polygon, STRtree
from shapely.geometry.base import BaseGeometry
from shapely.ops import substring

from geofence.projection import Projector
from simulator.citycoords import metric_xy, to_metric
from simulator.citymap import AREAS, LANDMARK_ZONES, ROADS, SHENZHEN_BBOX, RoadSpec

ZONE_ROAD_BUFFER_M = 30.0  # road edges closer than this to a restricted zone are not routable
LOCAL_STREETS_PER_SCALE = 6  # synthetic side streets per unit of scale above 1

#: A road as built: its spec (name, class, hints) and its metric line.
Road = tuple[RoadSpec, LineString]


class Boxes:
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


def build_roads(proj: Projector) -> list[Road]:
    """Project the hand-drawn roads and apply their explicit join hints."""
    lines = {r.name: to_metric(proj, LineString(r.coords)) for r in ROADS}
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


def local_streets(rng: np.random.Generator, roads: list[Road], proj: Projector, n: int,
                  namer: Callable[[int, str], str]) -> list[Road]:
    """Synthetic side streets (支路) off the arterials, only for scale > 1.

    Why: the hand-drawn arterials have room beside them for a few thousand sites; larger
    benchmark cities need more roadside. Each street leaves an arterial on its land side and
    stops just past the first road it meets, so it joins the grid.
    """
    if n <= 0:
        return []
    lines = [g for _, g in roads]
    lengths = shapely.length(np.array(lines, dtype=object))
    zones = shapely.buffer(np.array(
        [to_metric(proj, Polygon(z.coords)) for z in LANDMARK_ZONES], dtype=object), 150.0)
    lo = metric_xy(proj, np.array([SHENZHEN_BBOX[:2], SHENZHEN_BBOX[2:]]))
    inside = shapely.box(*(lo[0] + 1500), *(lo[1] - 1500))
    centers = metric_xy(proj, np.array([(a[2], a[3]) for a in AREAS]))
    boxes = Boxes()
    for g in lines:
        boxes.add(g.bounds)
    local: list[LineString] = []
    out: list[Road] = []
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


def build_network(roads: list[Road]) -> Network:
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


def piece(line: LineString, a: float, b: float) -> np.ndarray:
    """Coordinates of the part of ``line`` from distance a to b (reversed when b < a)."""
    if abs(a - b) < 1e-9:
        return shapely.get_coordinates(line.interpolate(a))
    return shapely.get_coordinates(substring(line, a, b))

