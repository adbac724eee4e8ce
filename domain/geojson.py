"""Fence geometry from GeoJSON: validated, converted to WGS-84, never silently repaired.

Why strict: a fence decides whether a company is punished. A self-intersecting polygon or an
unclosed ring means the person who drew it made a mistake; "fixing" it (buffer(0),
auto-closing) would enforce a shape nobody approved. So every problem is reported with the
feature's id and the reason, and the fence is refused.

Circles: a Point with ``radius_m`` becomes a 64-gon in an azimuthal equidistant projection
centred on it (every vertex exactly ``radius_m`` away; the chord sags by at most 0.12 % of the
radius between vertices, 12 cm for a 100 m circle). The index is exact for that polygon.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pyproj
import shapely
from shapely.geometry.base import BaseGeometry

from domain.coords import SYSTEMS, convert

CIRCLE_SEGMENTS = 64


class GeometryError(ValueError):
    """One geometry is unusable; the message says why (without the feature id)."""


def _split(rings: list) -> tuple[list, list]:
    return rings[0], rings[1:]


def _at(where: str) -> str:
    return f"{where}: " if where else ""


def _position(p: object, where: str) -> tuple[float, float]:
    if not isinstance(p, list | tuple) or len(p) < 2:
        raise GeometryError(f"{_at(where)}a position must be [lon, lat]")
    lon, lat = p[0], p[1]
    for v in (lon, lat):
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise GeometryError(f"{_at(where)}coordinate {v!r} is not a finite number")
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise GeometryError(f"{_at(where)}coordinates [{lon}, {lat}] out of range "
                            "(lon -180..180, lat -90..90)")
    return float(lon), float(lat)


def _ring(ring: object, where: str) -> list[tuple[float, float]]:
    if not isinstance(ring, list):
        raise GeometryError(f"{_at(where)}a ring must be a list of positions")
    points = [_position(p, where) for p in ring]
    if len(set(points)) < 3:
        raise GeometryError(f"{_at(where)}a ring needs at least 3 distinct points "
                            f"(got {len(set(points))})")
    if points[0] != points[-1]:
        raise GeometryError(f"{_at(where)}ring is not closed (first position {list(points[0])} "
                            f"≠ last {list(points[-1])})")
    return points


def _polygon_rings(coords: object, where: str) -> list[list[tuple[float, float]]]:
    if not isinstance(coords, list) or not coords:
        raise GeometryError(f"{_at(where)}a polygon must be a non-empty list of rings")
    rings = []
    for k, ring in enumerate(coords):
        label = "exterior ring" if k == 0 else f"hole {k}"
        rings.append(_ring(ring, f"{where}{label}"))
    return rings


def circle(lon: float, lat: float, radius_m: float) -> shapely.Polygon:
    """A WGS-84 polygon whose vertices lie exactly ``radius_m`` from (lon, lat)."""
    local = pyproj.CRS.from_proj4(f"+proj=aeqd +lat_0={lat} +lon_0={lon} +datum=WGS84 +units=m")
    back = pyproj.Transformer.from_crs(local, "EPSG:4326", always_xy=True)
    angles = np.linspace(0, 2 * np.pi, CIRCLE_SEGMENTS, endpoint=False)
    x, y = back.transform(radius_m * np.cos(angles), radius_m * np.sin(angles))
    ring = np.column_stack([x, y])
    return shapely.Polygon(np.vstack([ring, ring[:1]]))


def read_geometry(
    geometry: object,
    allowed: Iterable[str],
    *,
    crs: str = "wgs84",
    radius_m: object = None,
) -> BaseGeometry:
    """A GeoJSON geometry object → a valid WGS-84 shapely geometry, or GeometryError.

    ``allowed`` names the GeoJSON types accepted; ``"Circle"`` accepts a Point with
    ``radius_m``. Structure and ranges are checked on the raw coordinates (shapely would
    quietly close a ring), validity on the converted geometry."""
    allowed = set(allowed)
    if crs not in SYSTEMS:
        raise GeometryError(f"unknown coordinate system {crs!r}")
    if not isinstance(geometry, dict):
        raise GeometryError("geometry is missing")
    kind = geometry.get("type")
    coords = geometry.get("coordinates")
    if kind == "Point" and "Circle" in allowed:
        if radius_m is None:
            raise GeometryError("a Point fence needs radius_m (a circle)")
        if isinstance(radius_m, bool) or not isinstance(radius_m, int | float) \
                or not 0 < radius_m <= 50_000:
            raise GeometryError(f"radius_m must be a number of metres in (0, 50000], "
                                f"got {radius_m!r}")
        lon, lat = _position(coords, "")
        lon, lat = (float(v[0]) for v in convert([lon], [lat], crs, "wgs84"))
        return circle(lon, lat, float(radius_m))
    if kind not in allowed:
        names = sorted(t if t != "Circle" else "Point with radius_m" for t in allowed)
        raise GeometryError(
            f"geometry type {kind!r} is not allowed here (use {' or '.join(names)})")
    if kind == "Polygon":
        shape = shapely.Polygon(*_split(_polygon_rings(coords, "")))
    elif kind == "MultiPolygon":
        if not isinstance(coords, list) or not coords:
            raise GeometryError("a MultiPolygon needs at least one polygon")
        shape = shapely.MultiPolygon(
            [shapely.Polygon(*_split(_polygon_rings(p, f"polygon {k} "))) for k, p in
             enumerate(coords)])
    elif kind == "LineString":
        if not isinstance(coords, list):
            raise GeometryError("a LineString must be a list of positions")
        points = [_position(p, "") for p in coords]
        if len(set(points)) < 2:
            raise GeometryError("a LineString needs at least 2 distinct points")
        shape = shapely.LineString(points)
    else:
        raise GeometryError(f"geometry type {kind!r} is not supported")
    if crs != "wgs84":
        shape = shapely.transform(
            shape, lambda xy: np.column_stack(convert(xy[:, 0], xy[:, 1], crs, "wgs84")))
    if not shape.is_valid:
        raise GeometryError(f"invalid geometry: {shapely.is_valid_reason(shape)} "
                            "(fences are never repaired automatically; fix the drawing)")
    return shape


AREA_TYPES = ("Polygon", "MultiPolygon", "Circle")


def read_area(feature: dict, properties: dict, crs: str = "wgs84") -> BaseGeometry:
    """A fence feature's area: Polygon, MultiPolygon, or a Point with ``radius_m``."""
    return read_geometry(feature.get("geometry"), AREA_TYPES, crs=crs,
                         radius_m=properties.get("radius_m"))
