"""Wire format v1, the publisher's side: topics, limits and the fix object, shared by every
component that talks to the broker like a terminal (the JT/T 808 gateway, the simulator, the
tests) and by the decoder in ``ingest.wire``. Documented for vendors in docs/protocol.md.

A fix is one JSON object ``{"v": 1, "ts": …, "lon": …, "lat": …, …}``; ``fix_message``
is the one place that writes it, so the version and the field names cannot drift apart
between the gateway, the simulator and the decoder.

Topics: ``muck/v1/{device}/telemetry`` (one fix), ``…/telemetry/batch`` (a JSON array, blind-
area backfill) and ``…/status``; with topic partitions ``muck/v1/p/{k}/{device}/…`` where
``k = CRC-32(device id as UTF-8) mod P`` — CRC-32 (the zlib / IEEE 802.3 one) is in the
standard library of every language a terminal vendor or gateway uses, and it never changes
between releases, unlike a language's built-in string hash (docs/scaling.md).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from enum import StrEnum

import orjson

WIRE_VERSION = 1
TOPIC_ROOT = "muck/v1"
MAX_PAYLOAD_BYTES = 64 * 1024
MAX_FUTURE_MS = 10 * 60 * 1000
MIN_TS_MS = 946_684_800_000  # 2000-01-01T00:00:00Z: anything earlier is a seconds/ms mix-up
DEVICE_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


class TopicKind(StrEnum):
    TELEMETRY = "telemetry"
    BATCH = "batch"
    STATUS = "status"


def parse_topic(topic: str, root: str = TOPIC_ROOT) -> tuple[TopicKind, str] | None:
    """``muck/v1/{device}/telemetry[/batch]`` or ``…/status`` → (kind, device), else None.
    A partition level (``muck/v1/p/{k}/{device}/…``, ``partition_topic``) is accepted."""
    if not topic.startswith(root + "/"):
        return None
    parts = topic[len(root) + 1 :].split("/")
    if len(parts) > 3 and parts[0] == "p" and parts[1].isdigit() and parts[1].isascii():
        parts = parts[2:]
    if not DEVICE_ID.fullmatch(parts[0]):
        return None
    tail = parts[1:]
    if tail == ["telemetry"]:
        return TopicKind.TELEMETRY, parts[0]
    if tail == ["telemetry", "batch"]:
        return TopicKind.BATCH, parts[0]
    if tail == ["status"]:
        return TopicKind.STATUS, parts[0]
    return None


def partition_of(device_id: str, count: int) -> int:
    """The partition of a device: CRC-32 of its id mod ``count``."""
    return zlib.crc32(device_id.encode("utf-8")) % count


def partition_topic(root: str, device_id: str, count: int, suffix: str = "telemetry") -> str:
    """The topic a publisher uses: partitioned when ``count`` > 0, else the plain one."""
    if count > 0:
        return f"{root}/p/{partition_of(device_id, count)}/{device_id}/{suffix}"
    return f"{root}/{device_id}/{suffix}"


# the optional members of a fix object, as docs/protocol.md lists them
OPTIONAL_FIELDS = frozenset(
    {"spd", "hdg", "lid", "lift", "load", "load_kg", "sats", "hdop", "seq", "alarm", "dev"})


def fix_message(ts: int, lon: float, lat: float, **optional: object) -> dict:
    """One wire-format v1 fix object: the version, the three required members and each
    optional one that is not None (a member left out means "not reported")."""
    unknown = optional.keys() - OPTIONAL_FIELDS
    if unknown:
        raise ValueError(f"not wire-format v{WIRE_VERSION} fix members: {sorted(unknown)}")
    fix: dict = {"v": WIRE_VERSION, "ts": ts, "lon": lon, "lat": lat}
    for key, value in optional.items():
        if value is not None:
            fix[key] = value
    return fix


def encode_fix(fix: dict, *, device: str | None = None) -> bytes:
    """Serialize one wire-format fix (used by the simulator and tests)."""
    if device is not None:
        fix = {**fix, "dev": device}
    return orjson.dumps(fix)


def encode_batch(fixes: Sequence[dict]) -> bytes:
    return orjson.dumps(list(fixes))
