"""Who passed here (issue #21): query latency at two table sizes of the same city density,
and what the (cell, ts) index costs the telemetry writer.

The synthetic city: 40 × 40 km of straight roads every kilometre both ways (roads 0.5 km off
the grid of 0.01° cells, so they cross cells at random), 20,000 trucks in ten 4 km wide
strips of 2,000. A truck works one 10 h shift a day (70% start 19–23 h, the rest 7–11 h),
driving from crossing to crossing along the roads (east–west first or north–south first) at
30–40 km/h, reporting every 30 s, dwelling 5–15 min at each end (loaded one way, empty the
other; 5% of trucks have no load sensor), then parks at its depot and reports every 10 min.
That is ≈ 1,370 fixes per truck and day, GNSS noise 3 m.

Sizes: one day of the 2,000 trucks of strip 0, then of all 20,000 (the whole city) — the
density near any road is the same at both sizes, only the table grows (tenfold). Rows are
COPYed in device-time order, as the ingest writes them, into a migrated ``telemetry`` of a
private PostgreSQL (fsync off: only the reads are measured here) with its primary key and
cell index dropped and rebuilt after each size (≈ 5× faster than COPY into them), then
ANALYZEd. At each size: ≥ 50 queries at random road points of the populated strips (≥ 1 km
inside them), random 1 h windows, radius 200 m, through ``store.passed.who_passed`` as the
API calls it (loaded only, limit 50; the pass, the ranking and the ±5 min tracks included);
and a few of the same queries with the cell index dropped inside a transaction (so BRIN(ts)
and the primary key are all the planner has), for comparison.

Writer cost: the pipeline's writer (``store.database.Store.write``) on batches of 5,000 fixes
of this city's trucks (the busiest stretch, from 20:00, of the last size's day), into a fresh
``telemetry`` with and without the cell index, default durability, same cluster, alternating
runs, best of three each.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg

from devservices.common import default_run_dir
from devservices.postgres import PrivatePostgres
from domain.batches import FixBatch
from store.copy_binary import Column, encode, timestamptz
from store.migrate import migrate
from store.passed import who_passed

LON0, LAT0 = 113.85, 22.37  # the city's south-west corner
KX = 111_320.0 * math.cos(math.radians(LAT0 + 0.18))  # metres per degree (synthetic frame)
KY = 110_750.0
STRIP_TRUCKS = 2_000
STRIP_KM = 4
CITY_KM = 40
DAY_S = 86_400
T0_MS = 1_795_046_400_000  # a UTC midnight
STAGES = (2_000, 20_000)
COPY_COLUMNS = ("device_id, ts, lon, lat, speed_kmh, lid, load, sats, hdop, received_at")


def truck_day(i: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Truck ``i``'s fixes of one day: seconds into the day, x and y in metres, speed, load
    (-1 unknown)."""
    x0 = (STRIP_KM * (i // STRIP_TRUCKS) + 0.5) * 1000.0
    legs = 40  # more than a 10 h shift drives
    dest_x = (x0 + rng.integers(0, STRIP_KM, legs + 1) * 1000.0).tolist()
    dest_y = ((0.5 + rng.integers(0, CITY_KM, legs + 1)) * 1000.0).tolist()
    x_first = (rng.random(legs + 1) < 0.5).tolist()
    dwell = rng.uniform(300, 900, legs).tolist()
    start = (rng.uniform(19, 23) if rng.random() < 0.7 else rng.uniform(7, 11)) * 3600.0
    speed = rng.uniform(30, 40) / 3.6
    depot = (dest_x[legs], dest_y[legs])
    knot_t, knot_x, knot_y, knot_load = [start], [depot[0]], [depot[1]], []
    t, (px, py), loaded = start, depot, 2
    for leg in range(legs + 1):
        home = leg == legs or t > start + 10 * 3600
        dx, dy = depot if home else (dest_x[leg], dest_y[leg])
        corner = (dx, py) if x_first[leg] else (px, dy)
        for qx, qy in (corner, (dx, dy)):
            t += (abs(qx - px) + abs(qy - py)) / speed
            knot_t.append(t)
            knot_x.append(qx)
            knot_y.append(qy)
            knot_load.append(0 if home else loaded)
            px, py = qx, qy
        if home:
            break
        t += dwell[leg]  # loading or tipping
        knot_t.append(t)
        knot_x.append(px)
        knot_y.append(py)
        knot_load.append(0)
        loaded = 2 - loaded
    kt = np.array(knot_t)
    end = kt[-1]
    work = start + rng.uniform(0, 30) + np.arange(0, end - start, 30.0)
    work = work[work < end] + rng.uniform(-1, 1, (work < end).sum())
    parked = end + 600 + np.arange(0, start + DAY_S - end - 600, 600.0)
    t_all = np.concatenate([work, parked[parked < start + DAY_S - 1]])
    x = np.interp(t_all, kt, knot_x) + rng.normal(0, 3, len(t_all))
    y = np.interp(t_all, kt, knot_y) + rng.normal(0, 3, len(t_all))
    seg = np.clip(np.searchsorted(kt, t_all, side="right") - 1, 0, len(kt) - 2)
    seg_len = np.hypot(np.diff(knot_x), np.diff(knot_y))
    moving = (seg_len[seg] > 0) & (t_all < end)
    spd = np.where(moving, speed * 3.6 + rng.normal(0, 2, len(t_all)), 0.0)
    load = np.where(t_all < end, np.array(knot_load)[seg], 0)
    if rng.random() < 0.05:
        load = np.full(len(t_all), -1)
    return np.mod(t_all, DAY_S), x, y, spd, load


def city_day(first: int, last: int, seed: int) -> dict[str, np.ndarray]:
    """Trucks first … last-1 over one day, sorted by device time (as the ingest writes)."""
    rng = np.random.default_rng(seed)
    parts = [truck_day(i, rng) for i in range(first, last)]
    counts = np.array([len(p[0]) for p in parts])
    cols = [np.concatenate([p[k] for p in parts]) for k in range(5)]
    device = np.repeat(np.arange(first, last), counts)
    order = np.argsort(cols[0], kind="stable")
    ts_ms = T0_MS + np.round(cols[0][order] * 1000).astype(np.int64)
    return {"device": device[order], "ts": ts_ms, "lon": LON0 + cols[1][order] / KX,
            "lat": LAT0 + cols[2][order] / KY, "speed": cols[3][order],
            "load": cols[4][order].astype(np.int64)}


def device_name(i: int) -> str:
    return f"0190{i:08d}"


def copy_day(conn: psycopg.Connection, day: dict[str, np.ndarray], names: np.ndarray,
             chunk: int = 2_000_000) -> None:
    """COPY a day in device-time order with the primary key and the cell index dropped, then
    build them again (a bulk load's way: ~5× faster than COPY into the indexes here)."""
    conn.execute("ALTER TABLE telemetry DROP CONSTRAINT IF EXISTS telemetry_pkey")
    conn.execute("DROP INDEX IF EXISTS telemetry_cell_ts")
    n = len(day["ts"])
    for a in range(0, n, chunk):
        s = slice(a, min(n, a + chunk))
        m = s.stop - s.start
        load = day["load"][s]
        payload = encode([
            Column(values=names[day["device"][s]]),  # fixed-width text
            Column(values=timestamptz(day["ts"][s])),
            Column(values=day["lon"][s].astype(">f8")),
            Column(values=day["lat"][s].astype(">f8")),
            Column(values=day["speed"][s].astype(">f4")),
            Column(values=np.zeros(m, ">i2")),
            Column(values=load.astype(">i2"), null=load < 0),
            Column(values=np.full(m, 12, ">i2")),
            Column(values=np.full(m, 0.8, ">f4")),
            Column(values=timestamptz(day["ts"][s] + 800)),
        ], m)
        with conn.cursor().copy(f"COPY telemetry ({COPY_COLUMNS}) FROM STDIN (FORMAT BINARY)"
                                ) as copy:
            copy.write(payload)
    conn.execute("SET maintenance_work_mem = '1GB'")
    conn.execute("ALTER TABLE telemetry ADD CONSTRAINT telemetry_pkey PRIMARY KEY (device_id, ts)")
    conn.execute("CREATE INDEX telemetry_cell_ts ON telemetry (geo_cell(lon, lat), ts)")


def road_points(rng: np.random.Generator, strips: int, n: int) -> list[tuple[float, float]]:
    """Random points on the roads of the first ``strips`` strips, ≥ 1 km inside them."""
    out = []
    width = strips * STRIP_KM * 1000.0
    while len(out) < n:
        if rng.random() < 0.5:  # a north-south road
            x = (0.5 + rng.integers(1, strips * STRIP_KM - 1)) * 1000.0
            y = rng.uniform(1000, CITY_KM * 1000 - 1000)
        else:  # an east-west road
            y = (0.5 + rng.integers(1, CITY_KM - 1)) * 1000.0
            x = rng.uniform(1500, width - 1500)
        out.append((LON0 + x / KX, LAT0 + y / KY))
    return out


def windows(rng: np.random.Generator, n: int) -> list[tuple[datetime, datetime]]:
    day = datetime.fromtimestamp(T0_MS / 1000, UTC)
    starts = rng.uniform(0, DAY_S - 3600, n)
    return [(day + timedelta(seconds=float(s)), day + timedelta(seconds=float(s) + 3600))
            for s in starts]


def percentiles(times: list[float]) -> dict[str, float]:
    a = np.array(times) * 1000
    return {"p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)),
            "max": float(a.max())}


def measure(conn: psycopg.Connection, strips: int, n_queries: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    places = road_points(rng, strips, n_queries)
    spans = windows(rng, n_queries)
    for place, span in zip(places[:5], spans[:5], strict=True):  # warm the catalog caches
        who_passed(conn, place[0], place[1], 200, *span)
    times, found, loaded = [], [], []
    for place, span in zip(places, spans, strict=True):
        t0 = time.perf_counter()
        rows = who_passed(conn, place[0], place[1], 200, *span)
        times.append(time.perf_counter() - t0)
        found.append(len(rows))
        loaded.append(sum(1 for r in rows if r.loaded))
    # the same places without the cell index: BRIN(ts) and the primary key only
    brin = []
    with contextlib.suppress(psycopg.errors.QueryCanceled), conn.transaction() as tx:
        conn.execute("DROP INDEX telemetry_cell_ts")
        conn.execute("SET LOCAL statement_timeout = '20s'")
        for place, span in zip(places[:3], spans[:3], strict=True):
            t0 = time.perf_counter()
            who_passed(conn, place[0], place[1], 200, *span)
            brin.append(time.perf_counter() - t0)
        raise psycopg.Rollback(tx)
    return {**percentiles(times), "queries": n_queries,
            "trucks_p50": float(np.median(found)), "trucks_max": int(max(found)),
            "loaded_p50": float(np.median(loaded)),
            "brin_only_ms": [t * 1000 for t in brin]}


def explain(conn: psycopg.Connection, seed: int) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of one query's index read, as who_passed sends it."""
    from store import passed

    rng = np.random.default_rng(seed)
    (lon, lat), span = road_points(rng, CITY_KM // STRIP_KM, 1)[0], windows(rng, 1)[0]
    params = {"lon": lon, "lat": lat, "search": 200.0 + passed.SEGMENT_MARGIN_M,
              "since": span[0], "until": span[1], "gap": passed.MAX_GAP,
              "cap": passed.MAX_NEAR_FIXES + 1}
    rows = conn.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + passed._NEAR,
                        params).fetchall()
    return "\n".join(r[0] for r in rows)


def writer_batches(day: dict[str, np.ndarray], n_fixes: int, batch: int) -> list[FixBatch]:
    """The busiest stretch (from 20:00) of a day, as the ingest's batches."""
    start = int(np.searchsorted(day["ts"], T0_MS + 20 * 3600 * 1000))
    k = np.arange(start, start + n_fixes)
    names = np.array([device_name(i) for i in range(STAGES[-1])], dtype=object)
    out = []
    for a in range(0, n_fixes, batch):
        s = k[a:a + batch]
        out.append(FixBatch.from_columns(
            device=names[day["device"][s]], ts=day["ts"][s], lon=day["lon"][s],
            lat=day["lat"][s], speed=day["speed"][s], lid=np.zeros(len(s)),
            load=day["load"][s], sats=np.full(len(s), 12), hdop=np.full(len(s), 0.8),
            received=day["ts"][s] + 800))
    return out


def writer_cost(dsn: str, batches: list[FixBatch]) -> dict:
    from store_writer import writer  # bench/ is on the path: run as a script or by run.py

    n = sum(len(b) for b in batches)
    rates: dict[str, list[float]] = {"with": [], "without": []}
    for _ in range(3):
        for variant in ("without", "with"):
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("TRUNCATE telemetry")
                if variant == "without":
                    conn.execute("DROP INDEX IF EXISTS telemetry_cell_ts")
                else:
                    conn.execute("CREATE INDEX IF NOT EXISTS telemetry_cell_ts"
                                 " ON telemetry (geo_cell(lon, lat), ts)")
                conn.execute("CHECKPOINT")
            rates[variant].append(n / writer(dsn, batches))
    with_rate, without_rate = max(rates["with"]), max(rates["without"])
    return {"writer_fixes": n, "writer_with": with_rate, "writer_without": without_rate,
            "writer_ratio": with_rate / without_rate,
            "writer_runs": {k: [round(r) for r in v] for k, v in rates.items()}}


def run(n_queries: int = 60, writer_fixes: int = 400_000) -> dict:
    base = default_run_dir()
    base.mkdir(parents=True, exist_ok=True)
    names = np.array([device_name(i) for i in range(STAGES[-1])], dtype="S12")
    out: dict = {"stages": []}
    with tempfile.TemporaryDirectory(prefix="bench-passed-", dir=base) as tmp:
        Path(tmp).chmod(0o755)
        pg = PrivatePostgres(Path(tmp) / "pg", fast_unsafe=True).start()
        try:
            with psycopg.connect(pg.dsn, autocommit=True) as conn:
                migrate(conn)
                conn.execute("INSERT INTO companies VALUES ('C01', 'Bench Haulage')")
                with conn.cursor().copy("COPY vehicles (plate, device_id, company_id)"
                                        " FROM STDIN") as copy:
                    for i in range(STAGES[-1]):
                        copy.write_row((f"粤B{i:05d}", device_name(i), "C01"))
                first = 0
                for stage, trucks in enumerate(STAGES):
                    t0 = time.perf_counter()
                    day = city_day(first, trucks, seed=stage)
                    gen_s = time.perf_counter() - t0
                    t0 = time.perf_counter()
                    copy_day(conn, day, names)
                    copy_s = time.perf_counter() - t0
                    conn.execute("ANALYZE telemetry")
                    rows = conn.execute("SELECT count(*) FROM telemetry").fetchone()[0]
                    result = measure(conn, trucks // STRIP_TRUCKS, n_queries, seed=100 + stage)
                    sizes = conn.execute(
                        "SELECT pg_relation_size('telemetry'), pg_relation_size('telemetry_pkey'),"
                        " pg_relation_size('telemetry_cell_ts')").fetchone()
                    out["stages"].append({
                        "trucks": trucks, "rows": rows, "generate_s": gen_s,
                        "load_s": copy_s, "heap_mb": sizes[0] / 2**20,
                        "pkey_mb": sizes[1] / 2**20, "cell_index_mb": sizes[2] / 2**20,
                        **result})
                    print(f"  {trucks:,} trucks, {rows:,} rows: p50 {result['p50']:.0f} ms, "
                          f"p95 {result['p95']:.0f} ms, max {result['max']:.0f} ms", flush=True)
                    first = trucks
                out["explain"] = explain(conn, seed=7)
                batches = writer_batches(day, writer_fixes, 5_000)
                del day
        finally:
            pg.stop()
        pg = PrivatePostgres(Path(tmp) / "pg-writer").start()
        try:
            with psycopg.connect(pg.dsn) as conn:
                migrate(conn)
            out.update(writer_cost(pg.dsn, batches))
        finally:
            pg.stop()
    return out


if __name__ == "__main__":
    import json
    import sys

    result = run(*(int(a) for a in sys.argv[1:]))
    explained = result.pop("explain")
    print(json.dumps(result, indent=1))
    print(explained)
