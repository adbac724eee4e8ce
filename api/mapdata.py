"""What the console's maps draw besides trucks: the city bundle's roads and extent, permit
corridors as polygons, and where on a violation's track its peak was.

The base map is the city's own data (no tile server): the bundle's ``roads.geojson`` and the
fences from the database. Corridors are buffered in the city's metric CRS (``metric_epsg``),
exactly as the rules measure them (a half-width around the route), then simplified to 2 m so
a few hundred of them stay a small download.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely
from shapely.geometry import mapping, shape

from geofence.projection import Projector

_SIMPLIFY_M = 2.0


@dataclass(frozen=True)
class CityMap:
    name: str
    timezone: str
    epsg: int
    bbox: tuple[float, float, float, float]  # lon/lat of everything the bundle draws
    roads: dict  # GeoJSON FeatureCollection (id, name, class)

    @property
    def projector(self) -> Projector:
        return _projector(self.epsg)


_PROJECTORS: dict[int, Projector] = {}


def _projector(epsg: int) -> Projector:
    if epsg not in _PROJECTORS:
        _PROJECTORS[epsg] = Projector(epsg)
    return _PROJECTORS[epsg]


def load_city_map(directory: Path) -> CityMap:
    """The parts of a city bundle (docs/city.md) the console draws; a bundle without
    ``roads.geojson`` simply has no road layer."""
    meta = tomllib.loads((directory / "city.toml").read_text(encoding="utf-8"))
    roads_path = directory / "roads.geojson"
    roads: dict = (json.loads(roads_path.read_text(encoding="utf-8")) if roads_path.is_file()
                   else {"type": "FeatureCollection", "features": []})
    geometries = [shape(f["geometry"]) for f in roads.get("features", [])]
    fences_path = directory / "fences.geojson"
    if fences_path.is_file():
        fences = json.loads(fences_path.read_text(encoding="utf-8"))
        geometries += [shape(f["geometry"]) for f in fences.get("features", [])]
    bounds = shapely.total_bounds(np.array(geometries, dtype=object)) if geometries else None
    bbox = tuple(float(b) for b in bounds) if bounds is not None and np.isfinite(bounds).all() \
        else (73.0, 18.0, 135.0, 54.0)
    return CityMap(name=str(meta.get("name", directory.name)),
                   timezone=str(meta.get("timezone", "Asia/Shanghai")),
                   epsg=int(meta.get("metric_epsg", 4547)), bbox=bbox, roads=roads)  # type: ignore[arg-type]


def _to_metric(geometries: np.ndarray, projector: Projector) -> np.ndarray:
    return shapely.transform(geometries, lambda xy: np.column_stack(
        projector.to_metric(xy[:, 0], xy[:, 1])))


def _to_lonlat(geometries: np.ndarray, projector: Projector) -> np.ndarray:
    return shapely.transform(geometries, lambda xy: np.column_stack(
        projector.to_lonlat(xy[:, 0], xy[:, 1])))


def corridors(permits: list[dict], projector: Projector, *, with_routes: bool = False) -> dict:
    """A FeatureCollection of each permit's corridor polygon (``route`` GeoJSON, ``corridor_m``
    half-width), properties from the row without the geometry; with ``with_routes`` also
    each route line (``part`` "corridor" / "route")."""
    if not permits:
        return {"type": "FeatureCollection", "features": []}
    routes = np.array([shape(p["route"]) for p in permits], dtype=object)
    half = np.array([float(p["corridor_m"]) for p in permits])
    polygons = shapely.simplify(shapely.buffer(_to_metric(routes, projector), half,
                                               quad_segs=4), _SIMPLIFY_M)
    polygons = _to_lonlat(polygons, projector)
    features = []
    for permit, polygon, route in zip(permits, polygons, routes, strict=True):
        props = {k: v for k, v in permit.items() if k != "route"}
        features.append({"type": "Feature", "geometry": mapping(polygon),
                         "properties": {**props, "part": "corridor"}})
        if with_routes:
            features.append({"type": "Feature", "geometry": mapping(route),
                             "properties": {**props, "part": "route"}})
    return {"type": "FeatureCollection", "features": features}


# the fix that shows a rule's peak, by what the rule measures
_PEAK_BY = {
    "OVERSPEED": "speed", "UNCOVERED_LOAD": "speed_lid_open", "OFF_ROUTE": "off_route",
    "OVERLOAD": "load_kg", "UNAUTHORISED_DUMP": "lift", "WRONG_DESTINATION": "lift",
}


def peak_mark(rule: str, columns: tuple[str, ...], rows: list[tuple], start_ms: int,
              end_ms: int | None, route: dict | None, projector: Projector) -> dict | None:
    """Where on the track between start and end the violation peaked: the fastest fix
    (overspeed; uncovered load: fastest with the lid open), the one farthest from the
    permit's route (off route), the heaviest (overload), the first with the tipper raised
    (dumping). None for rules without a place of their own (no permit, signal loss …)."""
    how = _PEAK_BY.get(rule)
    if how is None or not rows:
        return None
    col = {c: i for i, c in enumerate(columns)}
    data = np.array(rows, dtype=object)
    ts = data[:, col["ts"]].astype(np.int64)
    inside = (ts >= start_ms) & (ts <= (end_ms if end_ms is not None else ts.max()))
    if not inside.any():
        return None

    def numeric(name: str) -> np.ndarray:
        return np.array([np.nan if v is None else float(v) for v in data[:, col[name]]])

    lon, lat = numeric("lon"), numeric("lat")
    if how in ("speed", "speed_lid_open"):
        value, label = numeric("speed_kmh"), "km/h"
        if how == "speed_lid_open":
            inside &= numeric("lid") == 1
    elif how == "load_kg" and "load_kg" in col:
        value, label = numeric("load_kg"), "kg"
    elif how == "off_route" and route is not None:
        line = _to_metric(np.array([shape(route)], dtype=object), projector)[0]
        x, y = projector.to_metric(lon, lat)
        value, label = shapely.distance(line, shapely.points(x, y)), "m"
    elif how == "lift":
        raised = inside & (numeric("lift") == 1)
        if not raised.any():
            return None
        k = int(np.flatnonzero(raised)[0])
        return {"ts": int(ts[k]), "lon": float(lon[k]), "lat": float(lat[k]), "value": None,
                "label": "lift"}
    else:
        return None
    candidates = np.where(inside & np.isfinite(value), value, -np.inf)
    if not np.isfinite(candidates).any():
        return None
    k = int(np.argmax(candidates))
    return {"ts": int(ts[k]), "lon": float(lon[k]), "lat": float(lat[k]),
            "value": round(float(value[k]), 1), "label": label}
