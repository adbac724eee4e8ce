"""Fence geometry: every way a drawing can be wrong is named, circles are circles."""

from __future__ import annotations

import json

import numpy as np
import pyproj
import pytest
import shapely

from domain.geojson import GeometryError, read_geometry
from geofence.fences import FenceFileError, load_fences

SQUARE = [[114.0, 22.5], [114.01, 22.5], [114.01, 22.51], [114.0, 22.51], [114.0, 22.5]]
HOLE = [[114.004, 22.504], [114.006, 22.504], [114.006, 22.506], [114.004, 22.506],
        [114.004, 22.504]]
AREAS = ("Polygon", "MultiPolygon", "Circle")


def poly(*rings):
    return {"type": "Polygon", "coordinates": list(rings)}


@pytest.mark.parametrize(
    ("geometry", "words"),
    [
        (poly([[114.0, 22.5], [114.01, 22.51], [114.01, 22.5], [114.0, 22.51], [114.0, 22.5]]),
         "Self-intersection"),
        (poly(SQUARE[:-1]), "ring is not closed"),
        (poly([[114.0, 22.5], [114.01, 22.5], [114.0, 22.5]]), "at least 3 distinct points"),
        (poly([[114.0, 22.5], [114.01, 22.5], [114.01, 22.5], [114.0, 22.5]]),
         "at least 3 distinct points"),
        (poly([[p[0] + 70, p[1]] for p in SQUARE]), "out of range"),
        (poly([[114.0, 95.0], *SQUARE[1:]]), "out of range"),
        (poly([[114.0, "22.5"], *SQUARE[1:]]), "not a finite number"),
        (poly(SQUARE, [[114.02, 22.52], [114.03, 22.52], [114.03, 22.53], [114.02, 22.52]]),
         "Hole lies outside shell"),
        ({"type": "LineString", "coordinates": SQUARE}, "not allowed here"),
        ({"type": "Point", "coordinates": [114.0, 22.5]}, "needs radius_m"),
        (None, "geometry is missing"),
    ],
)
def test_bad_geometry_is_refused_with_the_reason(geometry, words):
    with pytest.raises(GeometryError, match=None) as e:
        read_geometry(geometry, AREAS)
    assert words in str(e.value)


def test_holes_and_multipolygons_are_kept():
    g = read_geometry(poly(SQUARE, HOLE), AREAS)
    assert len(g.interiors) == 1
    m = read_geometry({"type": "MultiPolygon", "coordinates": [[SQUARE], [[
        [114.02, 22.5], [114.03, 22.5], [114.03, 22.51], [114.02, 22.5]]]]}, AREAS)
    assert m.geom_type == "MultiPolygon" and len(m.geoms) == 2


@pytest.mark.parametrize("radius", [20.0, 150.0, 2000.0])
def test_circle_vertices_are_exactly_radius_away(radius):
    c = read_geometry({"type": "Point", "coordinates": [114.05, 22.55]}, AREAS, radius_m=radius)
    geod = pyproj.Geod(ellps="WGS84")
    xy = shapely.get_coordinates(c)
    _, _, dist = geod.inv(np.full(len(xy), 114.05), np.full(len(xy), 22.55), xy[:, 0], xy[:, 1])
    assert np.allclose(dist, radius, rtol=1e-6)
    assert c.is_valid and len(xy) == 65


@pytest.mark.parametrize("radius", [0, -5, "10", True, 1e9])
def test_bad_radius(radius):
    with pytest.raises(GeometryError, match="radius_m"):
        read_geometry({"type": "Point", "coordinates": [114.0, 22.5]}, AREAS, radius_m=radius)


def test_gcj02_input_is_converted():
    g = read_geometry(poly(SQUARE), AREAS, crs="gcj02")
    # in Shenzhen GCJ-02 is shifted ~500 m east and ~300 m south of WGS-84
    assert 113.994 < g.bounds[0] < 113.996
    assert 22.502 < g.bounds[1] < 22.504


def test_file_lists_every_bad_feature(tmp_path):
    features = [
        {"type": "Feature", "properties": {"id": "ok"}, "geometry": poly(SQUARE)},
        {"type": "Feature", "properties": {"id": "open"}, "geometry": poly(SQUARE[:-1])},
        {"type": "Feature", "properties": {}, "geometry": poly(SQUARE)},
        {"type": "Feature", "properties": {"id": "ok"}, "geometry": poly(SQUARE)},
        {"type": "Feature", "properties": {"id": "c", "radius_m": 50},
         "geometry": {"type": "Point", "coordinates": [114.0, 22.5]}},
    ]
    path = tmp_path / "f.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    with pytest.raises(FenceFileError) as e:
        load_fences(path)
    assert e.value.problems == [
        "open: exterior ring: ring is not closed (first position [114.0, 22.5] ≠ last "
        "[114.0, 22.51])", "feature #2: has no id", "ok: duplicate id"]
    del features[1:4]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    fs = load_fences(path)
    assert fs.ids == ["ok", "c"] and fs.geometries[1].geom_type == "Polygon"
