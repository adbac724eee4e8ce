"""``make bench-compression``: how much TimescaleDB compression saves on ``telemetry`` (#12).

Why: at 1 Hz a city writes billions of fixes a day (docs/scaling.md), so disk per row decides
retention. This measures it on simulated fleet data rather than guessing: a synthetic city
(``simulator.citygen``, scale 3), its compliant fleet (``simulator.fleet``) reporting once a
second, the wire format's rounding, a delivery delay in ``received_at``.

How: starts the private TimescaleDB (PGlite + TimescaleDB 2.23 as WASM, devservices/timescale.py),
applies the project's migrations (telemetry becomes a hypertable with the compression settings
of 0003_scoring_roles.timescale.sql), loads the fixes with multi-row ``INSERT … SELECT FROM
unnest(…)`` (the server refuses COPY FROM STDIN), measures ``hypertable_detailed_size`` (heap +
indexes + toast), times two analysts' queries, compresses every chunk with ``compress_chunk``,
measures and times again, and checks that rows and query results did not change. The same rows
then go into a private plain PostgreSQL cluster (``--no-postgres`` skips it) for comparison.
Prints a markdown table; exits 1 with the reason if anything fails. Query times come from a
single-threaded WASM build and are only indicative.

    .venv/bin/python bench/timescale_compression.py [--trucks 400] [--minutes 120]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import psycopg

from devservices.common import default_run_dir
from devservices.postgres import PrivatePostgres
from devservices.timescale import PrivateTimescale
from domain.city import load_city
from simulator.citygen import generate_city
from simulator.fleet import Fleet, FleetTick
from store.migrate import migrate, status

START_MS = 1_795_053_600_000  # 10:00 Shenzhen time, a working morning
CITY_SCALE = 3.0  # the sample city × 3: ≈ 440 trucks with a permit valid at 10:00
BATCH_S = 60  # simulated seconds per INSERT statement
EXPECTED = {"segmentby": ["device_id"], "orderby": ["ts"]}  # 0003_scoring_roles.timescale.sql

INSERT = """
INSERT INTO telemetry (device_id, ts, lon, lat, speed_kmh, heading_deg, lid, lift, load, sats,
                       hdop, seq, received_at)
SELECT d, to_timestamp(0) + t * interval '1 ms', lo, la, s, h, li, lf, ld, sa, hd, sq,
       to_timestamp(0) + r * interval '1 ms'
FROM unnest(%s::text[], %s::int8[], %s::float8[], %s::float8[], %s::float4[], %s::float4[],
            %s::int2[], %s::int2[], %s::int2[], %s::int2[], %s::float4[], %s::int8[],
            %s::int8[]) AS u(d, t, lo, la, s, h, li, lf, ld, sa, hd, sq, r)
"""
TRACK = """
SELECT ts, lon, lat, speed_kmh, heading_deg, lid, lift, load
FROM telemetry WHERE device_id = %s AND ts >= %s AND ts < %s ORDER BY ts
"""
PER_DEVICE = """
SELECT device_id, count(*) AS fixes FROM telemetry
WHERE ts >= %s AND ts < %s GROUP BY device_id ORDER BY device_id
"""
SIZE = "SELECT table_bytes, index_bytes, toast_bytes, total_bytes" \
       " FROM hypertable_detailed_size('telemetry')"
PLAIN_SIZE = """
SELECT pg_table_size(c.oid) - coalesce(pg_total_relation_size(c.reltoastrelid), 0),
       pg_indexes_size(c.oid), coalesce(pg_total_relation_size(c.reltoastrelid), 0),
       pg_total_relation_size(c.oid)
FROM pg_class c WHERE c.oid = 'telemetry'::regclass
"""


class BenchError(RuntimeError):
    pass


def make_city(workdir: Path):
    path = workdir / "city"
    generate_city(path, scale=CITY_SCALE)
    return load_city(path)


def batches(city, trucks: int, seconds: int, seed: int) -> Iterator[tuple]:
    """INSERT parameters, BATCH_S simulated seconds each; same seed, same rows."""
    fleet = Fleet(city, trucks=trucks, start_ms=START_MS, seed=seed, interval_s=1.0)
    if len(fleet) < trucks:
        raise BenchError(f"the city has only {len(fleet)} trucks with a valid permit, "
                         f"{trucks} asked for")
    rng = np.random.default_rng(seed + 1)
    for first in range(0, seconds, BATCH_S):
        tick = FleetTick.concat([fleet.advance(1.0)
                                 for _ in range(min(BATCH_S, seconds - first))])
        # as stored from the wire: 7 decimals, 0.1 km/h, whole degrees; ingest's clock in ms
        delay = np.clip(rng.lognormal(np.log(300), 0.6, len(tick)), 20, 10_000).astype(np.int64)
        yield (tick.device.tolist(), tick.ts.tolist(), tick.lon.round(7).tolist(),
               tick.lat.round(7).tolist(), tick.speed.round(1).tolist(),
               tick.heading.round(0).tolist(), tick.lid.tolist(), tick.lift.tolist(),
               tick.load.tolist(), tick.sats.tolist(), tick.hdop.round(1).tolist(),
               tick.seq.tolist(), (tick.ts + delay).tolist())


def load(conn: psycopg.Connection, city, args) -> tuple[int, float]:
    rows, t0 = 0, time.perf_counter()
    for params in batches(city, args.trucks, args.minutes * 60, args.seed):
        with conn.transaction():
            conn.execute(INSERT, params)
        rows += len(params[0])
    return rows, time.perf_counter() - t0


def timed(conn: psycopg.Connection, sql: str, params: tuple, repeats: int) -> tuple[float, list]:
    """Median seconds over ``repeats`` runs after one warm-up, and the result."""
    result = conn.execute(sql, params).fetchall()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        again = conn.execute(sql, params).fetchall()
        times.append(time.perf_counter() - t0)
        if again != result:
            raise BenchError("the same query returned different rows on a repeat")
    return statistics.median(times), result


def query_params(device: str, minutes: int) -> dict[str, tuple]:
    start = datetime.fromtimestamp(START_MS / 1000, UTC)
    day = start.astimezone(ZoneInfo("Asia/Shanghai")).replace(hour=0, minute=0, second=0)
    track_from = start + timedelta(minutes=max(0, minutes - 60) // 2)  # mid-run
    return {"track": (device, track_from, track_from + timedelta(hours=1)),
            "per_device": (day, day + timedelta(days=1))}


def queries(conn: psycopg.Connection, device: str, args) -> dict:
    conn.execute("ANALYZE telemetry")
    p = query_params(device, args.minutes)
    track_s, track = timed(conn, TRACK, p["track"], args.repeats)
    per_s, per = timed(conn, PER_DEVICE, p["per_device"], args.repeats)
    if not track or not per:
        raise BenchError(f"the analysts' queries found nothing ({len(track)}, {len(per)} rows)")
    return {"track_s": track_s, "track": track, "per_device_s": per_s, "per_device": per}


def compression_settings(conn: psycopg.Connection) -> dict[str, list[str]]:
    rows = conn.execute(
        "SELECT attname, segmentby_column_index, orderby_column_index, orderby_asc"
        " FROM timescaledb_information.compression_settings"
        " WHERE hypertable_name = 'telemetry'").fetchall()
    seg = [r[0] for r in sorted((r for r in rows if r[1] is not None), key=lambda r: r[1])]
    order = [r[0] + ("" if r[3] else " DESC")
             for r in sorted((r for r in rows if r[2] is not None), key=lambda r: r[2])]
    return {"segmentby": seg, "orderby": order}


def timescale_run(workdir: Path, city, args) -> dict:
    server = PrivateTimescale(workdir / "timescale").start()
    try:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            migrate(conn)
            st = status(conn)
            if st.mode != "timescaledb":
                raise BenchError(f"migrations ran in {st.mode} mode: {st.why}")
            settings = compression_settings(conn)
            if settings != EXPECTED:
                raise BenchError(f"telemetry compression settings are {settings}, the migration"
                                 f" sets {EXPECTED}")
            version = conn.execute("SELECT extversion FROM pg_extension"
                                   " WHERE extname = 'timescaledb'").fetchone()[0]
            rows, load_s = load(conn, city, args)
            print(f"timescaledb: {rows:,} rows loaded in {load_s:.0f} s", flush=True)
            count = conn.execute("SELECT count(*) FROM telemetry").fetchone()[0]
            if count != rows:
                raise BenchError(f"{rows} rows inserted but telemetry has {count}")
            device = conn.execute("SELECT device_id FROM telemetry ORDER BY device_id"
                                  " LIMIT 1").fetchone()[0]
            before = conn.execute(SIZE).fetchone()
            q_before = queries(conn, device, args)
            chunks = [r[0] for r in conn.execute("SELECT show_chunks('telemetry')")]
            t0 = time.perf_counter()
            for chunk in chunks:
                conn.execute("SELECT compress_chunk(%s::regclass)", (chunk,))
            compress_s = time.perf_counter() - t0
            print(f"timescaledb: {len(chunks)} chunk(s) compressed in {compress_s:.0f} s",
                  flush=True)
            stats = conn.execute(
                "SELECT number_compressed_chunks, total_chunks, before_compression_total_bytes,"
                " after_compression_table_bytes, after_compression_index_bytes,"
                " after_compression_toast_bytes, after_compression_total_bytes"
                " FROM hypertable_compression_stats('telemetry')").fetchone()
            if stats is None or stats[0] != len(chunks) or stats[1] != len(chunks):
                raise BenchError(f"not every chunk is compressed: {stats}")
            after = conn.execute(SIZE).fetchone()
            count = conn.execute("SELECT count(*) FROM telemetry").fetchone()[0]
            if count != rows:
                raise BenchError(f"telemetry has {count} rows after compression, not {rows}")
            q_after = queries(conn, device, args)
            for name in ("track", "per_device"):
                if q_after[name] != q_before[name]:
                    raise BenchError(f"the {name} query returns other rows after compression")
    finally:
        server.stop()
    if sum(n for _, n in q_before["per_device"]) != rows:
        raise BenchError("the per-device counts do not add up to the rows loaded")
    return {"version": version, "settings": settings, "rows": rows, "load_s": load_s,
            "chunks": len(chunks), "compress_s": compress_s, "before": before,
            "after": after, "stats": stats, "q_before": q_before, "q_after": q_after,
            "track_rows": len(q_before["track"]), "devices": len(q_before["per_device"])}


def postgres_run(city, args, rows: int) -> dict:
    base = default_run_dir()
    base.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-compression-pg-", dir=base) as tmp:
        Path(tmp).chmod(0o755)
        pg = PrivatePostgres(Path(tmp) / "pg", fast_unsafe=True).start()
        try:
            with psycopg.connect(pg.dsn, autocommit=True) as conn:
                migrate(conn)
                st = status(conn)
                if st.mode != "postgresql":
                    raise BenchError(f"the comparison cluster runs in {st.mode} mode")
                loaded, load_s = load(conn, city, args)
                if loaded != rows:
                    raise BenchError(f"plain PostgreSQL got {loaded} rows, TimescaleDB {rows}")
                print(f"postgresql: {loaded:,} rows loaded in {load_s:.0f} s", flush=True)
                size = conn.execute(PLAIN_SIZE).fetchone()
                version = conn.execute("SHOW server_version").fetchone()[0]
                device = conn.execute("SELECT device_id FROM telemetry ORDER BY device_id"
                                      " LIMIT 1").fetchone()[0]
                q = queries(conn, device, args)
        finally:
            pg.stop()
    return {"size": size, "version": version.split()[0], "q": q}


def report(ts: dict, pg: dict | None, args, elapsed_s: float) -> str:
    rows = ts["rows"]
    mb = lambda b: f"{b / 1e6:,.1f}"  # noqa: E731
    ms = lambda s: f"{s * 1000:,.1f}"  # noqa: E731
    cols = ["TimescaleDB, uncompressed", "TimescaleDB, compressed"]
    sizes = [ts["before"], ts["after"]]
    qs = [ts["q_before"], ts["q_after"]]
    if pg is not None:
        cols.append(f"plain PostgreSQL {pg['version']}")
        sizes.append(pg["size"])
        qs.append(pg["q"])
    before_total = ts["before"][3]
    lines = ["| | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]

    def row(label: str, values: list[str]) -> None:
        lines.append(f"| {label} | " + " | ".join(values) + " |")

    row("rows", [f"{rows:,}"] * len(cols))
    row("heap MB", [mb(s[0]) for s in sizes])
    row("indexes MB", [mb(s[1]) for s in sizes])
    row("toast MB", [mb(s[2]) for s in sizes])
    row("total MB", [mb(s[3]) for s in sizes])
    row("**bytes/row (incl. indexes)**", [f"**{s[3] / rows:,.1f}**" for s in sizes])
    row("size vs uncompressed hypertable", [f"{s[3] / before_total:.3f}" for s in sizes])
    row(f"one vehicle's track, 1 h ({ts['track_rows']:,} rows), median ms",
        [ms(q["track_s"]) for q in qs])
    row(f"fixes per device over a day ({ts['devices']} devices), median ms",
        [ms(q["per_device_s"]) for q in qs])
    ratio = before_total / ts["after"][3]
    s = ts["settings"]
    params = [
        "",
        f"**Compression ratio {ratio:.1f}×** ({before_total / rows:,.0f} → "
        f"{ts['after'][3] / rows:,.1f} bytes/row incl. indexes; "
        f"hypertable_compression_stats: {ts['stats'][2] / ts['stats'][6]:.1f}×).",
        "",
        f"Parameters: {args.trucks} simulated trucks at 1 Hz for {args.minutes} min (synthetic "
        f"city, scale {CITY_SCALE:g}, seed {args.seed}), {rows:,} rows in {ts['chunks']} "
        f"chunk(s) of 1 day; TimescaleDB {ts['version']} (PGlite, PostgreSQL 17 as WASM), "
        f"compress_segmentby = {', '.join(s['segmentby'])}, compress_orderby = "
        f"{', '.join(s['orderby'])} (the migration's); load {rows / ts['load_s']:,.0f} rows/s "
        f"(multi-row INSERT), compress_chunk {ts['compress_s']:.0f} s; query times are the "
        f"median of {args.repeats} runs after ANALYZE and one warm-up (WASM: indicative only); "
        f"whole run {elapsed_s:.0f} s.",
    ]
    return "\n".join(lines + params)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trucks", type=int, default=400)
    parser.add_argument("--minutes", type=int, default=120)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-postgres", action="store_true",
                        help="skip the plain PostgreSQL comparison")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="bench-compression-"))
    try:
        city = make_city(workdir)
        ts = timescale_run(workdir, city, args)
        pg = None if args.no_postgres else postgres_run(city, args, ts["rows"])
        print("\n" + report(ts, pg, args, time.perf_counter() - t0))
    except Exception as exc:  # one clear line, exit 1
        print(f"bench-compression failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
