"""The registry in the database (issue #22, migration 0012): site_status_at / site_open_at
answer "was site S open at t" from the history and the licence (valid through its day, in
the city's time zone); the import writes the optional bundle columns and keeps what the API
set unless the bundle states it; the ingest's reader gives closures as intervals; a change
notifies the running ingest; the bundle's new fields are validated, every problem listed."""

from __future__ import annotations

import asyncio
import csv
import json
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from domain.city import FAR_MS, CityError, load_city
from store import registry
from store.live_reference import CHANNEL, load_sites
from store.migrate import available_migrations
from store.reference import import_city
from store.review import Conflict

REPO = Path(__file__).resolve().parents[2]


def ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


@pytest.fixture
def imported(fresh_database, city):
    dsn = fresh_database()
    with psycopg.connect(dsn) as conn:
        import_city(conn, city)
    return dsn


def test_the_migration_runs_again(imported):
    (m,) = [m for m in available_migrations() if m.version == 12]
    with psycopg.connect(imported) as conn:
        conn.execute(m.sql)
        conn.execute(m.sql)
        conn.commit()


def test_site_open_at_by_the_history_and_the_licence(imported):
    t = datetime(2026, 12, 1, 14, 0, tzinfo=UTC)
    with psycopg.connect(imported, autocommit=True) as conn:
        conn.execute("INSERT INTO site_status_changes (site_id, status, from_ts, changed_by)"
                     " VALUES ('DS01', 'closed', %s, 't'), ('DS01', 'open', %s, 't'),"
                     " ('DS01', 'full', %s, 't'), ('DS01', 'open', %s, 't')",
                     (t, t + timedelta(hours=1), t + timedelta(hours=2),
                      t + timedelta(hours=2)))
        conn.execute("UPDATE fences SET licence_expires = '2026-12-10' WHERE id = 'DS02'")

        def status(site: str, at: datetime, tz: str = "Asia/Shanghai"):
            return conn.execute("SELECT site_status_at(%s, %s, %s), site_open_at(%s, %s, %s)",
                                (site, at, tz, site, at, tz)).fetchone()

        second = timedelta(seconds=1)
        assert status("DS01", t - second) == ("open", True)
        assert status("DS01", t) == ("closed", False)
        assert status("DS01", t + timedelta(hours=1) - second) == ("closed", False)
        assert status("DS01", t + timedelta(hours=1)) == ("open", True)
        # two changes at one instant: the later one (by id) wins
        assert status("DS01", t + timedelta(hours=2)) == ("open", True)
        # the licence is valid through 2026-12-10 local time: until 16:00 UTC in Shanghai
        end = datetime(2026, 12, 10, 16, 0, tzinfo=UTC)
        assert status("DS02", end - second) == ("open", True)
        assert status("DS02", end) == ("licence_expired", False)
        assert status("DS02", end - second, "UTC") == ("open", True)
        assert status("DS02", end + timedelta(hours=7, minutes=59), "UTC") == ("open", True)
        assert conn.execute("SELECT site_open_at('NOPE', now()), site_status_at('NOPE', now())"
                            ).fetchone() == (False, None)
        assert conn.execute("SELECT site_open_at('DS03', now())").fetchone() == (True,)

    async def read():
        async with await psycopg.AsyncConnection.connect(imported) as conn:
            return await load_sites(conn)
    sites = asyncio.run(read())
    assert sites["DS01"].closures == ((ms(t), ms(t + timedelta(hours=1)), "closed"),)
    assert sites["DS02"].licence_expires == date(2026, 12, 10) and sites["DS02"].closures == ()
    assert sites["DS03"].status == "open" and "RZ01" not in sites


def test_set_site_status_history_audit_and_notifications(imported):
    with psycopg.connect(imported, autocommit=True) as listener, \
            psycopg.connect(imported) as conn:
        listener.execute(f"LISTEN {CHANNEL}")
        with conn.transaction():
            before, after = registry.set_site_status(
                conn, "DS01", status="closed", from_ts=None, reason="flooded", actor="w",
                role="officer")
        assert before["status"] == "open" and after["current_status"] == "closed"
        heard = {n.payload for n in listener.notifies(timeout=2, stop_after=2)}
        assert heard == {"site_status_changes", "fences"}
        with pytest.raises(Conflict), conn.transaction():
            registry.set_site_status(conn, "DS01", status="closed", from_ts=None,
                                     reason="again", actor="w", role="officer")
        with pytest.raises(ValueError, match="reason"), conn.transaction():
            registry.set_site_status(conn, "DS01", status="full", from_ts=None, reason=" ",
                                     actor="w", role="officer")
        with pytest.raises(ValueError, match="past"), conn.transaction():
            registry.set_site_status(conn, "DS01", status="open",
                                     from_ts=datetime.now(UTC) - timedelta(minutes=5),
                                     reason=None, actor="w", role="officer")
        later = datetime.now(UTC) + timedelta(days=1, microseconds=1500)  # rounded up
        with conn.transaction():
            _, after = registry.set_site_status(conn, "DS01", status="open", from_ts=later,
                                                reason=None, actor="w", role="officer")
        assert (after["status"], after["current_status"]) == ("open", "closed")
        assert [c["status"] for c in after["changes"]] == ["closed", "open"]
        with conn.transaction():
            registry.update_company(conn, "C01", {"licence_no": "L-1"}, actor="s",
                                    role="supervisor")
        heard = {n.payload for n in listener.notifies(timeout=2, stop_after=3)}
        assert heard == {"site_status_changes", "fences", "companies"}
        actions = conn.execute("SELECT action, before->>'status', after->>'status' FROM"
                               " audit_log WHERE resource = 'site' ORDER BY id").fetchall()
        assert actions == [("site.status", "open", "closed"), ("site.status", "closed", "open")]
        states = registry.site_states(conn, ["DS01"])
        (closure,) = states["DS01"].closures
        micros = (later - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
        assert closure[1] == -(-micros // 1000) and closure[2] == "closed"


def write_bundle(tmp_path: Path, site_props: dict, vehicle_cols: dict, company_cols: dict,
                 name: str = "city") -> Path:
    """The sample city with registry fields added: ``site_props`` per fence id,
    ``vehicle_cols`` / ``company_cols`` per plate / company id."""
    out = tmp_path / name
    shutil.copytree(REPO / "data" / "sample-city", out)
    fences = json.loads((out / "fences.geojson").read_text(encoding="utf-8"))
    for f in fences["features"]:
        f["properties"].update(site_props.get(f["properties"]["id"], {}))
    (out / "fences.geojson").write_text(json.dumps(fences, ensure_ascii=False),
                                        encoding="utf-8")
    for file, key, extra in (("vehicles.csv", "plate", vehicle_cols),
                             ("companies.csv", "id", company_cols)):
        with (out / file).open(encoding="utf-8-sig", newline="") as fh:
            rows = list(csv.DictReader(fh))
        columns = list(rows[0]) + sorted({c for v in extra.values() for c in v})
        with (out / file).open("w", encoding="utf-8", newline="") as fh:
            w = csv.DictWriter(fh, columns)
            w.writeheader()
            for row in rows:
                w.writerow({**row, **extra.get(row[key], {})})
    return out


def test_the_import_writes_the_registry_and_keeps_what_the_bundle_leaves_out(
        imported, city, tmp_path):
    plate = city.vehicles[0].plate
    stated = write_bundle(
        tmp_path, {"DS01": {"status": "full", "capacity_m3": 120000,
                            "licence_expires": "2027-06-30"}},
        {plate: {"rated_load_kg": "18000", "volume_m3": "12", "type": "自卸车",
                 "inspection_expires": "2027-03-31"}},
        {"C01": {"licence_no": "深渣2026-01", "licence_expires": "2027-12-31"}})
    bundle = load_city(stated)
    ds01 = next(f for f in bundle.fences if f.id == "DS01")
    assert (ds01.status, ds01.capacity_m3, ds01.licence_expires) == \
        ("full", 120000.0, date(2027, 6, 30))
    with psycopg.connect(imported) as conn:
        with conn.transaction():
            registry.set_site_status(conn, "DS02", status="closed", from_ts=None,
                                     reason="by the API", actor="w", role="officer")
        import_city(conn, bundle)
        import_city(conn, bundle)  # again: no second history row
        rows = conn.execute("SELECT id, status, capacity_m3, licence_expires FROM fences"
                            " WHERE id IN ('DS01', 'DS02') ORDER BY id").fetchall()
        assert [(r[0], r[1], None if r[2] is None else float(r[2]), r[3]) for r in rows] == \
            [("DS01", "full", 120000.0, date(2027, 6, 30)), ("DS02", "closed", None, None)]
        changes = conn.execute("SELECT site_id, status, changed_by FROM site_status_changes"
                               " ORDER BY id").fetchall()
        assert changes == [("DS02", "closed", "w"), ("DS01", "full", "import")]
        assert conn.execute("SELECT rated_load_kg, volume_m3, vehicle_type, inspection_expires"
                            " FROM vehicles WHERE plate = %s", (plate,)).fetchone() == \
            (18000.0, 12.0, "自卸车", date(2027, 3, 31))
        assert conn.execute("SELECT licence_no, licence_expires FROM companies WHERE id = 'C01'"
                            ).fetchone() == ("深渣2026-01", date(2027, 12, 31))
        # the sample bundle states none of it: everything kept
        import_city(conn, city)
        assert conn.execute("SELECT status, capacity_m3 FROM fences WHERE id = 'DS01'"
                            ).fetchone()[0] == "full"
        assert conn.execute("SELECT vehicle_type FROM vehicles WHERE plate = %s", (plate,)
                            ).fetchone() == ("自卸车",)
        # a bundle that states 'open' wins over the API's closure, from the import on
        reopened = write_bundle(tmp_path, {"DS02": {"status": "open"}}, {}, {}, "reopened")
        import_city(conn, load_city(reopened))
        assert conn.execute("SELECT status, site_status_at('DS02', now()) FROM fences"
                            " WHERE id = 'DS02'").fetchone() == ("open", "open")
        conn.commit()


def test_bundle_registry_fields_are_validated_every_problem_listed(tmp_path, city):
    plate = city.vehicles[0].plate
    bad = write_bundle(
        tmp_path, {"DS01": {"status": "shut"}, "DS02": {"capacity_m3": -5},
                   "DS03": {"licence_expires": "31/12/2027"}, "RZ01": {"status": "closed"},
                   "TD01": {"capacity_m3": "500"}},
        {plate: {"rated_load_kg": "heavy", "inspection_expires": "2027-02-30"}},
        {"C01": {"licence_expires": "never"}})
    with pytest.raises(CityError) as e:
        load_city(bad)
    text = "\n".join(e.value.problems)
    for needle in ("DS01: status 'shut'", "DS02: capacity_m3", "DS03: licence_expires",
                   "RZ01: status only apply to sites", "TD01: capacity_m3 must be a JSON number",
                   f"{plate}: rated_load_kg", f"{plate}: inspection_expires",
                   "C01: licence_expires"):
        assert needle in text, (needle, text)
    assert len(e.value.problems) == 8, e.value.problems


def test_a_bundle_status_closes_the_site_at_every_time(tmp_path):
    c = load_city(write_bundle(tmp_path, {"DS01": {"status": "closed"},
                                          "DS02": {"status": "open"}}, {}, {}))
    fences = {f.id: f for f in c.fences}
    assert fences["DS01"].status_at(0, c.timezone) == "closed"
    assert fences["DS01"].closed_intervals(c.timezone)[0][1] == FAR_MS
    assert fences["DS02"].closures == () and fences["DS02"].status == "open"
