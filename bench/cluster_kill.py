"""A broker node killed while 10,000 msg/s flow through the whole pipeline (issue #25).

``tests/faults/test_cluster_ingest.py`` does the same with the project's Python publishers,
which fail over by themselves but cannot offer 10,000 msg/s next to three broker nodes on two
cores. Here C publishers (``bench/cpub.c``, libmosquitto, QoS 1, 5,000 in flight each), one
per surviving node, offer the rate; ``muckwatch run`` holds its persistent MQTT 3.1.1 session
on node 1 with every node in ``[mqtt] hosts``, and node 1 is killed -9 at 40 % of the stream.
Each run has a fresh 3-node RabbitMQ cluster and database.

Reported per run: what the cluster acknowledged per second (the publishers' count ÷ their
time), fixes stored and distinct (lost = acknowledged − distinct), the longest time nothing
was stored from 1 s before the kill on (by the ingest's receive clock), and the end-to-end
rate (all fixes ÷ the time until the last was stored).

    .venv/bin/python bench/cluster_kill.py [--rate 10000] [--seconds 12] [--runs 3]

prints one JSON document; docs/cluster.md has the last runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import psycopg  # noqa: E402
from pipeline import build_cpub  # noqa: E402

from devservices.postgres import PrivatePostgres  # noqa: E402
from devservices.rabbitmq import PrivateRabbitCluster  # noqa: E402
from domain.wire import encode_fix, fix_message  # noqa: E402
from store.migrate import migrate  # noqa: E402

BASE = REPO / ".run" / "bench" / "cluster-kill"
PUBLISHERS = 2

_COUNTS = """SELECT count(*), count(DISTINCT (device_id, ts)), max(received_at) FROM telemetry"""
_GAP = """SELECT max(gap) FILTER (WHERE at > %(kill)s - interval '1 s')
FROM (SELECT received_at AS at, extract(epoch FROM received_at
      - lag(received_at) OVER (ORDER BY received_at)) AS gap FROM telemetry) g"""


def write_feeds(rate: int, seconds: int) -> list[Path]:
    """``rate`` terminals × one fix a second for ``seconds``, split over the publishers."""
    start_ms = (int(time.time()) - 3600) * 1000
    paths = [BASE / f"feed{i}.tsv" for i in range(PUBLISHERS)]
    files = [open(p, "wb") for p in paths]  # noqa: SIM115 - closed below
    for second in range(seconds):
        for device in range(rate):
            files[device % PUBLISHERS].write(
                f"muck/v1/CK{device:06d}/telemetry\t".encode() + encode_fix(fix_message(
                    start_ms + second * 1000, 114.0 + device * 1e-4, 22.5, spd=20)) + b"\n")
    for f in files:
        f.close()
    return paths


def one_run(run: int, dsn: str, feeds: list[Path], rate: int, seconds: int) -> dict:
    cluster = PrivateRabbitCluster(BASE / f"rmq{run}").start()
    ingest = None
    try:
        ports = cluster.mqtt_ports
        log_path = BASE / f"ingest{run}.log"
        env = {**os.environ, "MUCKWATCH_DSN": dsn, "MUCKWATCH_MQTT_HOST": "127.0.0.1",
               "MUCKWATCH_MQTT_PORT": str(ports[0]),
               "MUCKWATCH_MQTT_HOSTS": ",".join(f"127.0.0.1:{p}" for p in ports),
               "MUCKWATCH_MQTT_PROTOCOL": "3.1.1", "MUCKWATCH_MQTT_CLIENT_ID": f"kill-{run}",
               "MUCKWATCH_MQTT_KEEPALIVE_S": "5",
               "MUCKWATCH_CITY_DIR": str(REPO / "data" / "sample-city"),
               "MUCKWATCH_TERMINAL_DISPATCHER": "false", "MUCKWATCH_ALERTS_WORKER": "false",
               "MUCKWATCH_OBSERVABILITY_LISTEN": ""}
        with open(log_path, "w") as log:
            ingest = subprocess.Popen([sys.executable, "-m", "muckwatch", "run"], env=env,
                                      stdout=subprocess.DEVNULL, stderr=log, cwd=REPO)
        deadline = time.monotonic() + 120
        while "ingest running" not in log_path.read_text():
            if ingest.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(log_path.read_text()[-2000:])
            time.sleep(0.1)
        publishers = [subprocess.Popen(
            [str(build_cpub()), "-p", str(ports[1 + i % 2]), "-i", f"kill-pub{run}-{i}",
             "-w", "5000", "-r", str(rate / PUBLISHERS)],
            stdin=open(feed, "rb"), stdout=subprocess.PIPE, text=True)  # noqa: SIM115
            for i, feed in enumerate(feeds)]
        t0 = time.time()
        time.sleep(seconds * 0.4)
        killed_at = time.time()
        cluster.kill(1)
        outs = [json.loads(p.communicate(timeout=600)[0]) for p in publishers]
        total = rate * seconds
        with psycopg.connect(dsn, autocommit=True) as conn:
            deadline = time.monotonic() + 300
            while conn.execute(_COUNTS).fetchone()[0] < total and time.monotonic() < deadline:
                time.sleep(0.5)
            rows, distinct, last = conn.execute(_COUNTS).fetchone()
            gap = conn.execute(_GAP, {"kill": datetime.fromtimestamp(killed_at, tz=UTC)}
                               ).fetchone()[0]
        acked = sum(o["acked"] for o in outs)
        return {"acknowledged": acked, "acknowledged_per_s": acked / max(o["seconds"]
                                                                         for o in outs),
                "stored": rows, "distinct": distinct, "lost": acked - distinct,
                "stored_twice": rows - distinct, "nothing_stored_s": float(gap or 0.0),
                "end_to_end_per_s": total / (last.timestamp() - t0)}
    finally:
        if ingest is not None:
            ingest.terminate()
            ingest.wait(60)
        cluster.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rate", type=int, default=10_000)
    ap.add_argument("--seconds", type=int, default=12)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    shutil.rmtree(BASE, ignore_errors=True)
    BASE.mkdir(parents=True)
    feeds = write_feeds(args.rate, args.seconds)
    pg = PrivatePostgres(BASE / "pg").start()
    runs = []
    try:
        for run in range(args.runs):
            with psycopg.connect(pg.dsn, autocommit=True) as conn:
                conn.execute("DROP SCHEMA public CASCADE")
                conn.execute("CREATE SCHEMA public")
                migrate(conn)
            runs.append(one_run(run, pg.dsn, feeds, args.rate, args.seconds))
            print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    finally:
        pg.stop()
    spread = {k: [min(r[k] for r in runs), statistics.median(r[k] for r in runs),
                  max(r[k] for r in runs)] for k in runs[0]}
    print(json.dumps({"offered_per_s": args.rate, "runs": runs, "min_median_max": spread},
                     indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
