"""Topic partitions: the hash publishers and workers agree on, the partition sets operators
write, the topics the ingest accepts, and one session per partition on a real broker."""

from __future__ import annotations

import asyncio
import uuid
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.config import ConfigError, PartitionSpecError, load_settings, parse_partition_set
from domain.settings import MqttSettings, Settings
from domain.wire import TopicKind, parse_topic, partition_of, partition_topic
from ingest.receiver import PartitionedReceiver
from muckwatch.service import build_receiver

DEVICE_IDS = st.text(st.sampled_from("ABCXYZabcxyz0123456789_.:-"), min_size=1, max_size=64)


def test_partition_is_the_standard_crc32_check_value_mod_p():
    # CRC-32 of "123456789" is 0xCBF43926 in every implementation (zlib, Java, Go, C):
    # terminals and gateways written in any language compute the same partition
    assert partition_of("123456789", 16) == 0xCBF43926 % 16 == 6
    assert partition_of("123456789", 7) == 0xCBF43926 % 7
    assert partition_topic("muck/v1", "123456789", 16) == "muck/v1/p/6/123456789/telemetry"
    assert partition_topic("muck/v1", "123456789", 0) == "muck/v1/123456789/telemetry"


@given(DEVICE_IDS, st.integers(1, 1024))
def test_partition_is_stable_and_in_range(device, count):
    k = partition_of(device, count)
    assert 0 <= k < count
    assert k == zlib.crc32(device.encode()) % count


@given(DEVICE_IDS, st.integers(0, 64), st.sampled_from(["telemetry", "telemetry/batch",
                                                         "status"]))
def test_partitioned_topics_parse_to_the_same_device(device, count, suffix):
    kind = {"telemetry": TopicKind.TELEMETRY, "telemetry/batch": TopicKind.BATCH,
            "status": TopicKind.STATUS}[suffix]
    assert parse_topic(partition_topic("muck/v1", device, count, suffix)) == (kind, device)


@pytest.mark.parametrize("topic", ["muck/v1/p/x/D1/telemetry", "muck/v1/p/3/telemetry",
                                   "muck/v1/p/3/D1/telemetry/extra", "muck/v1/p//D1/telemetry"])
def test_malformed_partition_topics_are_bad_topics(topic):
    assert parse_topic(topic) is None


@given(st.integers(1, 256), st.data())
def test_partition_sets_parse_ranges_and_lists(count, data):
    chosen = data.draw(st.sets(st.integers(0, count - 1), min_size=1))
    spec = ",".join(str(k) for k in sorted(chosen))
    assert parse_partition_set(spec, count) == tuple(sorted(chosen))
    lo = data.draw(st.integers(0, count - 1))
    hi = data.draw(st.integers(lo, count - 1))
    assert parse_partition_set(f" {lo} - {hi} ", count) == tuple(range(lo, hi + 1))
    assert parse_partition_set("", count) == tuple(range(count))


@pytest.mark.parametrize(("spec", "count", "words"), [
    ("0-8", 8, "outside 0-7"), ("5-2", 8, "outside"), ("a", 8, "not a partition"),
    ("1,,2", 8, "not a partition"), ("0", 0, "needs [mqtt] partitions > 0")])
def test_partition_set_mistakes_say_what_is_wrong(spec, count, words):
    with pytest.raises(PartitionSpecError, match=None) as e:
        parse_partition_set(spec, count)
    assert words in str(e.value)


@pytest.mark.parametrize(("env", "words"), [
    ({"MQTT_PARTITIONS": "4", "MQTT_SHARE_GROUP": "g"}, "set one of them"),
    ({"INGEST_PARTITIONS": "0-1"}, "needs [mqtt] partitions > 0"),
    ({"MQTT_PARTITIONS": "4", "INGEST_PARTITIONS": "3-5"}, "outside 0-3"),
    ({"MQTT_SHARE_GROUP": "a/b"}, "topic level"),
    ({"MQTT_PARTITIONS": "-1"}, "must be 0"),
])
def test_worker_config_mistakes_are_refused_at_load_with_the_key(env, words):
    with pytest.raises(ConfigError) as e:
        load_settings(env={f"MUCKWATCH_{k}": v for k, v in env.items()})
    assert words in str(e.value) and "\n" not in str(e.value)


def test_share_group_subscribes_through_the_shared_subscription():
    receiver = build_receiver(Settings().with_overrides(mqtt={"share_group": "muckwatch"}))
    assert receiver.topics == ["$share/muckwatch/muck/v1/#"]


def test_partitioned_worker_has_one_session_per_partition():
    receiver = build_receiver(Settings().with_overrides(
        mqtt={"partitions": 8, "client_id": "city"}, ingest={"partitions": "2-3,6"}))
    assert isinstance(receiver, PartitionedReceiver)
    assert {k: (r.settings.client_id, r.topics) for k, r in receiver.parts.items()} == {
        2: ("city-p2", ["muck/v1/p/2/#"]), 3: ("city-p3", ["muck/v1/p/3/#"]),
        6: ("city-p6", ["muck/v1/p/6/#"])}
    # partition 0 also takes terminals that publish without a partition level
    assert build_receiver(Settings().with_overrides(mqtt={"partitions": 2})).parts[0].topics \
        == ["muck/v1/p/0/#", "muck/v1/+/telemetry", "muck/v1/+/telemetry/batch",
            "muck/v1/+/status", "muck/v1/+/media", "muck/v1/+/alarm",
            "muck/v1/+/command/state"]


def test_merged_batches_ack_each_message_on_its_own_session(broker, publish):
    """Four partitions, two receivers: each gets only its partitions, batches merge them,
    and what was acked is not delivered again to the next owner of the session."""
    root = "ptest/v1"
    mqtt = MqttSettings(host="127.0.0.1", port=broker.port, client_id="ptest",
                        topic_root=root)
    devices = [f"D{n}" for n in range(40)]

    async def consume(partitions, expect: int, ack: bool) -> list[str]:
        r = PartitionedReceiver(mqtt, root, partitions, batch_max=100, batch_wait_s=0.05)
        await r.start()
        got: list[str] = []
        try:
            while len(got) < expect:
                try:
                    batch = await asyncio.wait_for(r.next_batch(), 10)
                except TimeoutError:
                    break
                got += batch.topics
                if ack:
                    r.ack(batch)
            await asyncio.sleep(0.2)  # the acks reach the broker
        finally:
            await r.stop()
        return got

    # sessions exist before the messages are published: they queue while nobody listens
    asyncio.run(consume((0, 1, 2, 3), 0, ack=True))
    for d in devices:
        publish(partition_topic(root, d, 4), b'{"ts":1,"lon":114,"lat":22.5}')
    counts = [sum(partition_of(d, 4) == k for d in devices) for k in range(4)]
    first = asyncio.run(consume((0, 1), counts[0] + counts[1], ack=True))
    assert sorted(first) == sorted(partition_topic(root, d, 4) for d in devices
                                   if partition_of(d, 4) in (0, 1))
    # partitions 2-3 were never acked by their first consumer: the next one gets them all
    unacked = asyncio.run(consume((2, 3), counts[2] + counts[3], ack=False))
    again = asyncio.run(consume((0, 1, 2, 3), counts[2] + counts[3], ack=True))
    assert sorted(unacked) == sorted(again)
    assert all(partition_of(t.split("/")[4], 4) in (2, 3) for t in again)


def test_shared_subscription_group_splits_messages_on_a_real_broker(broker, publish):
    """`share_group` subscribes through `$share/{group}/…`: two workers in the group receive
    every message exactly once between them (Mosquitto shares round-robin; EMQX's hash
    strategies add the per-vehicle affinity, docs/scaling.md)."""
    root = f"share{uuid.uuid4().hex[:6]}/v1"

    async def scenario() -> tuple[list[str], list[str]]:
        workers = [build_receiver(Settings().with_overrides(
            mqtt={"host": "127.0.0.1", "port": broker.port, "client_id": f"{root[:11]}-{n}",
                  "topic_root": root, "share_group": "muckwatch"},
            ingest={"batch_wait_ms": 50})) for n in (1, 2)]
        for w in workers:
            await w.start()
        try:
            await asyncio.to_thread(lambda: [publish(f"{root}/D{k}/telemetry", b"{}")
                                             for k in range(20)])
            got: list[list[str]] = [[], []]
            deadline = asyncio.get_running_loop().time() + 20
            while sum(map(len, got)) < 20 and asyncio.get_running_loop().time() < deadline:
                for n, w in enumerate(workers):
                    batch = w.take()
                    got[n] += batch.topics
                    w.ack(batch)
                await asyncio.sleep(0.05)
            return got[0], got[1]
        finally:
            for w in workers:
                await w.stop()

    first, second = asyncio.run(scenario())
    assert sorted(first + second) == sorted(f"{root}/D{k}/telemetry" for k in range(20))
    assert first and second, "both members of the group receive a share"
