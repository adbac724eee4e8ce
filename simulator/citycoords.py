"""The generator's two frames: metric x/y for building, WGS-84 lon/lat rounded for publishing.

All geometry is built in the city's metric zone (geofence.projection.Projector for the EPSG code
domain.coords.metric_epsg_for picks, EPSG:4547 for Shenzhen) and written as WGS-84 lon/lat
rounded to 6 decimals (~0.1 m). These helpers apply a Projector to (n, 2) arrays and to shapely
geometries; the rounding lives here so every published coordinate gets the same one.
"""

from __future__ import annotations

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from domain.coords import metric_epsg_for
from geofence.projection import Projector
from simulator.citymap import CITY_CENTRE

PUBLISHED_DECIMALS = 6


def city_projector() -> Projector:
    """WGS-84 ↔ the metric zone of the synthetic city."""
    return Projector(metric_epsg_for(*CITY_CENTRE))


def metric_xy(proj: Projector, lonlat: np.ndarray) -> np.ndarray:
    """(n, 2) lon/lat -> (n, 2) metric x/y."""
    x, y = proj.to_metric(lonlat[:, 0], lonlat[:, 1])
    return np.column_stack([x, y])


def published_xy(proj: Projector, xy: np.ndarray) -> np.ndarray:
    """(n, 2) metric x/y -> lon/lat rounded to the precision we publish."""
    lon, lat = proj.to_lonlat(xy[:, 0], xy[:, 1])
    return np.round(np.column_stack([lon, lat]), PUBLISHED_DECIMALS)


def to_metric(proj: Projector, geom: BaseGeometry) -> BaseGeometry:
    return shapely.transform(geom, lambda xy: metric_xy(proj, xy))


def to_published(proj: Projector, geom: BaseGeometry) -> BaseGeometry:
    return shapely.transform(geom, lambda xy: published_xy(proj, xy))
