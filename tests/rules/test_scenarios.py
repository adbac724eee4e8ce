"""Each rule on hand-built tracks over the sample city: it fires at the right start time (± one
reporting interval) and stays quiet on the near-misses that would punish an innocent company.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from muckwatch.replay import replay
from simulator.scenarios import TruckTrack, example_detour

# 2026-11-18 10:00 Asia/Shanghai: daytime permits valid; RZ02 (07:00-22:00) active
START = 1_795_053_600_000
INTERVAL = 5.0
PERMIT = "P0001"  # 粤B0352X, CS0020 → DS01, corridor 80 m, no hours


def device_of(city, plate):
    return next(v.device_id for v in city.vehicles if v.plate == plate)


def permit(city, pid=PERMIT):
    return next(p for p in city.permits if p.id == pid)


def truck(city, pid=PERMIT, **kw) -> TruckTrack:
    p = permit(city, pid)
    return TruckTrack(city, device_of(city, p.plate), START, interval_s=INTERVAL, **kw)


def run(city, lines, batch=50):
    """Replay lines in delivery order, ``batch`` lines at a time."""
    import json

    topics = [f"muck/v1/{json.loads(line)['dev']}/telemetry" for line in lines]
    pairs = list(zip(topics, (line.encode() for line in lines), strict=True))
    violations, _ = replay(city, [pairs[i:i + batch] for i in range(0, len(pairs), batch)])
    return violations


def rules_of(violations):
    return sorted(v["rule"] for v in violations)


def loaded_trip(t: TruckTrack, route, a=0.0, b=1.0, speed=35.0, **sensors):
    sensors = {"lid": 0, "lift": 0, "load": 2, **sensors}
    t.drive(t.part(route, a, b), speed, **sensors)


def at_origin(t: TruckTrack, city, pid=PERMIT):
    x, y = t.centre(permit(city, pid).origin)
    t.go_to(x, y)
    t.dwell(60, lid=1, lift=0, load=1)  # loading: lid open inside the site is fine
    t.dwell(30, lid=0, lift=0, load=2)


def at_destination(t: TruckTrack, city, pid=PERMIT):
    x, y = t.centre(permit(city, pid).destinations[0])
    t.go_to(x, y)
    t.dwell(20, lid=0, lift=0, load=2)
    t.dwell(90, lid=1, lift=1, load=2)  # tipping inside the permitted disposal site
    t.dwell(20, lid=0, lift=0, load=0)


def compliant_haul(city, **kw) -> TruckTrack:
    t = truck(city, **kw)
    route = t.route(PERMIT)
    at_origin(t, city)
    loaded_trip(t, route)
    at_destination(t, city)
    t.drive(t.part(route, 1.0, 0.0), 40, lid=0, lift=0, load=0)
    return t


def test_a_compliant_haul_is_clean(city):
    """Includes the near-misses: lid open while loading in the site, tipping in the permitted
    disposal site, and a loaded truck waiting 90 s at a red light."""
    t = truck(city)
    route = t.route(PERMIT)
    at_origin(t, city)
    loaded_trip(t, route, 0.0, 0.5)
    t.dwell(90, lid=0, lift=0, load=2)  # red light
    loaded_trip(t, route, 0.5, 1.0)
    at_destination(t, city)
    assert run(city, t.lines()) == []


def test_gps_noise_along_the_corridor_edge_is_not_off_route(city):
    t = truck(city, noise_m=10.0, seed=3)
    route = t.route(PERMIT)
    at_origin(t, city)
    edge = t.offset(t.part(route, 0.05, 0.95), permit(city).corridor_m - 30)  # 3σ inside
    t.drive(edge, 30, lid=0, lift=0, load=2)
    assert "OFF_ROUTE" not in rules_of(run(city, t.lines()))


def test_a_single_multipath_jump_opens_nothing(city):
    t = truck(city)
    route = t.route(PERMIT)
    at_origin(t, city)
    loaded_trip(t, route, 0.0, 0.4)
    t.jump(300, 35, lid=0, lift=0, load=2)
    loaded_trip(t, route, 0.42, 1.0)
    assert run(city, t.lines()) == []


def detour_track(city):
    return example_detour(city, START)


def test_off_route(city):
    t = detour_track(city)
    v = run(city, t.lines())
    assert rules_of(v) == ["OFF_ROUTE"]
    off = v[0]
    first_off = next(f["ts"] for f in t.fixes if _distance(city, t, f) > permit(city).corridor_m)
    assert abs(off["start_ts"] - first_off) <= INTERVAL * 1000
    assert off["end_ts"] is not None and off["peak"] > 350
    assert off["plate"] == permit(city).plate and off["permit"] == PERMIT and not off["late"]


def _distance(city, t, fix):
    import shapely

    route = t.route(PERMIT)
    x, y = t.projector.to_metric([fix["lon"]], [fix["lat"]])
    return route.distance(shapely.Point(x[0], y[0]))


def test_unauthorised_dump_on_the_roadside(city):
    t = truck(city)
    route = t.route(PERMIT)
    at_origin(t, city)
    loaded_trip(t, route, 0.0, 0.5)
    t.dwell(15, lid=0, lift=0, load=2)
    raised = t.t
    t.dwell(100, lid=1, lift=1, load=2)
    t.dwell(10, lid=0, lift=0, load=0)
    t.drive(t.part(route, 0.5, 0.0), 40, lid=0, lift=0, load=0)
    v = run(city, t.lines())
    assert rules_of(v) == ["UNAUTHORISED_DUMP"]
    assert abs(v[0]["start_ts"] - raised) <= INTERVAL * 1000
    assert v[0]["severity"] == 3


def test_dump_seen_by_the_load_sensor_alone(city):
    t = truck(city)
    route = t.route(PERMIT)
    at_origin(t, city)
    t.drive(t.part(route, 0.0, 0.5), 35, lid=0, load=2)  # this terminal has no lift sensor
    t.dwell(60, lid=0, load=2)
    dropped = t.t
    t.dwell(30, lid=0, load=0)
    assert rules_of(v := run(city, t.lines())) == ["UNAUTHORISED_DUMP"]
    assert v[0]["start_ts"] == dropped


def test_uncovered_load_but_not_a_lid_flicker(city):
    t = truck(city)
    route = t.route(PERMIT)
    at_origin(t, city)
    loaded_trip(t, route, 0.0, 0.2)
    t.emit(35, lid=1, lift=0, load=2)  # single-sample flicker: a sensor glitch
    loaded_trip(t, route, 0.21, 0.4)
    opened = t.t
    loaded_trip(t, route, 0.4, 0.7, lid=1)  # ~2 minutes with the lid open
    loaded_trip(t, route, 0.7, 1.0)
    at_destination(t, city)
    v = run(city, t.lines())
    assert rules_of(v) == ["UNCOVERED_LOAD"]
    assert abs(v[0]["start_ts"] - opened) <= INTERVAL * 1000


def test_restricted_zone_in_its_window_only(city):
    zone = "RZ02"  # 07:00-22:00
    t = truck(city)
    x, y = t.centre(zone)
    t.go_to(x, y)
    t.dwell(60, lid=0, lift=0, load=0)
    v = run(city, t.lines())
    assert rules_of(v) == ["RESTRICTED_ZONE"] and v[0]["fence"] == zone
    assert v[0]["start_ts"] == START
    night = TruckTrack(city, t.device, START - 8 * 3_600_000, interval_s=INTERVAL)  # 02:00
    night.go_to(x, y)
    night.dwell(60, lid=0, lift=0, load=0)
    assert run(city, night.lines()) == []


def test_no_permit(city):
    plates = {p.plate for p in city.permits}
    rogue = next(v for v in city.vehicles if v.plate not in plates)
    t = TruckTrack(city, rogue.device_id, START, interval_s=INTERVAL)
    route = t.route(PERMIT)  # somebody else's route
    t.drive(t.part(route, 0.1, 0.9), 35, lid=0, lift=0, load=2)
    v = run(city, t.lines())
    assert rules_of(v) == ["NO_PERMIT"]
    assert v[0]["start_ts"] == START and v[0]["plate"] == rogue.plate


def test_overspeed_but_not_one_fast_fix(city):
    t = truck(city)
    route = t.route(PERMIT)
    at_origin(t, city)
    loaded_trip(t, route, 0.0, 0.2)
    t.emit(85, lid=0, lift=0, load=2)
    loaded_trip(t, route, 0.2, 0.4)
    fast = t.t
    loaded_trip(t, route, 0.4, 0.8, speed=80)
    loaded_trip(t, route, 0.8, 1.0)
    v = run(city, t.lines())
    assert rules_of(v) == ["OVERSPEED"]
    # the peak is km/h over the limit in force (60 km/h here)
    assert abs(v[0]["start_ts"] - fast) <= INTERVAL * 1000 and v[0]["peak"] == 20


def test_signal_loss(city):
    t = truck(city)
    route = t.route(PERMIT)
    at_origin(t, city)
    loaded_trip(t, route, 0.0, 0.3)
    last = t.fixes[-1]["ts"]
    t.silence(480)
    loaded_trip(t, route, 0.5, 1.0)
    v = run(city, t.lines())
    assert rules_of(v) == ["SIGNAL_LOSS"]
    assert v[0]["start_ts"] == last and v[0]["end_ts"] - last >= 480_000


def test_backfill_gives_the_same_violations_late(city):
    """The detour happens in a blind area: its fixes arrive after the live ones, as one
    backfill. Same violation (same id), flagged late; no SIGNAL_LOSS survives."""
    t = detour_track(city)
    lines = t.lines()
    in_order = run(city, lines)
    half = permit(city).corridor_m
    a = next(i for i, f in enumerate(t.fixes) if _distance(city, t, f) > half) - 5
    back = next(i for i in range(a + 10, len(t.fixes)) if _distance(city, t, t.fixes[i]) < 20)
    b = back + 8  # the whole detour happens in the blind area
    delivered = lines[:a] + lines[b:] + lines[a:b]
    late = run(city, delivered, batch=40)
    assert [(v["id"], v["rule"], v["start_ts"], v["end_ts"]) for v in late] == \
        [(v["id"], v["rule"], v["start_ts"], v["end_ts"]) for v in in_order]
    assert all(v["late"] for v in late)


@pytest.mark.parametrize("batch", [1, 3, 7, 40])
def test_an_offence_that_began_in_a_blind_area_before_the_first_live_fix(city, batch):
    """A terminal's first live fixes continue an offence that began in a blind area whose
    backlog arrives a minute later: one violation, from its real start, whether the live
    run had been debounced by then or was still pending."""
    t = truck(city)
    route = t.route(PERMIT)
    loaded_trip(t, route, 0.1, 0.6, lid=1)
    lines = t.lines()
    cut = 40  # the first 40 fixes (~3.3 min, lid open) are held by the terminal
    delivered = lines[cut:cut + 12] + lines[:cut] + lines[cut + 12:]
    in_order = run(city, lines)
    late = run(city, delivered, batch=batch)
    assert rules_of(in_order) == ["UNCOVERED_LOAD"]
    assert [(v["id"], v["start_ts"], v["end_ts"]) for v in late] == \
        [(v["id"], v["start_ts"], v["end_ts"]) for v in in_order]


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**31))
def test_shuffling_within_the_reorder_window_changes_nothing(city, seed):
    t = detour_track(city)
    lines = t.lines()
    expected = run(city, lines)
    rng = random.Random(seed)
    # swap neighbours closer than the reorder window (10 s = 2 fixes), delivered one by one
    shuffled = lines[:]
    for i in range(0, len(shuffled) - 1, 2):
        if rng.random() < 0.5:
            shuffled[i], shuffled[i + 1] = shuffled[i + 1], shuffled[i]
    assert run(city, shuffled, batch=1) == expected


def test_replay_cli_on_the_shipped_example(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "data" / "examples" / "detour.jsonl"
    out = subprocess.run([sys.executable, "-m", "muckwatch", "replay", str(example)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["rule"] for r in rows] == ["OFF_ROUTE"]
    for key in ("id", "rule", "device", "plate", "start_ts", "end_ts", "late"):
        assert key in rows[0]


pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def test_retractions_carry_the_violations_real_position(city, all_events):
    """An ``area`` (district) subscriber matches alerts by start position: a retraction
    positioned at (0, 0) never reached it. The SIGNAL_LOSS that a backfill retracts starts
    where the truck went silent."""

    from domain.events import Phase, ViolationEvent

    t = truck(city)
    route = t.route(PERMIT)
    at_origin(t, city)
    loaded_trip(t, route, 0.0, 0.3)
    split = len(t.fixes)
    loaded_trip(t, route, 0.3, 0.6)  # held by the terminal: a blind area of several minutes
    held = len(t.fixes)
    loaded_trip(t, route, 0.6, 1.0)
    lines = t.lines()
    events = all_events(city, lines[:split] + lines[held:] + lines[split:held], batch=40)
    retracted = [e for e in events if isinstance(e, ViolationEvent)
                 and e.phase == Phase.RETRACTED]
    assert [e.rule for e in retracted] == ["SIGNAL_LOSS"]
    last_live = t.fixes[split - 1]
    assert (retracted[0].start_lon, retracted[0].start_lat) == \
        pytest.approx((last_live["lon"], last_live["lat"]), abs=1e-6)
