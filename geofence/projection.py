"""Metric coordinates for distances and corridor widths.

One zone per deployment (brief §6): CGCS2000 3-degree Gauss-Krüger zones without zone
prefix (EPSG:4534 … 4554, central meridians 75°E … 135°E) inside China, UTM elsewhere.
Within a zone's ±1.5° the scale error stays below ~0.03 %, i.e. 3 cm on a 100 m corridor.
"""

from __future__ import annotations

import numpy as np
import pyproj


class Projector:
    """WGS-84 lon/lat ↔ metric x/y for one EPSG code, vectorised (pyproj, always_xy)."""

    def __init__(self, epsg: int) -> None:
        self.epsg = epsg
        self.crs = pyproj.CRS.from_epsg(epsg)
        if not self.crs.axis_info or self.crs.axis_info[0].unit_name not in ("metre", "meter"):
            raise ValueError(f"EPSG:{epsg} is not a metric projected CRS")
        self._forward = pyproj.Transformer.from_crs(4326, epsg, always_xy=True)
        self._inverse = pyproj.Transformer.from_crs(epsg, 4326, always_xy=True)

    def to_metric(self, lon, lat) -> tuple[np.ndarray, np.ndarray]:
        x, y = self._forward.transform(np.asarray(lon, np.float64), np.asarray(lat, np.float64))
        return np.asarray(x), np.asarray(y)

    def to_lonlat(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        lon, lat = self._inverse.transform(np.asarray(x, np.float64), np.asarray(y, np.float64))
        return np.asarray(lon), np.asarray(lat)
