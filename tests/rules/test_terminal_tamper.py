"""TERMINAL_TAMPER on the sample city through ``muckwatch.replay``: the terminal's GNSS-fault,
antenna-cut or power-cut alarm, sustained while not standing still, opens one violation
(power cut: grave); a bounce, a parked truck with its battery off and a terminal that never
reports its alarm word open nothing — for any batch size."""

from __future__ import annotations

import dataclasses

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from muckwatch.replay import replay
from simulator.scenarios import TruckTrack

START = 1_795_053_600_000  # 2026-11-19 10:00 Asia/Shanghai
PLATE, PERMIT = "粤B0352X", "P0001"  # P0001: all day
ANTENNA, POWER, GNSS = 1 << 5, 1 << 8, 1 << 4
LOADED = {"lid": 0, "lift": 0, "load": 2}


def city_of(city):
    return dataclasses.replace(city, permits=[p for p in city.permits if p.plate == PLATE])


def track(city, *steps, report_alarm: bool = True) -> TruckTrack:
    """The truck hauls P0001's route; each step (share of the route, speed, alarm word)
    drives the next stretch; speed 0 stands for a minute instead."""
    device = next(v.device_id for v in city.vehicles if v.plate == PLATE)
    t = TruckTrack(city, device, START, interval_s=5)
    route = t.route(PERMIT)
    origin = next(p.origin for p in city.permits if p.id == PERMIT)
    t.go_to(*t.centre(origin))
    alarm0 = {"alarm": 0} if report_alarm else {}
    t.dwell(60, **LOADED, **alarm0)
    at = 0.0
    for share, speed, alarm in steps:
        sensors = {**LOADED, **({"alarm": alarm} if report_alarm else {})}
        if speed == 0:
            t.dwell(share, **sensors)
        else:
            t.drive(t.part(route, at, at + share), speed, **sensors)
            at += share
    t.dwell(60, **LOADED, **alarm0)
    return t


def tamper(city, t: TruckTrack, batch: int = 50) -> list[dict]:
    """The TERMINAL_TAMPER violations, as ``muckwatch replay`` folds them (final records)."""
    pairs = [(f"muck/v1/{t.device}/telemetry", line.encode()) for line in t.lines()]
    found, _ = replay(city_of(city), [pairs[i:i + batch] for i in range(0, len(pairs), batch)])
    return [v for v in found if v["rule"] == "TERMINAL_TAMPER"]


def test_an_antenna_cut_while_hauling_opens_one_serious_violation(city):
    t = track(city, (0.1, 35, 0), (0.3, 35, ANTENNA), (0.2, 35, 0))
    [v] = tamper(city, t)
    cut = [f["ts"] for f in t.fixes if f.get("alarm") == ANTENNA]
    assert v["end_ts"] is not None and v["start_ts"] == cut[0] and v["severity"] == 2
    assert v["peak"] == ANTENNA and v["permit"] == PERMIT


def test_a_power_cut_is_grave_and_gnss_faults_count_too(city):
    [v] = tamper(city, track(city, (0.1, 35, 0), (0.2, 35, GNSS), (0.2, 35, GNSS | POWER),
                             (0.2, 35, 0)))
    assert v["severity"] == 3 and int(v["peak"]) == GNSS | POWER


def test_bounces_parked_trucks_and_silent_alarm_words_open_nothing(city):
    # one report of a cut power connector on the road; battery off 10 min while parked
    assert tamper(city, track(city, (0.2, 35, 0), (0.01, 35, POWER), (0.2, 35, 0),
                              (600, 0, POWER), (0.2, 35, 0))) == []
    # a terminal that never reports its alarm word is never judged
    assert tamper(city, track(city, (0.3, 35, ANTENNA), report_alarm=False)) == []
    # alarm bits that are not tampering (an overspeed alarm, bit 1)
    assert tamper(city, track(city, (0.3, 35, 1 << 1))) == []


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(batch=st.integers(1, 400))
def test_the_batch_size_changes_nothing(city, batch):
    t = track(city, (0.1, 35, 0), (0.3, 35, ANTENNA), (0.2, 35, 0))
    assert [(v["id"], v["start_ts"], v["end_ts"]) for v in tamper(city, t, batch)] == \
        [(v["id"], v["start_ts"], v["end_ts"]) for v in tamper(city, t)]
