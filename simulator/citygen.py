"""Deterministic generator of a synthetic Shenzhen-area city bundle (see docs/city.md).

Why it exists: muckwatch needs reference data that looks like a real Chinese city — construction
sites beside real arterials, disposal sites at the urban edge, docks on the coast, permits whose
routes follow roads and avoid restricted zones — without shipping surveyed map data, and with a
ground truth that tests, the simulator and benchmarks can rely on. The same seed always yields
byte-identical files; ``scale`` multiplies the numbers of fences, companies, vehicles and permits so
benchmarks can ask for much larger cities.

All geometry is built in the city's metric zone (EPSG:4547, CGCS2000 3-degree Gauss-Krüger CM
114°E, which treats WGS-84 and CGCS2000 as equal; geofence.projection) and written as WGS-84
lon/lat rounded to 6 decimals. The road network is a hand-drawn approximation of Shenzhen's
arterials and expressways: plausible, not accurate — never use it for navigation.

The stages, one module each: the hand-drawn map (citymap), metric/published coordinates
(citycoords), roads and routing (cityroads), fence outlines (cityshapes), placing fences
(citysites), companies and trucks (cityfleet), permits and their routes (citypermits), the
districts that tile it all (citydistricts, no random numbers), rated loads, volumes and jobs
(cityregistry), writing the files (citybundle).
This module runs them in order from one seeded generator.

Usage: ``python -m simulator.citygen --out DIR [--seed N] [--scale X]``.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time
from collections.abc import Sequence

import numpy as np
from shapely import STRtree

from simulator.citybundle import FILES, city_toml, permit_route, readme, road_line, write_bundle
from simulator.citycoords import city_projector
from simulator.citydistricts import draw_districts
from simulator.cityfleet import draw_companies, draw_vehicles
from simulator.citypermits import check_ground_truth, draw_permits, extra_permits
from simulator.cityregistry import draw_registry
from simulator.cityroads import LOCAL_STREETS_PER_SCALE, build_network, build_roads, local_streets
from simulator.citysites import Namer, Placer, Pool, place_sites, place_zones

__all__ = ["BASE_COUNTS", "DEFAULT_SEED", "FILES", "METRIC_EPSG", "generate_city", "main"]

DEFAULT_SEED = 20261122
#: The metric zone of the synthetic city (written to city.toml as ``metric_epsg``).
METRIC_EPSG = city_projector().epsg

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
FENCE_KINDS = ("construction_site", "disposal_site", "transfer_dock", "restricted_zone")


def _count(kind: str, scale: float) -> int:
    return max(1, round(BASE_COUNTS[kind] * scale))


def generate_city(out_dir: pathlib.Path, *, seed: int = DEFAULT_SEED, scale: float = 1.0
                  ) -> dict[str, int]:
    """Write a synthetic Shenzhen city bundle to ``out_dir``; return the count of each kind."""
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    proj = city_projector()
    namer = Namer()
    roads = build_roads(proj)
    roads += local_streets(rng, roads, proj, round(LOCAL_STREETS_PER_SCALE * (scale - 1)), namer)
    net = build_network(roads)
    pool = Pool(rng, roads, proj, size=max(40_000, round(1_500 * scale)))
    placer = Placer(rng, proj, net, pool)

    zones = place_zones(placer, proj, _count("restricted_zone", scale), namer)
    net.restrict([z.geom_m for z in zones])
    placer.zone_tree = STRtree([z.geom_m for z in zones])
    sites = place_sites(placer, proj, {k: _count(k, scale) for k in FENCE_KINDS}, namer)
    sites.sort(key=lambda s: FENCE_KINDS.index(s.kind))

    companies = draw_companies(rng, _count("company", scale))
    vehicles = draw_vehicles(rng, _count("vehicle", scale), companies)
    permits, jobs = draw_permits(rng, net, sites, vehicles, companies, _count("permit", scale))
    # extra jobs from a generator of their own: the first permits stay byte for byte the same
    permits += extra_permits(np.random.default_rng([seed, 2]), vehicles, permits, jobs)
    check_ground_truth(proj, zones, permits)
    # the registry from a generator of its own: it only adds to the files
    registry = draw_registry(np.random.default_rng([seed, 3]), vehicles, permits, scale)

    fences = [*sites, *zones]
    districts = draw_districts([*(s.geom for s in fences),
                                *(permit_route(proj, p) for p in permits),
                                *(road_line(proj, r) for r in roads)])
    counts = {k: sum(s.kind == k for s in fences) for k in FENCE_KINDS}
    counts |= {"district": len(districts), "company": len(companies), "vehicle": len(vehicles),
               "permit": len(permits), "road": len(roads)}
    out = "data/sample-city" if (seed, scale) == (DEFAULT_SEED, 1.0) else "OUT_DIR"
    write_bundle(out_dir, proj, sites=fences, permits=permits, roads=roads, companies=companies,
                 vehicles=vehicles, toml=city_toml(seed, scale, proj.epsg),
                 readme_text=readme(counts, seed, scale, out), districts=districts,
                 registry=registry)
    return counts


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
