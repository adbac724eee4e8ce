"""Who passed here (store/passed.py, migration 0009) against a real PostgreSQL: trucks placed
at known geodesic distances and times, the ranking, the window and radius edges, crossings
between fixes, the cell enumeration near cell edges (property tests against brute force),
invalid input, and the index in the plan."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyproj import Geod

from store import passed
from store.passed import who_passed
from tests.conftest import create_database

GEOD = Geod(ellps="WGS84")
T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
S = timedelta(seconds=1)
MIN = timedelta(minutes=1)


@pytest.fixture(scope="module")
def conn(dsn: str) -> Iterator[psycopg.Connection]:
    """A database of its own (the tests count every truck near their places)."""
    with psycopg.connect(create_database(dsn), autocommit=True) as c:
        c.execute("INSERT INTO companies VALUES ('PC1', 'Passing Haulage'),"
                  " ('PC2', 'Other Muck')")
        yield c


def at(lon: float, lat: float, metres: float, azimuth: float = 90.0) -> tuple[float, float]:
    """The point ``metres`` from (lon, lat) along ``azimuth`` (degrees from north)."""
    x, y, _ = GEOD.fwd(lon, lat, azimuth, metres)
    return float(x), float(y)


def geodesic(lon: float, lat: float, x: float, y: float) -> float:
    return float(GEOD.inv(lon, lat, x, y)[2])


def put(conn: psycopg.Connection, device: str, fixes: list[tuple], *,
        plate: str | None = None, company: str = "PC1") -> None:
    """Fixes as (ts, lon, lat, load[, lid[, speed]])."""
    if plate:
        conn.execute("INSERT INTO vehicles VALUES (%s, %s, %s)", (plate, device, company))
    rows = [(device, f[0], f[1], f[2], f[3], f[4] if len(f) > 4 else 0,
             f[5] if len(f) > 5 else 30.0) for f in fixes]
    conn.cursor().executemany(
        "INSERT INTO telemetry (device_id, ts, lon, lat, load, lid, speed_kmh, received_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, now())", rows)


def ids(rows: list[passed.PassedTruck]) -> list[str]:
    return [r.device_id for r in rows]


def test_known_distances_ranking_company_and_track(conn):
    lon, lat = 114.1234, 22.5432
    for device, metres, minute, load in (("K-A", 50, 10, 2), ("K-B", 120, 20, 1),
                                         ("K-C", 20, 30, None), ("K-D", 10, 40, 0),
                                         ("K-E", 250, 15, 2)):
        x, y = at(lon, lat, metres, azimuth=7.0 * metres)
        put(conn, device, [(T0 + minute * MIN, x, y, load)], plate=f"粤B{device}")
    put(conn, "K-F", [(T0 + 5 * MIN, *at(lon, lat, 120, 7.0 * 120), 2)])  # where K-B was
    rows = who_passed(conn, lon, lat, 200, T0, T0 + timedelta(hours=1))
    # loaded first, closest first (K-F and K-B at the same spot: the earlier first), then
    # unknown; K-D is empty, K-E too far
    assert ids(rows) == ["K-A", "K-F", "K-B", "K-C"]
    assert [r.loaded for r in rows] == [True, True, True, None]
    for r in rows:
        x, y = r.track[0].lon, r.track[0].lat
        assert abs(r.closest_m - geodesic(lon, lat, x, y)) < 1.0
    assert abs(rows[0].closest_m - 50) < 1.0 and abs(rows[3].closest_m - 20) < 1.0
    a = rows[0]
    assert (a.plate, a.company_id, a.company_name) == ("粤BK-A", "PC1", "Passing Haulage")
    assert a.closest_ts == T0 + 10 * MIN and a.load_at_closest == 2 and a.fixes_in_radius == 1
    assert len(a.track) == 1 and a.track[0].ts == a.closest_ts and a.track[0].load == 2
    assert rows[1].plate is None and rows[1].company_name is None  # not in vehicles
    everyone = who_passed(conn, lon, lat, 200, T0, T0 + timedelta(hours=1), loaded_only=False)
    assert ids(everyone) == ["K-A", "K-F", "K-B", "K-C", "K-D"]
    assert everyone[-1].loaded is False and everyone[-1].load_at_closest == 0
    assert ids(who_passed(conn, lon, lat, 200, T0, T0 + timedelta(hours=1), limit=2)) == \
        ["K-A", "K-F"]


def test_window_and_radius_edges(conn):
    lon, lat = 114.2345, 22.6543
    since, until = T0, T0 + timedelta(hours=1)
    inside = at(lon, lat, 150)
    put(conn, "W-at-since", [(since, *inside, 2)])
    put(conn, "W-at-until", [(until, *inside, 2)])
    put(conn, "W-before", [(since - S, *inside, 2)])  # alone: nothing to interpolate with
    put(conn, "W-after", [(until + S, *inside, 2)])
    put(conn, "W-in-radius", [(T0 + 5 * MIN, *at(lon, lat, 199.5, 200.0), 2)])
    put(conn, "W-off-radius", [(T0 + 6 * MIN, *at(lon, lat, 200.5, 300.0), 2)])
    rows = who_passed(conn, lon, lat, 200, since, until)
    assert sorted(ids(rows)) == ["W-at-since", "W-at-until", "W-in-radius"]
    near_edge = next(r for r in rows if r.device_id == "W-in-radius")
    assert abs(near_edge.closest_m - 199.5) < 0.01


def test_a_truck_crossing_between_two_fixes(conn):
    """Fixes 300 m and 30 s apart on both sides of a 100 m circle, none inside it."""
    lon, lat = 114.3456, 22.4567
    centre_of_pass = at(lon, lat, 60, 0.0)  # the road passes 60 m north of the place
    west = at(*centre_of_pass, 150, 270.0)
    east = at(*centre_of_pass, 150, 90.0)
    put(conn, "X-cross", [(T0 + 10 * MIN, *west, 2, 1), (T0 + 10 * MIN + 30 * S, *east, 2, 1)],
        plate="粤BX1")
    put(conn, "X-gap", [(T0 + 20 * MIN, *west, 2), (T0 + 22 * MIN, *east, 2)])  # 2 min apart
    rows = who_passed(conn, lon, lat, 100, T0, T0 + timedelta(hours=1))
    assert ids(rows) == ["X-cross"]
    r = rows[0]
    assert abs(r.closest_m - 60) < 1.0 and r.fixes_in_radius == 0
    assert abs((r.closest_ts - (T0 + 10 * MIN + 15 * S)).total_seconds()) < 0.5
    assert r.loaded is True and r.lid_open is True and len(r.track) == 2
    # the window cuts the segment: its part inside the window is what counts
    late = who_passed(conn, lon, lat, 100, T0 + 10 * MIN + 20 * S, T0 + timedelta(hours=1))
    assert ids(late) == ["X-cross"] and late[0].closest_ts == T0 + 10 * MIN + 20 * S
    assert abs(late[0].closest_m - math.hypot(50, 60)) < 1.0
    # ... or leaves too little of it
    assert who_passed(conn, lon, lat, 100, T0 + 10 * MIN + 29 * S,
                      T0 + timedelta(hours=1)) == []


def test_a_truck_passing_twice_is_one_row_at_its_closest(conn):
    lon, lat = 114.4567, 22.3456
    first = [(T0 + 5 * MIN + k * 30 * S, *at(lon, lat, 150 + 40 * abs(k), 10.0 + k), 2)
             for k in range(-2, 3)]
    second = [(T0 + 40 * MIN + k * 30 * S, *at(lon, lat, 40 + 60 * abs(k), 200.0 + k), 1)
              for k in range(-2, 3)]
    put(conn, "P-twice", first + second, plate="粤BP2", company="PC2")
    rows = who_passed(conn, lon, lat, 200, T0, T0 + timedelta(hours=1))
    assert ids(rows) == ["P-twice"]
    r = rows[0]
    assert abs(r.closest_m - 40) < 1.0 and r.closest_ts == T0 + 40 * MIN
    assert r.fixes_in_radius == 3 + 5  # 190, 150, 190 m; 160, 100, 40, 100, 160 m
    assert r.load_at_closest == 1 and r.company_name == "Other Muck"
    assert [p.ts for p in r.track] == [t for t, *_ in second]  # ±5 min of the closest


def test_loaded_means_loaded_while_passing(conn):
    lon, lat = 114.5678, 22.2345
    far = at(lon, lat, 3000)
    put(conn, "L-empty-here", [(T0, *far, 2), (T0 + 10 * MIN, *at(lon, lat, 30), 0)])
    put(conn, "L-half", [(T0 + 11 * MIN, *at(lon, lat, 80), 1)])
    put(conn, "L-unknown", [(T0 + 12 * MIN, *at(lon, lat, 10), None)])
    put(conn, "L-mixed", [(T0 + 13 * MIN + k * 30 * S, *at(lon, lat, 90 - 10 * k), load)
                          for k, load in enumerate((0, None, 0))])
    rows = who_passed(conn, lon, lat, 200, T0, T0 + timedelta(hours=1))
    assert ids(rows) == ["L-half", "L-unknown", "L-mixed"]
    assert [r.loaded for r in rows] == [True, None, None]
    everyone = who_passed(conn, lon, lat, 200, T0, T0 + timedelta(hours=1), loaded_only=False)
    assert ids(everyone)[-1] == "L-empty-here" and everyone[-1].loaded is False


def test_the_track_is_bounded(conn):
    """A truck reporting twice a second: the 600 fixes nearest its closest approach."""
    lon, lat = 114.6789, 22.1234
    fixes = [(T0 + k * timedelta(milliseconds=500), *at(lon, lat, abs(k - 600) * 0.5 + 5), 2)
             for k in range(1400)]
    put(conn, "T-chatty", fixes)
    [r] = who_passed(conn, lon, lat, 100, T0, T0 + timedelta(hours=1))
    assert r.closest_ts == T0 + 300 * S and abs(r.closest_m - 5) < 1.0
    assert len(r.track) == passed.TRACK_MAX_POINTS
    times = [p.ts for p in r.track]
    assert times == sorted(times)
    assert times[0] >= r.closest_ts - 151 * S and times[-1] <= r.closest_ts + 151 * S


@pytest.mark.parametrize(("args", "message"), [
    ((114.0, 22.5, 0, T0, T0 + MIN), "radius_m must be within 1..5000"),
    ((114.0, 22.5, 5000.5, T0, T0 + MIN), "radius_m must be within 1..5000"),
    ((114.0, 22.5, float("nan"), T0, T0 + MIN), "radius_m must be a finite number"),
    ((114.0, 22.5, 200, T0, T0), "since must be before until"),
    ((114.0, 22.5, 200, T0 + MIN, T0), "since must be before until"),
    ((114.0, 22.5, 200, T0, T0 + timedelta(hours=24, seconds=1)), "at most 24 h"),
    ((114.0, 22.5, 200, T0.replace(tzinfo=None), T0 + MIN), "since must carry a time zone"),
    ((114.0, 22.5, 200, T0, "2026-03-01"), "until must be a datetime"),
    ((190.0, 22.5, 200, T0, T0 + MIN), "lon must be within"),
    ((114.0, 88.0, 200, T0, T0 + MIN), "lat must be within"),
    ((114.0, True, 200, T0, T0 + MIN), "lat must be a finite number"),
])
def test_invalid_input_is_refused(conn, args, message):
    with pytest.raises(ValueError, match=message):
        who_passed(conn, *args)


@pytest.mark.parametrize("limit", [0, 1001, 2.5])
def test_invalid_limit_is_refused(conn, limit):
    with pytest.raises(ValueError, match="limit must be an integer"):
        who_passed(conn, 114.0, 22.5, 200, T0, T0 + MIN, limit=limit)


def test_a_full_day_window_is_allowed(conn):
    assert who_passed(conn, 100.0, 10.0, 5000, T0, T0 + timedelta(hours=24)) == []


# --- the cell enumeration near cell edges ----------------------------------------------------

edge = st.integers(-3, 3).map(lambda k: k / 100) | st.just(0.0)
nudge = st.sampled_from([0.0, 1e-12, -1e-12, 1e-9, -1e-9, 1e-6, -1e-6]) | \
    st.floats(-0.004, 0.004)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lon_edge=edge, lat_edge=edge, dx=nudge, dy=nudge,
       radius=st.sampled_from([1.0, 5.0, 50.0, 200.0, 5000.0]) | st.floats(1, 5000),
       lat0=st.sampled_from([22.5, 0.0, -33.9, 51.5, 84.0]),
       tangent=st.sampled_from([None, 0.0, 90.0, 180.0, 270.0]),
       beyond=st.sampled_from([0.0, 1e-9, 1e-8, 1e-7, 1e-6, 1e-5]),
       fractions=st.lists(st.floats(0, 1), min_size=1, max_size=8),
       azimuths=st.lists(st.floats(0, 360) | st.sampled_from([0.0, 90.0, 180.0, 270.0]),
                         min_size=1, max_size=8))
def test_every_point_within_the_radius_is_in_an_enumerated_cell(
        conn, lon_edge, lat_edge, dx, dy, radius, lat0, tangent, beyond, fractions, azimuths):
    """geo_cells_near(centre, r) holds geo_cell of every point within r — centres and points
    on and next to cell edges, and circles whose northern, eastern, southern or western tip
    (``tangent``) lies just across a cell edge (by ``beyond`` degrees)."""
    lon, lat = 114.0 + lon_edge + dx, lat0 + lat_edge + dy
    if tangent is not None:
        edge_lon, edge_lat = 114.0 + lon_edge, lat0 + lat_edge
        kx, ky = (float(k) for k in passed.metres_per_degree(edge_lat))
        sign = 1 if tangent in (0.0, 90.0) else -1
        if tangent in (0.0, 180.0):
            lon, lat = edge_lon + dx, edge_lat + sign * (beyond - radius / ky)
        else:
            lon, lat = edge_lon + sign * (beyond - radius / kx), edge_lat + dy
    points = [at(lon, lat, radius * f, a) for f in fractions for a in azimuths]
    points += [at(lon, lat, radius * (1 - 1e-9), a) for a in (0.0, 90.0, 180.0, 270.0)]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    missing = conn.execute(
        "SELECT array_agg(ARRAY[x, y]) FILTER (WHERE NOT geo_cell(x, y) = ANY (c.cells))"
        " FROM unnest(%s::float8[], %s::float8[]) AS p (x, y),"
        " (SELECT geo_cells_near(%s, %s, %s) AS cells) c",
        (xs, ys, lon, lat, radius)).fetchone()[0]
    assert missing is None


@pytest.fixture(scope="module")
def scattered(conn) -> list[tuple]:
    """1,500 trucks with one fix each, most right next to the edges of the cells around
    (113.50, 22.50), over two hours; loads empty, half, full or unknown."""
    rng = np.random.default_rng(21)
    n = 1500
    lon = 113.47 + rng.integers(0, 7, n) / 100 + rng.choice(
        [0.0, 1e-9, -1e-9, 1e-6, -1e-6, 1e-4, -1e-4], n) + (rng.random(n) < 0.3) * (
        rng.random(n) * 0.01)
    lat = 22.47 + rng.integers(0, 7, n) / 100 + rng.choice(
        [0.0, 1e-9, -1e-9, 1e-6, -1e-6, 1e-4, -1e-4], n) + (rng.random(n) < 0.3) * (
        rng.random(n) * 0.01)
    seconds = rng.integers(0, 7200, n)
    loads = rng.choice(np.array([0, 1, 2, -1]), n)
    fixes = [(f"S{k:05d}", T0 + int(seconds[k]) * S, float(lon[k]), float(lat[k]),
              None if loads[k] < 0 else int(loads[k])) for k in range(n)]
    conn.cursor().executemany(
        "INSERT INTO telemetry (device_id, ts, lon, lat, load, received_at)"
        " VALUES (%s, %s, %s, %s, %s, now())", fixes)
    return fixes


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(cx=st.integers(-2, 2), cy=st.integers(-2, 2), dx=nudge, dy=nudge,
       radius=st.sampled_from([1.0, 20.0, 200.0, 1500.0]) | st.floats(1, 3000),
       start=st.integers(-600, 7200), minutes=st.integers(1, 180),
       loaded_only=st.booleans())
def test_who_passed_matches_brute_force(conn, scattered, cx, cy, dx, dy, radius, start,
                                        minutes, loaded_only):
    lon, lat = 113.50 + cx / 100 + dx, 22.50 + cy / 100 + dy
    since = T0 + start * S
    until = since + minutes * MIN
    expected, unsure = {}, set()
    for device, ts, x, y, load in scattered:
        d = geodesic(lon, lat, x, y)
        if not since <= ts <= until or (loaded_only and load == 0):
            continue
        if abs(d - radius) < 0.01:
            unsure.add(device)  # the approximation may fall either side
        elif d < radius:
            expected[device] = (d, ts, load)
    rows = who_passed(conn, lon, lat, radius, since, until, loaded_only=loaded_only,
                      limit=passed.MAX_LIMIT)
    assert len(rows) < passed.MAX_LIMIT
    got = {r.device_id: r for r in rows}
    assert set(got) - unsure == set(expected)
    for device, (d, ts, load) in expected.items():
        r = got[device]
        assert abs(r.closest_m - d) < 0.01 and r.closest_ts == ts
        assert r.load_at_closest == load and r.fixes_in_radius == 1
        assert r.loaded == (None if load is None else load >= 1)
    klass = {True: 0, None: 1, False: 2}
    keys = [(klass[r.loaded], r.closest_m, r.closest_ts, r.device_id) for r in rows]
    assert keys == sorted(keys)


def test_python_distance_is_the_sql_distance(conn):
    rng = np.random.default_rng(4)
    lon, lat = 114.05, 22.55
    xs, ys = lon + rng.normal(0, 0.02, 200), lat + rng.normal(0, 0.02, 200)
    sql = conn.execute("SELECT array_agg(geo_distance_m(%s, %s, x, y) ORDER BY n)"
                       " FROM unnest(%s::float8[], %s::float8[]) WITH ORDINALITY p (x, y, n)",
                       (lon, lat, xs.tolist(), ys.tolist())).fetchone()[0]
    ours = passed.distance_m(lon, lat, xs, ys)
    np.testing.assert_allclose(sql, ours, rtol=1e-12)
    exact = [geodesic(lon, lat, float(x), float(y)) for x, y in zip(xs, ys, strict=True)]
    assert max(abs(a - b) for a, b in zip(ours, exact, strict=True)) < 0.001


# --- the index ------------------------------------------------------------------------------

def test_the_cell_index_answers_the_query(dsn):
    """On a table of a day of 300 trucks spread over a city, the plan reads telemetry_cell_ts
    and nothing scans the table."""
    with psycopg.connect(create_database(dsn), autocommit=True) as c:
        rng = np.random.default_rng(8)
        n = 300 * 288  # a fix every 5 minutes
        device = np.arange(n) % 300
        ts = [T0 + timedelta(minutes=5 * int(k)) for k in np.arange(n) // 300]
        lon = 113.9 + rng.random(n) * 0.3
        lat = 22.45 + rng.random(n) * 0.2
        with c.cursor().copy("COPY telemetry (device_id, ts, lon, lat, load, received_at)"
                             " FROM STDIN") as copy:
            for k in range(n):
                copy.write_row((f"I{device[k]:04d}", ts[k], float(lon[k]), float(lat[k]), 2,
                                ts[k]))
        c.execute("ANALYZE telemetry")
        params = {"lon": 114.05, "lat": 22.55, "search": 200 + passed.SEGMENT_MARGIN_M,
                  "since": T0 + timedelta(hours=5), "until": T0 + timedelta(hours=6),
                  "gap": passed.MAX_GAP, "cap": passed.MAX_NEAR_FIXES + 1}
        plan = "\n".join(r[0] for r in c.execute("EXPLAIN " + passed._NEAR, params))
        assert "telemetry_cell_ts" in plan, plan
        assert "Seq Scan" not in plan, plan
        found = who_passed(c, 114.05, 22.55, 200, params["since"], params["until"])
        near = passed.distance_m(114.05, 22.55, lon, lat) <= 200
        brute = {f"I{device[k]:04d}" for k in np.flatnonzero(near)
                 if params["since"] <= ts[k] <= params["until"]}
        assert brute and brute == set(ids(found))
        # the analysts' hand-written query (docs/sql.md) reads the same index
        doc = (Path(__file__).resolve().parents[2] / "docs" / "sql.md").read_text("utf-8")
        [query] = [q for q in re.findall(r"```sql\n(.*?)```", doc, re.S)
                   if "-- name: who passed here" in q]
        plan = "\n".join(r[0] for r in c.execute("EXPLAIN " + query))
        assert "telemetry_cell_ts" in plan and "Seq Scan on telemetry" not in plan, plan
