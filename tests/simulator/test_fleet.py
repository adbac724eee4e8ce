"""The simple fleet: trucks stay on their permit routes, sensors follow the cycle, same seed
gives the same fleet."""

from __future__ import annotations

import numpy as np
import pyproj
import shapely

from simulator.fleet import LOADING, OUTBOUND, RETURNING, TIPPING, SimpleFleet

START = 1_790_000_000_000  # 2026-09-21, inside the sample permits' validity


def run(city, ticks: int, seed: int = 3):
    fleet = SimpleFleet(city, trucks=50, start_ms=START, seed=seed)
    return fleet, [fleet.step(5.0) for _ in range(ticks)]


def test_trucks_stay_inside_their_permit_corridors(city):
    fleet, ticks = run(city, 400)
    permits = {p.id: p for p in city.permits}
    to_metric = pyproj.Transformer.from_crs(4326, city.metric_epsg, always_xy=True)
    lon = np.stack([t.lon for t in ticks])
    lat = np.stack([t.lat for t in ticks])
    for k, permit_id in enumerate(fleet.permit_id):
        permit = permits[permit_id]
        route = shapely.transform(permit.route, lambda xy: np.column_stack(
            to_metric.transform(xy[:, 0], xy[:, 1])))
        x, y = to_metric.transform(lon[:, k], lat[:, k])
        distance = shapely.distance(route, shapely.points(x, y))
        assert distance.max() < permit.corridor_m / 2, permit_id


def test_sensor_states_follow_the_cycle(city):
    fleet = SimpleFleet(city, trucks=50, start_ms=START, seed=3)
    seen_phases = set()
    for _ in range(300):
        tick = fleet.step(5.0)
        phase = fleet.phase
        seen_phases |= set(phase.tolist())
        moving = (phase == OUTBOUND) | (phase == RETURNING)
        assert (tick.speed[~moving] == 0).all()
        assert (tick.lid[moving] == 0).all(), "lid closed while driving"
        assert (tick.load[phase == OUTBOUND] == 2).all()
        assert (tick.load[phase == RETURNING] == 0).all()
        assert (tick.lift[phase != TIPPING] == 0).all()
    assert seen_phases == {LOADING, OUTBOUND, TIPPING, RETURNING}


def test_same_seed_same_fleet(city):
    _, a = run(city, 20, seed=9)
    _, b = run(city, 20, seed=9)
    _, c = run(city, 20, seed=10)
    assert all(np.array_equal(x.lon, y.lon) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x.lon, y.lon) for x, y in zip(a, c, strict=True))
    assert a[-1].ts == START + 20 * 5000
