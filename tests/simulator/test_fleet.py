"""The compliant fleet: trucks stay on their permit routes, accelerate and stop at junctions,
sensors follow the cycle, terminals report on their own jittered clocks; same seed gives the
same fleet."""

from __future__ import annotations

import numpy as np
import pyproj
import pytest
import shapely

from simulator.fleet import LOADING, OUTBOUND, RETURNING, TIPPING, Fleet, FleetTick

START = 1_790_000_000_000  # 2026-09-21, inside the sample permits' validity


def run(city, minutes: float, seed: int = 3, **options) -> tuple[Fleet, FleetTick]:
    fleet = Fleet(city, trucks=50, start_ms=START, seed=seed, **options)
    ticks = [fleet.advance(5.0) for _ in range(int(minutes * 12))]
    return fleet, FleetTick.concat(ticks)


def test_trucks_stay_inside_their_permit_corridors(city):
    fleet, tick = run(city, 30, noise_m=3.0)
    permits = {p.id: p for p in city.permits}
    to_metric = pyproj.Transformer.from_crs(4326, city.metric_epsg, always_xy=True)
    x, y = to_metric.transform(tick.lon, tick.lat)
    for k, permit_id in enumerate(fleet.permit_id):
        permit = permits[permit_id]
        route = shapely.transform(permit.route, lambda xy: np.column_stack(
            to_metric.transform(xy[:, 0], xy[:, 1])))
        mine = tick.truck == k
        distance = shapely.distance(route, shapely.points(x[mine], y[mine]))
        assert distance.max() < permit.corridor_m / 2, permit_id


def test_sensor_states_follow_the_cycle(city):
    _, tick = run(city, 25)
    phase = tick.phase
    moving = (phase == OUTBOUND) | (phase == RETURNING)
    assert (tick.speed[~moving] == 0).all()
    assert (tick.lid[moving] == 0).all(), "lid closed while driving"
    assert (tick.load[phase == OUTBOUND] == 2).all()
    assert (tick.load[phase == RETURNING] == 0).all()
    assert (tick.lift[phase != TIPPING] == 0).all()
    assert set(phase.tolist()) == {LOADING, OUTBOUND, TIPPING, RETURNING}


def test_trucks_accelerate_and_wait_at_junctions(city):
    _, tick = run(city, 30, seed=5)
    order = np.lexsort((tick.ts, tick.truck))
    truck, speed = tick.truck[order], tick.speed[order]
    phase = tick.phase[order]
    moving = (phase == OUTBOUND) | (phase == RETURNING)
    stopped_on_road = moving & (speed == 0)
    assert stopped_on_road.mean() > 0.03, "red lights stop trucks on the road"
    assert (speed[moving] <= 45 + 5).all(), "cruise 25–45 km/h (plus sensor noise)"
    same = truck[1:] == truck[:-1]
    # 0.6 m/s² is 2.2 km/h a second (plus ±1 km/h of sensor noise on either report)
    both = same & moving[1:] & moving[:-1]
    gained = np.diff(speed)[both] / (np.diff(tick.ts[order])[both] / 1000)
    assert gained.max() < 2.2 + 1.5
    assert ((speed > 0) & (speed < 20) & moving).any(), "pulling away is gradual"


def test_reports_are_jittered_and_clocks_can_be_skewed(city):
    fleet, tick = run(city, 10, interval_s=10.0, jitter=0.2, skew_share=0.5)
    order = np.lexsort((tick.ts, tick.truck))
    truck, ts = tick.truck[order], tick.ts[order]
    same = truck[1:] == truck[:-1]
    gaps = np.diff(ts)[same]
    assert gaps.min() >= 8_000 and gaps.max() <= 13_000 and len(np.unique(gaps)) > 2
    assert (fleet.skew_ms != 0).mean() > 0.3
    assert np.abs(fleet.skew_ms).max() <= 90_000
    seq = tick.seq[order]
    assert (np.diff(seq)[same] == 1).all(), "seq counts up per terminal"


def test_same_seed_same_fleet(city):
    _, a = run(city, 2, seed=9)
    _, b = run(city, 2, seed=9)
    _, c = run(city, 2, seed=10)
    assert np.array_equal(a.lon, b.lon) and np.array_equal(a.ts, b.ts)
    assert not np.array_equal(a.lon[:20], c.lon[:20])


def test_bad_options_are_refused(city):
    with pytest.raises(ValueError, match="interval_s"):
        Fleet(city, trucks=5, start_ms=START, interval_s=0)
    with pytest.raises(ValueError, match="jitter"):
        Fleet(city, trucks=5, start_ms=START, jitter=1.5)
