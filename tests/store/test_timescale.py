"""The TimescaleDB path: every migration, the analysts' queries and the scorer on a real
TimescaleDB 2.23 build (PGlite on loopback; see devservices/timescale.py for its limits: one
connection, no COPY FROM STDIN — the write path's COPY is tested on PostgreSQL)."""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from devservices.timescale import PrivateTimescale
from domain.events import Phase, ViolationEvent
from store import scores
from store.database import Store
from store.migrate import migrate, status
from store.reference import import_city

pytestmark = pytest.mark.timescale

DOC = Path(__file__).resolve().parents[2] / "docs" / "sql.md"
NOW_MS = time.time_ns() // 1_000_000


@pytest.fixture(scope="module")
def timescale():
    run_dir = Path(tempfile.mkdtemp(prefix="muckwatch-timescale-"))
    server = PrivateTimescale(run_dir / "memory").start()
    yield server
    server.stop()
    shutil.rmtree(run_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def migrated(timescale, city):
    with psycopg.connect(timescale.dsn, autocommit=True) as conn:
        applied = migrate(conn)
        import_city(conn, city)
        device = city.vehicles[0].device_id
        conn.cursor().executemany(
            "INSERT INTO telemetry (device_id, ts, lon, lat, speed_kmh, received_at)"
            " VALUES (%s, to_timestamp(%s / 1000.0), 114.05, 22.55, 30, now())",
            [(device, NOW_MS - k * 1000) for k in range(300)])
    events = []
    for k, rule in enumerate(("UNAUTHORISED_DUMP", "OFF_ROUTE", "OVERSPEED")):
        start = NOW_MS - 3_600_000 * (k + 1)
        for phase, end in ((Phase.OPENED, None), (Phase.CLOSED, start + 120_000)):
            events.append(ViolationEvent(
                id=f"ts-{rule}", phase=phase, rule=rule, device_id=device, start_ts=start,
                end_ts=end, start_lon=114.05, start_lat=22.55, peak=150.0, severity=3,
                plate=city.vehicles[0].plate, company_id=city.vehicles[0].company_id))

    async def write():
        store = Store(timescale.dsn)
        try:
            from domain.batches import DeviceStatus, FixBatch, Rejects

            await store.write(FixBatch.empty(), Rejects(), DeviceStatus(), events)
        finally:
            await store.close()

    asyncio.run(write())
    return applied, device


def test_all_migrations_apply_in_timescaledb_mode(timescale, migrated):
    applied, _ = migrated
    with psycopg.connect(timescale.dsn, autocommit=True) as conn:
        st = status(conn)
        assert st.mode == "timescaledb" and "installed" in st.why
        assert st.applied == applied and not st.pending
        hypertables = {r[0] for r in conn.execute(
            "SELECT hypertable_name FROM timescaledb_information.hypertables")}
        assert {"telemetry", "violations", "trips"} <= hypertables
        jobs = {r[0] for r in conn.execute(
            "SELECT proc_name FROM timescaledb_information.jobs"
            " WHERE hypertable_name IN ('telemetry', 'violations_daily')"
            "    OR proc_name = 'policy_refresh_continuous_aggregate'")}
        assert {"policy_compression", "policy_retention",
                "policy_refresh_continuous_aggregate"} <= jobs
        caggs = [r[0] for r in conn.execute(
            "SELECT view_name FROM timescaledb_information.continuous_aggregates")]
        assert caggs == ["violations_daily"]
        again = migrate(conn)
        assert again == [], "idempotent"


def test_compression_really_compresses_old_telemetry(timescale, migrated):
    with psycopg.connect(timescale.dsn, autocommit=True) as conn:
        chunks = [r[0] for r in conn.execute("SELECT show_chunks('telemetry')")]
        assert chunks
        conn.execute("SELECT compress_chunk(%s::regclass)", (chunks[0],))
        assert conn.execute("SELECT count(*) FROM telemetry").fetchone()[0] == 300
        stats = conn.execute("SELECT number_compressed_chunks FROM"
                             " hypertable_compression_stats('telemetry')").fetchone()
        assert stats[0] >= 1


def test_documented_queries_and_the_scorer_run_unchanged(timescale, migrated):
    queries = re.findall(r"```sql\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert len(queries) >= 8
    with psycopg.connect(timescale.dsn, autocommit=True) as conn:
        conn.execute("CALL refresh_continuous_aggregate('violations_daily', NULL, NULL)")
        for q in queries:
            conn.execute(q).fetchall()
        daily = conn.execute("SELECT sum(violations) FROM violations_daily").fetchone()[0]
        assert daily == 3
        _, device = migrated
        company = conn.execute("SELECT company_id FROM vehicles WHERE device_id = %s",
                               (device,)).fetchone()[0]
        # unreviewed violations count once [scoring] unreviewed_after_days (7) have passed
        now = {r[0]: r for r in scores.company_scores(conn, scores.as_of_end(None))}
        assert now[company][3] == 0
        later = scores.as_of_end(None) + timedelta(days=8)
        by_id = {r[0]: r for r in scores.company_scores(conn, later)}
        assert by_id[company][3] == 3 and by_id[company][4] == 20 + 8 + 4  # all severity 3
        assert scores.snapshot(conn, scores.as_of_end(None).date()) > 0
        evidence = conn.execute("SELECT count(*) FROM violations WHERE evidence IS NOT NULL"
                                ).fetchone()[0]
        assert evidence >= 0
