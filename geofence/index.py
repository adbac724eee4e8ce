"""Which fences cover which fixes, for a whole batch at once.

This first index is shapely's STRtree queried with all points of a batch in one call
(``covered_by``: a point on a fence's boundary counts as inside). It is exact and vectorised;
the faster grid + rtree index of issue #3 replaces it behind the same interface, and is
benchmarked against it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry


class FenceIndex:
    """Built once per fence set; immutable, so a new set can be swapped in atomically."""

    def __init__(self, geometries: Sequence[BaseGeometry]) -> None:
        self.geometries = np.asarray(list(geometries), dtype=object)
        for g in self.geometries:
            shapely.prepare(g)
        self._tree = shapely.STRtree(self.geometries)

    def __len__(self) -> int:
        return len(self.geometries)

    def covering(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(fix index, fence index) pairs with the fence covering the fix, sorted by both."""
        if len(lon) == 0 or len(self.geometries) == 0:
            return np.empty(0, np.intp), np.empty(0, np.intp)
        points = shapely.points(np.asarray(lon, np.float64), np.asarray(lat, np.float64))
        fix_idx, fence_idx = self._tree.query(points, predicate="covered_by")
        order = np.lexsort((fence_idx, fix_idx))
        return fix_idx[order].astype(np.intp), fence_idx[order].astype(np.intp)
