"""The hand-drawn map (simulator.citymap) is consistent, and the generator's coordinates go
through geofence's Projector in the zone domain.coords picks (simulator.citycoords).

The generated bundle itself is checked in test_citygen.py (byte for byte against
data/sample-city, and the bundle rules on other seeds and scales).
"""

from __future__ import annotations

import numpy as np
import shapely

from domain.coords import metric_epsg_for
from simulator import citycoords, citymap
from simulator.citygen import METRIC_EPSG


def _inside_bbox(lonlat) -> bool:
    xy = np.asarray(lonlat, dtype=float).reshape(-1, 2)
    lo, hi = np.array(citymap.SHENZHEN_BBOX[:2]), np.array(citymap.SHENZHEN_BBOX[2:])
    return bool(np.all((xy >= lo) & (xy <= hi)))


def test_roads_are_named_once_and_join_roads_that_exist() -> None:
    names = [r.name for r in citymap.ROADS]
    assert len(set(names)) == len(names)
    for r in citymap.ROADS:
        assert r.cls in ("expressway", "arterial"), r.name
        assert len(r.coords) >= 2 and _inside_bbox(r.coords), r.name
        for other in (r.start_join, r.end_join):
            assert other is None or (other in names and other != r.name), (r.name, other)
        assert r.off_side is not None or not r.port, f"{r.name}: a port road needs a sea side"


def test_zones_areas_and_anchors_lie_in_the_city() -> None:
    for z in citymap.LANDMARK_ZONES:
        assert shapely.Polygon(z.coords).is_valid and _inside_bbox(z.coords), z.name
    assert {a[1] for a in citymap.AREAS} == set(citymap.DISTRICT_WEIGHTS)
    assert _inside_bbox([(a[2], a[3]) for a in citymap.AREAS])
    for anchors in (citymap.DISPOSAL_ANCHORS, citymap.DOCK_ANCHORS):
        assert _inside_bbox([(lon, lat) for _, lon, lat in anchors])
        assert len({name for name, _, _ in anchors}) == len(anchors)
    assert "I" not in citymap.PLATE_LETTERS and "O" not in citymap.PLATE_LETTERS


def test_the_city_is_built_in_its_gauss_kruger_zone() -> None:
    proj = citycoords.city_projector()
    assert proj.epsg == METRIC_EPSG == 4547 == metric_epsg_for(*citymap.CITY_CENTRE)


def test_published_coordinates_are_rounded_and_round_trip() -> None:
    proj = citycoords.city_projector()
    lonlat = np.array([[114.0571234567, 22.5431234567], [113.9, 22.7]])
    xy = citycoords.metric_xy(proj, lonlat)
    back = citycoords.published_xy(proj, xy)
    assert np.array_equal(back, np.round(back, 6))
    assert np.allclose(back, lonlat, atol=1e-6)
    line = citycoords.to_metric(proj, shapely.LineString(lonlat))
    assert np.array_equal(shapely.get_coordinates(line), xy)
    assert np.array_equal(
        shapely.get_coordinates(citycoords.to_published(proj, line)), back)
