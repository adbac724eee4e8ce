"""Rule-state hand-over between pipelines on a real PostgreSQL, without a broker in between:
the situations a shared subscription creates (a vehicle moved back and forth between
workers) and a single worker's restart."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import psycopg
import pytest

from domain.settings import Settings
from ingest.wire import RawBatch
from muckwatch.service import build_pipeline
from simulator.scenarios import example_detour

BATCH = 10  # fixes per batch (50 s of device time: 5 s reporting)


@pytest.fixture(scope="module")
def detour_batches(city) -> list[RawBatch]:
    """The detour track as raw batches, each received when its newest fix was taken."""
    lines = example_detour(city, 1_795_053_600_000).lines()
    batches = []
    for i in range(0, len(lines), BATCH):
        chunk = lines[i:i + BATCH]
        ts = [json.loads(x)["ts"] for x in chunk]
        topics = [f"muck/v1/{json.loads(x)['dev']}/telemetry" for x in chunk]
        batches.append(RawBatch(topics, [x.encode() for x in chunk],
                                np.full(len(chunk), max(ts), np.int64)))
    return batches


def pipeline(city, dsn: str, **mqtt):
    settings = Settings().with_overrides(database={"dsn": dsn}, mqtt=mqtt,
                                         ingest={"snapshot_s": 30.0})
    return build_pipeline(settings, city)


async def run(pipelines: list, batches: list[RawBatch], owner_of) -> None:
    """Batch k goes to ``pipelines[owner_of(k)]``; each stops as a worker does."""
    for k, raw in enumerate(batches):
        await pipelines[owner_of(k)].process(raw, now_ms=int(raw.received_ms.max()))
    for p in pipelines:
        await p.shutdown()  # the stages a stopping worker runs: snapshots, then the flush
        await p.store.close()


def outcome(dsn: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT id, rule, start_ts, end_ts, state, late, round(peak::numeric, 3)"
            " FROM violations ORDER BY id").fetchall()


def test_vehicle_bouncing_between_shared_subscribers_keeps_its_violations(
        city, detour_batches, fresh_database):
    """A shared subscription moves the truck between two workers every 150 s of its
    journey; each re-reads its state on return (reclaim_after_s) and the violations, ids
    included, are those of one worker."""
    alone = fresh_database()
    asyncio.run(run([pipeline(city, alone)], detour_batches, lambda k: 0))
    reference = outcome(alone)
    assert [v[1] for v in reference] == ["OFF_ROUTE"]

    shared = fresh_database()
    workers = [pipeline(city, shared, share_group="g", client_id=f"w{n}") for n in (1, 2)]
    asyncio.run(run(workers, detour_batches, lambda k: (k // 3) % 2))
    assert outcome(shared) == reference
    assert all(w.handover.handover.restored > 0 for w in workers)

    # without re-reading on return, the stale state of the first worker shows
    stale = fresh_database()
    workers = [pipeline(city, stale, client_id=f"w{n}") for n in (1, 2)]
    asyncio.run(run(workers, detour_batches, lambda k: (k // 3) % 2))
    assert outcome(stale) != reference


def test_a_restarted_worker_continues_the_open_violation_under_its_id(
        city, detour_batches, fresh_database):
    """One worker, no partitions (the default deployment), restarted at every point of the
    detour: never a second violation for the same detour."""
    alone = fresh_database()
    asyncio.run(run([pipeline(city, alone)], detour_batches, lambda k: 0))
    reference = outcome(alone)
    for restart_at in (8, 20):
        dsn = fresh_database()
        asyncio.run(run([pipeline(city, dsn)], detour_batches[:restart_at], lambda k: 0))
        asyncio.run(run([pipeline(city, dsn)], detour_batches[restart_at:], lambda k: 0))
        assert outcome(dsn) == reference, restart_at
