"""The manifest in the database (issue #22, migration 0014): receipts match manifest lines one
to one, nearest first, within 30 min before to 3 h after the arrival, whichever of the two is
written first (the pipeline's own upsert included); receipts are append-only and
idempotent; the daily reconciliation per site and per job counts by the city's local day
(Asia/Shanghai: a departure at 00:05 local is the next day's although it is the previous
day in UTC); a load that left and arrived nowhere is `not_closed` once TRIP_NOT_CLOSED
fired."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from itertools import count

import psycopg
import pytest
from psycopg.types.json import Jsonb

from store import manifest
from store.database import _UPSERT_TRIP
from store.migrate import available_migrations
from store.reference import import_city
from store.review import Conflict

SH = timedelta(hours=8)  # Asia/Shanghai, no daylight saving
_ids = count(1)


def local(day: date, hh: int, mm: int = 0) -> datetime:
    """``hh:mm`` Shanghai wall-clock time on ``day``, as an aware UTC datetime."""
    return datetime(day.year, day.month, day.day, hh, mm, tzinfo=UTC) - SH


@pytest.fixture(scope="module")
def mdb(dsn, city):
    """One migrated database with the sample city for this module (each test uses its own
    plates, sites or days)."""
    from tests.conftest import create_database

    db = create_database(dsn)
    with psycopg.connect(db) as conn:
        import_city(conn, city)
    return db


@pytest.fixture
def conn(mdb):
    with psycopg.connect(mdb, autocommit=True) as c:
        c.execute("SET TimeZone = 'Asia/Shanghai'")
        yield c


@pytest.fixture(scope="module")
def trucks(mdb):
    """(plate, device, company) of the sample city's vehicles, handed out one per use."""
    with psycopg.connect(mdb) as c:
        rows = c.execute("SELECT plate, device_id, company_id FROM vehicles ORDER BY plate"
                         ).fetchall()
    return iter(rows)


def trip(conn, truck, *, left: datetime, origin: str = "CS0001", dest: str | None = None,
         arrived: datetime | None = None, volume: float | None = 12.0,
         permit: str | None = None, transfers=()) -> str:
    tid = f"trip-{next(_ids)}"
    conn.execute("INSERT INTO trips (id, device_id, plate, company_id, permit_id, origin,"
                 " left_at, destination, arrived_at, volume_m3, volume_source, transfers)"
                 " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                 (tid, truck[1], truck[0], truck[2], permit, origin, left, dest, arrived,
                  volume, None if volume is None else "rated", Jsonb(list(transfers))))
    return tid


def arrive(conn, tid: str, dest: str, at: datetime) -> None:
    conn.execute("UPDATE trips SET destination = %s, arrived_at = %s WHERE id = %s",
                 (dest, at, tid))


def receipt(conn, site: str, plate: str, at: datetime, volume: float | None = None,
            **kw) -> manifest.Recorded:
    return manifest.record_receipt(conn, site=site, plate=plate, received_at=at,
                                   volume_m3=volume, actor="op-test", role="site_operator",
                                   **kw)


def line(conn, tid: str) -> dict:
    (row,) = [r for r in manifest.list_lines(conn, manifest.ManifestScope(), limit=1000)
              if r["trip_id"] == tid]
    return row


def matched(conn, receipt_id: int) -> str | None:
    return manifest.get_receipt(conn, receipt_id)["trip_id"]


def test_the_migration_runs_again(mdb):
    (m,) = [m for m in available_migrations() if m.version == 14]
    with psycopg.connect(mdb) as c:
        c.execute(m.sql)
        c.execute(m.sql)
        c.commit()


def test_a_receipt_before_the_arrival_is_matched_when_the_arrival_lands(conn, trucks):
    truck = next(trucks)
    day = date(2026, 10, 1)
    tid = trip(conn, truck, left=local(day, 21, 0))
    assert line(conn, tid)["status"] == "en_route"
    # the operator types the receipt at 21:40; the pipeline stores the arrival (21:45) later
    done = receipt(conn, "DS01", truck[0], local(day, 21, 40), 11.5)
    assert done.created and done.line is None and done.receipt["state"] == "unmatched"
    arrive(conn, tid, "DS01", local(day, 21, 45))
    got = line(conn, tid)
    assert got["status"] == "received" and got["receipt_id"] == done.receipt["id"]
    assert got["receipt_volume_m3"] == Decimal("11.5")
    r = manifest.get_receipt(conn, done.receipt["id"])
    assert r["state"] == "matched" and r["seconds_after_arrival"] == -300


def test_the_pipelines_own_upsert_matches_a_waiting_receipt(conn, trucks):
    """The statement store.database writes trips with: the departure first, the arrival in
    a later batch (ON CONFLICT DO UPDATE) — the trigger matches on the update."""
    plate, device, company = next(trucks)
    day = date(2026, 10, 2)
    left, arrived = local(day, 22, 0), local(day, 22, 40)
    done = receipt(conn, "DS02", plate, local(day, 22, 50))
    row = {"id": f"pipe-{next(_ids)}", "device_id": device, "plate": plate,
           "company_id": company, "permit_id": None, "origin": "CS0002",
           "left_ts": int(left.timestamp() * 1000), "destination": None, "arrived_ts": None,
           "late": False, "volume_m3": 9.0, "volume_source": "load_sensor", "load_kg": 16200.0,
           "transfers": Jsonb([])}
    conn.execute(_UPSERT_TRIP, row)
    assert matched(conn, done.receipt["id"]) is None
    conn.execute(_UPSERT_TRIP, {**row, "destination": "DS02",
                                "arrived_ts": int(arrived.timestamp() * 1000),
                                "transfers": Jsonb([{"dock": "TD01", "entered_at":
                                                     local(day, 22, 20).isoformat(),
                                                     "left_at": None}])})
    got = line(conn, row["id"])
    assert got["status"] == "received" and got["receipt_id"] == done.receipt["id"]
    assert got["transfers"][0]["dock"] == "TD01" and got["volume_source"] == "load_sensor"


def test_two_trips_two_receipts_one_to_one_nearest_first(conn, trucks):
    """Arrivals 10:00 and 10:50, receipts 10:20 and 10:24: both receipts are nearest to the
    10:00 arrival, but one receipt confirms one load — 10:20 takes 10:00 (20 min), 10:24 the
    10:50 one (26 min before it, inside the 30 min). Written in the worst order: the 10:24
    receipt first (it takes 10:00 until the nearer receipt arrives)."""
    truck = next(trucks)
    day = date(2026, 10, 3)
    a1 = trip(conn, truck, left=local(day, 9, 30), dest="DS03", arrived=local(day, 10, 0))
    a2 = trip(conn, truck, left=local(day, 10, 20), dest="DS03", arrived=local(day, 10, 50))
    late = receipt(conn, "DS03", truck[0], local(day, 10, 24))
    assert late.line is not None and late.line["trip_id"] == a1
    early = receipt(conn, "DS03", truck[0], local(day, 10, 20))
    assert matched(conn, early.receipt["id"]) == a1
    assert matched(conn, late.receipt["id"]) == a2
    assert line(conn, a1)["receipt_id"] == early.receipt["id"]
    assert line(conn, a2)["receipt_id"] == late.receipt["id"]
    # a third receipt, nearer to the 10:50 arrival (20 min before it), takes that line: the
    # 10:24 one is left with nothing to confirm — unmatched, a load the manifest cannot
    # explain
    third = receipt(conn, "DS03", truck[0], local(day, 10, 30))
    assert third.line is not None and third.line["trip_id"] == a2
    unmatched = {r[0] for r in conn.execute("SELECT id FROM unmatched_receipts")}
    assert late.receipt["id"] in unmatched and early.receipt["id"] not in unmatched
    assert third.receipt["id"] not in unmatched


def test_the_window_30_minutes_before_to_3_hours_after(conn, trucks):
    day = date(2026, 10, 4)
    arrived = local(day, 12, 0)
    cases = [(timedelta(minutes=-31), None), (timedelta(minutes=-30), "yes"),
             (timedelta(hours=3), "yes"), (timedelta(hours=3, seconds=1), None)]
    for offset, expect in cases:
        truck = next(trucks)
        tid = trip(conn, truck, left=arrived - timedelta(minutes=40), dest="DS04",
                   arrived=arrived)
        done = receipt(conn, "DS04", truck[0], arrived + offset)
        assert matched(conn, done.receipt["id"]) == (tid if expect else None), offset
    # another site, or another plate, never matches
    truck, other = next(trucks), next(trucks)
    trip(conn, truck, left=arrived - timedelta(minutes=40), dest="DS04", arrived=arrived)
    assert receipt(conn, "DS05", truck[0], arrived).line is None
    assert receipt(conn, "DS04", other[0], arrived).line is None


def test_receipts_are_idempotent_append_only_and_replaced_not_changed(conn, trucks):
    truck = next(trucks)
    day = date(2026, 10, 5)
    tid = trip(conn, truck, left=local(day, 8, 0), dest="TD02", arrived=local(day, 8, 30))
    first = receipt(conn, "TD02", truck[0], local(day, 8, 35), 10, note="ok")
    again = receipt(conn, "TD02", truck[0], local(day, 8, 35), 10, note="ok")
    assert first.created and not again.created
    assert again.receipt["id"] == first.receipt["id"] and again.line["trip_id"] == tid
    assert conn.execute("SELECT count(*) FROM disposal_receipts WHERE plate = %s",
                        (truck[0],)).fetchone() == (1,)
    with pytest.raises(Conflict, match="replaces"):
        receipt(conn, "TD02", truck[0], local(day, 8, 35), 12)
    with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
        conn.execute("UPDATE disposal_receipts SET volume_m3 = 1 WHERE id = %s",
                     (first.receipt["id"],))
    with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
        conn.execute("DELETE FROM disposal_receipts WHERE id = %s", (first.receipt["id"],))
    # the correction: a new receipt replacing the first takes its place
    fixed = receipt(conn, "TD02", truck[0], local(day, 8, 36), 12,
                    replaces=first.receipt["id"])
    assert fixed.created and fixed.line["trip_id"] == tid
    old = manifest.get_receipt(conn, first.receipt["id"])
    assert old["state"] == "replaced" and old["replaced_by"] == fixed.receipt["id"]
    assert old["trip_id"] is None
    with pytest.raises(Conflict, match="already replaced"):
        receipt(conn, "TD02", truck[0], local(day, 8, 37), replaces=first.receipt["id"])
    with pytest.raises(ValueError, match="not a receipt of site DS01"):
        receipt(conn, "DS01", truck[0], local(day, 8, 37), replaces=fixed.receipt["id"])
    audit = conn.execute("SELECT action, before IS NOT NULL FROM audit_log"
                         " WHERE resource = 'receipt' AND resource_id = ANY(%s) ORDER BY id",
                         ([str(first.receipt["id"]), str(fixed.receipt["id"])],)).fetchall()
    assert audit == [("receipt.record", False), ("receipt.record", True)]


def test_bad_receipts_are_refused_with_the_reason(conn, trucks):
    plate = next(trucks)[0]
    now = datetime.now(UTC)
    for kw, message in [
        ({"site": "NOPE"}, "unknown site"),
        ({"site": "CS0001"}, "construction_site"),
        ({"plate": "粤X00000"}, "unknown plate"),
        ({"at": now + timedelta(minutes=10)}, "in the future"),
        ({"at": now.replace(tzinfo=None)}, "UTC offset"),
        ({"volume": -1.0}, "volume_m3"),
    ]:
        with pytest.raises(ValueError, match=message):
            receipt(conn, kw.get("site", "DS01"), kw.get("plate", plate),
                    kw.get("at", now), kw.get("volume"))
    receipt(conn, "DS01", plate, now + timedelta(minutes=4))  # a clock a little ahead


def test_a_load_that_arrived_nowhere_is_not_closed(conn, trucks):
    plate, device, company = next(trucks)
    day = date(2026, 10, 6)
    tid = trip(conn, (plate, device, company), left=local(day, 1, 0))
    later = trip(conn, (plate, device, company), left=local(day, 6, 0))
    conn.execute("INSERT INTO violations (id, rule, severity, device_id, plate, company_id,"
                 " start_ts, start_lon, start_lat, peak, state, evidence) VALUES"
                 " ('tnc-test-1', 'TRIP_NOT_CLOSED', 2, %s, %s, %s, %s, 114.0, 22.6, 7300,"
                 " 'open', '[]')", (device, plate, company, local(day, 3, 2)))
    got = line(conn, tid)
    assert got["status"] == "not_closed" and got["not_closed_violation"] == "tnc-test-1"
    assert line(conn, later)["status"] == "en_route", "the violation is the earlier leg's"
    # it arrives late after all: arrived, and the violation stays named on the line
    arrive(conn, tid, "DS06", local(day, 3, 30))
    got = line(conn, tid)
    assert got["status"] == "arrived" and got["not_closed_violation"] == "tnc-test-1"


def test_reconciliation_per_site_by_the_local_day(conn, trucks):
    """Around midnight in Shanghai: a load leaving CS0003 at 23:50 local on the 20th arrives
    at DS07 at 00:20 on the 21st; another leaves at 00:05 on the 21st (16:05 UTC on the
    20th) and never arrives (TRIP_NOT_CLOSED); DS07 records an unexplained receipt at
    23:00 on the 20th and the 00:25 receipt of the first load."""
    d20, d21 = date(2026, 11, 20), date(2026, 11, 21)
    a, b, c = next(trucks), next(trucks), next(trucks)
    t1 = trip(conn, a, origin="CS0003", left=local(d20, 23, 50), dest="DS07",
              arrived=local(d21, 0, 20), volume=12.0,
              transfers=[{"dock": "TD03", "entered_at": local(d21, 0, 5).isoformat(),
                          "left_at": local(d21, 0, 9).isoformat()}])
    t2 = trip(conn, b, origin="CS0003", left=local(d21, 0, 5), volume=None)
    conn.execute("INSERT INTO violations (id, rule, severity, device_id, plate, company_id,"
                 " start_ts, start_lon, start_lat, peak, state, evidence) VALUES"
                 " ('tnc-test-2', 'TRIP_NOT_CLOSED', 2, %s, %s, %s, %s, 114.0, 22.6, 7300,"
                 " 'open', '[]')", (b[1], b[0], b[2], local(d21, 2, 6)))
    stray = receipt(conn, "DS07", c[0], local(d20, 23, 0), 8.0)
    ok = receipt(conn, "DS07", a[0], local(d21, 0, 25), 11.0)
    assert ok.line["trip_id"] == t1 and stray.line is None
    assert line(conn, t2)["status"] == "not_closed"

    def sites(day):
        return {r["site_id"]: r for r in manifest.reconcile(
            conn, manifest.ManifestScope(), day=day, by="site")}

    s20, s21 = sites(d20), sites(d21)
    assert (s20["CS0003"]["departures"], s20["CS0003"]["departed_m3"]) == (1, 12)
    assert "DS07" in s20 and s20["DS07"]["arrivals"] == 0
    assert (s20["DS07"]["receipts"], s20["DS07"]["receipts_unmatched"],
            s20["DS07"]["received_m3"]) == (1, 1, 8)
    cs = s21["CS0003"]
    assert (cs["departures"], cs["departed_m3"], cs["departures_unknown_m3"],
            cs["not_closed"]) == (1, 0, 1, 1)
    ds = s21["DS07"]
    assert (ds["arrivals"], ds["arrived_m3"], ds["arrivals_received"], ds["receipts"],
            ds["receipts_matched"], ds["receipts_unmatched"], ds["received_m3"]) == \
        (1, 12, 1, 1, 1, 0, 11)
    assert s21["TD03"]["transfers"] == 1 and s21["TD03"]["kind"] == "transfer_dock"
    # the same instants in UTC days: everything on the 20th
    utc20 = dict(conn.execute("SELECT site_id, departures FROM reconcile_sites("
                              "'2026-11-20', 'UTC')").fetchall())
    assert utc20["CS0003"] == 2


def test_reconciliation_per_job_declared_against_estimated(conn, trucks):
    """A job of two permits (one application), 30 m³ declared: 12 m³ hauled the day
    before, 12 + 12 and one load of unknown volume on the day → 36 m³ hauled to date, 6 m³
    over the declared volume (where PERMIT_VOLUME_EXCEEDED fired)."""
    a, b = next(trucks), next(trucks)
    d1, d2 = date(2026, 11, 24), date(2026, 11, 25)
    for pid, truck in (("PJOB-1", a), ("PJOB-2", b)):
        conn.execute("INSERT INTO permits (id, plate, origin, destinations, corridor_m,"
                     " valid_from, valid_to, route, company_id, declared_volume_m3, job)"
                     " VALUES (%s, %s, 'CS0004', '{DS01}', 80, %s, %s, %s, %s, 30, 'JTEST')",
                     (pid, truck[0], local(d1, 0), local(d2, 23),
                      Jsonb({"type": "LineString", "coordinates": [[114, 22.6], [114.1, 22.7]]}),
                      truck[2]))
    trip(conn, a, origin="CS0004", left=local(d1, 22), permit="PJOB-1", dest="DS01",
         arrived=local(d1, 22, 40))
    t2 = trip(conn, a, origin="CS0004", left=local(d2, 21), permit="PJOB-1", dest="DS01",
              arrived=local(d2, 21, 40))
    trip(conn, b, origin="CS0004", left=local(d2, 21, 10), permit="PJOB-2")
    trip(conn, b, origin="CS0004", left=local(d2, 23, 30), permit="PJOB-2", volume=None)
    receipt(conn, "DS01", a[0], local(d2, 21, 45), 11.0)
    assert line(conn, t2)["job"] == "JTEST"

    def job(day):
        (row,) = [r for r in manifest.reconcile(conn, manifest.ManifestScope(), day=day,
                                                by="job") if r["job"] == "JTEST"]
        return row

    first, second = job(d1), job(d2)
    assert (first["departures"], first["hauled_to_date_m3"], first["remaining_m3"]) == \
        (1, 12, 18)
    assert (second["permits"], second["declared_m3"], second["departures"],
            second["departed_m3"], second["departures_unknown_m3"], second["arrivals"],
            second["arrived_m3"], second["receipts"], second["received_m3"],
            second["hauled_to_date_m3"], second["remaining_m3"]) == \
        (2, 30, 3, 24, 1, 1, 12, 1, 11, 36, -6)
    # a company's scope: its own jobs only
    other = manifest.reconcile(conn, manifest.ManifestScope(company="C_NOBODY"), day=d2,
                               by="job")
    assert other == []


def test_kept_matches_equal_matching_everything_again(conn):
    before = conn.execute("SELECT receipt_id, trip_id FROM receipt_matches ORDER BY 1"
                          ).fetchall()
    assert before, "the tests above matched receipts"
    conn.execute("SELECT rematch_all_receipts()")
    after = conn.execute("SELECT receipt_id, trip_id FROM receipt_matches ORDER BY 1"
                         ).fetchall()
    assert after == before


def test_the_analyst_reads_the_manifest_and_the_reconciliation(mdb):
    import re

    analyst = re.sub(r"://[^@/]*@", "://muckwatch_analyst@", mdb) if "://" in mdb else \
        mdb.replace("user=postgres", "user=muckwatch_analyst")
    with psycopg.connect(analyst) as c:
        assert c.execute("SELECT count(*) FROM manifest").fetchone()[0] > 0
        assert c.execute("SELECT count(*) FROM manifest_receipts").fetchone()[0] > 0
        c.execute("SELECT * FROM reconcile_sites('2026-11-21')").fetchall()
        c.execute("SELECT * FROM reconcile_jobs('2026-11-25')").fetchall()
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("INSERT INTO disposal_receipts (site_id, plate, received_at,"
                      " recorded_by) VALUES ('DS01', 'x', now(), 'x')")
