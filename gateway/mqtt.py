"""Publishing from asyncio with paho: each publish is a future that resolves when the broker
acknowledged it (PUBACK), so the gateway answers a terminal only once its fixes are safe."""

from __future__ import annotations

import asyncio
import threading

import paho.mqtt.client as mqtt


class BrokerUnavailable(RuntimeError):
    pass


class AsyncPublisher:
    def __init__(self, host: str, port: int, client_id: str, username: str = "",
                 password: str = "", keepalive_s: int = 30) -> None:
        self.host, self.port = host, port
        self.client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=client_id, protocol=mqtt.MQTTv311,
                                  clean_session=True)
        if username:
            self.client.username_pw_set(username, password or None)
        self.client.max_inflight_messages_set(10_000)
        self.client.max_queued_messages_set(0)
        self.keepalive_s = keepalive_s
        self._pending: dict[int, asyncio.Future] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.client.on_publish = self._on_publish

    async def connect(self, timeout_s: float = 10.0) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            await asyncio.to_thread(self.client.connect, self.host, self.port, self.keepalive_s)
        except OSError as e:
            raise BrokerUnavailable(f"cannot reach the MQTT broker at {self.host}:{self.port}:"
                                    f" {e}") from None
        self.client.loop_start()
        deadline = self._loop.time() + timeout_s
        while not self.client.is_connected():
            if self._loop.time() > deadline:
                raise BrokerUnavailable(f"no CONNACK from {self.host}:{self.port}")
            await asyncio.sleep(0.01)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._lock:
            future = self._pending.pop(mid, None)
        if future is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(_resolve, future)

    def publish(self, topic: str, payload: bytes) -> asyncio.Future:
        assert self._loop is not None, "connect() first"
        future = self._loop.create_future()
        with self._lock:  # the PUBACK callback cannot run before the mid is registered
            info = self.client.publish(topic, payload, qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                future.set_exception(BrokerUnavailable(f"publish failed: {info.rc}"))
            else:
                self._pending[info.mid] = future
        return future

    async def publish_all(self, messages: list[tuple[str, bytes]], timeout_s: float) -> None:
        """Publish and wait until the broker acknowledged every one (or raise)."""
        futures = [self.publish(t, p) for t, p in messages]
        try:
            await asyncio.wait_for(asyncio.gather(*futures), timeout_s)
        except TimeoutError:
            raise BrokerUnavailable(f"the broker did not acknowledge within {timeout_s:g} s"
                                    ) from None

    async def close(self) -> None:
        await asyncio.to_thread(self.client.disconnect)
        self.client.loop_stop()


def _resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)
