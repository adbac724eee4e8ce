"""The deduplicating telemetry writer vs raw binary COPY, same database, same run.

Raw COPY of the writer's own binary buffers (built before the clock starts) into a table
shaped like ``telemetry``, primary key included, is the ceiling. The writer COPYs straight
into ``telemetry`` when a batch holds no stored fix; a batch that does (a redelivery) is
staged and moved with ``INSERT … SELECT … ON CONFLICT DO NOTHING``. Measured: all-new
batches, a redelivery (all duplicates), and batches with 0.5 % repeated from the batch
before — which sends nearly every batch down the staging path.
"""

from __future__ import annotations

import asyncio
import itertools
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
from store.writer import telemetry_payload

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
    """The ceiling: the writer's own binary COPY buffers (``telemetry_payload``, built before
    the clock starts) COPYed into a copy of ``telemetry`` (primary key included), one
    transaction per batch — the bytes the writer sends, minus everything it does around
    them."""
    payloads = []
    for b in batches:
        devices, index = np.unique(b.device.astype(str), return_inverse=True)
        payloads.append(telemetry_payload(b, devices, index))
    with psycopg.connect(dsn) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_raw")
        conn.execute("CREATE TABLE bench_raw (LIKE telemetry INCLUDING ALL)")
        conn.commit()
        t0 = time.perf_counter()
        for payload in payloads:
            with conn.cursor() as cur, cur.copy(
                    "COPY bench_raw (device_id, ts, lon, lat, speed_kmh, heading_deg, lid, lift,"
                    " load, load_kg, sats, hdop, seq, alarm, received_at, backfill)"
                    " FROM STDIN (FORMAT BINARY)") as copy:
                copy.write(payload)
            conn.commit()
        return time.perf_counter() - t0


def with_duplicates(batches: list[FixBatch], rate: float) -> list[FixBatch]:
    """Each batch with ``rate`` of its size repeated from the batch before (a QoS 1
    redelivery's overlap, spread thin): almost every batch then holds a stored fix."""
    rng = np.random.default_rng(5)
    out = [batches[0]]
    for prev, b in itertools.pairwise(batches):
        k = rng.choice(len(prev), max(1, int(len(b) * rate)), replace=False)
        both = FixBatch.concat([b, prev.take(np.sort(k))])
        out.append(both.take(np.lexsort((both.ts, both.device.astype(str)))))
    return out


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
                conn.execute("TRUNCATE telemetry")
                conn.commit()
            mixed = with_duplicates(batches, 0.005)
            dup_s = writer(pg.dsn, mixed)
        finally:
            pg.stop()
    return {"fixes": n_fixes, "batch": batch, "raw_rate": n_fixes / raw_s,
            "writer_rate": n_fixes / writer_s, "ratio": raw_s / writer_s,
            "redelivery_rate": (len(batches) // 4) * batch / again_s, "rows": rows,
            "dup_rate": sum(len(b) for b in mixed) / dup_s, "dup_ratio": raw_s / dup_s
            * sum(len(b) for b in mixed) / n_fixes}


if __name__ == "__main__":
    print(run())
