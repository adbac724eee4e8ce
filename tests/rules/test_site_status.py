"""A closed or full site, or one past its licence, is no allowed destination (issue #22),
judged by device time: tipping in a permit's destination the minute before it closes is
allowed, the minute after it is UNAUTHORISED_DUMP — in live and in late data alike; a truck
with no permit may tip in an open disposal site as before, not in a closed one; an open site
is untouched."""

from __future__ import annotations

import dataclasses
import json
from datetime import date, datetime, timedelta, timezone

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.city import FAR_MS, NEVER_MS, licence_end_ms
from muckwatch.live_reference import merge
from muckwatch.replay import replay
from rules.reference import Reference
from simulator.scenarios import TruckTrack
from store.registry import SiteState

# 2026-11-19 10:00 Asia/Shanghai
START = 1_795_053_600_000
INTERVAL = 5.0
PLATE = "粤B0352X"  # holds P0001: CS0020 → DS01, all day
PERMIT = "P0001"
DEST = "DS01"
CST = timezone(timedelta(hours=8))


def small(city):
    """The city with PLATE's permits only (a faster reference, the same judgement)."""
    return dataclasses.replace(city, permits=[p for p in city.permits if p.plate == PLATE])


def with_site(city, site_id=DEST, **changes):
    return dataclasses.replace(city, fences=[dataclasses.replace(f, **changes)
                                             if f.id == site_id else f for f in city.fences])


def closed_from(city, t_ms: int, status="closed", site_id=DEST):
    return with_site(city, site_id, status=status, closures=((t_ms, FAR_MS, status),))


def device(city, plate=PLATE):
    return next(v.device_id for v in city.vehicles if v.plate == plate)


def run(city, lines, batch=50):
    pairs = [(f"muck/v1/{json.loads(x)['dev']}/telemetry", x.encode()) for x in lines]
    violations, _ = replay(city, [pairs[i:i + batch] for i in range(0, len(pairs), batch)])
    return violations


def haul(city) -> TruckTrack:
    """Loads at P0001's origin, drives its route, tips in DS01, drives back empty."""
    p = next(p for p in city.permits if p.id == PERMIT)
    t = TruckTrack(city, device(city), START, interval_s=INTERVAL)
    route = t.route(PERMIT)
    t.go_to(*t.centre(p.origin))
    t.dwell(60, lid=1, lift=0, load=1)
    t.dwell(30, lid=0, lift=0, load=2)
    t.drive(route, 35, lid=0, lift=0, load=2)
    t.go_to(*t.centre(DEST))
    t.dwell(20, lid=0, lift=0, load=2)
    t.dwell(90, lid=1, lift=1, load=2)
    t.dwell(20, lid=0, lift=0, load=0)
    t.drive(t.part(route, 1.0, 0.6), 40, lid=0, lift=0, load=0)
    return t


def tip_in_site(city, plate=PLATE, site_id=DEST) -> TruckTrack:
    """Stands in the site: waits loaded, tips for 90 s, waits empty."""
    t = TruckTrack(city, device(city, plate), START, interval_s=INTERVAL)
    t.go_to(*t.centre(site_id))
    t.dwell(20, lid=0, lift=0, load=2)
    t.dwell(90, lid=1, lift=1, load=2)
    t.dwell(30, lid=0, lift=0, load=0)
    return t


def tipping(t: TruckTrack) -> tuple[int, int]:
    """Device times of the first and last fix with the tipper raised."""
    raised = [f["ts"] for f in t.fixes if f.get("lift") == 1]
    return raised[0], raised[-1]


def rules_of(violations):
    return sorted(v["rule"] for v in violations)


def test_tipping_the_minute_before_the_closure_is_allowed_the_minute_after_a_dump(city):
    c = small(city)
    t = haul(c)
    first, last = tipping(t)
    assert run(c, t.lines()) == [], "open: a compliant haul"
    assert run(closed_from(c, last + 60_000), t.lines()) == [], "closes a minute after"
    v = run(closed_from(c, first - 60_000), t.lines())
    assert rules_of(v) == ["UNAUTHORISED_DUMP"], v
    assert abs(v[0]["start_ts"] - first) <= INTERVAL * 1000
    assert v[0]["permit"] == PERMIT
    # full is no different from closed
    assert rules_of(run(closed_from(c, first - 60_000, "full"), t.lines())) == \
        ["UNAUTHORISED_DUMP"]


def test_closed_while_the_truck_waits_inside(city):
    """It arrived while the site was open, the site closes before it tips: a dump; it
    closes a minute after the tipping ended: nothing."""
    c = small(city)
    t = haul(c)
    first, last = tipping(t)
    assert rules_of(run(closed_from(c, first - 2_000), t.lines())) == ["UNAUTHORISED_DUMP"]
    assert run(closed_from(c, last + 60_000), t.lines()) == []


def test_late_data_is_judged_by_the_site_as_it_was(city):
    """The stay in the site arrives after the drive back (a blind area), after the site
    closed: judged by device time, the same as live."""
    c = small(city)
    t = haul(c)
    first, last = tipping(t)
    lines = t.lines()
    a = next(i for i, f in enumerate(t.fixes) if f["ts"] >= first) - 6
    b = next(i for i, f in enumerate(t.fixes) if f["ts"] > last) + 6
    delivered = lines[:a] + lines[b:] + lines[a:b]
    before = closed_from(c, last + 60_000)
    assert run(before, lines) == [] and run(before, delivered, batch=40) == []
    after = closed_from(c, first - 60_000)
    live = run(after, lines)
    late = run(after, delivered, batch=40)
    assert rules_of(late) == ["UNAUTHORISED_DUMP"]
    assert [(v["id"], v["start_ts"]) for v in late] == [(v["id"], v["start_ts"]) for v in live]
    assert all(v["late"] for v in late)


def test_another_site_closed_changes_nothing(city):
    c = closed_from(small(city), NEVER_MS, site_id="DS02")
    assert run(c, haul(c).lines()) == []


def test_a_truck_without_a_permit_may_tip_in_an_open_disposal_site_only(city):
    held = {p.plate for p in city.permits}
    plate = next(v.plate for v in city.vehicles if v.plate not in held)
    c = small(city)
    t = tip_in_site(c, plate, "DS02")
    first, last = tipping(t)
    assert run(c, t.lines()) == []
    assert run(closed_from(c, last + 60_000, site_id="DS02"), t.lines()) == []
    v = run(closed_from(c, first - 60_000, site_id="DS02"), t.lines())
    assert rules_of(v) == ["UNAUTHORISED_DUMP"] and v[0]["permit"] is None


def test_a_licence_is_valid_through_its_expiry_day(city):
    """On the morning of 2026-11-19 (local): a licence that expired on the 18th closes the
    site, one that expires on the 19th does not (yet)."""
    c = small(city)
    t = tip_in_site(c)
    day = datetime.fromtimestamp(START / 1000, CST).date()
    assert day == date(2026, 11, 19)
    assert run(with_site(c, licence_expires=day), t.lines()) == []
    assert rules_of(run(with_site(c, licence_expires=day - timedelta(days=1)), t.lines())) == \
        ["UNAUTHORISED_DUMP"]
    assert licence_end_ms(day, "Asia/Shanghai") == \
        int(datetime(2026, 11, 20, tzinfo=CST).timestamp() * 1000)


@settings(max_examples=12, deadline=None)
@given(before=st.booleans(), offset_s=st.integers(0, 6 * 3600))
def test_closed_before_the_tipping_is_a_dump_after_it_is_not(city, before, offset_s):
    """Wherever the closure falls outside the tipping: at or before its first raised fix
    it is a dump starting there, after its last raised fix nothing."""
    c = small(city)
    t = tip_in_site(c)
    first, last = tipping(t)
    closure = first - offset_s * 1000 if before else last + 1 + offset_s * 1000
    v = run(closed_from(c, closure), t.lines())
    if before:
        assert rules_of(v) == ["UNAUTHORISED_DUMP"], (closure, v)
        assert abs(v[0]["start_ts"] - first) <= INTERVAL * 1000
    else:
        assert v == [], (closure, v)


@settings(max_examples=60, deadline=None)
@given(intervals=st.lists(st.tuples(st.integers(0, 3), st.integers(-10_000, 10_000),
                                    st.integers(0, 5_000)), max_size=5),
       probes=st.lists(st.tuples(st.integers(-1, 3), st.integers(-12_000, 16_000)),
                       min_size=1, max_size=40))
def test_sites_closed_exactly_inside_their_intervals(city, intervals, probes):
    """Reference.sites_closed against brute force: [from, to), by site, -1 never closed."""
    sites = [f.id for f in city.fences if f.kind == "disposal_site"][:4]
    by_site: dict[str, list] = {}
    for k, a, d in intervals:
        by_site.setdefault(sites[k], []).append((START + a, START + a + d, "closed"))
    c = city
    for sid, closures in by_site.items():
        c = with_site(c, sid, closures=tuple(closures))
    ref = Reference.from_city(small(c))
    index = [ref.fence_index_of[s] for s in sites]
    fence = np.array([index[k] if k >= 0 else -1 for k, _ in probes], np.int64)
    ts = np.array([START + t for _, t in probes], np.int64)
    expected = [k >= 0 and any(a <= START + t < b for a, b, _ in by_site.get(sites[k], ()))
                for k, t in probes]
    assert ref.sites_closed(fence, ts).tolist() == expected


def test_the_database_state_replaces_the_bundles(city):
    """merge: a site the database holds takes its status, licence and closures from there
    (a bundle 'closed' the database re-opened is open); a site it does not hold keeps the
    bundle's."""
    c = closed_from(closed_from(city, NEVER_MS, site_id="DS01"), NEVER_MS, site_id="DS02")
    t = START + 3_600_000
    states = {"DS01": SiteState("open", 50_000.0, date(2027, 1, 31), ()),
              "DS03": SiteState("full", None, None, ((t, FAR_MS, "full"),))}
    merged, _ = merge(c, [], [], states)
    fences = {f.id: f for f in merged.fences}
    assert [f.id for f in merged.fences] == [f.id for f in city.fences], "order kept"
    assert fences["DS01"].closures == () and fences["DS01"].capacity_m3 == 50_000.0
    assert fences["DS02"].closures == ((NEVER_MS, FAR_MS, "closed"),)
    assert fences["DS03"].status_at(t - 1, "Asia/Shanghai") == "open"
    assert fences["DS03"].status_at(t, "Asia/Shanghai") == "full"
    assert fences["DS01"].status_at(START, "Asia/Shanghai") == "open"
    assert fences["DS01"].status_at(licence_end_ms(date(2027, 1, 31), "Asia/Shanghai"),
                                    "Asia/Shanghai") == "licence_expired"
