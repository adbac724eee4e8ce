"""The fence index agrees exactly with shapely's covers(): holes, multipolygons, shared edges,
points on vertices and edges, points on grid lines, points far away and NaN."""

from __future__ import annotations

import numpy as np
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from geofence.index import FenceIndex


def reference(fences, lon, lat) -> list[tuple[int, int]]:
    tree = shapely.STRtree(fences)
    fix, fence = tree.query(shapely.points(lon, lat), predicate="covered_by")
    return sorted(zip(fix.tolist(), fence.tolist(), strict=True))


def got(index, lon, lat) -> list[tuple[int, int]]:
    fix, fence = index.covering(lon, lat)
    return list(zip(fix.tolist(), fence.tolist(), strict=True))


def star(rng, cx, cy, r, k):
    angles = np.sort(rng.uniform(0, 2 * np.pi, k))
    radii = r * rng.uniform(0.5, 1.0, k)
    return shapely.Polygon(np.column_stack([cx + radii * np.cos(angles),
                                            cy + radii * np.sin(angles)]))


fence_specs = st.lists(
    st.tuples(st.floats(113.9, 114.2), st.floats(22.5, 22.7), st.floats(0.0005, 0.02),
              st.integers(3, 60), st.sampled_from(["plain", "hole", "multi", "box"])),
    min_size=1, max_size=10,
)


def build_fences(specs, rng):
    fences = []
    for cx, cy, r, k, shape in specs:
        if shape == "box":
            # axis-aligned: edges along grid-like lines, vertices shared by neighbours
            poly = shapely.box(cx, cy, cx + r, cy + r)
            fences.append(poly)
            fences.append(shapely.box(cx + r, cy, cx + 2 * r, cy + r))  # shares an edge
            continue
        poly = star(rng, cx, cy, r, k)
        if not poly.is_valid:
            continue
        if shape == "hole":
            poly = poly.difference(shapely.Point(cx, cy).buffer(r * 0.3, quad_segs=4))
        elif shape == "multi":
            poly = shapely.MultiPolygon([poly, star(rng, cx + 2.5 * r, cy, r * 0.6, max(k, 3))])
        if poly.is_valid and not poly.is_empty:
            fences.append(poly)
    return fences


@settings(max_examples=150, deadline=None)
@given(fence_specs, st.integers(0, 2**31))
def test_identical_to_shapely_covers(specs, seed):
    rng = np.random.default_rng(seed)
    fences = build_fences(specs, rng)
    if not fences:
        return
    index = FenceIndex(fences, cells_per_fence=float(rng.choice([2, 8, 32])))
    # random points around the fences, every vertex, every edge midpoint, grid-line points
    lon = list(rng.uniform(113.85, 114.3, 400))
    lat = list(rng.uniform(22.45, 22.75, 400))
    coords = shapely.get_coordinates(shapely.boundary(np.array(fences)))
    lon += coords[:, 0].tolist() + ((coords[:-1, 0] + coords[1:, 0]) / 2).tolist()
    lat += coords[:, 1].tolist() + ((coords[:-1, 1] + coords[1:, 1]) / 2).tolist()
    lon += (index.x0 + index.cell * rng.integers(0, index.nx, 50)).tolist()
    lat += rng.uniform(22.45, 22.75, 50).tolist()
    lon, lat = np.array(lon), np.array(lat)
    assert got(index, lon, lat) == reference(fences, lon, lat)


def test_large_batch_in_chunks_matches():
    rng = np.random.default_rng(5)
    fences = build_fences([(113.9 + i * 0.01, 22.5 + (i % 7) * 0.01, 0.004, 40,
                            ["plain", "hole", "multi"][i % 3]) for i in range(60)], rng)
    index = FenceIndex(fences)
    lon = rng.uniform(113.88, 114.55, 100_000)
    lat = rng.uniform(22.48, 22.6, 100_000)
    assert got(index, lon, lat) == reference(fences, lon, lat)


def test_empty_and_odd_inputs():
    index = FenceIndex([shapely.box(0, 0, 1, 1)])
    assert got(index, np.array([]), np.array([])) == []
    assert got(FenceIndex([]), np.array([0.5]), np.array([0.5])) == []
    lon = np.array([np.nan, 0.5, 5.0, -5.0, np.inf, 1.0])
    lat = np.array([0.5, np.nan, 0.5, 0.5, 0.5, 1.0])
    assert got(index, lon, lat) == [(5, 0)]  # the corner counts: covers()
