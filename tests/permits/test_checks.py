"""The approval checks of a permit application (permits/checks.py), on a small synthetic city
drawn in metres (CGCS2000 / Gauss-Krüger 114°E around Shenzhen): each check failing alone,
near-misses on both sides of a site's edge and of a zone's window, GCJ-02 / BD-09 input equal
to WGS-84, and properties over random routes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.city import Fence, load_city
from domain.coords import convert
from domain.geojson import read_geometry
from domain.settings import PermitSettings
from geofence.projection import Projector
from permits import windows as W
from permits.checks import Application, CityView, check, checker

P = Projector(4547)
X0, Y0 = (float(v[0]) for v in P.to_metric([114.05], [22.60]))
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
LIMITS = PermitSettings()


def ll(x: float, y: float) -> tuple[float, float]:
    """Metres east / north of the city's reference point → WGS-84 lon, lat."""
    lon, lat = P.to_lonlat([X0 + x], [Y0 + y])
    return float(lon[0]), float(lat[0])


def square(cx: float, cy: float, half: float) -> shapely.Polygon:
    corners = [(cx - half, cy - half), (cx + half, cy - half), (cx + half, cy + half),
               (cx - half, cy + half)]
    ring = []
    for (ax, ay), (bx, by) in zip(corners, corners[1:] + corners[:1], strict=True):
        ring += [ll(ax + (bx - ax) * t, ay + (by - ay) * t) for t in np.linspace(0, 1, 20)[:-1]]
    return shapely.Polygon(ring)


FENCES = [
    Fence("CS1", "construction_site", square(0, 0, 100), "工地1号"),
    Fence("DS1", "disposal_site", square(5000, 0, 150), "消纳场1号"),
    Fence("TD1", "transfer_dock", square(5000, 3000, 150), "中转码头1号"),
    Fence("RZ_DAY", "restricted_zone", square(2500, 0, 200), "日间禁行区", ("07:00-22:00",)),
    Fence("RZ_ALL", "restricted_zone", square(2500, 2000, 100), "全天禁区"),
]
VEHICLES = {"粤B00001": "C01", "粤B00002": "C01", "粤B00003": "C02"}
CITY = CityView.of(FENCES, VEHICLES, "Asia/Shanghai", 4547)
NO_DAY_ZONE = CityView.of([f for f in FENCES if f.id != "RZ_DAY"], VEHICLES, "Asia/Shanghai",
                          4547)


def route(*points_m: tuple[float, float]) -> shapely.LineString:
    return shapely.LineString([ll(x, y) for x, y in points_m])


STRAIGHT = route((0, 0), (2500, 0), (5000, 0))  # through RZ_DAY: x 2300 → 2700
AROUND = route((0, 0), (2500, -400), (5000, 0))  # south of RZ_DAY


def application(**changes) -> Application:
    fields = dict(company_id="C01", origin="CS1", destinations=("DS1",), plates=("粤B00001",),
                  route=STRAIGHT, corridor_m=80.0, valid_from=NOW + timedelta(hours=1),
                  valid_to=NOW + timedelta(days=90), hours="22:00-06:00")
    fields.update(changes)
    return Application(**fields)  # type: ignore[arg-type]


def run(app: Application | None = None, city: CityView = CITY, **changes):
    return check(app or application(**changes), city, LIMITS, NOW)


def codes(report) -> list[str]:
    return report.codes()


def test_a_good_night_application_passes_with_a_warning_for_the_day_zone():
    report = run()
    assert report.ok and codes(report) == [], report.text()
    assert [p.code for p in report.warnings] == ["restricted_zone_outside_window"]
    (c,) = report.crossings
    assert c.zone_id == "RZ_DAY" and c.overlap == () and abs(c.length_m - 400) < 0.5
    assert report.route_length_m == pytest.approx(5000, abs=0.5)
    assert report.metric_epsg == 4547
    as_json = report.as_dict()
    assert as_json["ok"] and as_json["crossings"][0]["blocking"] is False


def test_a_crossing_in_the_zones_window_fails_and_names_the_zone():
    report = run(hours="05:00-08:00")
    assert codes(report) == ["restricted_zone_crossing"]
    (problem,) = report.errors
    where = problem.where
    assert where["zone_id"] == "RZ_DAY" and where["zone_name"] == "日间禁行区"
    assert where["overlap"] == ["07:00-08:00"] and where["windows"] == ["07:00-22:00"]
    assert where["length_m"] == pytest.approx(400, abs=0.5)
    assert np.allclose(where["entry"], ll(2300, 0), atol=1e-7)
    assert np.allclose(where["exit"], ll(2700, 0), atol=1e-7)
    assert "日间禁行区 (RZ_DAY)" in problem.message and "07:00-08:00" in problem.message
    # any hour: the whole window overlaps
    assert run(hours=None).errors[0].where["overlap"] == ["07:00-22:00"]


def test_a_zone_without_windows_is_restricted_all_day_and_each_stretch_is_reported():
    # in and out of RZ_ALL twice: two crossings of 200 m, in route order
    r = route((0, 0), (2300, 2000), (2700, 2000), (2700, 2050), (2300, 2050), (2300, 3000),
              (5000, 3000))
    report = run(route=r, destinations=("TD1",))
    assert codes(report) == ["restricted_zone_crossing", "restricted_zone_crossing"]
    lengths = [c.length_m for c in report.crossings]
    assert lengths == pytest.approx([200, 200], abs=0.5)
    assert np.allclose(report.crossings[0].entry, ll(2400, 2000), atol=1e-7)
    assert np.allclose(report.crossings[1].entry, ll(2600, 2050), atol=1e-7)
    assert report.crossings[0].overlap == ("22:00-06:00",)


def test_a_one_night_permit_meets_a_zone_only_if_that_night_does():
    # hours all day, but valid only 23:00-05:00 local (15:00-21:00 UTC): RZ_DAY is closed
    # 07:00-22:00, so the crossing is outside its window
    start = datetime(2026, 12, 10, 15, 0, tzinfo=UTC)
    report = run(hours=None, valid_from=start, valid_to=start + timedelta(hours=6))
    assert report.ok, report.text()
    report = run(hours=None, valid_from=start, valid_to=start + timedelta(hours=17))
    assert codes(report) == ["restricted_zone_crossing"]


@pytest.mark.parametrize(("end_x", "passes"), [(5120, True), (5180, False)])
def test_the_route_must_end_inside_a_destination(end_x, passes):
    """30 m inside the disposal site passes; 30 m outside fails, saying how far."""
    report = run(route=route((0, 0), (2500, 0), (end_x, 0)))
    assert report.ok is passes, report.text()
    if not passes:
        assert codes(report) == ["route_end_outside_destination"]
        assert report.errors[0].where["distance_m"]["DS1"] == pytest.approx(30, abs=0.1)


@pytest.mark.parametrize(("start_x", "passes"), [(-70, True), (-130, False)])
def test_the_route_must_start_inside_the_origin(start_x, passes):
    report = run(route=route((start_x, 0), (2500, 0), (5000, 0)))
    assert report.ok is passes, report.text()
    if not passes:
        assert codes(report) == ["route_start_outside_origin"]
        assert report.errors[0].where["distance_m"] == pytest.approx(30, abs=0.1)


def test_any_destination_will_do():
    r = route((0, 0), (0, 3000), (5000, 3000))
    assert codes(run(route=r)) == ["route_end_outside_destination"]
    assert run(route=r, destinations=("DS1", "TD1")).ok


@pytest.mark.parametrize(("changes", "expected"), [
    ({"origin": "DS1"}, ["origin_not_construction_site"]),
    ({"origin": "CS404"}, ["origin_unknown"]),
    ({"destinations": ("CS1",)}, ["destination_not_disposal"]),
    ({"destinations": ("DS404",)}, ["destination_unknown"]),
    ({"destinations": ("RZ_ALL", "DS1")}, ["destination_not_disposal"]),
    ({"corridor_m": 19.9}, ["corridor_too_narrow"]),
    ({"corridor_m": 500.1}, ["corridor_too_wide"]),
    ({"plates": ("粤B00003",)}, ["vehicle_other_company"]),
    ({"plates": ("粤Z99999",)}, ["vehicle_unknown"]),
    ({"plates": ("粤B00001", "粤B00001")}, ["vehicle_duplicate"]),
    ({"plates": ()}, ["no_vehicles"]),
    ({"valid_to": NOW + timedelta(minutes=30)}, ["validity_backwards"]),
    ({"valid_to": NOW + timedelta(days=368)}, ["validity_too_long"]),
    ({"valid_from": NOW - timedelta(days=10), "valid_to": NOW - timedelta(days=1)},
     ["validity_over"]),
    # (unreadable hours count as any hour: this route keeps clear of RZ_DAY)
    ({"hours": "25:00-06:00", "route": AROUND}, ["hours_invalid"]),
    ({"hours": "06:00-06:00", "route": AROUND}, ["hours_empty"]),
])
def test_each_check_fails_alone(changes, expected):
    report = run(**changes)
    assert codes(report) == expected, report.text()
    for p in report.errors:
        assert p.message and isinstance(p.where, dict)


@pytest.mark.parametrize("corridor", [20.0, 500.0])
def test_corridor_bounds_are_inclusive(corridor):
    assert run(corridor_m=corridor).ok


def test_a_start_before_the_approval_is_a_warning():
    report = run(valid_from=NOW - timedelta(days=1))
    assert report.ok and "validity_starts_before_approval" in [p.code for p in report.warnings]


def test_every_problem_is_reported_not_just_the_first():
    report = run(origin="DS1", corridor_m=1000, plates=("粤B00003",), hours=None)
    assert set(codes(report)) == {"origin_not_construction_site", "corridor_too_wide",
                                  "vehicle_other_company", "restricted_zone_crossing"}


@pytest.mark.parametrize("crs", ["gcj02", "bd09"])
def test_a_route_drawn_on_a_chinese_map_gives_the_wgs84_result(crs):
    """The route as AMap (GCJ-02) or Baidu (BD-09) would draw it, converted back at
    submission, is the WGS-84 route to well under a millimetre — and so is its report."""
    wgs = np.array(STRAIGHT.coords)
    lon, lat = convert(wgs[:, 0], wgs[:, 1], "wgs84", crs)
    assert np.abs(lon - wgs[:, 0]).max() > 0.001, "the datums differ by hundreds of metres"
    drawn = {"type": "LineString", "coordinates": np.column_stack([lon, lat]).tolist()}
    back = read_geometry(drawn, ("LineString",), crs=crs)
    assert np.abs(np.array(back.coords) - wgs).max() < 1e-8
    for hours in ("22:00-06:00", "05:00-08:00"):
        assert run(route=back, hours=hours).as_dict() == run(hours=hours).as_dict()


def test_the_sample_citys_permits_pass_as_applications(city):
    """Every bundle permit, taken as an application (validity aside), passes: the sample's
    routes start in their origin, end in their first destination and avoid every zone."""
    view = CityView.from_city(city)
    company = {v.plate: v.company_id for v in city.vehicles}
    run_row = checker(PermitSettings(max_validity_days=5000), city.timezone, city.metric_epsg)
    for p in city.permits[:80]:
        row = {"company_id": company[p.plate], "origin": p.origin,
               "destinations": list(p.destinations), "plates": [p.plate],
               "route": shapely.geometry.mapping(p.route), "corridor_m": p.corridor_m,
               "valid_from": p.valid_from, "valid_to": p.valid_to, "hours": p.hours}
        report = run_row(row, list(view.fences.values()), company, p.valid_from)
        assert report.ok and not report.crossings, (p.id, report.text())


def test_a_city_bundle_works_as_the_fixture():
    """The checks read a loaded bundle as well as database rows."""
    from pathlib import Path

    city = load_city(Path(__file__).resolve().parents[2] / "data" / "sample-city")
    view = CityView.from_city(city)
    assert view.metric_epsg == city.metric_epsg and view.timezone == city.timezone
    assert {f.kind for f in view.fences.values()} <= {"construction_site", "disposal_site",
                                                       "transfer_dock", "restricted_zone"}


# --- properties --------------------------------------------------------------------------------

inside_origin = st.tuples(st.floats(-95, 95), st.floats(-95, 95))
inside_destination = st.tuples(st.floats(4855, 5145), st.floats(-145, 145))
waypoints = st.lists(st.tuples(st.floats(150, 4800), st.floats(-800, 800)), max_size=8)
PROPERTY = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def random_route(start, middle, end) -> shapely.LineString:
    return route(start, *sorted(middle), end)


@PROPERTY
@given(inside_origin, waypoints, inside_destination, st.floats(20, 500))
def test_property_a_route_within_the_corridor_from_origin_to_destination_passes(
        start, middle, end, corridor):
    report = run(route=random_route(start, middle, end), corridor_m=corridor, hours=None,
                 city=NO_DAY_ZONE)
    assert report.ok and not report.crossings, report.text()


@PROPERTY
@given(inside_origin, waypoints, st.floats(0, 2 * np.pi), st.floats(1, 1500))
def test_property_moving_the_end_outside_every_destination_fails(start, middle, angle, away):
    """An end ``away`` metres outside the disposal site fails, and says how far."""
    site = shapely.box(4850, -150, 5150, 150)
    direction = np.array([np.cos(angle), np.sin(angle)])
    # from the centre outwards to the edge, then `away` further
    edge = site.exterior.intersection(shapely.LineString([(5000, 0), tuple(
        np.array([5000, 0]) + direction * 1000)]))
    end = np.array(edge.coords[0]) + direction * away
    expected = shapely.distance(site, shapely.Point(end))
    report = run(route=random_route(start, middle, tuple(end)), hours=None, city=NO_DAY_ZONE)
    assert codes(report) == ["route_end_outside_destination"]
    assert report.errors[0].where["distance_m"]["DS1"] == pytest.approx(expected, abs=0.2)


def brute_overlap(permit: tuple[int, int], zone: tuple[int, int]) -> bool:
    def minutes(a, b):
        return {m % 1440 for m in range(a, b if b > a else b + 1440)}

    return bool(minutes(*permit) & minutes(*zone))


minute = st.integers(0, 1439).map(lambda m: m - m % 5)


@PROPERTY
@given(st.floats(-190, 190), minute, minute, minute, minute)
def test_property_a_zone_crossing_blocks_exactly_when_hours_meet_the_window(
        y, p0, p1, z0, z1):
    if p0 == p1 or z0 == z1:
        return
    hhmm = lambda m: f"{m // 60:02d}:{m % 60:02d}"  # noqa: E731
    zone = Fence("RZ", "restricted_zone", square(2500, 0, 200), "z",
                 (f"{hhmm(z0)}-{hhmm(z1)}",))
    city = CityView.of([*FENCES[:3], zone], VEHICLES, "Asia/Shanghai", 4547)
    r = route((0, 0), (2000, y), (3000, y), (5000, 0))
    report = run(route=r, hours=f"{hhmm(p0)}-{hhmm(p1)}", city=city)
    (c,) = report.crossings
    assert c.length_m == pytest.approx(400, abs=0.5)
    blocking = brute_overlap((p0, p1), (z0, z1))
    assert report.ok is not blocking
    assert bool(c.overlap) is blocking


@PROPERTY
@given(minute, minute)
def test_property_windows_read_back_as_they_were_written(a, b):
    if a == b:
        return
    text = f"{a // 60:02d}:{a % 60:02d}-{b // 60:02d}:{b % 60:02d}"
    parts = W.window_minutes(text)
    (back,) = W.text(parts)
    assert W.window_minutes(back) == parts and back[:5] == text[:5]
    assert sum(e - s for s, e in parts) == (b - a) % 1440


@pytest.mark.parametrize(("closures", "licence", "passes"), [
    ((), None, True),
    # closed from a second after valid_from: open then, and now — the approval may pass
    # (the pipeline closes the site from then on)
    (((int((NOW + timedelta(hours=1, seconds=1)).timestamp() * 1000), 2**60, "closed"),),
     None, True),
    # closed from valid_from: refused
    (((int((NOW + timedelta(hours=1)).timestamp() * 1000), 2**60, "full"),), None, False),
    # closed now, re-opened before valid_from: still refused (closed now)
    (((int(NOW.timestamp() * 1000), int((NOW + timedelta(minutes=30)).timestamp() * 1000),
       "closed"),), None, False),
    # a licence valid through today (Asia/Shanghai) passes; one that ended yesterday fails
    ((), 0, True),
    ((), -1, False),
])
def test_a_closed_or_full_destination_fails_now_or_at_valid_from(closures, licence, passes):
    """destination_not_open (the registry, issue #22), at the second; ``licence``: days from
    today (local) to the licence's last day."""
    import dataclasses
    from zoneinfo import ZoneInfo

    today = NOW.astimezone(ZoneInfo("Asia/Shanghai")).date()
    expires = None if licence is None else today + timedelta(days=licence)
    fences = [dataclasses.replace(f, closures=closures, licence_expires=expires)
              if f.id == "DS1" else f for f in FENCES]
    report = run(city=CityView.of(fences, VEHICLES, "Asia/Shanghai", 4547), route=AROUND)
    assert codes(report) == ([] if passes else ["destination_not_open"]), report.text()
    if not passes:
        assert report.errors[0].where["site"] == "DS1"
