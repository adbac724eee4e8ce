"""Topic partitions a worker consumes (the partition of a device and its topic are wire
schema: ``domain.wire.partition_of``). One vehicle's messages always reach the same worker.

Per-vehicle rules need a vehicle's fixes in order and in one place. Brokers that only
round-robin shared subscriptions (Mosquitto) cannot guarantee that, so publishers put a
partition level in the topic — ``muck/v1/p/{k}/{device}/telemetry`` with
``k = CRC-32(device id as UTF-8) mod P`` — and each worker subscribes to its set of
partitions, one persistent MQTT session per partition (docs/scaling.md). CRC-32 (the zlib /
IEEE 802.3 one) is in the standard library of every language a terminal vendor or gateway
uses, and it never changes between releases, unlike a language's built-in string hash.
"""

from __future__ import annotations

import re

__all__ = ["PartitionSpecError", "parse_partition_set"]


class PartitionSpecError(ValueError):
    """A partition set in the config that does not parse or is out of range."""


def parse_partition_set(spec: str, count: int) -> tuple[int, ...]:
    """``"0-3,8"`` → (0, 1, 2, 3, 8); empty → all ``count`` partitions."""
    if count <= 0:
        raise PartitionSpecError(
            f"[ingest] partitions = {spec!r} needs [mqtt] partitions > 0 (the number of "
            "topic partitions publishers use)")
    if not spec.strip():
        return tuple(range(count))
    chosen: set[int] = set()
    for part in spec.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m:
            raise PartitionSpecError(
                f"[ingest] partitions: {part.strip()!r} is not a partition or a range like 0-7")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if lo > hi or hi >= count:
            raise PartitionSpecError(
                f"[ingest] partitions: {part.strip()!r} is outside 0-{count - 1} "
                f"([mqtt] partitions = {count})")
        chosen.update(range(lo, hi + 1))
    return tuple(sorted(chosen))
