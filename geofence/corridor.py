"""Distance from fixes to route corridors' centrelines, in metres, for whole batches.

Routes are projected to the deployment's metric CRS once; each batch projects its fixes with
one pyproj call and measures every (fix, route) pair with one vectorised shapely call.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from geofence.projection import Projector


class Corridors:
    """Route centrelines (WGS-84 LineStrings) with their half-widths in metres."""

    def __init__(self, routes: Sequence[BaseGeometry], half_width_m: Sequence[float],
                 projector: Projector) -> None:
        self.projector = projector
        self.half_width_m = np.asarray(half_width_m, np.float64)
        self._metric = np.array(
            [shapely.transform(r, lambda xy: np.column_stack(
                projector.to_metric(xy[:, 0], xy[:, 1]))) for r in routes], dtype=object)
        if len(self._metric) != len(self.half_width_m):
            raise ValueError("one half-width per route")

    def __len__(self) -> int:
        return len(self._metric)

    def distance_m(self, route: np.ndarray, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """Distance of fix k to route ``route[k]``'s centreline; NaN where ``route[k] < 0``
        (the fix has no permit)."""
        route = np.asarray(route, np.int64)
        out = np.full(len(route), np.nan)
        has = np.flatnonzero(route >= 0)
        if len(has) == 0:
            return out
        x, y = self.projector.to_metric(np.asarray(lon)[has], np.asarray(lat)[has])
        out[has] = shapely.distance(self._metric[route[has]], shapely.points(x, y))
        return out

    def outside(self, route: np.ndarray, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """Metres beyond the corridor's half-width (≤ 0 inside); NaN without a route."""
        d = self.distance_m(route, lon, lat)
        width = np.where(np.asarray(route) >= 0, self.half_width_m[np.maximum(route, 0)], np.nan)
        return d - width
