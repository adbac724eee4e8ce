"""Metric projection and corridor distances."""

from __future__ import annotations

import numpy as np
import pyproj
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.coords import metric_epsg_for
from geofence.corridor import Corridors
from geofence.projection import Projector


@pytest.mark.parametrize(("lon", "lat", "epsg"), [
    (114.06, 22.54, 4547),  # Shenzhen, CM 114E
    (113.26, 23.13, 4547),  # Guangzhou
    (116.40, 39.90, 4548),  # Beijing, CM 117E
    (120.16, 30.27, 4549),  # Hangzhou, CM 120E
    (2.35, 48.85, 32631),  # Paris: UTM 31N
    (151.2, -33.9, 32756),  # Sydney: UTM 56S
])
def test_metric_zone_is_picked_from_the_data(lon, lat, epsg):
    assert metric_epsg_for(lon, lat) == epsg


def test_projection_round_trip():
    p = Projector(4547)
    lon = np.linspace(113.8, 114.5, 50)
    lat = np.linspace(22.4, 22.9, 50)
    back = p.to_lonlat(*p.to_metric(lon, lat))
    assert np.allclose(back[0], lon, atol=1e-9) and np.allclose(back[1], lat, atol=1e-9)
    with pytest.raises(ValueError, match="not a metric"):
        Projector(4326)


ROUTE = shapely.LineString([(114.00, 22.50), (114.02, 22.50), (114.03, 22.52)])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.floats(113.99, 114.04), st.floats(22.49, 22.53)), min_size=1,
                max_size=30))
def test_distance_matches_geodesic_scale(points):
    """Within a Gauss-Krüger zone metric distances agree with geodesic ones to < 0.1 %."""
    corridors = Corridors([ROUTE], [50.0], Projector(4547))
    lon = np.array([p[0] for p in points])
    lat = np.array([p[1] for p in points])
    d = corridors.distance_m(np.zeros(len(lon), np.int64), lon, lat)
    # reference: nearest point on the route found in lon/lat, distance measured on the ellipsoid
    geod = pyproj.Geod(ellps="WGS84")
    dense = shapely.segmentize(ROUTE, 0.00001)
    xy = shapely.get_coordinates(dense)
    for k in range(len(lon)):
        _, _, dist = geod.inv(np.full(len(xy), lon[k]), np.full(len(xy), lat[k]), xy[:, 0],
                              xy[:, 1])
        assert d[k] == pytest.approx(dist.min(), rel=2e-3, abs=1.0)


def test_no_permit_is_nan_and_outside_is_beyond_half_width():
    corridors = Corridors([ROUTE, ROUTE], [50.0, 200.0], Projector(4547))
    lon = np.array([114.01, 114.01, 114.01])
    lat = np.array([22.501, 22.501, 22.501])  # ≈ 111 m north of the first leg
    d = corridors.distance_m(np.array([0, 1, -1]), lon, lat)
    assert d[0] == pytest.approx(110.8, abs=1.0) and d[1] == d[0] and np.isnan(d[2])
    out = corridors.outside(np.array([0, 1, -1]), lon, lat)
    assert out[0] == pytest.approx(d[0] - 50) and out[1] < 0 and np.isnan(out[2])
