"""Geofence core vs shapely's STRtree on identical inputs (issue #3's target).

1,000,000 fixes (half near fences, half uniform over the city) against 10,000 fences
(16–200 vertices, 10% with holes, some multipolygons). The STRtree side includes building the
points, as the pipeline would have to; both sides run on one core (numpy and GEOS do not
thread these calls). Best of ``repeats`` runs each, measured in the same process.
"""

from __future__ import annotations

import time
import tracemalloc

import numpy as np
import shapely

from geofence.index import FenceIndex


def make_fences(n: int, rng: np.random.Generator) -> list:
    """Irregular star polygons over a Shenzhen-sized area, 100–600 m across."""
    fences = []
    for i in range(n):
        k = int(rng.integers(16, 201))
        cx, cy = rng.uniform(113.75, 114.45), rng.uniform(22.45, 22.85)
        r = rng.uniform(0.0005, 0.003)
        angles = np.sort(rng.uniform(0, 2 * np.pi, k))
        radii = r * rng.uniform(0.6, 1.0, k)
        poly = shapely.Polygon(np.column_stack([cx + radii * np.cos(angles),
                                                cy + radii * np.sin(angles)]))
        if i % 10 == 0:  # 10% with a hole
            poly = poly.difference(shapely.Point(cx, cy).buffer(r * 0.3, quad_segs=4))
        elif i % 25 == 1:  # some split sites
            poly = shapely.MultiPolygon([poly, shapely.Point(cx + 3 * r, cy).buffer(r * 0.5)])
        fences.append(poly)
    return fences


def make_fixes(fences: list, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    bounds = shapely.bounds(np.array(fences))[rng.integers(0, len(fences), n // 2)]
    pad = 0.001
    near_x = rng.uniform(bounds[:, 0] - pad, bounds[:, 2] + pad)
    near_y = rng.uniform(bounds[:, 1] - pad, bounds[:, 3] + pad)
    lon = np.concatenate([near_x, rng.uniform(113.75, 114.45, n - n // 2)])
    lat = np.concatenate([near_y, rng.uniform(22.45, 22.85, n - n // 2)])
    order = rng.permutation(n)
    return lon[order], lat[order]


def best_of(repeats: int, fn):
    best, result = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def run(n_fences: int = 10_000, n_fixes: int = 1_000_000, repeats: int = 3,
        seed: int = 42) -> dict:
    rng = np.random.default_rng(seed)
    fences = make_fences(n_fences, rng)
    lon, lat = make_fixes(fences, n_fixes, rng)
    geoms = np.array(fences)

    tracemalloc.start()
    t0 = time.perf_counter()
    index = FenceIndex(fences)
    build_s = time.perf_counter() - t0
    index_bytes = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()

    t0 = time.perf_counter()
    tree = shapely.STRtree(geoms)
    tree_build_s = time.perf_counter() - t0

    def strtree_query():
        return tree.query(shapely.points(lon, lat), predicate="covered_by")

    def grid_query():
        return index.covering(lon, lat)

    index.covering(lon[:50_000], lat[:50_000])  # warm-up
    grid_s, (fix, fence) = best_of(repeats, grid_query)
    tree_s, pairs = best_of(repeats, strtree_query)
    order = np.lexsort((pairs[1], pairs[0]))
    identical = bool(np.array_equal(fix, pairs[0][order])
                     and np.array_equal(fence, pairs[1][order]))
    return {
        "fences": n_fences,
        "fixes": n_fixes,
        "vertices": int(shapely.get_num_coordinates(geoms).sum()),
        "pairs": len(fix),
        "identical": identical,
        "grid_s": grid_s,
        "strtree_s": tree_s,
        "grid_rate": n_fixes / grid_s,
        "strtree_rate": n_fixes / tree_s,
        "speedup": tree_s / grid_s,
        "build_s": build_s,
        "strtree_build_s": tree_build_s,
        "index_mb": index_bytes / 2**20,
        "cells": index.stats.cells,
        "cell_m": index.stats.cell_deg * 111_320,
        "boundary_pairs": index.stats.boundary_pairs,
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
