"""Malformed and hostile messages, one per rejection reason, for the demo and the tests.

Each entry says what a real terminal (or attacker) could send and which reason the ingest must
give; the demo publishes them among valid traffic to show that they are refused, counted and
kept in dead_letter while every valid fix still lands.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from domain.wire import TOPIC_ROOT, fix_message


@dataclass(frozen=True, slots=True)
class BadMessage:
    topic: str
    payload: bytes
    reason: str
    what: str


def bad_messages(device: str, other_device: str, now_ms: int,
                 root: str = TOPIC_ROOT) -> list[BadMessage]:
    """One message per rejection reason, all with plausible Shenzhen positions."""
    t = f"{root}/{device}/telemetry"

    def fix(**overrides: object) -> dict:
        base = fix_message(now_ms, 114.0579, 22.5431, spd=30.0)
        base.update(overrides)  # deliberately wrong members: a wrong version, type, range …
        return {k: v for k, v in base.items() if v is not _DROP}

    def enc(obj: object) -> bytes:
        return json.dumps(obj, allow_nan=True).encode()

    return [
        BadMessage(t, b'{"v":1,"ts":' + str(now_ms).encode() + b',"lon":114.05,"lat":',
                   "bad_json", "truncated JSON"),
        BadMessage(t, enc([fix()]), "bad_shape", "an array on the single-fix topic"),
        BadMessage(t, enc(fix(v=2)), "bad_version", "wire version 2"),
        BadMessage(t, enc(fix(lat=_DROP)), "missing_field", "no 'lat'"),
        BadMessage(t, enc(fix(lon="114.05")), "bad_type", "lon as a string"),
        BadMessage(t, enc(fix(spd=float("nan"))), "not_finite", "speed NaN"),
        BadMessage(t, enc(fix(lat=91.5)), "out_of_range", "latitude 91.5"),
        BadMessage(t, enc(fix(ts=now_ms // 1000)), "out_of_range", "ts in seconds, not ms"),
        BadMessage(t, enc(fix(ts=now_ms + 3_600_000)), "future_timestamp", "one hour ahead"),
        BadMessage(t, enc(fix(dev=other_device)), "device_mismatch",
                   "payload claims another device (spoof)"),
        BadMessage(t, b'{"v":1,"pad":"' + b"x" * 70_000 + b'"}', "too_large", "70 kB payload"),
        BadMessage(f"{root}/{device}/status", b"maybe", "bad_status", "status neither online "
                   "nor offline"),
        BadMessage(f"{root}/{device} bad!/telemetry", enc(fix()), "bad_topic",
                   "device id with a space and '!'"),
    ]


_DROP = object()
