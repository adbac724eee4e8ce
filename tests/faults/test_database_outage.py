"""PostgreSQL stopped while trucks keep reporting: the ingest neither crashes nor drops
anything — it retries the batch it holds, unacknowledged, so the broker's persistent session
holds the rest (back-pressure) — and catches up when the database is back. Alerts are written
in the same transactions, so they are delayed exactly as much, never lost.

The outage is 12 s, not a minute: what it must outlast is scaled down with it — the retry
backoff cap (1 s: a dozen retries, most at the cap) and the MQTT keepalive (5 s: the broker
declares a client dead after 1.5 keepalives of silence, so the outage spans that window
as a 60 s one spans the default 30 s keepalive's 45 s). The fleet and its 3 simulated minutes
are the same; they are played at 6× real time, so the load runs before, through and after
the outage (asserted)."""

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
OUTAGE_S = 12
KEEPALIVE_S = 5  # the broker drops a client silent for 1.5 × this: < OUTAGE_S
SPEED = 6  # 3 simulated minutes in 30 s of load


def count(dsn: str, devices: list[str], start: int, minutes: float) -> int:
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        return conn.execute(
            "SELECT count(*) FROM telemetry WHERE device_id = ANY(%s) AND ts BETWEEN"
            " to_timestamp(%s / 1000.0) AND to_timestamp(%s / 1000.0)",
            (devices, start - 200_000, start + minutes * 60_000 + 200_000)).fetchone()[0]


def test_database_down_under_load_loses_nothing(
        broker, start_ingest, run_dir, poll, capsys, simulate, expected):
    assert OUTAGE_S > 1.5 * KEEPALIVE_S
    pg = PrivatePostgres(run_dir / "outage-pg").start()
    try:
        env = {**os.environ, "MUCKWATCH_DSN": pg.dsn}
        migrated = subprocess.run([sys.executable, "-m", "muckwatch", "db", "migrate"],
                                  capture_output=True, text=True, timeout=120, env=env)
        assert migrated.returncode == 0, migrated.stderr
        root = "outage/v1"
        ingest = start_ingest("outage-ingest", MUCKWATCH_DSN=pg.dsn,
                              MUCKWATCH_MQTT_TOPIC_ROOT=root,
                              MUCKWATCH_MQTT_KEEPALIVE_S=str(KEEPALIVE_S),
                              MUCKWATCH_INGEST_RETRY_BACKOFF_MAX_S="1")
        start, trucks, minutes = 1_792_389_600_000, 60, 3  # 2026-10-19 10:00
        fixes, devices = expected(start, trucks, minutes)
        # 3 simulated minutes at 6× real time: 30 s of load, the outage in the middle
        load = simulate(broker.port, root, start, trucks, minutes, wait=False, speed=SPEED)
        assert poll(lambda: count(pg.dsn, devices, start, minutes) > 500, timeout_s=60)
        pg.stop()
        down_at = time.monotonic()
        time.sleep(OUTAGE_S)
        assert ingest.proc.poll() is None, "the ingest is still running"
        assert load.poll() is None, "the trucks reported all through the outage"
        pg.start()
        outage = time.monotonic() - down_at
        _, err = load.communicate(timeout=300)
        assert load.returncode == 0, err
        assert poll(lambda: count(pg.dsn, devices, start, minutes) >= len(fixes),
                    timeout_s=120), (count(pg.dsn, devices, start, minutes), len(fixes))
        code, out = ingest.stop()  # a graceful stop: whatever it still held is written now
        assert code == 0
        stored = count(pg.dsn, devices, start, minutes)
        assert stored == len(fixes), "0 lost, 0 duplicated"
        stats = json.loads(out.strip().splitlines()[-1])
        assert stats["db_retries"] > 0
        log = ingest.log_path.read_text()
        assert "retrying in" in log
        # the broker session held through the outage (longer than 1.5 keepalives): the
        # ingest kept answering the broker while it retried the database
        assert "disconnected from broker" not in log and "silent for" not in log
        with capsys.disabled():
            print(f"\n[database] down {outage:.0f} s under load: {len(fixes)} fixes published, "
                  f"{stored} stored after recovery (0 lost, 0 duplicated), "
                  f"{stats['db_retries']} batch retries, the ingest never exited")
    finally:
        pg.stop()
