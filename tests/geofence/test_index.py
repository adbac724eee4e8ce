"""The fence index agrees exactly with shapely's covers(), boundary points included."""

from __future__ import annotations

import numpy as np
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from geofence.index import FenceIndex


def brute_force(fences, lon, lat):
    pairs = [(i, j) for i in range(len(lon)) for j, f in enumerate(fences)
             if f.covers(shapely.Point(lon[i], lat[i]))]
    return sorted(pairs)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(113.8, 114.3), st.floats(22.4, 22.8),
                          st.floats(0.001, 0.05), st.integers(3, 12)), min_size=1, max_size=8),
       st.integers(0, 2**31))
def test_matches_shapely_covers_including_vertices_and_edges(specs, seed):
    rng = np.random.default_rng(seed)
    fences = []
    for cx, cy, r, k in specs:
        angles = np.sort(rng.uniform(0, 2 * np.pi, k))
        ring = np.column_stack([cx + r * np.cos(angles), cy + r * np.sin(angles)])
        poly = shapely.Polygon(ring)
        if not poly.is_valid or poly.area == 0:
            poly = shapely.box(cx - r, cy - r, cx + r, cy + r)
        fences.append(poly)
    # random points, plus every vertex and every edge midpoint of every fence
    lon = list(rng.uniform(113.75, 114.35, 200))
    lat = list(rng.uniform(22.35, 22.85, 200))
    for f in fences:
        xy = shapely.get_coordinates(f.exterior)
        lon += list(xy[:, 0]) + list((xy[:-1, 0] + xy[1:, 0]) / 2)
        lat += list(xy[:, 1]) + list((xy[:-1, 1] + xy[1:, 1]) / 2)
    lon, lat = np.asarray(lon), np.asarray(lat)
    fix_idx, fence_idx = FenceIndex(fences).covering(lon, lat)
    assert list(zip(fix_idx.tolist(), fence_idx.tolist(), strict=True)) == brute_force(
        fences, lon, lat)


def test_empty_inputs():
    index = FenceIndex([shapely.box(0, 0, 1, 1)])
    assert [a.size for a in index.covering(np.array([]), np.array([]))] == [0, 0]
    assert [a.size for a in FenceIndex([]).covering(np.array([0.5]), np.array([0.5]))] == [0, 0]
