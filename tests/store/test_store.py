"""Migrations and the batch writer against a real PostgreSQL."""

from __future__ import annotations

import asyncio

import numpy as np
import psycopg

from domain.batches import UNKNOWN, DeviceStatus, FixBatch, Rejects
from domain.events import Phase, ViolationEvent
from store.database import DatabaseError, Store
from store.migrate import available_migrations, migrate, status
from store.writer import copy_payload

T0 = 1_790_000_000_000


def batch(device: str, n: int, *, start: int = T0, step: int = 1000) -> FixBatch:
    ts = start + np.arange(n) * step
    return FixBatch.from_columns(
        device=np.full(n, device, object), ts=ts, lon=114.0 + np.arange(n) * 1e-4,
        lat=np.full(n, 22.5), speed=np.where(np.arange(n) % 2, np.nan, 30.0),
        heading=np.full(n, 90.0), lid=np.arange(n) % 2, lift=np.full(n, UNKNOWN),
        load=np.full(n, 2), load_kg=np.full(n, np.nan), sats=np.full(n, 11),
        hdop=np.full(n, 0.8), seq=np.arange(n), received=ts + 250,
        backfill=np.arange(n) == 0,
        alarm=np.where(np.arange(n) % 2, UNKNOWN, np.where(np.arange(n) == 2, 0x80000120, 0)),
    )


def write(dsn, fixes, rejects=None, statuses=None, events=()):
    async def go():
        store = Store(dsn)
        try:
            return await store.write(fixes, rejects or Rejects(), statuses or DeviceStatus(),
                                     list(events))
        finally:
            await store.close()
    return asyncio.run(go())


def test_migrate_is_idempotent_and_recorded(dsn, db):
    assert migrate(db) == []  # the session fixture already migrated
    st = status(db)
    assert st.mode == "postgresql" and "not available" in st.why
    assert st.applied == [m.version for m in available_migrations()] and st.pending == []
    rows = db.execute("SELECT version, name, mode FROM schema_version").fetchall()
    assert rows == [(m.version, m.name, "postgresql") for m in available_migrations()]
    assert rows[:4] == [(1, "initial", "postgresql"), (2, "rules", "postgresql"),
                        (3, "scoring_roles", "postgresql"), (4, "alert_outbox", "postgresql")]


def test_every_column_lands_and_unknown_is_null(dsn, db, device_id):
    report = write(dsn, batch(device_id, 4))
    assert report.fixes_inserted == 4
    rows = db.execute(
        "SELECT extract(epoch FROM ts) * 1000, lon, lat, speed_kmh, heading_deg, lid, lift,"
        " load, load_kg, sats, hdop, seq, extract(epoch FROM received_at) * 1000, backfill,"
        " alarm FROM telemetry WHERE device_id = %s ORDER BY ts", (device_id,)).fetchall()
    assert [int(r[0]) for r in rows] == [T0, T0 + 1000, T0 + 2000, T0 + 3000]
    first, second = rows[0], rows[1]
    assert first[1:3] == (114.0, 22.5)
    assert first[3] == 30.0 and second[3] is None
    assert (first[5], second[5], first[6], first[7]) == (0, 1, None, 2)
    assert first[8] is None and first[9] == 11 and abs(first[10] - 0.8) < 1e-6
    assert [r[11] for r in rows] == [0, 1, 2, 3]
    assert int(first[12]) == T0 + 250
    assert [r[13] for r in rows] == [True, False, False, False]
    # the alarm word: none raised, unknown, bit 31 with power cut and antenna cut (bigint)
    assert [r[14] for r in rows] == [0, None, 0x80000120, None]


def test_redelivered_batch_creates_no_duplicates(dsn, db, device_id):
    fixes = batch(device_id, 50)
    assert write(dsn, fixes).fixes_inserted == 50
    again = write(dsn, fixes)
    assert again.fixes_inserted == 0 and again.fixes_duplicate == 50
    overlap = write(dsn, batch(device_id, 50, start=T0 + 25_000))
    assert overlap.fixes_inserted == 25
    n = db.execute("SELECT count(*) FROM telemetry WHERE device_id = %s", (device_id,))
    assert n.fetchone()[0] == 75


def test_rejects_statuses_and_violations_in_the_same_transaction(dsn, db, device_id):
    rejects = Rejects()
    rejects.add(f"muck/v1/{device_id}/telemetry", device_id, "bad_json", "invalid JSON",
                b"{x", T0)
    statuses = DeviceStatus([device_id], [True], [T0])
    event = ViolationEvent(id=f"v-{device_id}", phase=Phase.OPENED, rule="OFF_ROUTE",
                           device_id=device_id, start_ts=T0, end_ts=None, start_lon=114.0,
                           start_lat=22.5, peak=120.0)
    write(dsn, batch(device_id, 1), rejects, statuses, [event])
    closed = ViolationEvent(id=f"v-{device_id}", phase=Phase.CLOSED, rule="OFF_ROUTE",
                            device_id=device_id, start_ts=T0, end_ts=T0 + 90_000,
                            start_lon=114.0, start_lat=22.5, end_lon=114.01, end_lat=22.5,
                            peak=80.0)
    write(dsn, FixBatch.empty(), events=[closed])
    assert db.execute("SELECT reason, detail, payload FROM dead_letter WHERE device_id = %s",
                      (device_id,)).fetchall() == [("bad_json", "invalid JSON", b"{x")]
    assert db.execute("SELECT online FROM device_status WHERE device_id = %s",
                      (device_id,)).fetchone() == (True,)
    v = db.execute("SELECT state, peak, extract(epoch FROM end_ts) * 1000 FROM violations"
                   " WHERE device_id = %s", (device_id,)).fetchall()
    assert v == [("closed", 120.0, T0 + 90_000)]


def test_binary_copy_payload_matches_postgres_text_copy(dsn, db, device_id):
    """Our numpy-built COPY stream must mean exactly what PostgreSQL's own format means."""
    fixes = batch(device_id, 3)
    payload = copy_payload(fixes, np.zeros(3, np.int32))
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE t (dev int, ts timestamptz, lon float8, lat float8,"
                    " speed real, heading real, lid smallint, lift smallint, load smallint,"
                    " load_kg real, sats smallint, hdop real, seq bigint, alarm bigint,"
                    " received timestamptz, backfill boolean)")
        with cur.copy("COPY t FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(payload)
        rows = cur.execute("SELECT (extract(epoch FROM ts) * 1000)::bigint, lid, seq, backfill,"
                           " speed, (extract(epoch FROM received) * 1000)::bigint"
                           " FROM t ORDER BY ts").fetchall()
    assert [r[0] for r in rows] == fixes.ts.tolist()
    assert [r[1] for r in rows] == fixes.lid.tolist()
    assert [r[3] for r in rows] == [True, False, False]
    assert str(rows[1][4]) == "nan"
    assert [r[5] for r in rows] == fixes.received.tolist()


def test_unreachable_database_is_one_clear_error():
    from devservices.common import free_port

    port = free_port()
    try:
        write(f"postgresql://postgres@127.0.0.1:{port}/nope", batch("x", 1))
    except DatabaseError as e:
        assert f"127.0.0.1:{port}/nope" in str(e)
    else:
        raise AssertionError("expected DatabaseError")


def test_an_arrival_names_the_permit_whose_destination_the_trip_reached(dsn, db, device_id):
    """A leg may be explained by several permits until it arrives (docs/rules.md): the trip
    row starts with the first candidate and ends with the one whose destination it is; a
    replayed departure never undoes that."""
    from domain.events import TripEvent

    left = TripEvent(id=f"tri-{device_id}", device_id=device_id, plate=None, company_id=None,
                     permit_id="P-A", origin="CS1", left_ts=T0)
    arrived = TripEvent(id=left.id, device_id=device_id, plate=None, company_id=None,
                        permit_id="P-B", origin="CS1", left_ts=T0, destination="DS2",
                        arrived_ts=T0 + 600_000)
    for events in ([left], [arrived], [left]):
        write(dsn, FixBatch.empty(), events=events)
    row = db.execute("SELECT permit_id, destination FROM trips WHERE id = %s",
                     (left.id,)).fetchone()
    assert row == ("P-B", "DS2")
