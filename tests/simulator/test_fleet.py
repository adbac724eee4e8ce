"""The compliant fleet: trucks stay on their permit routes, accelerate and stop at junctions,
sensors follow the cycle, terminals report on their own jittered clocks; same seed gives the
same fleet."""

from __future__ import annotations

import numpy as np
import pyproj
import pytest
import shapely

from simulator.fleet import (
    LOADING,
    OUTBOUND,
    PARKED,
    RETURNING,
    TIPPING,
    TRANSFER,
    Fleet,
    FleetTick,
    Noise,
    permit_valid_until,
)

START = 1_790_000_000_000  # 2026-09-21, inside the sample permits' validity


def run(city, minutes: float, seed: int = 3, **options) -> tuple[Fleet, FleetTick]:
    fleet = Fleet(city, trucks=50, start_ms=START, seed=seed, **options)
    ticks = [fleet.advance(5.0) for _ in range(int(minutes * 12))]
    return fleet, FleetTick.concat(ticks)


def on_the_road(city, permit, to_metric, points):
    """The points outside the permit's origin and destination: inside them a truck drives to
    where it loads or tips (well inside, off the route's end), and no corridor applies."""
    fences = {f.id: f.geometry for f in city.fences}
    sites = shapely.union_all([fences[permit.origin], *(fences[d] for d in permit.destinations)])
    sites = shapely.transform(sites, lambda xy: np.column_stack(
        to_metric.transform(xy[:, 0], xy[:, 1])))
    return points[~shapely.covers(sites, points)]


def test_trucks_stay_inside_their_permit_corridors(city):
    fleet, tick = run(city, 30, noise_m=3.0)
    to_metric = pyproj.Transformer.from_crs(4326, city.metric_epsg, always_xy=True)
    x, y = to_metric.transform(tick.lon, tick.lat)
    loaded = tick.phase == OUTBOUND
    assert loaded.any()
    for j in np.unique(tick.permit[loaded]).tolist():
        permit = fleet.permits[j]
        route = shapely.transform(permit.route, lambda xy: np.column_stack(
            to_metric.transform(xy[:, 0], xy[:, 1])))
        mine = loaded & (tick.permit == j)
        points = on_the_road(city, permit, to_metric, shapely.points(x[mine], y[mine]))
        assert (shapely.distance(route, points) < permit.corridor_m / 2).all(), permit.id


@pytest.fixture(scope="module")
def shifts(city) -> tuple[Fleet, FleetTick]:
    """A day and a half of shifts, 40 trucks reporting every 30 s (motion in 5 s steps);
    GPS noise off, so the positions are the trucks' true ones."""
    fleet = Fleet(city, trucks=40, start_ms=START, seed=4, interval_s=30, step_s=5,
                  daily=True, noise_m=0.0)
    return fleet, FleetTick.concat([fleet.advance(600) for _ in range(6 * 36)])


def test_multi_permit_trucks_switch_jobs_and_drive_loaded_only_on_a_valid_permit(city, shifts):
    """Loaded fixes only on the job's permit, inside its corridor, at device times the permit
    is valid (hours in the city's timezone); trucks switch jobs, night-only jobs are worked at
    night, trucks park between shifts."""
    from zoneinfo import ZoneInfo

    fleet, tick = shifts
    tz = ZoneInfo(city.timezone)
    to_metric = pyproj.Transformer.from_crs(4326, city.metric_epsg, always_xy=True)
    x, y = to_metric.transform(tick.lon, tick.lat)
    loaded = tick.phase == OUTBOUND
    for j in np.unique(tick.permit[loaded]).tolist():
        permit = fleet.permits[j]
        mine = loaded & (tick.permit == j)
        assert fleet.plate[int(tick.truck[mine][0])] == permit.plate
        assert all(permit_valid_until(permit, ts, tz) is not None
                   for ts in tick.ts[mine].tolist()), permit.id
        route = shapely.transform(permit.route, lambda xy: np.column_stack(
            to_metric.transform(xy[:, 0], xy[:, 1])))
        points = on_the_road(city, permit, to_metric, shapely.points(x[mine], y[mine]))
        assert (shapely.distance(route, points) < permit.corridor_m / 2).all(), permit.id
    jobs: dict[int, set] = {}
    for truck, j in zip(tick.truck[loaded].tolist(), tick.permit[loaded].tolist(), strict=True):
        jobs.setdefault(truck, set()).add(j)
    assert sum(len(v) > 1 for v in jobs.values()) >= 5, "trucks switch jobs"
    assert (tick.phase == TRANSFER).any(), "empty runs between jobs' sites"
    night = [j for j in np.unique(tick.permit[loaded]).tolist() if fleet.permits[j].hours]
    assert night, "night-only jobs are worked"
    parked = tick.phase == PARKED
    assert parked.any()
    order = np.lexsort((tick.ts, tick.truck))
    same = (tick.truck[order][1:] == tick.truck[order][:-1]) & parked[order][1:] \
        & parked[order][:-1]
    gaps = np.diff(tick.ts[order])[same]
    assert gaps.min() >= 59_000 and gaps.max() <= 301_000, "parked: a report every 1–5 min"
    assert (tick.speed[parked] == 0).all() and (tick.load[parked] == 0).all()


def test_shifts_load_and_tip_well_inside_the_right_fence(city, shifts):
    """Every loading fix inside the job's origin, every tipping fix inside its destination,
    at least 20 m in (GPS noise σ is 8 m): a truck drives from where its route meets the
    site to a spot well inside, not only to the route's end (tests/simulator/test_sites.py
    for the episodes)."""
    fleet, tick = shifts
    to_metric = pyproj.Transformer.from_crs(4326, city.metric_epsg, always_xy=True)
    fences = {f.id: shapely.transform(f.geometry, lambda xy: np.column_stack(
        to_metric.transform(xy[:, 0], xy[:, 1]))) for f in city.fences}
    points = shapely.points(*to_metric.transform(tick.lon, tick.lat))
    checked = {}
    for phase in (LOADING, TIPPING):
        rows = np.flatnonzero(tick.phase == phase)
        for j in np.unique(tick.permit[rows]).tolist():
            permit = fleet.permits[j]
            site = fences[permit.origin if phase == LOADING else permit.destinations[0]]
            mine = points[rows[tick.permit[rows] == j]]
            assert shapely.contains(site, mine).all(), (permit.id, phase)
            assert shapely.distance(site.boundary, mine).min() >= 20.0, (permit.id, phase)
        checked[phase] = len(rows)
    assert min(checked.values()) > 200, checked


def test_sensor_states_follow_the_cycle(city):
    _, tick = run(city, 25)
    phase = tick.phase
    moving = (phase == OUTBOUND) | (phase == RETURNING) | (phase == TRANSFER)
    assert (tick.speed[~moving] == 0).all()
    assert (tick.lid[moving] == 0).all(), "lid closed while driving"
    assert (tick.load[phase == OUTBOUND] == 2).all()
    assert (tick.load[phase == RETURNING] == 0).all()
    assert (tick.lift[phase != TIPPING] == 0).all()
    assert {LOADING, OUTBOUND, TIPPING, RETURNING} <= set(phase.tolist())


def test_trucks_accelerate_and_wait_at_junctions(city):
    _, tick = run(city, 30, seed=5)
    order = np.lexsort((tick.ts, tick.truck))
    truck, speed = tick.truck[order], tick.speed[order]
    phase = tick.phase[order]
    moving = (phase == OUTBOUND) | (phase == RETURNING) | (phase == TRANSFER)
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


def test_noise_classes_are_single_reports_spaced_and_in_the_events(city):
    noise = Noise(lift_bounce_per_h=40, lid_flicker_per_h=40, load_spike_per_h=40,
                  kg_spike_per_h=40, speed_spike_per_h=40, bad_gnss_per_h=10,
                  gate_jitter_share=0.5, red_light_truth_share=0.2)
    fleet = Fleet(city, trucks=30, start_ms=START, seed=6, interval_s=5, noise=noise,
                  weighing_share=0.3, no_lift_share=0.3, jump_rate=0.002)
    tick = FleetTick.concat([fleet.advance(5.0) for _ in range(12 * 40)])
    kinds = {e["kind"] for e in fleet.events}
    assert {"lift_bounce", "lid_flicker", "load_spike", "kg_spike", "speed_spike", "bad_gnss",
            "gate_jitter", "red_light", "gnss_jump"} <= kinds
    assert all(e["negative"] and e["rule"] and e["device"] for e in fleet.events)
    order = np.lexsort((tick.ts, tick.truck))
    truck, lift, seq = tick.truck[order], tick.lift[order], tick.seq[order]
    phase = tick.phase[order]
    bounce = (lift == 1) & (phase != TIPPING)
    for i in np.unique(truck[bounce]).tolist():
        at = seq[bounce & (truck == i)]
        assert (np.diff(at) >= 5).all(), "never two bounces closer than 5 reports"
    # a bounce is one report: the reports either side have the lift down
    rows = np.flatnonzero(bounce)
    rows = rows[(rows > 0) & (rows < len(order) - 1)]
    same = (truck[rows - 1] == truck[rows]) & (truck[rows + 1] == truck[rows])
    assert (lift[rows - 1][same] != 1).all() and (lift[rows + 1][same] != 1).all()
    bad = (tick.sats < 4) | (tick.hdop > 5)
    assert bad.any()
    assert (tick.lift == -1).any() and (~np.isnan(tick.load_kg)).any()
    fixes = dict(tick.wire_fixes())
    assert any("load_kg" in f and "load" not in f for f in fixes.values())
    assert any("lift" not in f for f in fixes.values())
