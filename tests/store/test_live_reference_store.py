"""What the ingest reads of the database's permits (store.live_reference): the effective end
of a revoked permit, suspensions as gaps, and a notification on every change."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import psycopg

from store.live_reference import CHANNEL, load
from store.reference import import_city


def test_effective_validity_and_notifications(fresh_database, city):
    dsn = fresh_database()
    with psycopg.connect(dsn) as conn:
        import_city(conn, city)
    first, second = city.permits[0], city.permits[1]
    t = datetime.now(UTC).replace(microsecond=0)
    with psycopg.connect(dsn, autocommit=True) as listener, \
            psycopg.connect(dsn, autocommit=True) as conn:
        listener.execute(f"LISTEN {CHANNEL}")
        conn.execute("UPDATE permits SET status = 'revoked', status_changed_at = %s"
                     " WHERE id = %s", (t, first.id))
        conn.execute("INSERT INTO permit_suspensions (permit_id, from_ts, to_ts, reason,"
                     " created_by) VALUES (%s, %s, NULL, 'r', 'test'), (%s, %s, %s, 'r', 'test')",
                     (second.id, t, second.id, t - timedelta(hours=2), t - timedelta(hours=1)))
        heard = [n.payload for n in listener.notifies(timeout=2, stop_after=2)]
        assert heard == ["permits", "permit_suspensions"]

    async def read():
        async with await psycopg.AsyncConnection.connect(dsn) as conn:
            return await load(conn)
    permits, vehicles = asyncio.run(read())
    by_id = {p.id: p for p in permits}
    assert by_id[first.id].valid_to == t - timedelta(milliseconds=1)
    ms = int(t.timestamp() * 1000)
    assert by_id[second.id].suspended == ((ms - 7_200_000, ms - 3_600_000),
                                          (ms, 253_402_300_799_000))
    assert by_id[city.permits[2].id].suspended == ()
    assert {v.plate for v in vehicles} == {v.plate for v in city.vehicles}
