"""The MQTT v5 packet cutter in ingest/receiver.py: any stream of PUBLISH packets (QoS 0 and
1, properties short and long, multi-byte lengths, unicode topics), cut at any byte boundaries,
comes out as exactly those messages with their packet ids; PUBACKs go out in one write for
the connection the messages came on, never for a lost one. Against the real broker, the
end-to-end and fault tests exercise the rest (connect, subscribe, reconnect)."""

from __future__ import annotations

import asyncio
import struct

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.settings import MqttSettings
from ingest.receiver import (
    MqttReceiver,
    _Session,
    _varint,
    connect_packet,
    puback_packets,
    subscribe_packet,
)


class Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False
        self.reading = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def publish(topic: str, payload: bytes, qos: int, mid: int, props: bytes,
            v5: bool = True) -> bytes:
    t = topic.encode()
    body = struct.pack(">H", len(t)) + t + (struct.pack(">H", mid) if qos else b"") + \
        (_varint(len(props)) + props if v5 else b"") + payload
    return bytes([0x30 | qos << 1]) + _varint(len(body)) + body


messages = st.lists(st.tuples(
    st.text(min_size=1, max_size=40).filter(lambda t: "\x00" not in t),
    st.binary(max_size=300),
    st.integers(0, 1),
    st.integers(1, 65_535),
    st.binary(max_size=200)), min_size=1, max_size=40)


@settings(max_examples=200, deadline=None)
@given(messages, st.lists(st.integers(1, 400), min_size=1, max_size=20), st.booleans())
def test_any_publish_stream_cut_anywhere_yields_exactly_its_messages(msgs, cuts, v5):
    """… in MQTT 5 (properties) and 3.1.1 (none) alike."""
    async def go():
        receiver = MqttReceiver(MqttSettings(protocol="5" if v5 else "3.1.1"), ["muck/v1/#"],
                                batch_max=10_000, batch_wait_s=0.01)
        receiver._wakeup = asyncio.Event()
        session = _Session(receiver, generation=1)
        session.connection_made(Transport())
        receiver._session, receiver._generation = session, 1
        stream = b"".join(publish(*m, v5=v5) for m in msgs)
        pos, k = 0, 0
        while pos < len(stream):
            step = cuts[k % len(cuts)]
            session.data_received(stream[pos:pos + step])
            pos, k = pos + step, k + 1
        assert not session.transport.closed, "no protocol error"
        batch = receiver.take()
        assert batch.topics == [m[0] for m in msgs]
        assert batch.payloads == [m[1] for m in msgs]
        assert list(batch.ack_ids) == [m[3] for m in msgs if m[2] == 1]
        receiver.ack(batch)
        acks = b"".join(session.transport.written)
        assert acks == b"".join(bytes([0x40, 2]) + struct.pack(">H", m[3])
                                for m in msgs if m[2] == 1)
        assert not session.buffer, "every byte used"
    asyncio.run(go())


def test_a_batch_from_a_lost_connection_is_not_acked():
    async def go():
        receiver = MqttReceiver(MqttSettings(), ["muck/v1/#"], batch_max=100, batch_wait_s=0.01)
        receiver._wakeup = asyncio.Event()
        old = _Session(receiver, generation=1)
        old.connection_made(Transport())
        receiver._session, receiver._generation = old, 1
        old.data_received(publish("muck/v1/A/telemetry", b"{}", 1, 7, b""))
        batch = receiver.take()
        new = _Session(receiver, generation=2)  # reconnected: the broker resends id 7
        new.connection_made(Transport())
        receiver._session, receiver._generation = new, 2
        receiver.ack(batch)
        assert new.transport.written == [] and old.transport.written == []
        new.data_received(publish("muck/v1/A/telemetry", b"{}", 1, 7, b""))
        receiver.ack(receiver.take())
        assert new.transport.written == [bytes([0x40, 2, 0, 7])]
    asyncio.run(go())


def test_a_malformed_packet_closes_the_connection_to_reconnect():
    async def go():
        receiver = MqttReceiver(MqttSettings(), ["muck/v1/#"], batch_max=100, batch_wait_s=0.01)
        session = _Session(receiver, generation=1)
        session.connection_made(Transport())
        session.data_received(bytes([0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]))  # 5-byte length
        assert session.transport.closed
    asyncio.run(go())


def test_connect_and_subscribe_packets_carry_what_the_session_needs():
    s = MqttSettings(client_id="ingest-1", username="ingest", password="pw",
                     keepalive_s=30, session_expiry_s=86_400, receive_maximum=65_535)
    packet = connect_packet(s)
    assert packet[0] == 0x10
    assert b"\x00\x04MQTT\x05" in packet, "MQTT v5"
    flags = packet[packet.index(b"MQTT") + 5]
    assert flags == 0xC0, "user name and password, Clean Start 0 (persistent session)"
    assert b"\x11" + struct.pack(">I", 86_400) in packet and b"\x21\xff\xff" in packet
    assert packet.endswith(b"\x00\x08ingest-1\x00\x06ingest\x00\x02pw")
    sub = subscribe_packet(1, ["muck/v1/#"])
    assert sub == bytes([0x82, 15, 0, 1, 0, 0, 9]) + b"muck/v1/#" + b"\x01"
    assert puback_packets(np.array([1, 258], np.uint16)) == bytes([0x40, 2, 0, 1, 0x40, 2, 1, 2])


def test_megabytes_of_photos_pause_reading_until_the_pipeline_takes_them():
    """A session stops reading once more payload bytes than its budget are buffered (TCP
    pushes back on the broker, which keeps the rest) and reads again once half is taken;
    every message still arrives once, whole."""
    async def go():
        receiver = MqttReceiver(MqttSettings(), ["muck/v1/#"], batch_max=3, batch_wait_s=0.01,
                                max_buffer_bytes=1_000_000)
        receiver._wakeup = asyncio.Event()
        session = _Session(receiver, generation=1)
        session.connection_made(Transport())
        receiver._session, receiver._generation = session, 1
        photos = [bytes([k]) * 300_000 for k in range(10)]
        got: list[bytes] = []
        pending = [publish(f"muck/v1/D{k}/media", p, 1, k + 1, b"") for k, p in
                   enumerate(photos)]
        while pending or receiver.pending():
            while pending and session.transport.reading:
                session.data_received(pending.pop(0))
            assert receiver.buffered_bytes <= 1_000_000 + 300_000  # one read past the budget
            assert not session.transport.reading or not pending or \
                receiver.buffered_bytes <= 1_000_000
            got += receiver.take().payloads
        assert got == photos and receiver.buffered_bytes == 0 and session.transport.reading
    asyncio.run(go())


def test_an_mqtt_311_session_is_persistent_and_reads_a_311_suback():
    s = MqttSettings(client_id="ingest-1", protocol="3.1.1", keepalive_s=30)
    packet = connect_packet(s)
    assert packet[2:10] == b"\x00\x04MQTT\x04\x00"  # level 4, clean session 0: persistent
    assert packet.endswith(b"\x00\x08ingest-1")
    assert subscribe_packet(1, ["a/#"], v5=False) == b"\x82\x08\x00\x01\x00\x03a/#\x01"

    async def go():
        receiver = MqttReceiver(s, ["a/#", "b/#"], batch_max=10, batch_wait_s=0.01)
        session = _Session(receiver, generation=1)
        session.connection_made(Transport())
        session.data_received(b"\x90\x04\x00\x01\x01\x01")  # SUBACK: two topics, QoS 1
        assert session.suback.result() is True
    asyncio.run(go())


def test_a_clustered_broker_node_that_dies_is_left_for_the_next(run_dir):
    """Two real brokers as the nodes of [mqtt] hosts: the receiver connects to the first;
    when it is killed, to the second, at once (no backoff before trying another node)."""
    import time

    import paho.mqtt.client as mqtt

    from devservices.mosquitto import PrivateMosquitto

    first = PrivateMosquitto(run_dir / "mosquitto-node-1").start()
    second = PrivateMosquitto(run_dir / "mosquitto-node-2").start()
    try:
        s = MqttSettings(hosts=f"127.0.0.1:{first.port},127.0.0.1:{second.port}",
                         client_id="failover-test", keepalive_s=5)

        async def go() -> float:
            receiver = MqttReceiver(s, ["muck/v1/#"], batch_max=10, batch_wait_s=0.01)
            await receiver.start()
            assert receiver.where == f"127.0.0.1:{first.port}"
            first.proc.kill()  # kill -9: no goodbye
            killed = time.monotonic()
            while receiver.where != f"127.0.0.1:{second.port}" or not receiver.connected:
                await asyncio.sleep(0.05)
                assert time.monotonic() - killed < 10, "did not move to the next node"
            moved = time.monotonic() - killed
            client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
            client.connect("127.0.0.1", second.port)
            client.loop_start()
            client.publish("muck/v1/D1/telemetry", b"{}", qos=1).wait_for_publish(5)
            client.loop_stop()
            batch = await asyncio.wait_for(receiver.next_batch(), 5)
            assert batch.topics == ["muck/v1/D1/telemetry"]
            await receiver.stop()
            return moved
        assert asyncio.run(go()) < 3
    finally:
        first.stop()
        second.stop()
