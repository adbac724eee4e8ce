"""Plain-PostgreSQL telemetry layout: one table with a BRIN index on ts (what migrations
create) vs declarative daily partitions, same data, same run.

Measured: COPY throughput, a one-hour window over all devices (the analysts' and the
evidence query's shape), one device's day (a track), and size on disk.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import psycopg

from devservices.common import default_run_dir
from devservices.postgres import PrivatePostgres
from store.copy_binary import Column, encode, timestamptz

DAYS = 7
COLUMNS = "device_id text NOT NULL, ts timestamptz NOT NULL, lon float8, lat float8, speed real"


def payload(first: int, n: int, total: int, devices: int, t0_ms: int, rng) -> bytes:
    """Rows first … first+n of ``total`` fixes spread evenly over DAYS days."""
    k = np.arange(first, first + n)
    dev = [f"0139{d:08d}" for d in range(devices)]
    ts = t0_ms + (k // devices) * (DAYS * 86_400_000 // (total // devices)) + (k % devices)
    return encode([Column(text=dev, text_index=k % devices), Column(values=timestamptz(ts)),
                   Column(values=(114 + rng.random(n) * 0.3).astype(">f8")),
                   Column(values=(22.5 + rng.random(n) * 0.3).astype(">f8")),
                   Column(values=(rng.random(n) * 60).astype(">f4"))], n)


def timed(conn, sql: str, params=(), repeats: int = 5) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        conn.execute(sql, params).fetchall()
        best = min(best, time.perf_counter() - t0)
    return best


def run(n: int = 1_000_000, devices: int = 2_000) -> dict:
    rng = np.random.default_rng(5)
    t0_ms = 1_795_000_000_000 - 1_795_000_000_000 % 86_400_000
    chunks = [payload(i * (n // 10), n // 10, n, devices, t0_ms, rng) for i in range(10)]
    base = default_run_dir()
    base.mkdir(parents=True, exist_ok=True)
    out: dict = {"rows": n, "devices": devices, "days": DAYS}
    with tempfile.TemporaryDirectory(prefix="bench-layout-", dir=base) as tmp:
        Path(tmp).chmod(0o755)
        pg = PrivatePostgres(Path(tmp) / "pg").start()
        try:
            with psycopg.connect(pg.dsn, autocommit=True) as conn:
                conn.execute(f"CREATE TABLE t_brin ({COLUMNS}, PRIMARY KEY (device_id, ts))")
                conn.execute("CREATE INDEX ON t_brin USING brin (ts)")
                conn.execute(f"CREATE TABLE t_part ({COLUMNS}, PRIMARY KEY (device_id, ts))"
                             " PARTITION BY RANGE (ts)")
                for d in range(-1, DAYS + 2):
                    conn.execute(
                        f"CREATE TABLE t_part_{d + 1} PARTITION OF t_part FOR VALUES FROM"
                        f" (to_timestamp({(t0_ms + d * 86_400_000) / 1000}))"
                        f" TO (to_timestamp({(t0_ms + (d + 1) * 86_400_000) / 1000}))")
                for table in ("t_brin", "t_part"):
                    start = time.perf_counter()
                    for chunk in chunks:
                        with conn.cursor().copy(f"COPY {table} (device_id, ts, lon, lat, speed)"
                                                " FROM STDIN (FORMAT BINARY)") as copy:
                            copy.write(chunk)
                    out[f"{table}_copy_rate"] = n / (time.perf_counter() - start)
                    conn.execute(f"VACUUM ANALYZE {table}")
                    mid = (t0_ms + DAYS * 43_200_000) / 1000
                    out[f"{table}_hour_s"] = timed(
                        conn, f"SELECT count(*), avg(speed) FROM {table}"
                        " WHERE ts >= to_timestamp(%s) AND ts < to_timestamp(%s)",
                        (mid, mid + 3600))
                    out[f"{table}_track_s"] = timed(
                        conn, f"SELECT ts, lon, lat FROM {table} WHERE device_id = %s"
                        " AND ts >= to_timestamp(%s) AND ts < to_timestamp(%s) ORDER BY ts",
                        ("013900000042", mid, mid + 86_400))
                    out[f"{table}_mb"] = conn.execute(
                        "SELECT sum(pg_total_relation_size(c.oid)) / 1048576.0 FROM pg_class c"
                        " WHERE c.relname = %s OR c.relname LIKE %s",
                        (table, f"{table}\\_%")).fetchone()[0]
        finally:
            pg.stop()
    return out


if __name__ == "__main__":
    print(run())
