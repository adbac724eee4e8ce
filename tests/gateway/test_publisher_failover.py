"""The gateway's (and the dispatcher's) publisher on a clustered broker: given every node
([mqtt] hosts), it connects to the first that answers and, when that one dies, publishes
through the next within seconds — no operator, no restart."""

from __future__ import annotations

import asyncio
import time

from devservices.mosquitto import PrivateMosquitto
from gateway.mqtt import AsyncPublisher, BrokerUnavailable


def test_the_publisher_moves_to_the_next_node_when_its_node_dies(run_dir):
    first = PrivateMosquitto(run_dir / "mosquitto-pub-node-1").start()
    second = PrivateMosquitto(run_dir / "mosquitto-pub-node-2").start()
    nodes = [("127.0.0.1", first.port), ("127.0.0.1", second.port)]

    async def go() -> float:
        publisher = AsyncPublisher("127.0.0.1", first.port, "failover-publisher",
                                   keepalive_s=5, nodes=nodes)
        await publisher.connect()
        await publisher.publish_all([("muck/v1/D1/telemetry", b"{}")], 5)
        assert publisher.port == first.port
        first.proc.kill()  # kill -9
        killed = time.monotonic()
        while True:
            try:
                await publisher.publish_all([("muck/v1/D1/telemetry", b"{}")], 2)
                break
            except BrokerUnavailable:
                assert time.monotonic() - killed < 10, "never published through node 2"
                await asyncio.sleep(0.2)
        assert publisher.port == second.port
        await publisher.close()
        return time.monotonic() - killed

    try:
        assert asyncio.run(go()) < 5
    finally:
        first.stop()
        second.stop()


def test_a_first_node_that_is_down_at_start_is_skipped(run_dir):
    second = PrivateMosquitto(run_dir / "mosquitto-pub-node-3").start()
    from devservices.common import free_port

    dead = free_port()

    async def go() -> None:
        publisher = AsyncPublisher("127.0.0.1", dead, "skip-publisher",
                                   nodes=[("127.0.0.1", dead), ("127.0.0.1", second.port)])
        await publisher.connect()
        await publisher.publish_all([("muck/v1/D1/telemetry", b"{}")], 5)
        await publisher.close()

    try:
        asyncio.run(go())
    finally:
        second.stop()


def test_the_simulators_publisher_moves_on_and_loses_nothing_acknowledged(run_dir):
    """The fleet simulator's paho publisher: its node killed mid-stream, it reconnects to
    the next and sends again what the dead node had not acknowledged — every message it
    counts as acknowledged was acknowledged by one of the nodes."""
    import threading

    import paho.mqtt.client as mqtt

    from simulator.publish import MqttPublisher

    first = PrivateMosquitto(run_dir / "mosquitto-sim-node-1").start()
    second = PrivateMosquitto(run_dir / "mosquitto-sim-node-2").start()
    got: set[bytes] = set()
    lock = threading.Lock()
    subscribed = threading.Event()
    watcher = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
    watcher.on_subscribe = lambda *a: subscribed.set()

    def on_message(c, u, m) -> None:
        with lock:
            got.add(bytes(m.payload))
    watcher.on_message = on_message
    watcher.connect("127.0.0.1", second.port)
    watcher.loop_start()
    watcher.subscribe("muck/v1/#", qos=1)
    assert subscribed.wait(10)
    publisher = MqttPublisher("127.0.0.1", first.port, client_id="sim-failover",
                              nodes=[("127.0.0.1", first.port), ("127.0.0.1", second.port)])
    try:
        publisher.connect()
        for k in range(200):
            publisher.telemetry("D1", b"%d" % k)
        publisher.flush(10)
        first.proc.kill()
        for k in range(200, 400):
            publisher.telemetry("D1", b"%d" % k)
            time.sleep(0.002)
        publisher.flush(20)  # every one acknowledged — by node 2 after the kill
        assert publisher.port == second.port
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(got) < 200:
            time.sleep(0.05)
        with lock:
            assert {b"%d" % k for k in range(200, 400)} <= got
    finally:
        publisher.close()
        watcher.loop_stop()
        watcher.disconnect()
        first.stop()
        second.stop()
