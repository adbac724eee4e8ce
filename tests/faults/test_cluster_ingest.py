"""The whole pipeline on a clustered broker (issue #25): terminals (the fleet simulator's
publisher) send fixes to a 3-node NATS cluster while ``muckwatch run`` consumes them over
MQTT 3.1.1 with a persistent session; the node the ingest is connected to is killed -9 in
the middle. Every fix a terminal saw acknowledged is stored exactly once, the ingest finds
another node by itself, and fixes are stored again within seconds — measured and reported
(the same measurement at higher rates: ``make bench``'s cluster section)."""

from __future__ import annotations

import re
import threading
import time
from types import SimpleNamespace

import psycopg
import pytest

from devservices.nats import PrivateNatsCluster
from domain.wire import encode_fix, fix_message
from simulator.publish import MqttPublisher
from tests.conftest import IngestProcess, create_database, ingest_env

pytestmark = pytest.mark.e2e

DEVICES, SECONDS, RATE = 200, 12, 1_000  # 12,000 fixes at 1,000 msg/s; the kill at ≈ 5 s


def _connected_port(log: str) -> int:
    return int(re.findall(r"connected to 127\.0\.0\.1:(\d+)", log)[-1])


def test_a_broker_node_killed_under_load_loses_no_acknowledged_fix(run_dir, dsn):
    cluster = PrivateNatsCluster(run_dir / "nats-ingest").start()
    db = create_database(dsn)
    hosts = ",".join(f"127.0.0.1:{p}" for p in cluster.mqtt_ports)
    first_node = SimpleNamespace(port=cluster.mqtt_ports[0])
    ingest = IngestProcess(ingest_env(
        first_node, db, MUCKWATCH_MQTT_HOSTS=hosts, MUCKWATCH_MQTT_PROTOCOL="3.1.1",
        MUCKWATCH_MQTT_CLIENT_ID="cluster-ingest", MUCKWATCH_MQTT_KEEPALIVE_S="5",
        MUCKWATCH_TERMINAL_DISPATCHER="false", MUCKWATCH_INGEST_BATCH_MAX="2000"),
        run_dir / "ingest-cluster.log")
    try:
        victim_port = _connected_port(ingest.log_path.read_text())
        victim = cluster.mqtt_ports.index(victim_port) + 1
        # terminals publish to the other nodes first (any node will do)
        order = [p for p in cluster.mqtt_ports if p != victim_port] + [victim_port]
        publisher = MqttPublisher("127.0.0.1", order[0], client_id="cluster-terminals",
                                  nodes=[("127.0.0.1", p) for p in order]).connect()
        start_ms = (int(time.time()) - 3600) * 1000  # an hour ago: every fix is distinct
        total = RATE * SECONDS
        killed_at: list[float] = []

        def kill_when_half_way() -> None:
            time.sleep(SECONDS * 0.4)
            killed_at.append(time.monotonic())
            cluster.kill(victim)

        killer = threading.Thread(target=kill_when_half_way, daemon=True)
        t0 = time.monotonic()
        killer.start()
        for k in range(total):
            second, device = divmod(k, DEVICES)
            publisher.telemetry(f"CL{device:04d}", encode_fix(fix_message(
                start_ms + second * 1000, 114.0 + device * 1e-3, 22.5, spd=20)))
            while publisher.unacked > 2_000:
                time.sleep(0.001)
            lag = k / RATE - (time.monotonic() - t0)
            if lag > 0:
                time.sleep(lag)
        publisher.flush(60)  # every fix acknowledged by some node
        publisher.close()
        killer.join(30)
        assert killed_at, "the node was never killed"

        def stored() -> tuple[int, int]:
            with psycopg.connect(db, autocommit=True) as conn:
                return conn.execute(
                    "SELECT count(*), count(DISTINCT (device_id, ts)) FROM telemetry"
                    " WHERE device_id LIKE 'CL%'").fetchone()
        deadline = time.monotonic() + 60
        rows, distinct = stored()
        while rows < total and time.monotonic() < deadline:
            time.sleep(0.5)
            rows, distinct = stored()
        with psycopg.connect(db, autocommit=True) as conn:
            # the longest time nothing was received around the kill, by the ingest's clock
            gap = conn.execute(
                "SELECT max(gap) FROM (SELECT extract(epoch FROM received_at - lag(received_at)"
                " OVER (ORDER BY received_at)) AS gap FROM telemetry WHERE device_id LIKE"
                " 'CL%') g").fetchone()[0]
        log = ingest.log_path.read_text()
        moved_to = _connected_port(log)
        print(f"\ncluster fail-over: {total} fixes acknowledged, {rows} stored "
              f"({distinct} distinct), lost {total - distinct}, longest gap {gap:.1f} s, "
              f"ingest moved from :{victim_port} to :{moved_to}")
        assert distinct == total, f"{total - distinct} acknowledged fixes lost"
        assert rows == distinct, "a fix stored twice"
        assert moved_to != victim_port
        assert gap < 30, f"nothing stored for {gap:.1f} s"
    finally:
        ingest.stop()
        cluster.stop()
