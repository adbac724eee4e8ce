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
