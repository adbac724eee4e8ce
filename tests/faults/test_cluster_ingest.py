"""The whole pipeline on a clustered broker (issue #25): terminals send fixes to a 3-node
RabbitMQ cluster (quorum queues; the broker chosen in docs/scaling.md) while ``muckwatch run``
consumes them over MQTT 3.1.1 with a persistent session; the node the ingest is connected to
is killed -9 in the middle. Every fix a terminal saw acknowledged is stored exactly once, the
ingest finds another node by itself, and fixes are stored again within seconds — measured
and printed, with the rate the publishers really reached.

The terminals are ``PUBLISHERS`` processes (the fleet simulator's publisher, one connection
each, each failing over by itself), so the offered rate is not capped by one Python thread.
``MUCKWATCH_CLUSTER_TEST_RATE`` changes the rate (default 10,000 msg/s)."""

from __future__ import annotations

import multiprocessing
import os
import re
import threading
import time
from datetime import UTC, datetime
from types import SimpleNamespace

import psycopg
import pytest

from devservices.rabbitmq import PrivateRabbitCluster
from domain.wire import encode_fix, fix_message
from simulator.publish import MqttPublisher
from tests.conftest import IngestProcess, create_database, ingest_env

pytestmark = pytest.mark.e2e

RATE = int(os.environ.get("MUCKWATCH_CLUSTER_TEST_RATE", "10000"))
# one fix a second from each of RATE terminals for SECONDS; the kill at 40 % of the stream
DEVICES, SECONDS = RATE, 12
PUBLISHERS = int(os.environ.get("MUCKWATCH_CLUSTER_TEST_PUBLISHERS", "2"))


def _connected_port(log: str) -> int:
    return int(re.findall(r"connected to 127\.0\.0\.1:(\d+)", log)[-1])


def publish_share(share: int, order: list[int], start_ms: int, t0: float,
                  results: multiprocessing.Queue) -> None:
    """One terminal connection: devices ``share``, ``share + PUBLISHERS``, … at
    RATE / PUBLISHERS msg/s from wall-clock ``t0``; reports (sent, acked, first, last ack)."""
    publisher = MqttPublisher("127.0.0.1", order[0], client_id=f"cluster-terminals-{share}",
                              nodes=[("127.0.0.1", p) for p in order]).connect()
    mine = range(share, DEVICES, PUBLISHERS)
    per_second = len(mine)
    rate = RATE * per_second / DEVICES
    sent, samples = 0, []
    for second in range(SECONDS):
        for device in mine:
            publisher.telemetry(f"CL{device:05d}", encode_fix(fix_message(
                start_ms + second * 1000, 114.0 + device * 1e-3, 22.5, spd=20)))
            sent += 1
            if sent % 500 == 0:
                samples.append((time.time(), publisher.acked))
            while publisher.unacked > 5_000:
                time.sleep(0.001)
            lag = t0 + sent / rate - time.time()
            if lag > 0:
                time.sleep(lag)
    publisher.flush(120)  # every fix acknowledged by some node
    results.put((sent, publisher.acked, time.time(), samples))
    publisher.close()


def test_a_broker_node_killed_under_load_loses_no_acknowledged_fix(run_dir, dsn):
    cluster = PrivateRabbitCluster(run_dir / "rabbit-ingest").start()
    db = create_database(dsn)
    hosts = ",".join(f"127.0.0.1:{p}" for p in cluster.mqtt_ports)
    first_node = SimpleNamespace(port=cluster.mqtt_ports[0])
    ingest = IngestProcess(ingest_env(
        first_node, db, MUCKWATCH_MQTT_HOSTS=hosts, MUCKWATCH_MQTT_PROTOCOL="3.1.1",
        MUCKWATCH_MQTT_CLIENT_ID="cluster-ingest", MUCKWATCH_MQTT_KEEPALIVE_S="5",
        MUCKWATCH_TERMINAL_DISPATCHER="false", MUCKWATCH_INGEST_BATCH_MAX="4000"),
        run_dir / "ingest-cluster.log")
    try:
        victim_port = _connected_port(ingest.log_path.read_text())
        victim = cluster.mqtt_ports.index(victim_port) + 1
        # terminals publish to every node, the ingest's too (one of them first on it)
        others = [p for p in cluster.mqtt_ports if p != victim_port]
        orders = [[victim_port, *others], [*others, victim_port], [*others[::-1], victim_port]]
        start_ms = (int(time.time()) - 3600) * 1000  # an hour ago: every fix is distinct
        total = DEVICES * SECONDS
        context = multiprocessing.get_context("spawn")
        results = context.Queue()
        t0 = time.time() + 3.0  # the spawned interpreters start first
        shares = [context.Process(target=publish_share, args=(i, orders[i % 3], start_ms, t0,
                                                              results), daemon=True)
                  for i in range(PUBLISHERS)]
        for p in shares:
            p.start()
        killed_at: list[float] = []

        def kill_at_forty_percent() -> None:
            time.sleep(max(0.0, t0 + SECONDS * 0.4 - time.time()))
            killed_at.append(time.time())
            cluster.kill(victim)

        killer = threading.Thread(target=kill_at_forty_percent, daemon=True)
        killer.start()
        reports = [results.get(timeout=240) for _ in shares]
        for p in shares:
            p.join(30)
        killer.join(30)
        assert killed_at, "the node was never killed"
        sent, acked = sum(r[0] for r in reports), sum(r[1] for r in reports)
        assert sent == acked == total, (sent, acked, total)
        reached = total / (max(r[2] for r in reports) - t0)
        # what the broker acknowledged per second from the start until the kill
        acked_by_kill = sum(max((a for t, a in r[3] if t <= killed_at[0]), default=0)
                            for r in reports)
        before_kill = acked_by_kill / (killed_at[0] - t0)

        def stored() -> tuple[int, int]:
            with psycopg.connect(db, autocommit=True) as conn:
                return conn.execute(
                    "SELECT count(*), count(DISTINCT (device_id, ts)) FROM telemetry"
                    " WHERE device_id LIKE 'CL%'").fetchone()
        deadline = time.monotonic() + 120
        rows, distinct = stored()
        while rows < total and time.monotonic() < deadline:
            time.sleep(0.5)
            rows, distinct = stored()
        with psycopg.connect(db, autocommit=True) as conn:
            # the longest time nothing was stored around the kill, by the ingest's clock
            gap, before, after = conn.execute(
                "SELECT max(gap) FILTER (WHERE at > %(k)s - interval '1 s'),"
                " max(gap) FILTER (WHERE at < %(k)s), count(*) FILTER (WHERE at < %(k)s)"
                " FROM (SELECT received_at AS at, extract(epoch FROM received_at"
                " - lag(received_at) OVER (ORDER BY received_at)) AS gap FROM telemetry"
                " WHERE device_id LIKE 'CL%%') g",
                {"k": datetime.fromtimestamp(killed_at[0], tz=UTC)}).fetchone()
        log = ingest.log_path.read_text()
        moved_to = _connected_port(log)
        print(f"\ncluster fail-over: offered {RATE:,} msg/s, the cluster acknowledged "
              f"{before_kill:,.0f} msg/s until the kill, {reached:,.0f} msg/s over the whole "
              f"stream ({PUBLISHERS} connections); {after:,} fixes stored before the"
              f" kill; {total:,} fixes acknowledged, {rows:,} stored ({distinct:,} distinct), "
              f"lost {total - distinct}, nothing stored for {gap or 0:.2f} s after the "
              f"kill (longest before it {before or 0:.2f} s), ingest moved from :{victim_port} to "
              f":{moved_to}")
        assert distinct == total, f"{total - distinct} acknowledged fixes lost"
        assert rows == distinct, "a fix stored twice"
        assert moved_to != victim_port
        assert after > 0, "the node was killed before anything was stored"
        assert gap < 30, f"nothing stored for {gap:.1f} s"
    finally:
        ingest.stop()
        cluster.stop()
