"""Publishing simulated terminals to MQTT, the way real terminals reach the system.

One paho client (its own network thread) publishes for many trucks. QoS 1 publishes are
counted until the broker acknowledged each one, so a caller can wait until everything it sent
is safely with the broker.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import paho.mqtt.client as mqtt

from domain.wire import TOPIC_ROOT, partition_topic


class PublishError(RuntimeError):
    pass


class MqttPublisher:
    def __init__(self, host: str, port: int, *, client_id: str = "muckwatch-simulator",
                 max_inflight: int = 0, partitions: int = 0,
                 nodes: Sequence[tuple[str, int]] = ()) -> None:
        self.host, self.port = host, port
        # a clustered broker's nodes: when ours goes, paho reconnects to the next one and
        # sends again what the old node had not acknowledged
        self.nodes = list(nodes) or [(host, port)]
        self._node = 0
        self._closing = False
        self.partitions = partitions  # topic partitions ([mqtt] partitions); 0 = none
        self.client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv311,
        )
        # 0: no paho window (paho rescans its queue on every PUBACK while a window is set);
        # callers bound what is unacknowledged themselves (``unacked``)
        self.client.max_inflight_messages_set(max_inflight)
        self.client.max_queued_messages_set(0)
        self._acked = 0
        self._sent = 0
        self._lock = threading.Lock()
        self.client.on_publish = self._on_publish
        self.client.on_disconnect = self._next_node
        self.client.on_connect_fail = self._next_node
        self.client.reconnect_delay_set(1, 4)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._lock:
            self._acked += 1

    def _next_node(self, client, *_) -> None:
        """Disconnected, or a reconnect failed: point paho at the next node (its loop
        reconnects there and sends again what was not acknowledged)."""
        if len(self.nodes) > 1 and not self._closing:
            self._node += 1
            self.host, self.port = self.nodes[self._node % len(self.nodes)]
            client.connect_async(self.host, self.port, keepalive=30)

    def connect(self, timeout_s: float = 10.0) -> MqttPublisher:
        error: OSError | None = None
        for _ in self.nodes:
            self.host, self.port = self.nodes[self._node % len(self.nodes)]
            try:
                self.client.connect(self.host, self.port, keepalive=30)
                break
            except OSError as e:
                error = e
                self._node += 1
        else:
            raise PublishError(f"cannot reach the MQTT broker at {self.host}:{self.port}: "
                               f"{error}") from None
        self.client.loop_start()
        deadline = time.monotonic() + timeout_s
        while not self.client.is_connected():
            if time.monotonic() > deadline:
                raise PublishError(f"no CONNACK from {self.host}:{self.port}")
            time.sleep(0.01)
        return self

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=qos, retain=retain)
        if qos:
            with self._lock:
                self._sent += 1

    def telemetry(self, device: str, payload: bytes, root: str = TOPIC_ROOT) -> None:
        self.publish(partition_topic(root, device, self.partitions), payload)

    def batch(self, device: str, payload: bytes, root: str = TOPIC_ROOT) -> None:
        self.publish(partition_topic(root, device, self.partitions, "telemetry/batch"), payload)

    def status(self, device: str, online: bool, root: str = TOPIC_ROOT) -> None:
        self.publish(partition_topic(root, device, self.partitions, "status"),
                     b"online" if online else b"offline", retain=True)

    @property
    def acked(self) -> int:
        """QoS 1 messages the broker acknowledged so far."""
        with self._lock:
            return self._acked

    @property
    def unacked(self) -> int:
        with self._lock:
            return self._sent - self._acked

    def flush(self, timeout_s: float = 60.0) -> None:
        """Wait until the broker acknowledged every QoS 1 message published so far."""
        deadline = time.monotonic() + timeout_s
        while self.unacked > 0:
            if time.monotonic() > deadline:
                raise PublishError(f"{self.unacked} messages not acknowledged by the broker")
            time.sleep(0.01)

    def close(self) -> None:
        self._closing = True
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class StreamSummary:
    messages: int = 0
    fixes: int = 0
    batches: int = 0
    wall_s: float = 0.0
    max_lag_s: float = 0.0  # how far publishing fell behind the schedule (speed > 0)

    @property
    def per_second(self) -> float:
        return self.messages / self.wall_s if self.wall_s else 0.0


def stream(deliveries: Iterable, publisher: MqttPublisher, *, start_ms: int,
           speed: float = 0.0, rate: float = 0.0, progress=None,
           max_unacked: int = 5_000, root: str = TOPIC_ROOT) -> StreamSummary:
    """Publish ``simulator.mixed.Delivery`` objects in order, QoS 1, each on its device's
    topic. ``speed`` paces by simulated time (1 = real time, 10 = ten times faster, 0 = as
    fast as the broker acknowledges); ``rate`` caps messages per second. ``progress`` (a tqdm
    bar counting simulated seconds) is advanced as time passes. Returns once the broker
    acknowledged every message."""
    summary = StreamSummary()
    t0 = time.monotonic()
    shown_s = 0
    for d in deliveries:
        if speed > 0:
            due = t0 + (d.at_ms - start_ms) / 1000 / speed
            ahead = due - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
            else:
                summary.max_lag_s = max(summary.max_lag_s, -ahead)
        publisher.publish(d.topic(root, publisher.partitions), d.body())
        summary.messages += 1
        summary.fixes += d.fixes
        summary.batches += d.is_batch
        if rate > 0:
            ahead = summary.messages / rate - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)
        while publisher.unacked > max_unacked:  # keep the client's queue bounded
            time.sleep(0.002)
        if progress is not None:
            sim_s = max(0, (d.at_ms - start_ms) // 1000)
            if sim_s > shown_s:
                progress.update(sim_s - shown_s)
                shown_s = sim_s
                progress.set_postfix(messages=summary.messages, refresh=False)
    publisher.flush(timeout_s=120)
    summary.wall_s = time.monotonic() - t0
    return summary
