"""Publishing from asyncio with paho, on the event loop itself: a batch of publishes is
one future that resolves when the broker acknowledged all of them (PUBACK), so the gateway
answers a terminal only once its fixes are safe. It also subscribes (QoS 1), for the
commands to terminals: the session is clean, so every (re)connection subscribes again.

paho runs without its network thread: its socket is registered with the event loop
(``add_reader``/``add_writer``), the way aiomqtt does it. Measured, this matters: with
``loop_start()`` every publish wakes paho's thread through a socket pair and the two threads
trade the GIL per message (≈ 2,000 reports/s from 200 terminals); on the loop, publishes of
one read are written together and acks are counted directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Sequence

import paho.mqtt.client as mqtt


class BrokerUnavailable(RuntimeError):
    pass


class AsyncPublisher:
    def __init__(self, host: str, port: int, client_id: str, username: str = "",
                 password: str = "", keepalive_s: int = 30,
                 nodes: Sequence[tuple[str, int]] = ()) -> None:
        self.host, self.port = host, port
        # a clustered broker's nodes ([mqtt] hosts): on losing ours, the next one
        self.nodes = list(nodes) or [(host, port)]
        self._node = 0
        self.client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=client_id, protocol=mqtt.MQTTv311,
                                  clean_session=True)
        if username:
            self.client.username_pw_set(username, password or None)
        # 0 = no paho window: with a window paho rescans every queued message on each PUBACK
        # (quadratic under load); terminals waiting for their answers bound what is in flight
        self.client.max_inflight_messages_set(0)
        self.client.max_queued_messages_set(0)
        self.keepalive_s = keepalive_s
        # mid → (the batch's future, its ack counter)
        self._pending: dict[int, tuple[asyncio.Future, Callable[[], None]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._misc: asyncio.Task | None = None
        self._connected = asyncio.Event()
        # topic filter → what to call with (topic, payload) for each message on it
        self._subscriptions: dict[str, Callable[[str, bytes], None]] = {}
        self._subacks: dict[int, asyncio.Future] = {}
        c = self.client
        c.on_publish = self._on_publish
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        c.on_disconnect = self._on_disconnect
        c.on_socket_open = self._on_socket_open
        c.on_socket_close = self._on_socket_close
        c.on_socket_register_write = self._on_socket_register_write
        c.on_socket_unregister_write = self._on_socket_unregister_write

    async def connect(self, timeout_s: float = 10.0) -> None:
        self._loop = asyncio.get_running_loop()
        error: OSError | None = None
        for _ in self.nodes:
            self.host, self.port = self.nodes[self._node % len(self.nodes)]
            try:
                self.client.connect(self.host, self.port, self.keepalive_s)
                break
            except OSError as e:
                error = e
                self._node += 1
        else:
            raise BrokerUnavailable(f"cannot reach the MQTT broker at {self.host}:{self.port}:"
                                    f" {error}") from None
        sock = self.client.socket()
        if isinstance(sock, socket.socket):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 2048 * 1024)
        self._misc = asyncio.ensure_future(self._keepalive())
        try:
            await asyncio.wait_for(self._connected.wait(), timeout_s)
        except TimeoutError:
            raise BrokerUnavailable(f"no CONNACK from {self.host}:{self.port}") from None

    # paho's socket callbacks: its socket is watched by the event loop, which connect() set
    def _event_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("paho opened its socket before connect() set the event loop")
        return self._loop

    def _on_socket_open(self, client: mqtt.Client, userdata: object,
                        sock: mqtt.SocketLike) -> None:
        self._event_loop().add_reader(sock, client.loop_read)

    def _on_socket_close(self, client: mqtt.Client, userdata: object,
                         sock: mqtt.SocketLike) -> None:
        self._event_loop().remove_reader(sock)

    def _on_socket_register_write(self, client: mqtt.Client, userdata: object,
                                  sock: mqtt.SocketLike) -> None:
        self._event_loop().add_writer(sock, client.loop_write)

    def _on_socket_unregister_write(self, client: mqtt.Client, userdata: object,
                                    sock: mqtt.SocketLike) -> None:
        self._event_loop().remove_writer(sock)

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if self.client.loop_misc() != mqtt.MQTT_ERR_SUCCESS and self._connected.is_set():
                self._connected.clear()
            if not self.client.is_connected():
                if len(self.nodes) > 1:  # its node may be gone: the next one
                    self._node += 1
                    self.host, self.port = self.nodes[self._node % len(self.nodes)]
                    with contextlib.suppress(OSError):
                        self.client.connect(self.host, self.port, self.keepalive_s)
                else:
                    with contextlib.suppress(OSError):
                        self.client.reconnect()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connected.set()
        # clean session: the broker forgot our subscriptions with the last connection
        for topic in self._subscriptions:
            self._subscribe(topic)

    def _subscribe(self, topic: str) -> int | None:
        rc, mid = self.client.subscribe(topic, qos=1)
        return mid if rc == mqtt.MQTT_ERR_SUCCESS else None

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        done = self._subacks.pop(mid, None)
        if done is not None and not done.done():
            done.set_result(reason_codes)

    def _on_message(self, client, userdata, message: mqtt.MQTTMessage) -> None:
        for topic, callback in self._subscriptions.items():
            if mqtt.topic_matches_sub(topic, message.topic):
                callback(message.topic, bytes(message.payload))

    async def subscribe(self, topic: str, callback: Callable[[str, bytes], None],
                        timeout_s: float = 10.0) -> None:
        """Deliver every message on ``topic`` (a filter, QoS 1) to ``callback`` on the event
        loop, from now on and after every reconnection; waits for the broker's SUBACK when
        connected (otherwise the next connection subscribes)."""
        assert self._loop is not None, "connect() first"
        self._subscriptions[topic] = callback
        if not self.client.is_connected():
            return
        mid = self._subscribe(topic)
        if mid is None:
            raise BrokerUnavailable(f"cannot subscribe to {topic}")
        done = self._subacks[mid] = self._loop.create_future()
        try:
            codes = await asyncio.wait_for(done, timeout_s)
        except TimeoutError:
            raise BrokerUnavailable(f"no SUBACK for {topic} within {timeout_s:g} s") from None
        finally:
            self._subacks.pop(mid, None)
        if any(getattr(code, "is_failure", False) for code in codes):
            raise BrokerUnavailable(f"the broker refused the subscription to {topic}")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connected.clear()
        pending, self._pending = self._pending, {}
        for done, _ in pending.values():  # unacked: the terminals will be told 'fail'
            if not done.done():
                done.set_exception(BrokerUnavailable("the broker connection was lost"))

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        entry = self._pending.pop(mid, None)
        if entry is not None:
            entry[1]()

    async def publish_all(self, messages: list[tuple[str, bytes]], timeout_s: float,
                          retain: bool = False) -> None:
        """Publish and wait until the broker acknowledged every one (or raise). One future
        per call, not per message: a terminal's read of ten reports costs one wait.
        ``retain``: the broker keeps them as the topics' last word (terminal status)."""
        assert self._loop is not None, "connect() first"
        done = self._loop.create_future()
        remaining = len(messages)
        if not remaining:
            return
        if not self.client.is_connected():
            raise BrokerUnavailable("not connected to the broker")

        def acked(_future: asyncio.Future | None = None) -> None:
            nonlocal remaining
            remaining -= 1
            if remaining == 0 and not done.done():
                done.set_result(None)

        for topic, payload in messages:
            info = self.client.publish(topic, payload, qos=1, retain=retain)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                raise BrokerUnavailable(f"publish failed: {info.rc}")
            self._pending[info.mid] = (done, acked)
        handle = self._loop.call_later(timeout_s, _expire, done, timeout_s)
        try:
            await done
        finally:
            handle.cancel()

    async def close(self) -> None:
        if self._misc is not None:
            self._misc.cancel()
        self.client.disconnect()


def _expire(done: asyncio.Future, timeout_s: float) -> None:
    if not done.done():
        done.set_exception(BrokerUnavailable(
            f"the broker did not acknowledge within {timeout_s:g} s"))
