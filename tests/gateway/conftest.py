"""The gateway in this process against the real broker, for the multimedia and command tests:
``harness.gateway()`` runs a ``Gateway`` (its own MQTT client id) on a loopback port,
``harness.terminal()`` connects a ``SimulatedTerminal`` to it, ``harness.collector()``
reads back what reaches the broker with a plain paho client, ``harness.command()``
publishes a command the way the platform's dispatcher does. Each test has its own topic
root, so tests sharing the broker never see each other's messages."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import orjson
import paho.mqtt.client as mqtt
import pytest

from domain.wire import command_message, command_topic
from gateway.mqtt import AsyncPublisher
from gateway.sensors import SensorMapping
from gateway.server import Directory, Gateway
from gateway.terminal import SimulatedTerminal


class Collector:
    """Every message on ``{root}/#`` (its own paho thread), and a way to publish."""

    def __init__(self, port: int, root: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        subscribed = threading.Event()
        self.client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"collector-{uuid.uuid4().hex[:8]}")
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe(f"{root}/#", qos=1)
        assert subscribed.wait(10), "no SUBACK"

    def _on_message(self, client, userdata, message) -> None:
        with self.lock:
            self.messages.append((message.topic, bytes(message.payload)))

    def on(self, suffix: str) -> list[bytes]:
        """Payloads of the topics ending in ``/{suffix}``."""
        with self.lock:
            return [p for t, p in self.messages if t.endswith("/" + suffix)]

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()  # first: the network thread then ends at once
        self.client.loop_stop()


@dataclass
class Harness:
    port: int  # the broker's
    root: str = field(default_factory=lambda: f"gwt{uuid.uuid4().hex[:8]}/v1")
    collectors: list[Collector] = field(default_factory=list)

    def collector(self) -> Collector:
        c = Collector(self.port, self.root)
        self.collectors.append(c)
        return c

    @asynccontextmanager
    async def gateway(self, **options) -> AsyncIterator[tuple[Gateway, int]]:
        """A gateway on a free loopback port: (the gateway, its port)."""
        publisher = AsyncPublisher("127.0.0.1", self.port, f"gw-{uuid.uuid4().hex[:10]}")
        await publisher.connect()
        options = {"publish_timeout_s": 5.0, "media_resend_after_s": 0.3, **options}
        gw = Gateway(publisher, Directory(allow_unknown=True), SensorMapping(), {},
                     topic_root=self.root, **options)
        await gw.start()
        server = await asyncio.start_server(gw.handle, "127.0.0.1", 0)
        try:
            yield gw, server.sockets[0].getsockname()[1]
        finally:
            server.close()
            gw.close_connections()
            await server.wait_closed()
            await gw.stop()
            await publisher.close()

    async def terminal(self, port: int, number: str | None = None,
                       **options) -> SimulatedTerminal:
        t = SimulatedTerminal(number or self.phone(), **options)
        await t.connect("127.0.0.1", port)
        return t

    def command(self, collector: Collector, device: str, kind: str, args: dict | None = None,
                *, deadline_s: float = 10.0, command_id: str | None = None) -> str:
        command_id = command_id or uuid.uuid4().hex
        collector.publish(command_topic(self.root, device), command_message(
            command_id, kind, args or {}, deadline_ms=int((time.time() + deadline_s) * 1000)))
        return command_id

    @staticmethod
    async def until(predicate: Callable[[], object], timeout_s: float = 10.0) -> object:
        """Await (without blocking the gateway on this loop) until ``predicate()`` is truthy."""
        deadline = time.monotonic() + timeout_s
        while not (value := predicate()):
            if time.monotonic() > deadline:
                return value
            await asyncio.sleep(0.02)
        return value

    @staticmethod
    def phone() -> str:
        return "0139" + str(uuid.uuid4().int)[:8]

    @staticmethod
    def states(collector: Collector, command_id: str) -> list[dict]:
        """The states published for one command, in order."""
        out = [orjson.loads(p) for p in collector.on("command/state")]
        return [s for s in out if s["id"] == command_id]


@pytest.fixture
def harness(broker):
    h = Harness(broker.port)
    yield h
    for c in h.collectors:
        c.close()
