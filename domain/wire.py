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
    MEDIA = "media"  # a photo (or other item) the terminal took: header line + bytes
    ALARM = "alarm"  # the alarm word of a report without a position
    COMMAND = "command"  # platform → terminal (never partitioned; the ingest ignores it)
    COMMAND_STATE = "command/state"  # terminal side → platform: how a command fared


def parse_topic(topic: str, root: str = TOPIC_ROOT) -> tuple[TopicKind, str] | None:
    """``muck/v1/{device}/telemetry[/batch]``, ``…/status``, ``…/media``, ``…/alarm``,
    ``…/command`` or ``…/command/state`` → (kind, device), else None.
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
    if len(tail) == 1 and tail[0] in _SINGLE:
        return _SINGLE[tail[0]], parts[0]
    if tail == ["command", "state"]:
        return TopicKind.COMMAND_STATE, parts[0]
    return None


_SINGLE = {"media": TopicKind.MEDIA, "alarm": TopicKind.ALARM, "command": TopicKind.COMMAND}


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


# --- terminal evidence and control (issue #24; docs/protocol.md) ------------------------------

MAX_MEDIA_BYTES = 4 * 1024 * 1024  # one photo's data; a JT/T 808 upload is ≤ 256 × 1023 bytes
MEDIA_TYPES = ("image", "audio", "video")
COMMAND_KINDS = ("text", "params", "position", "capture")
# the life of a command, in order: a state never moves back (redelivered states are no-ops)
COMMAND_STATES = ("queued", "published", "sent", "delivered", "failed", "unsupported",
                  "timeout")
FINAL_COMMAND_STATES = frozenset({"delivered", "failed", "unsupported", "timeout"})


class MediaError(ValueError):
    """A media payload that is not a header line and data; says what is wrong."""


def media_message(data: bytes, *, ts: int, lon: float | None, lat: float | None,
                  media_id: int, media_type: str = "image", media_format: str = "jpeg",
                  event: int = 0, channel: int = 1, command: str | None = None) -> bytes:
    """``…/{device}/media``: one JSON header object on the first line, then the item's bytes
    unchanged (no base64: a photo stays its size). ``command`` names the capture command
    that asked for it, when one did."""
    header: dict = {"v": WIRE_VERSION, "ts": ts, "id": media_id, "type": media_type,
                    "format": media_format, "event": event, "channel": channel}
    if lon is not None and lat is not None:
        header["lon"], header["lat"] = lon, lat
    if command is not None:
        header["cmd"] = command
    return orjson.dumps(header) + b"\n" + data


def split_media(payload: bytes) -> tuple[dict, bytes]:
    """The header object and the data of a media payload (the header is not validated
    beyond being one JSON object: ``ingest.wire`` does that)."""
    head, sep, data = payload.partition(b"\n")
    if not sep:
        raise MediaError("media payload has no header line (JSON object, newline, data)")
    try:
        header = orjson.loads(head)
    except orjson.JSONDecodeError as e:
        raise MediaError(f"media header is not JSON: {e}") from None
    if type(header) is not dict:
        raise MediaError("media header must be one JSON object")
    return header, data


def command_topic(root: str, device_id: str) -> str:
    """Where a command for ``device_id`` is published: one topic per device whatever the
    partitions, so every gateway (and an MQTT terminal itself) subscribes to
    ``{root}/+/command`` and the ingest's partition subscriptions never see commands."""
    return f"{root}/{device_id}/command"


def command_message(command_id: str, kind: str, args: dict, *, deadline_ms: int) -> bytes:
    """A command to a terminal: its id, kind (COMMAND_KINDS), arguments, and the time after
    which nobody should send it any more."""
    if kind not in COMMAND_KINDS:
        raise ValueError(f"command kind {kind!r} is not one of {COMMAND_KINDS}")
    return orjson.dumps({"v": WIRE_VERSION, "id": command_id, "kind": kind, "args": args,
                         "deadline": deadline_ms})


def command_state_message(command_id: str, state: str, *, ts: int, detail: str = "",
                          result: dict | None = None) -> bytes:
    """How a command fared, published by whoever holds the terminal's connection."""
    if state not in COMMAND_STATES:
        raise ValueError(f"command state {state!r} is not one of {COMMAND_STATES}")
    out: dict = {"v": WIRE_VERSION, "id": command_id, "state": state, "ts": ts}
    if detail:
        out["detail"] = detail
    if result is not None:
        out["result"] = result
    return orjson.dumps(out)


def alarm_message(ts: int, alarm: int) -> bytes:
    """``…/{device}/alarm``: the alarm word of a report that had no position (a fix needs
    one), so a GNSS fault or a cut antenna is still on record."""
    return orjson.dumps({"v": WIRE_VERSION, "ts": ts, "alarm": alarm})


COMMAND_PARAMS = ("heartbeat_s", "report_interval_s", "sleep_report_interval_s",
                  "alarm_report_interval_s")  # what a 'params' command may set (DWORD seconds)
MAX_TEXT_BYTES = 1000  # GBK bytes of a text to the driver (one frame's body holds 1023)


def validate_command(kind: str, args: dict) -> dict:
    """A command's arguments checked and completed with their defaults, so a bad command is
    refused when it is asked for (HTTP 422, a CLI error), not found out at the terminal.
    Raises ValueError saying what is wrong."""
    if kind not in COMMAND_KINDS:
        raise ValueError(f"kind must be one of {', '.join(COMMAND_KINDS)}, not {kind!r}")
    if not isinstance(args, dict):
        raise ValueError("args must be an object")

    def integer(name: str, low: int, high: int, default: int | None = None) -> int:
        value = args.get(name, default)
        if type(value) is not int or not low <= value <= high:
            raise ValueError(f"{kind}: {name} must be an integer from {low} to {high}")
        return value

    allowed: tuple[str, ...]
    if kind == "text":
        text = args.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ValueError("text: 'text' must be a non-empty string")
        try:
            size = len(text.encode("gbk"))
        except UnicodeEncodeError as e:
            raise ValueError(f"text: {text[e.start:e.end]!r} cannot be written in GBK, the "
                             "terminal's character set") from None
        if size > MAX_TEXT_BYTES:
            raise ValueError(f"text: {size} bytes in GBK, at most {MAX_TEXT_BYTES}")
        out: dict = {"text": text, "flags": integer("flags", 0, 255, 0x0C)}
        allowed = ("text", "flags")
    elif kind == "params":
        out = {name: integer(name, 1, 86_400) for name in COMMAND_PARAMS if name in args}
        if not out:
            raise ValueError(f"params: set at least one of {', '.join(COMMAND_PARAMS)}")
        allowed = COMMAND_PARAMS
    elif kind == "position":
        out, allowed = {}, ()
    else:
        out = {"channel": integer("channel", 1, 255), "shots": integer("shots", 1, 10, 1),
               "interval_s": integer("interval_s", 0, 3600, 0),
               "resolution": integer("resolution", 1, 8, 1),
               "quality": integer("quality", 1, 10, 5)}
        allowed = ("channel", "shots", "interval_s", "resolution", "quality")
    unknown = sorted(set(args) - set(allowed))
    if unknown:
        raise ValueError(f"{kind}: unknown argument(s) {', '.join(unknown)}")
    return out
