"""Permits: each truck's jobs from a construction site its company works to a nearby disposal
site or dock, with the route along the roads that avoid restricted zones; then extra jobs so a
truck holds 1–4 permits; and the check that every route keeps the ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import shapely
from shapely import LineString, STRtree

from geofence.projection import Projector
from simulator.citycoords import published_xy
from simulator.cityfleet import Company, Vehicle
from simulator.cityroads import Network, piece
from simulator.citysites import Site

MAIN_VALIDITY = ("2026-01-01T00:00:00+08:00", "2027-12-31T23:59:59+08:00")
EXPIRED_VALIDITY = ("2025-01-01T00:00:00+08:00", "2025-12-31T23:59:59+08:00")
FUTURE_VALIDITY = ("2028-01-01T00:00:00+08:00", "2028-12-31T23:59:59+08:00")
NIGHT_HOURS = "22:00-06:00"
#: How many permits a vehicle holding a current permit ends up with (1–4), and their shares.
PERMITS_PER_TRUCK = ((1, 0.3), (2, 0.3), (3, 0.25), (4, 0.15))
EXTRA_NIGHT_SHARE = 0.3


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


@dataclass
class Jobs:
    """What the permits are drawn from: origins, destinations, the origins each company works
    (indices), and one shortest-path tree per destination, computed on first use."""

    net: Network
    origins: list[Site]
    dests: list[Site]
    works: list[list[int]]
    comp_index: dict[str, int]
    trees: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def tree(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        """Distances and predecessor edges towards destination j's access point."""
        if j not in self.trees:
            net, e, a = self.net, self.dests[j].edge, self.dests[j].along
            self.trees[j] = net.shortest([(int(net.u[e]), a), (int(net.v[e]), net.length[e] - a)])
        return self.trees[j]


def route(net: Network, origin: Site, dest: Site, dist: np.ndarray, pred: np.ndarray
          ) -> np.ndarray:
    """Interior point → spur → road shortest path → spur → interior point (metric coords).

    ``dist``/``pred`` are a shortest-path tree rooted at the destination's access point.
    """
    assert origin.inner_m is not None and dest.inner_m is not None, "sites must be routable"
    eo, do, et, dt = origin.edge, origin.along, dest.edge, dest.along
    lo, lt = net.length[eo], net.length[et]
    via_u, via_v = dist[net.u[eo]] + do, dist[net.v[eo]] + lo - do
    if eo == et and abs(do - dt) <= min(via_u, via_v):
        middle = [piece(net.edges[eo], do, dt)]
    else:
        node = int(net.u[eo]) if via_u <= via_v else int(net.v[eo])
        middle = [piece(net.edges[eo], do, 0.0 if node == net.u[eo] else lo)]
        while pred[node] >= 0:
            e = int(pred[node])
            coords = shapely.get_coordinates(net.edges[e])
            fwd = net.u[e] == node
            middle.append(coords if fwd else coords[::-1])
            node = int(net.v[e]) if fwd else int(net.u[e])
        middle.append(piece(net.edges[et], 0.0 if node == net.u[et] else lt, dt))
    xy = np.vstack([origin.inner_m[None], *middle, dest.inner_m[None]])
    keep = np.ones(len(xy), bool)
    keep[1:] = np.any(np.abs(np.diff(xy, axis=0)) > 1e-6, axis=1)
    return xy[keep]


def draw_permits(rng: np.random.Generator, net: Network, sites: list[Site],
                 vehicles: list[Vehicle], companies: list[Company], n_permits: int
                 ) -> tuple[list[Permit], Jobs]:
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

    jobs = Jobs(net, origins, dests, works, comp_index)  # one Dijkstra per destination
    tree = jobs.tree

    width = max(4, len(str(n)))
    permits: list[Permit] = []
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
            route_m=route(net, origin, dests[first], *tree(first)),
            corridor_m=int(rng.integers(5, 16)) * 10, valid=validity[k],
            hours=NIGHT_HOURS if night[k] else None,
        ))
    return permits, jobs


def extra_permits(rng: np.random.Generator, vehicles: list[Vehicle], permits: list[Permit],
                  jobs: Jobs) -> list[Permit]:
    """More jobs for the trucks that hold a current permit, so a truck holds 1–4 at once.

    Appended after the first permits (ids continue the numbering), which stay exactly as they
    were: each extra job shares the origin of one of the truck's jobs (another destination,
    often a transfer dock), or its destination (another site of the company), or is a new
    pair; some are night-only (``22:00-06:00``), the rest all-day, all valid in 2026–2027."""
    net, origins, dests, works = jobs.net, jobs.origins, jobs.dests, jobs.works
    comp_index, tree = jobs.comp_index, jobs.tree
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
        order = np.argsort(np.hypot(*(dest_xy - origin.inner_m).T), kind="stable")
        near = [int(j) for j in order if pool is None or int(j) in pool][:5]
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
                destinations=[dests[j]], route_m=route(net, origin, dests[j], *tree(j)),
                corridor_m=int(rng.integers(5, 16)) * 10, valid=MAIN_VALIDITY,
                hours=NIGHT_HOURS if rng.random() < EXTRA_NIGHT_SHARE else None)
            mine.append(permit)
            extra.append(permit)
    return extra


def check_ground_truth(proj: Projector, zones: list[Site], permits: list[Permit]) -> None:
    """Guarantee the ground truth the tests and simulator rely on, on the published coordinates."""
    if not permits:
        return
    lines = np.array([LineString(published_xy(proj, p.route_m)) for p in permits], dtype=object)
    starts = shapely.points(np.array([shapely.get_coordinates(g)[0] for g in lines]))
    ends = shapely.points(np.array([shapely.get_coordinates(g)[-1] for g in lines]))
    if not np.all(shapely.covers([p.origin.geom for p in permits], starts)):
        raise RuntimeError("a route does not start inside its origin")
    if not np.all(shapely.covers([p.destinations[0].geom for p in permits], ends)):
        raise RuntimeError("a route does not end inside its destination")
    if zones and len(STRtree(lines).query([z.geom for z in zones], predicate="intersects")[0]):
        raise RuntimeError("a route crosses a restricted zone")
