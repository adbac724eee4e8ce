"""WGS-84 ↔ GCJ-02 ↔ BD-09: published reference values and round trips."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.coords import convert, gcj02_to_wgs84, wgs84_to_gcj02

# Values printed in the README of coordTransform_py (wandergis), the most widely copied
# implementation of the public algorithm, for the input (128.543, 37.065).
PUBLISHED = {
    "wgs84_to_gcj02": (128.54820547949757, 37.065651049489816),
    "gcj02_to_bd09": (128.54944656269413, 37.07113427883019),
    "gcj02_to_wgs84_one_step": (128.53779452050244, 37.06434895051018),
}


def test_published_forward_values_reproduced():
    lon, lat = convert([128.543], [37.065], "wgs84", "gcj02")
    assert (lon[0], lat[0]) == pytest.approx(PUBLISHED["wgs84_to_gcj02"], abs=1e-12)
    lon, lat = convert([128.543], [37.065], "gcj02", "bd09")
    assert (lon[0], lat[0]) == pytest.approx(PUBLISHED["gcj02_to_bd09"], abs=1e-12)


def test_iterated_inverse_beats_the_published_one_step_inverse():
    one_step = PUBLISHED["gcj02_to_wgs84_one_step"]
    ours = gcj02_to_wgs84([128.543], [37.065])
    error = lambda lon, lat: max(abs(v - t) for v, t in zip(  # noqa: E731
        (x[0] for x in wgs84_to_gcj02([lon], [lat])), (128.543, 37.065), strict=True))
    assert error(ours[0][0], ours[1][0]) < 1e-10  # ≈ 0.01 mm
    assert error(*one_step) > 1e-6  # the one-step inverse is off by metres
    assert abs(ours[0][0] - one_step[0]) < 1e-4  # but both land in the same neighbourhood


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
