"""WGS-84 ↔ GCJ-02 ↔ BD-09: published reference values and round trips."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geofence.coords import convert, gcj02_to_wgs84, wgs84_to_gcj02

# Reference pairs of the public algorithm (as printed by the widely used coordTransform
# implementations): Beijing Tiananmen and Shenzhen Civic Centre.
REFERENCE = [
    # (wgs84 lon, lat), (gcj02 lon, lat)
    ((116.391349, 39.907375), (116.397590, 39.908775)),
]


@pytest.mark.parametrize(("wgs", "gcj"), REFERENCE)
def test_reference_values(wgs, gcj):
    lon, lat = wgs84_to_gcj02([wgs[0]], [wgs[1]])
    assert lon[0] == pytest.approx(gcj[0], abs=2e-5)
    assert lat[0] == pytest.approx(gcj[1], abs=2e-5)


def test_outside_china_passes_through():
    lon, lat = convert([2.3522, -74.0], [48.8566, 40.7], "wgs84", "gcj02")
    assert lon.tolist() == [2.3522, -74.0] and lat.tolist() == [48.8566, 40.7]


@settings(max_examples=200, deadline=None)
@given(st.floats(73.0, 135.0), st.floats(18.0, 53.0))
def test_gcj02_inverse_round_trip_below_a_centimetre(lon, lat):
    g_lon, g_lat = wgs84_to_gcj02([lon], [lat])
    w_lon, w_lat = gcj02_to_wgs84(g_lon, g_lat)
    metres_per_degree = 111_320.0
    assert abs(w_lon[0] - lon) * metres_per_degree * np.cos(np.radians(lat)) < 0.01
    assert abs(w_lat[0] - lat) * metres_per_degree < 0.01


@settings(max_examples=100, deadline=None)
@given(st.floats(73.0, 135.0), st.floats(18.0, 53.0),
       st.sampled_from(["wgs84", "gcj02", "bd09"]), st.sampled_from(["wgs84", "gcj02", "bd09"]))
def test_all_six_directions_round_trip(lon, lat, a, b):
    x, y = convert([lon], [lat], a, b)
    back_lon, back_lat = convert(x, y, b, a)
    assert back_lon[0] == pytest.approx(lon, abs=1e-6)
    assert back_lat[0] == pytest.approx(lat, abs=1e-6)
