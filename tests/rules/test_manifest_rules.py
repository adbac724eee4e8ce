"""The rules of the manifest (issue #22), each with its near misses: WRONG_DESTINATION,
TRIP_NOT_CLOSED, OVERLOAD and PERMIT_VOLUME_EXCEEDED; and the manifest line a leg becomes
(estimated volume, transfers)."""

from __future__ import annotations

import dataclasses

import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.events import TripEvent, ViolationEvent
from domain.settings import RuleSettings
from simulator.scenarios import TruckTrack

START = 1_795_053_600_000  # 2026-11-19 10:00 Asia/Shanghai
PLATE = "粤B0352X"  # holds P0001: CS0020 → DS01, all day
PERMIT = "P0001"
OTHER_SITE = "DS02"  # an open disposal site P0001 does not name
DOCK = "TD01"


def small(city, **vehicle):
    """The city with PLATE's permits only; ``vehicle`` sets its registry fields."""
    vehicles = [dataclasses.replace(v, **vehicle) if v.plate == PLATE else v
                for v in city.vehicles]
    return dataclasses.replace(city, vehicles=vehicles,
                               permits=[p for p in city.permits if p.plate == PLATE])


def with_permit(city, **changes):
    return dataclasses.replace(city, permits=[dataclasses.replace(p, **changes)
                                              if p.id == PERMIT else p for p in city.permits])


def device(city) -> str:
    return next(v.device_id for v in city.vehicles if v.plate == PLATE)


def violations(events, rule=None) -> list[ViolationEvent]:
    """The closed (or last) state of each violation."""
    last: dict[str, ViolationEvent] = {}
    for e in events:
        if isinstance(e, ViolationEvent):
            last[e.id] = e
    return [v for v in last.values() if rule is None or v.rule == rule]


def rules_of(events) -> list[str]:
    return sorted(v.rule for v in violations(events) if v.phase != "retracted")


def load_and_leave(city, t: TruckTrack, **load) -> shapely.LineString:
    """Loads at P0001's origin and drives the first half of its route (``load``: the load
    sensor's keys for the whole haul, default a full level)."""
    load = load or {"load": 2}
    p = next(p for p in city.permits if p.id == PERMIT)
    route = t.route(PERMIT)
    t.go_to(*t.centre(p.origin))
    t.dwell(60, lid=1, lift=0, **load)
    t.dwell(30, lid=0, lift=0, **load)
    t.drive(t.part(route, 0.0, 0.5), 35, lid=0, lift=0, **load)
    return route


def drive_to(t: TruckTrack, site: str, speed: float = 30, **sensors) -> None:
    """From where it is straight into ``site`` (a line, so no GNSS jump)."""
    t.drive(shapely.LineString([(t.x, t.y), t.centre(site)]), speed, **sensors)


def tip(t: TruckTrack, lift: bool = True, loaded: dict | None = None) -> None:
    loaded = loaded or {"load": 2}
    t.dwell(20, lid=0, lift=0 if lift else None, **loaded)
    if lift:
        t.dwell(90, lid=1, lift=1, **loaded)
    else:
        t.dwell(90, lid=1, **{k: (0 if k == "load" else 500) for k in loaded})
    t.dwell(30, lid=0, lift=0 if lift else None, **{k: (0 if k == "load" else 500)
                                                    for k in loaded})


# --- WRONG_DESTINATION ------------------------------------------------------------------------

def test_tipping_in_an_open_site_the_permit_does_not_name_is_wrong_destination(city,
                                                                              all_events):
    c = small(city)
    t = TruckTrack(c, device(c), START)
    load_and_leave(c, t)
    drive_to(t, OTHER_SITE, lid=0, lift=0, load=2)
    tip(t)
    events = all_events(c, t.lines())
    # the drive there left the corridor too (a true OFF_ROUTE); the tipping is one
    # WRONG_DESTINATION, never also UNAUTHORISED_DUMP
    assert rules_of(events) == ["OFF_ROUTE", "WRONG_DESTINATION"], rules_of(events)
    v = violations(events, "WRONG_DESTINATION")[0]
    assert v.permit_id == PERMIT and v.severity == 2
    raised = [f["ts"] for f in t.fixes if f.get("lift") == 1]
    assert abs(v.start_ts - raised[0]) <= 5_000


def test_near_miss_tipping_in_the_named_site_is_nothing(city, all_events):
    c = small(city)
    t = TruckTrack(c, device(c), START)
    route = load_and_leave(c, t)
    t.drive(t.part(route, 0.5, 1.0), 35, lid=0, lift=0, load=2)
    drive_to(t, "DS01", lid=0, lift=0, load=2)
    tip(t)
    assert rules_of(all_events(c, t.lines())) == []


def test_a_closed_site_the_permit_does_not_name_stays_a_dump(city, all_events):
    from domain.city import FAR_MS, NEVER_MS

    c = small(city)
    c = dataclasses.replace(c, fences=[
        dataclasses.replace(f, status="closed", closures=((NEVER_MS, FAR_MS, "closed"),))
        if f.id == OTHER_SITE else f for f in c.fences])
    t = TruckTrack(c, device(c), START)
    load_and_leave(c, t)
    drive_to(t, OTHER_SITE, lid=0, lift=0, load=2)
    tip(t)
    assert rules_of(all_events(c, t.lines())) == ["OFF_ROUTE", "UNAUTHORISED_DUMP"]


def test_without_a_lift_sensor_the_load_falling_there_is_wrong_destination(city, all_events):
    c = small(city)
    t = TruckTrack(c, device(c), START)
    load_and_leave(c, t, load_kg=18_000)
    drive_to(t, OTHER_SITE, lid=0, load_kg=18_000)
    tip(t, lift=False, loaded={"load_kg": 18_000})
    assert rules_of(all_events(c, t.lines())) == ["OFF_ROUTE", "WRONG_DESTINATION"]


def test_a_lift_bounce_in_another_site_is_nothing(city, all_events):
    c = small(city)
    t = TruckTrack(c, device(c), START)
    load_and_leave(c, t)
    drive_to(t, OTHER_SITE, lid=0, lift=0, load=2)
    t.dwell(30, lid=0, lift=0, load=2)
    t.dwell(5, lid=0, lift=1, load=2)  # one report
    t.dwell(60, lid=0, lift=0, load=2)
    assert rules_of(all_events(c, t.lines())) == ["OFF_ROUTE"]


# --- TRIP_NOT_CLOSED ----------------------------------------------------------------------------

SHORT = RuleSettings(trip_close_s=900.0)


def park_loaded(t: TruckTrack, seconds: float, **load) -> None:
    """Leaves the route and waits beside it, loaded (a roadside, a yard)."""
    load = load or {"load": 2}
    t.dwell(seconds, lid=0, lift=0, **load)


def test_a_loaded_leg_that_arrives_nowhere_in_time_is_trip_not_closed(city, all_events):
    c = small(city)
    t = TruckTrack(c, device(c), START, interval_s=10)
    load_and_leave(c, t)
    left = next(f["ts"] for f in t.fixes if f["spd"] > 0)
    park_loaded(t, 1200)
    events = all_events(c, t.lines(), settings=SHORT)
    found = violations(events, "TRIP_NOT_CLOSED")
    assert [v.rule for v in found] == ["TRIP_NOT_CLOSED"], rules_of(events)
    v = found[0]
    assert v.permit_id == PERMIT
    # opens at the first fixes past the deadline (departure + 900 s), not before
    assert left + 900_000 <= v.start_ts <= left + 900_000 + 120_000, (v.start_ts - left)


def haul_with_wait(c, wait: float) -> TruckTrack:
    t = TruckTrack(c, device(c), START, interval_s=10)
    route = load_and_leave(c, t)
    park_loaded(t, wait)
    t.drive(t.part(route, 0.5, 1.0), 35, lid=0, lift=0, load=2)
    drive_to(t, "DS01", lid=0, lift=0, load=2)
    tip(t)
    return t


def test_near_miss_arriving_just_in_time_is_nothing_and_late_arrival_closes_it(city,
                                                                              all_events):
    c = small(city)
    # how long the haul takes without waiting: departure → arrival
    base = [e for e in all_events(c, haul_with_wait(c, 0).lines(), settings=SHORT)
            if isinstance(e, TripEvent)]
    took_s = (base[-1].arrived_ts - base[0].left_ts) / 1000
    limit = took_s + 600
    short = RuleSettings(trip_close_s=limit)
    for wait, expect in ((540, []), (900, ["TRIP_NOT_CLOSED"])):
        t = haul_with_wait(c, wait)
        events = all_events(c, t.lines(), settings=short)
        assert rules_of(events) == expect, (wait, rules_of(events))
        for v in violations(events, "TRIP_NOT_CLOSED"):
            arrived = next(e for e in events if isinstance(e, TripEvent) and e.arrived_ts)
            assert v.end_ts is not None and v.end_ts >= arrived.arrived_ts
            assert v.end_ts - arrived.arrived_ts <= 60_000


def test_a_truck_without_a_load_sensor_is_never_accused_of_a_lost_load(city, all_events):
    c = small(city)
    t = TruckTrack(c, device(c), START, interval_s=10)
    p = next(p for p in c.permits if p.id == PERMIT)
    t.go_to(*t.centre(p.origin))
    t.dwell(90, lid=0, lift=0)
    t.drive(t.part(t.route(PERMIT), 0.0, 0.5), 35, lid=0, lift=0)
    t.dwell(1500, lid=0, lift=0)
    assert "TRIP_NOT_CLOSED" not in rules_of(all_events(c, t.lines(), settings=SHORT))


# --- OVERLOAD -------------------------------------------------------------------------------------

RATED = 20_000.0


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(over=st.floats(0.0, 0.8))
def test_overload_opens_only_above_the_tolerance(city, all_events, over):
    c = small(city, rated_load_kg=RATED)
    kg = round(RATED * (1 + over))
    t = TruckTrack(c, device(c), START)
    load_and_leave(c, t, load_kg=kg)
    events = all_events(c, t.lines())
    found = violations(events, "OVERLOAD")
    if over * 100 <= 10.0 - 0.01:  # at or under the tolerance (and rounding): near miss
        assert found == [], over
    elif over * 100 > 10.0 + 0.01:
        assert len(found) == 1, over
        v = found[0]
        assert abs(v.peak - (kg / RATED - 1) * 100) < 0.01
        assert v.severity == (3 if over > 0.5 else 2 if over > 0.2 else 1)


def test_standing_overloaded_or_one_heavy_reading_is_nothing(city, all_events):
    c = small(city, rated_load_kg=RATED)
    t = TruckTrack(c, device(c), START)
    p = next(p for p in c.permits if p.id == PERMIT)
    t.go_to(*t.centre(p.origin))
    t.dwell(300, lid=0, lift=0, load_kg=30_000)  # on the site's weighbridge
    route = t.route(PERMIT)
    t.drive(t.part(route, 0.0, 0.2), 35, lid=0, lift=0, load_kg=20_500)
    t.emit(35, 0, None, None, lid=0, lift=0, load_kg=31_000)  # one spike on the road
    t.drive(t.part(route, 0.2, 0.4), 35, lid=0, lift=0, load_kg=20_500)
    assert "OVERLOAD" not in rules_of(all_events(c, t.lines()))


def test_no_rated_load_no_overload(city, all_events):
    c = small(city)  # the registry has no rated load for it
    t = TruckTrack(c, device(c), START)
    load_and_leave(c, t, load_kg=60_000)
    assert "OVERLOAD" not in rules_of(all_events(c, t.lines()))


# --- PERMIT_VOLUME_EXCEEDED and the manifest line -------------------------------------------------

def hauls(c, n: int, **load) -> TruckTrack:
    """``n`` complete hauls on P0001: load, drive, tip in DS01, drive back."""
    load = load or {"load": 2}
    t = TruckTrack(c, device(c), START)
    p = next(p for p in c.permits if p.id == PERMIT)
    route = t.route(PERMIT)
    for _ in range(n):
        t.go_to(*t.centre(p.origin))
        t.dwell(60, lid=1, lift=0, **load)
        t.dwell(30, lid=0, lift=0, **load)
        t.drive(route, 50, lid=0, lift=0, **load)
        drive_to(t, "DS01", lid=0, lift=0, **load)
        tip(t, loaded=dict(load))
        t.drive(shapely.LineString([(t.x, t.y), route.coords[-1]]), 30, lid=0, lift=0,
                **{k: (0 if k == "load" else 500) for k in load})
        t.drive(t.part(route, 1.0, 0.0), 50, lid=0, lift=0,
                **{k: (0 if k == "load" else 500) for k in load})
    return t


def test_the_load_that_takes_the_job_over_its_declared_volume_and_each_after(city,
                                                                            all_events):
    c = with_permit(small(city, volume_m3=10.0), declared_volume_m3=25.0)
    t = hauls(c, 3)
    events = all_events(c, t.lines())
    trips = [e for e in events if isinstance(e, TripEvent) and e.arrived_ts is None]
    assert [e.volume_m3 for e in trips] == [10.0, 10.0, 10.0]
    assert {e.volume_source for e in trips} == {"rated"}
    found = sorted(violations(events, "PERMIT_VOLUME_EXCEEDED"), key=lambda v: v.start_ts)
    assert [(v.start_ts, v.peak) for v in found] == [(trips[2].left_ts, 5.0)]
    assert found[0].permit_id == PERMIT and found[0].end_ts == found[0].start_ts
    assert rules_of(events) == ["PERMIT_VOLUME_EXCEEDED"]


def test_near_miss_exactly_the_declared_volume_is_nothing(city, all_events):
    c = with_permit(small(city, volume_m3=10.0), declared_volume_m3=30.0)
    assert rules_of(all_events(c, hauls(c, 3).lines())) == []


def test_a_weighed_load_gives_the_volume_and_the_job_is_shared(city, all_events):
    """Two permits of one job: the second permit's loads count against the first's."""
    c = small(city)
    c = with_permit(c, declared_volume_m3=15.0, job="A7")
    t = hauls(c, 2, load_kg=18_000)
    events = all_events(c, t.lines())
    trips = [e for e in events if isinstance(e, TripEvent) and e.arrived_ts is None]
    assert [(e.volume_m3, e.volume_source, e.load_kg) for e in trips] == \
        [(10.0, "load_sensor", 18_000.0)] * 2
    assert [v.peak for v in violations(events, "PERMIT_VOLUME_EXCEEDED")] == [5.0]


def test_unknown_volume_counts_for_nothing(city, all_events):
    c = with_permit(small(city), declared_volume_m3=1.0)  # no rated volume, level sensor
    events = all_events(c, hauls(c, 2).lines())
    trips = [e for e in events if isinstance(e, TripEvent) and e.arrived_ts is None]
    assert [e.volume_m3 for e in trips] == [None, None]
    assert rules_of(events) == []


def test_a_leg_through_a_dock_lists_the_transfer(city, all_events):
    c = small(city)
    t = TruckTrack(c, device(c), START)
    load_and_leave(c, t)
    drive_to(t, DOCK, lid=0, lift=0, load=2)
    t.dwell(60, lid=0, lift=0, load=2)
    drive_to(t, "DS01", lid=0, lift=0, load=2)
    tip(t)
    events = all_events(c, t.lines())
    arrived = [e for e in events if isinstance(e, TripEvent) and e.arrived_ts]
    assert len(arrived) == 1 and arrived[0].destination == "DS01"
    (dock, entered, left), = arrived[0].transfers
    assert dock == DOCK and entered < left < arrived[0].arrived_ts


def test_a_terminal_silent_on_a_loaded_leg_is_caught_by_the_sweep(city):
    """The load leaves, the terminal goes dark off the road: live, the sweep opens
    TRIP_NOT_CLOSED at the deadline once the silence is long; the next fix (still nowhere)
    continues it under the same id, and the arrival closes it."""
    import json

    import numpy as np

    from ingest.wire import RawBatch, WireDecoder
    from muckwatch.stages import GeofenceStage, Sequencer
    from rules.engine import RuleEngine
    from rules.reference import Reference

    c = small(city)
    t = TruckTrack(c, device(c), START, interval_s=10)
    route = load_and_leave(c, t)
    left = next(f["ts"] for f in t.fixes if f["spd"] > 0)
    t.dwell(60, lid=0, lift=0, load=2)  # stops beside the road, then silence
    before = len(t.fixes)
    t.silence(1500)
    t.dwell(20, lid=0, lift=0, load=2)
    t.drive(t.part(route, 0.5, 1.0), 35, lid=0, lift=0, load=2)
    drive_to(t, "DS01", lid=0, lift=0, load=2)
    tip(t)
    # the deadline falls 2 minutes into the silence
    limit_ms = t.fixes[before - 1]["ts"] - left + 120_000
    engine = RuleEngine(Reference.from_city(c), RuleSettings(trip_close_s=limit_ms / 1000))
    geofence, sequencer, decoder = GeofenceStage.for_city(c), Sequencer(), WireDecoder()
    events: list = []

    def deliver(fixes):
        for f in fixes:
            now = f["ts"]
            raw = RawBatch([f"muck/v1/{f['dev']}/telemetry"], [json.dumps(f).encode()],
                           np.array([now], np.int64))
            got = sequencer.sequence(decoder.decode(raw, now_ms=now).fixes)
            events.extend(engine.evaluate(got, geofence.classify(got), now_ms=now))
            events.extend(engine.sweep(now))

    deliver(t.fixes[:before])
    last = t.fixes[before - 1]["ts"]
    assert not violations(engine.sweep(last + 200_000), "TRIP_NOT_CLOSED"), "not silent long"
    # 360 s of silence and past the deadline by the truck's clock
    departed = next(e for e in events if isinstance(e, TripEvent)).left_ts
    assert abs(departed - left) <= 20_000
    opened = violations(engine.sweep(last + 360_000), "TRIP_NOT_CLOSED")
    assert len(opened) == 1 and opened[0].start_ts == departed + limit_ms
    assert opened[0].permit_id == PERMIT
    events.extend(opened)
    deliver(t.fixes[before:])
    events.extend(engine.flush())
    found = violations(events, "TRIP_NOT_CLOSED")
    assert len(found) == 1 and found[0].id == opened[0].id and found[0].end_ts is not None


def test_every_rule_is_named_once_for_the_store_alerts_and_reports():
    """domain.events.RULES is the list the store, alerts and reports read; the chain
    implements exactly those, and the report draws each in its own colour."""
    from domain.events import RULES
    from muckwatch.report import RULE_COLOURS
    from rules.chain import RULE_NAMES

    assert set(RULE_NAMES) == set(RULES) and len(RULES) == len(set(RULES))
    assert set(RULE_COLOURS) == set(RULES)
    assert len(set(RULE_COLOURS.values())) == len(RULES)
