"""Late data and debounce runs that cross the gap it fills: delivered as the terminal sends
it (live fixes first, the blind area's batch after), a violation has the same start and end
as in device order — a late violation closes at the live fixes that end it, and a run
pending before the gap is not bridged over it by the live fixes."""

from __future__ import annotations

import dataclasses
import json

import pytest

from muckwatch.replay import replay
from simulator.scenarios import TruckTrack

T = 1_795_053_600_000  # 2026-11-19 10:00 Asia/Shanghai
PLATE = "粤B0352X"  # P0001


def folded(city, batches) -> list[tuple]:
    found, _ = replay(city, batches)
    return sorted((v["rule"], v["start_ts"], v["end_ts"]) for v in found)


def single(dev, fix) -> tuple[str, bytes]:
    return (f"muck/v1/{dev}/telemetry", json.dumps(fix).encode())


def backlog(dev, fixes) -> tuple[str, bytes]:
    return (f"muck/v1/{dev}/telemetry/batch", json.dumps(fixes).encode())


def in_order(messages) -> list[list]:
    """Every fix as one batch in device order (the reference)."""
    fixes = []
    for _, payload in messages:
        data = json.loads(payload)
        fixes += data if isinstance(data, list) else [data]
    dev = fixes[0]["dev"]
    return [[single(dev, f) for f in sorted(fixes, key=lambda f: f["ts"])]]


@pytest.mark.parametrize("fast, slow", [(1, 2), (2, 3), (1, 4)])
def test_a_late_violation_closes_at_the_live_fixes_that_end_it(city, fast, slow):
    """Speeding in a blind area; the live fixes after it (``fast`` still speeding, then
    ``slow``) arrive first — the live stream has begun and given up a run of its own."""
    dev = next(v.device_id for v in city.vehicles if v.plate == PLATE)
    t = TruckTrack(city, dev, T, interval_s=10)
    route = t.route("P0001")
    loaded = {"lid": 0, "lift": 0, "load": 2}
    t.drive(t.part(route, 0.10, 0.20), 35, **loaded)
    t.drive(t.part(route, 0.20, 0.45), 75, **loaded)
    t.drive(t.part(route, 0.45, 0.50), 40, **loaded)
    f = t.fixes
    first_slow = next(k for k, x in enumerate(f) if k > 5 and x["spd"] == 40)
    held, live = f[:first_slow - fast], f[first_slow - fast:first_slow + slow]
    sent = [[single(dev, x)] for x in live] + [[backlog(dev, held)]]
    expected = folded(city, in_order([m for b in sent for m in b]))
    assert [r for r, _, _ in expected] == ["OVERSPEED"] and expected[0][2] is not None
    assert folded(city, sent) == expected
    assert folded(city, [[m for b in sent for m in b]]) == expected


def test_a_run_pending_before_the_gap_is_not_bridged_over_it(city):
    """One overloaded fix, 47 minutes of blind area (loading under the rated load, then
    overloaded driving), two live overloaded fixes before the backlog arrives."""
    city = dataclasses.replace(
        city, vehicles=[dataclasses.replace(v, rated_load_kg=20_000.0) if v.plate == PLATE
                        else v for v in city.vehicles],
        permits=[p for p in city.permits if p.plate == PLATE])
    dev = next(v.device_id for v in city.vehicles if v.plate == PLATE)
    p = next(p for p in city.permits if p.id == "P0001")
    t = TruckTrack(city, dev, T, interval_s=10)
    route = t.route("P0001")
    t.go_to(*route.interpolate(0.8, normalized=True).coords[0])
    t.emit(15, 0, None, None, lid=0, lift=0, load_kg=25_000)
    t.silence(47 * 60)
    t.go_to(*t.centre(p.origin))
    t.dwell(60, lid=1, lift=0, load_kg=11_000)
    t.dwell(30, lid=0, lift=0, load_kg=25_000)
    t.drive(t.part(route, 0.0, 0.3), 35, lid=0, lift=0, load_kg=25_000)
    f = t.fixes
    live = len(f) - 2
    sent = [[single(dev, f[0])], [single(dev, f[live])], [single(dev, f[live + 1])],
            [backlog(dev, f[1:live])]]
    expected = folded(city, in_order([m for b in sent for m in b]))
    overload = [v for v in expected if v[0] == "OVERLOAD"]
    assert len(overload) == 1 and overload[0][1] > f[0]["ts"], expected
    assert folded(city, sent) == expected
