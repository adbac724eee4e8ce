"""Districts in the database (issue #21, store/migrations/0007_districts.sql): the import
writes their outlines, every violation is tagged with the district it started in — on insert
by a trigger, and again whenever the districts are re-imported."""

from __future__ import annotations

import asyncio
import dataclasses
import re

import psycopg
import pytest
import shapely

from domain.batches import DeviceStatus, FixBatch, Rejects
from domain.city import City, Fence
from domain.events import Phase, ViolationEvent
from store.database import Store
from store.migrate import available_migrations, migrate
from store.reference import import_city, polygon_literals

T0 = 1_790_000_000_000


def expected_district(city: City, lon: float, lat: float) -> str | None:
    """docs/city.md: the lowest id among the districts whose area (exterior rings, borders
    included) holds the point."""
    point = shapely.Point(lon, lat)
    for d in sorted(city.districts, key=lambda d: d.id.encode()):
        if any(shapely.Polygon(p.exterior).covers(point) for p in shapely.get_parts(d.geometry)):
            return d.id
    return None


def opened(vid: str, lon: float, lat: float, start: int = T0) -> ViolationEvent:
    return ViolationEvent(id=vid, phase=Phase.OPENED, rule="UNAUTHORISED_DUMP",
                          device_id="DISTRICT-TEST", start_ts=start, end_ts=None,
                          start_lon=lon, start_lat=lat, severity=2)


def write_violations(dsn: str, events: list[ViolationEvent]) -> None:
    """Through the pipeline's own upsert (store.database.Store)."""
    async def go():
        store = Store(dsn)
        try:
            await store.write(FixBatch.empty(), Rejects(), DeviceStatus(), list(events))
        finally:
            await store.close()

    asyncio.run(go())


def district_of(conn: psycopg.Connection, vid: str) -> str | None:
    return conn.execute("SELECT district_id FROM violations WHERE id = %s", (vid,)).fetchone()[0]


@pytest.fixture(scope="module")
def imported(dsn, city):
    """A database of its own (the import re-tags every violation in it), the sample imported."""
    from tests.conftest import create_database

    db = create_database(dsn)
    with psycopg.connect(db, autocommit=True) as conn:
        counts = import_city(conn, city)
    return db, counts


def test_import_writes_every_district_part(imported, city):
    db, counts = imported
    assert counts["districts"] == len(city.districts) >= 6
    assert counts["fences"] == len(city.fences)
    with psycopg.connect(db) as conn:
        rows = conn.execute("SELECT district_id, part, area::text FROM district_areas"
                            " ORDER BY district_id, part").fetchall()
        expected = [(d.id, k) for d in city.districts
                    for k in range(len(shapely.get_parts(d.geometry)))]
        assert [r[:2] for r in rows] == expected
        # the outline is the exterior ring, to the last digit
        first = city.districts[0]
        numbers = [float(x) for x in re.findall(r"-?[\d.]+(?:e-?\d+)?", rows[0][2])]
        ring = shapely.get_coordinates(shapely.get_parts(first.geometry)[0].exterior)[:-1]
        assert numbers == ring.ravel().tolist()
        kinds = dict(conn.execute("SELECT kind, count(*) FROM fences GROUP BY kind").fetchall())
        assert kinds["district"] == len(city.districts)
        names = dict(conn.execute("SELECT id, name FROM fences WHERE kind = 'district'"))
        assert names == {d.id: d.name for d in city.districts}


def test_a_violation_at_a_site_takes_that_sites_district(imported, city):
    db, _ = imported
    sites = [f for f in city.fences if f.kind != "restricted_zone"]
    centroids = {s.id: s.geometry.centroid for s in sites}
    write_violations(db, [opened(f"site-{i}", c.x, c.y, T0 + k)
                          for k, (i, c) in enumerate(centroids.items())])
    with psycopg.connect(db, autocommit=True) as conn:
        for i, c in centroids.items():
            assert district_of(conn, f"site-{i}") == expected_district(city, c.x, c.y)
            assert district_of(conn, f"site-{i}") is not None, i
        # every district of the sample holds at least one site
        held = {r[0] for r in conn.execute(
            "SELECT DISTINCT district_id FROM violations WHERE id LIKE 'site-%'")}
        assert held == {d.id for d in city.districts}


def test_outside_every_district_is_null_and_a_given_district_is_kept(imported):
    db, _ = imported
    write_violations(db, [opened("far-away", 0.0, 0.0)])
    with psycopg.connect(db, autocommit=True) as conn:
        assert district_of(conn, "far-away") is None
        assert conn.execute("SELECT district_at(0, 0), district_at(NULL, 22.5)"
                            ).fetchone() == (None, None)
        # the trigger only fills a district that was not given
        conn.execute("INSERT INTO violations (id, rule, device_id, start_ts, start_lon,"
                     " start_lat, state, district_id) VALUES ('given', 'OVERSPEED', 'X',"
                     " now(), 114.05, 22.55, 'open', 'D99')")
        assert district_of(conn, "given") == "D99"


def test_borders_go_to_the_lowest_id(imported, city):
    db, _ = imported
    a, b = city.districts[0], city.districts[1]
    shared = a.geometry.boundary.intersection(b.geometry.boundary)
    assert not shared.is_empty, "the sample's D01 and D02 are neighbours"
    x, y = shapely.get_coordinates(shared)[0]
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT district_at(%s, %s)", (x, y)).fetchone()[0] == a.id


def test_reimport_with_changed_districts_reassigns(dsn, fresh_database, city):
    db = fresh_database()
    with psycopg.connect(db, autocommit=True) as conn:
        import_city(conn, city)
        site = next(f for f in city.fences if f.kind == "construction_site")
        c = site.geometry.centroid
        write_violations(db, [opened("moves", c.x, c.y)])
        before = district_of(conn, "moves")
        assert before is not None
        assert conn.execute("SELECT assign_violation_districts()").fetchone()[0] == 0

        # a new district (lowest id) around the site, and the old one dropped from the bundle
        enclave = Fence("D00", "district", shapely.box(c.x - 0.01, c.y - 0.01, c.x + 0.01,
                                                       c.y + 0.01), "测试片区")
        kept = [d for d in city.districts if d.id != before]
        import_city(conn, dataclasses.replace(city, districts=[enclave, *kept]))
        assert district_of(conn, "moves") == "D00"
        ids = {r[0] for r in conn.execute("SELECT DISTINCT district_id FROM district_areas")}
        assert ids == {"D00", *(d.id for d in kept)}

        # without districts nothing is tagged; the original bundle restores the tags
        import_city(conn, dataclasses.replace(city, districts=[]))
        assert district_of(conn, "moves") is None
        import_city(conn, city)
        assert district_of(conn, "moves") == before


def test_multipolygon_parts_and_holes(fresh_database, city):
    """Each part is a row; a hole is part of its district for the lookup (exterior only)."""
    outer = shapely.box(113.0, 22.0, 113.1, 22.1)
    hole = shapely.box(113.04, 22.04, 113.06, 22.06)
    two = shapely.MultiPolygon([shapely.Polygon(outer.exterior, [hole.exterior]),
                                shapely.box(113.2, 22.0, 113.3, 22.1)])
    assert len(polygon_literals(two)) == 2
    db = fresh_database()
    with psycopg.connect(db, autocommit=True) as conn:
        import_city(conn, dataclasses.replace(city, districts=[Fence("DX", "district", two,
                                                                     "双片区")]))
        parts = conn.execute("SELECT part, npoints(area) FROM district_areas"
                             " WHERE district_id = 'DX' ORDER BY part").fetchall()
        assert parts == [(0, 4), (1, 4)]
        at = conn.execute("SELECT district_at(113.05, 22.05), district_at(113.25, 22.05),"
                          " district_at(113.15, 22.05)").fetchone()
        assert at == ("DX", "DX", None)


def test_analysts_and_companies_may_read_the_outlines(imported):
    db, _ = imported
    with psycopg.connect(db) as conn:
        for role in ("muckwatch_analyst", "muckwatch_company"):
            assert conn.execute("SELECT has_table_privilege(%s, 'district_areas', 'SELECT')",
                                (role,)).fetchone()[0], role
    analyst = re.sub(r"://[^@/]*@", "://muckwatch_analyst@", db)
    with psycopg.connect(analyst) as conn:
        assert conn.execute("SELECT count(*) FROM district_areas").fetchone()[0] >= 6
        assert conn.execute("SELECT district_at(114.05, 22.55)").fetchone()[0] is not None


def test_migration_is_idempotent(imported):
    db, _ = imported
    with psycopg.connect(db, autocommit=True) as conn:
        sql = next(m.sql for m in available_migrations() if m.name == "districts")
        conn.execute(sql)  # re-running the file changes nothing and fails on nothing
        assert migrate(conn) == []
        assert conn.execute("SELECT count(*) FROM pg_trigger WHERE tgname = 'violations_district'"
                            ).fetchone()[0] == 1
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("INSERT INTO fences (id, kind, geometry) VALUES ('bad', 'parish', '{}')")


@pytest.mark.timescale
def test_districts_on_timescaledb(city):
    """The same migration under TimescaleDB: the trigger tags rows of the violations
    hypertable, and the import re-tags them."""
    import shutil
    import tempfile
    from pathlib import Path

    from devservices.timescale import PrivateTimescale

    run_dir = Path(tempfile.mkdtemp(prefix="muckwatch-districts-ts-"))
    server = PrivateTimescale(run_dir / "memory").start()
    try:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            migrate(conn)
            hypertables = {r[0] for r in conn.execute(
                "SELECT hypertable_name FROM timescaledb_information.hypertables")}
            assert "violations" in hypertables
            c = next(f for f in city.fences if f.kind == "construction_site").geometry.centroid
            conn.execute("INSERT INTO violations (id, rule, device_id, start_ts, start_lon,"
                         " start_lat, state) VALUES ('ts', 'OVERSPEED', 'X', now(), %s, %s,"
                         " 'open')", (c.x, c.y))
            assert district_of(conn, "ts") is None  # no districts yet
            counts = import_city(conn, city)
            assert counts["districts"] == len(city.districts)
            assert district_of(conn, "ts") == expected_district(city, c.x, c.y) is not None
            conn.execute("INSERT INTO violations (id, rule, device_id, start_ts, start_lon,"
                         " start_lat, state) VALUES ('ts2', 'OVERSPEED', 'X', now(), %s, %s,"
                         " 'open')", (c.x, c.y))
            assert district_of(conn, "ts2") == district_of(conn, "ts")
    finally:
        server.stop()
        shutil.rmtree(run_dir, ignore_errors=True)
