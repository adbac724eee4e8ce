"""PostgreSQL stopped for 60 s while trucks keep reporting: the ingest neither crashes nor
drops anything — it retries the batch it holds, unacknowledged, so the broker's persistent
session holds the rest (back-pressure) — and catches up when the database is back. Alerts
are written in the same transactions, so they are delayed exactly as much, never lost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import psycopg
import pytest

from devservices.postgres import PrivatePostgres

pytestmark = pytest.mark.e2e
OUTAGE_S = 60


def count(dsn: str, devices: list[str], start: int, minutes: float) -> int:
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        return conn.execute(
            "SELECT count(*) FROM telemetry WHERE device_id = ANY(%s) AND ts BETWEEN"
            " to_timestamp(%s / 1000.0) AND to_timestamp(%s / 1000.0)",
            (devices, start - 200_000, start + minutes * 60_000 + 200_000)).fetchone()[0]


def test_database_down_for_a_minute_under_load_loses_nothing(
        broker, start_ingest, run_dir, poll, capsys, simulate, expected):
    pg = PrivatePostgres(run_dir / "outage-pg").start()
    try:
        env = {**os.environ, "MUCKWATCH_DSN": pg.dsn}
        migrated = subprocess.run([sys.executable, "-m", "muckwatch", "db", "migrate"],
                                  capture_output=True, text=True, timeout=120, env=env)
        assert migrated.returncode == 0, migrated.stderr
        root = "outage/v1"
        ingest = start_ingest("outage-ingest", MUCKWATCH_DSN=pg.dsn,
                              MUCKWATCH_MQTT_TOPIC_ROOT=root,
                              MUCKWATCH_INGEST_RETRY_BACKOFF_MAX_S="2")
        start, trucks, minutes = 1_792_389_600_000, 60, 3  # 2026-10-19 10:00
        fixes, devices = expected(start, trucks, minutes)
        # 3 simulated minutes at twice real time: 90 s of load, the outage in the middle
        load = simulate(broker.port, root, start, trucks, minutes, wait=False, speed=2)
        assert poll(lambda: count(pg.dsn, devices, start, minutes) > 500, timeout_s=60)
        pg.stop()
        down_at = time.monotonic()
        time.sleep(OUTAGE_S)
        assert ingest.proc.poll() is None, "the ingest is still running"
        pg.start()
        outage = time.monotonic() - down_at
        _, err = load.communicate(timeout=300)
        assert load.returncode == 0, err
        assert poll(lambda: count(pg.dsn, devices, start, minutes) >= len(fixes),
                    timeout_s=120), (count(pg.dsn, devices, start, minutes), len(fixes))
        time.sleep(2.0)
        stored = count(pg.dsn, devices, start, minutes)
        assert stored == len(fixes), "0 lost, 0 duplicated"
        code, out = ingest.stop()
        assert code == 0
        stats = json.loads(out.strip().splitlines()[-1])
        assert stats["db_retries"] > 0
        assert "retrying in" in ingest.log_path.read_text()
        with capsys.disabled():
            print(f"\n[database] down {outage:.0f} s under load: {len(fixes)} fixes published, "
                  f"{stored} stored after recovery (0 lost, 0 duplicated), "
                  f"{stats['db_retries']} batch retries, the ingest never exited")
    finally:
        pg.stop()
