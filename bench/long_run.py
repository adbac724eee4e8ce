"""``make bench-long``: a megacity's fleet for ten minutes — 20,000 simulated trucks reporting
every second (20,000 msg/s) through the full pipeline (``muckwatch run`` against the city at
scale 150, QoS 1, persistent session, all rules, telemetry and violations written).

The fleet is generated first into a file (≈ 2 GB in .run/bench, ≈ 4–5 minutes; a Python
generator cannot feed 20,000 msg/s while sharing two cores with the pipeline), then the C
publisher sends it paced at the fleet's rate. Every 5 s the backlog — fixes published minus
fixes inserted (PostgreSQL's insert counter, ≈ 0.5 s behind) — is sampled; at the end
every fix is counted in ``telemetry``. The backlog is bounded when it stays
flat: its maximum over the last third of the run is no larger than over the first third plus
a batch or two.

Writes the "Long run" section of docs/performance.md (``make bench`` keeps it).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO))

TRUCKS, MINUTES, RATE = 20_000, 10.0, 20_000
DOC = REPO / "docs" / "performance.md"
LONG_MARK = "## Long run"


def generate(path: Path, trucks: int, minutes: float, start_ms: int):
    """Write the fleet's messages as ``topic<TAB>payload`` lines in delivery order; returns
    the number of fixes in each message (to turn "messages published" into fixes)."""
    import numpy as np
    import orjson
    from pipeline import city_dir

    from domain.city import load_city
    from simulator.mixed import MixedOptions, MixedScenario

    city = load_city(city_dir())
    options = MixedOptions(trucks=trucks, minutes=minutes, interval_s=1, seed=21,
                           start_ms=start_ms, per_rule=5, duplicate_rate=0.0)
    counts: list[int] = []
    with open(path, "wb", buffering=1 << 20) as out:
        for d in MixedScenario(city, options).deliveries():
            topic = f"muck/v1/{d.device}/telemetry" + ("/batch" if d.is_batch else "")
            out.write(topic.encode() + b"\t" + orjson.dumps(d.payload) + b"\n")
            counts.append(len(d.payload) if d.is_batch else 1)
    return np.asarray(counts, np.int32)


def run(trucks: int = TRUCKS, minutes: float = MINUTES, rate: float = RATE) -> dict:
    import numpy as np
    import psycopg
    from pipeline import BENCH, Ingest, build_cpub, city_dir

    from devservices.mosquitto import PrivateMosquitto
    from devservices.postgres import PrivatePostgres
    from store.migrate import migrate

    city_dir()
    shutil.rmtree(BENCH / "long-mosquitto", ignore_errors=True)
    broker = PrivateMosquitto(BENCH / "long-mosquitto")
    broker.start()
    pg = PrivatePostgres(BENCH / "long-pg")
    pg.start()
    samples: list[tuple[float, int, int]] = []  # (s since start, published, inserted)
    try:
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            migrate(conn)
            conn.execute("TRUNCATE telemetry, violations, alert_outbox, dead_letter, trips,"
                         " rule_state")
        ingest = Ingest(broker.port, pg.dsn, BENCH / "ingest-long.log",
                        MUCKWATCH_MQTT_CLIENT_ID="bench-ingest-long")
        start_ms = 1_795_053_600_000  # 10:00 local, when ≈ 22,000 permits are valid
        lines = BENCH / "long-feed.tsv"
        t_gen = time.monotonic()
        per_message = generate(lines, trucks, minutes, start_ms)
        generate_s = time.monotonic() - t_gen
        fixes_before = np.concatenate([[0], np.cumsum(per_message, dtype=np.int64)])
        publisher = subprocess.Popen(
            [str(build_cpub()), "-p", str(broker.port), "-i", "bench-long", "-w", "5000",
             "-r", str(rate), "-P"], stdin=open(lines, "rb"),  # noqa: SIM115
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        progress = [0]

        def read_progress() -> None:
            for line in publisher.stderr:  # type: ignore[union-attr]
                parts = line.split()
                if len(parts) == 2 and parts[0].isdigit():
                    progress[0] = int(parts[0])
        reader = threading.Thread(target=read_progress, daemon=True)
        t0 = time.monotonic()
        reader.start()
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            def inserted() -> int:
                return conn.execute("SELECT n_tup_ins FROM pg_stat_user_tables"
                                    " WHERE relname = 'telemetry'").fetchone()[0]
            while publisher.poll() is None:
                time.sleep(5.0)
                published_fixes = int(fixes_before[min(progress[0], len(per_message))])
                samples.append((time.monotonic() - t0, published_fixes, inserted()))
            published_s = time.monotonic() - t0
            out = publisher.stdout.read()  # type: ignore[union-attr]
            total = int(fixes_before[-1])
            deadline = time.monotonic() + 600
            while (stored := conn.execute("SELECT count(*) FROM telemetry").fetchone()[0]) \
                    < total and time.monotonic() < deadline:
                time.sleep(2.0)
            drained_s = time.monotonic() - t0
            violations = conn.execute("SELECT count(*) FROM violations").fetchone()[0]
        stats = ingest.stop()
    finally:
        pg.stop()
        broker.stop()
    import json

    published = json.loads(out.strip().splitlines()[-1])["published"]
    backlog = [max(p - i, 0) for _, p, i in samples]
    third = max(1, len(backlog) // 3)
    return {"trucks": trucks, "minutes": minutes, "rate": rate, "published": published,
            "publish_rate": published / published_s, "fixes": total, "stored": stored,
            "generate_s": generate_s,
            "violations": violations, "published_s": published_s,
            "drain_after_s": drained_s - published_s, "backlog_max": max(backlog, default=0),
            "backlog_first_third_max": max(backlog[:third], default=0),
            "backlog_last_third_max": max(backlog[-third:], default=0),
            "backlog_samples": [(round(t), b) for (t, _, _), b in zip(samples, backlog,
                                                                       strict=True)],
            "batches": stats.get("batches", 0)}


def section(r: dict) -> str:
    bounded = r["backlog_last_third_max"] <= r["backlog_first_third_max"] + 10_000
    lossless = r["stored"] == r["fixes"]
    sent = f"{r['published']:,} in {r['published_s']:.0f} s ({r['publish_rate']:,.0f} msg/s)"
    growth = f"{r['backlog_first_third_max']:,} → {r['backlog_last_third_max']:,}"
    trace = ", ".join(f"{t} s: {b:,}" for t, b in r["backlog_samples"][::6])
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""{LONG_MARK} (`make bench-long`, ≈ 17 minutes)

Last run {stamp}: {r['trucks']:,} simulated trucks reporting every second for
{r['minutes']:g} minutes (pre-generated in {r['generate_s']:.0f} s, then paced at
{r['rate']:,.0f} msg/s) through the full `muckwatch run` against the city at scale 150.

| | |
|---|---:|
| messages published | {sent} |
| fixes stored | {r['stored']:,} of {r['fixes']:,} ({'zero loss' if lossless else 'LOSS'}) |
| violations | {r['violations']:,} |
| backlog (fixes published − inserted), max | {r['backlog_max']:,} fixes |
| backlog max, first third → last third | {growth} |
| caught up after the last publish | {r['drain_after_s']:.1f} s |

Backlog every 30 s: {trace}. Bounded: **{'yes' if bounded else 'NO'}**.
`.venv/bin/python bench/long_run.py`.
"""


def write_section(text: str) -> None:
    doc = DOC.read_text() if DOC.exists() else "# Performance\n"
    if LONG_MARK in doc:
        head, _, rest = doc.partition(LONG_MARK)
        tail = rest[rest.find("\n## ") + 1:] if "\n## " in rest else ""
        doc = head + text + ("\n" + tail if tail else "")
    else:
        marker = "## History"
        doc = doc.replace(marker, text + "\n" + marker) if marker in doc else doc + "\n" + text
    DOC.write_text(doc)


if __name__ == "__main__":
    minutes = float(os.environ.get("MUCKWATCH_BENCH_LONG_MINUTES", MINUTES))
    result = run(minutes=minutes)
    for k, v in result.items():
        if k != "backlog_samples":
            print(f"{k:26} {v:,.2f}" if isinstance(v, float) else f"{k:26} {v:,}")
    write_section(section(result))
    print(f"wrote {DOC.relative_to(REPO)}")
