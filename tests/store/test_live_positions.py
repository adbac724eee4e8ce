"""The live map's table: each batch leaves every truck's newest fix, never an older one, and
announces itself at commit; the newest-per-device choice is exact for any batch."""

from __future__ import annotations

import asyncio

import numpy as np
import psycopg
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.batches import DeviceStatus, FixBatch, Rejects
from store import live
from store.database import Store
from tests.store.test_store import T0, batch


def write(dsn: str, fixes: FixBatch) -> None:
    async def go():
        store = Store(dsn)
        try:
            await store.write(fixes, Rejects(), DeviceStatus(), [])
        finally:
            await store.close()
    asyncio.run(go())


def position(db, device: str) -> tuple | None:
    return db.execute("SELECT (extract(epoch FROM ts) * 1000)::bigint, lon, speed_kmh, load"
                      " FROM live_positions WHERE device_id = %s", (device,)).fetchone()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abcd"), st.integers(0, 50)), min_size=0,
                max_size=40, unique=True))
def test_newest_per_device_picks_each_devices_latest_fix(pairs):
    ts = np.array([t for _, t in pairs], np.int64)
    fixes = FixBatch.from_columns(device=np.array([d for d, _ in pairs], object), ts=ts,
                                  lon=np.zeros(len(ts)), lat=np.zeros(len(ts)), received=ts)
    chosen = live.newest_per_device(fixes)
    expected = {}
    for d, t in pairs:
        expected[d] = max(t, expected.get(d, t))
    assert {fixes.device[i]: int(fixes.ts[i]) for i in chosen} == expected
    assert len(chosen) == len(expected)


def test_a_batch_leaves_the_newest_fix_and_an_older_one_never_moves_it_back(dsn, db,
                                                                            device_id):
    write(dsn, batch(device_id, 5))  # T0 … T0 + 4 s
    ts, lon, _speed, load = position(db, device_id)
    assert ts == T0 + 4000 and abs(lon - (114.0 + 4e-4)) < 1e-9 and load == 2
    write(dsn, batch(device_id, 2, start=T0 - 60_000))  # late / backfilled: older
    assert position(db, device_id)[0] == T0 + 4000
    write(dsn, batch(device_id, 5))  # a redelivery: all duplicates
    assert position(db, device_id)[0] == T0 + 4000
    write(dsn, batch(device_id, 1, start=T0 + 10_000))
    assert position(db, device_id)[0] == T0 + 10_000


def test_the_district_is_where_the_truck_is_and_the_write_notifies(dsn, db, device_id):
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute(f"LISTEN {live.CHANNEL}")
        write(dsn, batch(device_id, 3))
        got = list(listener.notifies(timeout=5.0, stop_after=1))
    assert [n.channel for n in got] == [live.CHANNEL]
    district = db.execute("SELECT district_id, district_at(lon, lat) FROM live_positions"
                          " WHERE device_id = %s", (device_id,)).fetchone()
    assert district[0] == district[1]


def test_changes_since_a_horizon_include_late_commits(dsn, db, device_id):
    """A reader's horizon is the oldest transaction still running, so a writer that
    started before the read and commits after it is read next time."""
    async def go():
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as reader, \
                await psycopg.AsyncConnection.connect(dsn) as slow:
            await slow.execute("INSERT INTO live_positions (device_id, ts, lon, lat,"
                               " received_at) VALUES (%s, now(), 114, 22.5, now())",
                               (device_id + "-slow",))
            first = await live.read_changes(reader, None)
            assert device_id + "-slow" not in {r[0] for r in first.rows}
            await asyncio.to_thread(write, dsn, batch(device_id, 1, start=T0 + 99_000))
            await slow.commit()
            second = await live.read_changes(reader, first.horizon)
            return {r[0] for r in second.rows}
    seen = asyncio.run(go())
    assert {device_id, device_id + "-slow"} <= seen
