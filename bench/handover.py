"""What a takeover costs: a worker that inherits 20,000 vehicles from one that crashed.

Worker A runs 20,000 vehicles × 30 fixes 10 s apart (a common terminal setting) through the
real pipeline into a private PostgreSQL, with the default rule-state snapshot every 60 s
(spread over batches), and is dropped without a shutdown — as after a SIGKILL. Worker B then
gets every vehicle's next fix: each batch first claims its vehicles (reads the snapshots and
the fixes stored after them, re-evaluates those). Compared with A's steady-state batches of
the same size. `.venv/bin/python bench/handover.py` (about a minute); docs/scaling.md quotes
it.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
VEHICLES, ROUNDS, BATCH, INTERVAL_S = 20_000, 30, 5_000, 10
START_MS = 1_795_053_600_000  # 10:00 local


def batches(round_no: int, devices, lon0, lat0, step_lon, step_lat):
    import numpy as np
    import orjson

    from ingest.wire import RawBatch

    ts = START_MS + round_no * INTERVAL_S * 1000
    lon = lon0 + round_no * step_lon
    lat = lat0 + round_no * step_lat
    for k in range(0, len(devices), BATCH):
        sl = slice(k, k + BATCH)
        payloads = [orjson.dumps({"v": 1, "ts": ts, "lon": x, "lat": y, "spd": 30.0, "lid": 0,
                                  "load": 2, "sats": 12, "hdop": 0.9})
                    for x, y in zip(lon[sl].tolist(), lat[sl].tolist(), strict=True)]
        yield RawBatch([f"muck/v1/{d}/telemetry" for d in devices[sl]], payloads,
                       np.full(len(payloads), ts, np.int64)), ts


async def measure(dsn: str) -> dict:
    import numpy as np

    from domain.city import load_city
    from domain.settings import Settings
    from muckwatch.service import build_pipeline

    city = load_city(REPO / "data" / "sample-city")
    known = [v.device_id for v in city.vehicles]
    devices = known + [f"T{k:07d}" for k in range(VEHICLES - len(known))]
    rng = np.random.default_rng(5)
    lon0, lat0 = rng.uniform(113.85, 114.35, VEHICLES), rng.uniform(22.50, 22.75, VEHICLES)
    heading = rng.uniform(0, 2 * np.pi, VEHICLES)
    step_lon = 8.3 * INTERVAL_S * np.cos(heading) / (111_320 * 0.92)
    step_lat = 8.3 * INTERVAL_S * np.sin(heading) / 110_570
    settings = Settings().with_overrides(database={"dsn": dsn})

    a = build_pipeline(settings, city)
    steady: list[float] = []
    for r in range(ROUNDS):
        for raw, now in batches(r, devices, lon0, lat0, step_lon, step_lat):
            t0 = time.perf_counter()
            await a.process(raw, now_ms=now)
            if r >= ROUNDS - 5:
                steady.append(time.perf_counter() - t0)
    await a.store.close()  # no save_state: worker A "crashed"

    b = build_pipeline(settings, city)
    takeover: list[float] = []
    claim_ms = 0.0
    for raw, now in batches(ROUNDS, devices, lon0, lat0, step_lon, step_lat):
        t0 = time.perf_counter()
        result = await b.process(raw, now_ms=now)
        takeover.append(time.perf_counter() - t0)
        claim_ms += result.stage_ms.get("claim", 0.0)
    await b.store.close()
    h = b.handover.handover
    assert h is not None
    return {"vehicles": VEHICLES, "restored": h.restored, "replayed": h.replayed,
            "steady_batch_s": sum(steady) / len(steady), "takeover_s": sum(takeover),
            "takeover_batches": len(takeover), "claim_s": claim_ms / 1000,
            "claim_us_per_vehicle": claim_ms * 1000 / max(h.restored, 1)}


def main() -> None:
    import psycopg

    from devservices.postgres import PrivatePostgres
    from store.migrate import migrate

    where = REPO / ".run" / "bench" / "handover-pg"
    shutil.rmtree(where, ignore_errors=True)
    pg = PrivatePostgres(where)
    pg.start()
    try:
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            migrate(conn)
        r = asyncio.run(measure(pg.dsn))
    finally:
        pg.stop()
    print(f"| vehicles taken over | {r['restored']:,} of {r['vehicles']:,} |\n"
          f"| stored fixes re-evaluated | {r['replayed']:,} |\n"
          f"| claim (read snapshots + fixes, restore, re-evaluate) | {r['claim_s']:.2f} s = "
          f"{r['claim_us_per_vehicle']:.0f} µs per vehicle |\n"
          f"| worker B's first {r['takeover_batches']} batches ({BATCH:,} fixes each) | "
          f"{r['takeover_s']:.2f} s, vs {r['steady_batch_s'] * 1000:.0f} ms per batch in "
          f"steady state |")


if __name__ == "__main__":
    main()
