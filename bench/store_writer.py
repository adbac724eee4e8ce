"""The deduplicating telemetry writer vs raw binary COPY, same database, same run.

Raw COPY (psycopg's binary ``write_row`` straight into a table shaped like ``telemetry``,
primary key included) is the ceiling; the writer must keep ≥ 70 % of it while deduplicating
on (device, ts): numpy-built binary COPY into a staging table, then ``INSERT … SELECT … ON
CONFLICT DO NOTHING``, one transaction per batch, as the pipeline does.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import numpy as np
import psycopg

from devservices.common import default_run_dir
from devservices.postgres import PrivatePostgres
from domain.batches import DeviceStatus, FixBatch, Rejects
from store.database import Store
from store.migrate import migrate

RAW_TYPES = ["text", "timestamptz", "float8", "float8", "float4", "float4", "int2", "int2",
             "int2", "float4", "int2", "float4", "int8", "int8", "timestamptz", "bool"]


def make_batches(n_fixes: int, batch: int, devices: int = 20_000) -> list[FixBatch]:
    rng = np.random.default_rng(3)
    out = []
    t0 = 1_795_000_000_000
    per = n_fixes // devices + 1
    dev = np.array([f"0139{k:08d}" for k in range(devices)], dtype=object)
    for start in range(0, n_fixes, batch):
        k = np.arange(start, min(start + batch, n_fixes))
        out.append(FixBatch.from_columns(
            device=dev[k % devices], ts=t0 + (k // devices) * 1000 + (k % 997),
            lon=114 + rng.random(len(k)) * 0.3, lat=22.5 + rng.random(len(k)) * 0.3,
            speed=rng.random(len(k)) * 60, heading=rng.random(len(k)) * 360,
            lid=rng.integers(0, 2, len(k)), lift=np.zeros(len(k)), load=np.full(len(k), 2),
            sats=np.full(len(k), 12), hdop=np.full(len(k), 0.9), seq=k,
            received=t0 + (k // devices) * 1000 + 500))
    del per
    return out


def raw_copy(dsn: str, batches: list[FixBatch]) -> float:
    from datetime import UTC, datetime

    with psycopg.connect(dsn) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_raw")
        conn.execute("CREATE TABLE bench_raw (LIKE telemetry INCLUDING ALL)")
        conn.commit()
        t0 = time.perf_counter()
        for b in batches:
            ts = [datetime.fromtimestamp(x / 1000, UTC) for x in b.ts.tolist()]
            rec = [datetime.fromtimestamp(x / 1000, UTC) for x in b.received.tolist()]
            with conn.cursor() as cur, cur.copy(
                    "COPY bench_raw (device_id, ts, lon, lat, speed_kmh, heading_deg, lid, lift,"
                    " load, load_kg, sats, hdop, seq, alarm, received_at, backfill)"
                    " FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(RAW_TYPES)
                for row in zip(b.device.tolist(), ts, b.lon.tolist(), b.lat.tolist(),
                               b.speed.tolist(), b.heading.tolist(), b.lid.tolist(),
                               b.lift.tolist(), b.load.tolist(), b.load_kg.tolist(),
                               b.sats.tolist(), b.hdop.tolist(), b.seq.tolist(),
                               b.alarm.tolist(), rec, b.backfill.tolist(), strict=True):
                    copy.write_row(row)
            conn.commit()
        return time.perf_counter() - t0


def writer(dsn: str, batches: list[FixBatch]) -> float:
    async def go() -> float:
        store = Store(dsn)
        try:
            await store.write(FixBatch.empty(), Rejects(), DeviceStatus(), [])
            t0 = time.perf_counter()
            for b in batches:
                await store.write(b, Rejects(), DeviceStatus(), [])
            return time.perf_counter() - t0
        finally:
            await store.close()
    return asyncio.run(go())


def run(n_fixes: int = 400_000, batch: int = 5_000) -> dict:
    batches = make_batches(n_fixes, batch)
    base = default_run_dir()
    base.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-pg-", dir=base) as tmp:
        Path(tmp).chmod(0o755)
        pg = PrivatePostgres(Path(tmp) / "pg").start()
        try:
            with psycopg.connect(pg.dsn) as conn:
                migrate(conn)
            raw_s = raw_copy(pg.dsn, batches)
            writer_s = writer(pg.dsn, batches)
            again_s = writer(pg.dsn, batches[: len(batches) // 4])  # a redelivery: all dupes
            with psycopg.connect(pg.dsn) as conn:
                rows = conn.execute("SELECT count(*) FROM telemetry").fetchone()[0]
        finally:
            pg.stop()
    return {"fixes": n_fixes, "batch": batch, "raw_rate": n_fixes / raw_s,
            "writer_rate": n_fixes / writer_s, "ratio": raw_s / writer_s,
            "redelivery_rate": (len(batches) // 4) * batch / again_s, "rows": rows}


if __name__ == "__main__":
    print(run())
