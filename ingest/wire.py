"""Wire format v1: MQTT topic + JSON payload → FixBatch, or a reject with a specific reason.

Documented for terminal vendors in docs/protocol.md. Decoding is done per *batch*: the only
per-message Python work is the JSON parse and one dict lookup per key (through ``map`` so it
runs in C); type, range and consistency checks are numpy operations over whole columns.
A message is either accepted whole or rejected whole with the first reason that applies, in
the order of the checks below; an element of a backfill batch is judged on its own so one bad
element never costs its valid neighbours.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import repeat
from operator import is_

import numpy as np
import orjson

from domain.batches import (
    UNKNOWN,
    CommandStates,
    DeviceStatus,
    FixBatch,
    MediaBatch,
    Rejects,
    TerminalAlarms,
)
from domain.wire import (
    COMMAND_STATES,
    MAX_FUTURE_MS,
    MAX_MEDIA_BYTES,
    MAX_PAYLOAD_BYTES,
    MEDIA_TYPES,
    MIN_TS_MS,
    TOPIC_ROOT,
    WIRE_VERSION,
    MediaError,
    TopicKind,
    parse_topic,
    split_media,
)


class Reason(StrEnum):
    """Why a message (or one element of a batch) was rejected; stored in dead_letter.reason."""

    TOO_LARGE = "too_large"
    BAD_TOPIC = "bad_topic"
    BAD_JSON = "bad_json"
    BAD_SHAPE = "bad_shape"
    BAD_VERSION = "bad_version"
    MISSING_FIELD = "missing_field"
    BAD_TYPE = "bad_type"
    NOT_FINITE = "not_finite"
    OUT_OF_RANGE = "out_of_range"
    FUTURE_TIMESTAMP = "future_timestamp"
    DEVICE_MISMATCH = "device_mismatch"
    BAD_STATUS = "bad_status"
    BAD_MEDIA = "bad_media"  # a media header or its data (…/media)
    BAD_ALARM = "bad_alarm"  # an alarm message (…/alarm)
    BAD_COMMAND_STATE = "bad_command_state"  # a command's state (…/command/state)


def subscriptions(root: str = TOPIC_ROOT) -> list[str]:
    """The topic filters the ingest subscribes to: everything under the root, so a message
    on a wrong topic is seen, dead-lettered as ``bad_topic`` and counted rather than silently
    dropped by the broker (found by the fuzz test)."""
    return [f"{root}/#"]


@dataclass(slots=True)
class RawBatch:
    """Messages as they came off the broker, in arrival order."""

    topics: list[str]
    payloads: list[bytes]
    received_ms: np.ndarray  # int64, one per message
    # packet ids of the QoS 1 messages, to ack after commit on the connection they came on
    ack_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint16))
    connection: int = 0
    # a batch merged from several sessions (one per topic partition): (partition,
    # connection, packet ids) for each, acked on its own session
    acks: list = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.topics)


@dataclass(slots=True)
class Decoded:
    fixes: FixBatch
    rejects: Rejects
    statuses: DeviceStatus
    messages: int
    media: MediaBatch = field(default_factory=MediaBatch)
    alarms: TerminalAlarms = field(default_factory=TerminalAlarms)
    command_states: CommandStates = field(default_factory=CommandStates)
    # commands (platform → terminal) seen on a subscription that also covers them: not ours
    commands_skipped: int = 0

    @property
    def fix_count(self) -> int:
        return len(self.fixes)


class _NonFinite(ValueError):
    pass


def _refuse_constant(name: str) -> float:
    raise _NonFinite(name)


def _parse_json(payload: bytes) -> tuple[object, Reason | None, str]:
    """orjson first (fast, strict); the stdlib only to name *why* orjson refused."""
    try:
        return orjson.loads(payload), None, ""
    except orjson.JSONDecodeError as fast_error:
        try:
            return json.loads(payload, parse_constant=_refuse_constant), None, ""
        except _NonFinite as e:
            return None, Reason.NOT_FINITE, f"non-finite number {e} is not allowed in JSON"
        except RecursionError:  # found by the fuzz test: [[[[…]]]] thousands deep
            return None, Reason.BAD_JSON, "invalid JSON: nested too deeply"
        except (ValueError, UnicodeDecodeError):
            return None, Reason.BAD_JSON, f"invalid JSON: {fast_error}"


_MISSING = object()
_NUMBER = frozenset({int, float})
_INTEGER = frozenset({int})
_TEXT = frozenset({str})
_NONE = type(None)

# key → (accepted Python types, required, integer column?)
_KEYS: dict[str, tuple[frozenset[type], bool]] = {
    "v": (_INTEGER, True),
    "ts": (_INTEGER, True),
    "lon": (_NUMBER, True),
    "lat": (_NUMBER, True),
    "spd": (_NUMBER, False),
    "hdg": (_NUMBER, False),
    "lid": (_INTEGER, False),
    "lift": (_INTEGER, False),
    "load": (_INTEGER, False),
    "load_kg": (_NUMBER, False),
    "sats": (_INTEGER, False),
    "hdop": (_NUMBER, False),
    "seq": (_INTEGER, False),
    "alarm": (_INTEGER, False),
    "dev": (_TEXT, False),
}
_INT64_MAX = 2**63 - 1

# (key, low, high) inclusive; checked after types, in this order
_RANGES: tuple[tuple[str, float, float], ...] = (
    ("lon", -180.0, 180.0),
    ("lat", -90.0, 90.0),
    ("spd", 0.0, 400.0),
    ("hdg", 0.0, 360.0),
    ("lid", 0, 1),
    ("lift", 0, 1),
    ("load", 0, 2),
    ("load_kg", 0.0, 200_000.0),
    ("sats", 0, 255),
    ("hdop", 0.0, 100.0),
    ("seq", 0, _INT64_MAX),
    ("alarm", 0, 2**32 - 1),
)
_TYPE_NAMES = {_INTEGER: "an integer", _NUMBER: "a number", _TEXT: "a string"}


class WireDecoder:
    """RawBatch → Decoded. Stateless apart from its limits, so it is safe to share."""

    def __init__(
        self,
        *,
        root: str = TOPIC_ROOT,
        max_payload_bytes: int = MAX_PAYLOAD_BYTES,
        max_future_ms: int = MAX_FUTURE_MS,
        max_media_bytes: int = MAX_MEDIA_BYTES,
    ) -> None:
        self.root = root
        self.max_payload_bytes = max_payload_bytes
        self.max_future_ms = max_future_ms
        self.max_media_bytes = max_media_bytes  # one item's data; its header comes on top

    def decode(self, raw: RawBatch, now_ms: int | None = None) -> Decoded:
        rejects = Rejects()
        statuses = DeviceStatus()
        terminal = _Terminal(self, rejects, _now_ms() if now_ms is None else now_ms)
        objs: list[dict] = []  # candidate fixes
        obj_topic: list[int] = []  # message index of each candidate
        obj_device: list[str] = []
        obj_backfill: list[bool] = []
        obj_element: list[int] = []  # index inside a batch payload, -1 for single fixes
        received = raw.received_ms

        for i, (topic, payload) in enumerate(zip(raw.topics, raw.payloads, strict=True)):
            rec = int(received[i])
            parsed_topic = parse_topic(topic, self.root)
            if parsed_topic is None:
                rejects.add(topic, None, Reason.BAD_TOPIC,
                            f"topic {topic!r} is not {self.root}/{{device_id}}/telemetry[/batch]"
                            ", …/status, …/media, …/alarm or …/command/state", payload, rec)
                continue
            kind, device = parsed_topic
            if kind is TopicKind.COMMAND:
                terminal.commands_skipped += 1  # platform → terminal: someone else's traffic
                continue
            if kind is TopicKind.MEDIA:  # a photo has its own size limit, not telemetry's
                terminal.media(topic, device, payload, rec)
                continue
            if len(payload) > self.max_payload_bytes:
                rejects.add(topic, device, Reason.TOO_LARGE,
                            f"payload is {len(payload)} bytes, limit {self.max_payload_bytes}",
                            payload[: self.max_payload_bytes], rec)
                continue
            if kind is TopicKind.STATUS:
                self._status(topic, device, payload, rec, statuses, rejects)
                continue
            value, reason, detail = _parse_json(payload)
            if reason is not None:
                rejects.add(topic, device, reason, detail, payload, rec)
                continue
            if kind is TopicKind.ALARM:
                terminal.alarm(topic, device, value, payload, rec)
                continue
            if kind is TopicKind.COMMAND_STATE:
                terminal.command_state(topic, device, value, payload, rec)
                continue
            if kind is TopicKind.TELEMETRY:
                if type(value) is not dict:
                    rejects.add(topic, device, Reason.BAD_SHAPE,
                                "telemetry payload must be one JSON object", payload, rec)
                    continue
                objs.append(value)
                obj_topic.append(i)
                obj_device.append(device)
                obj_backfill.append(False)
                obj_element.append(-1)
            else:
                if type(value) is not list:
                    rejects.add(topic, device, Reason.BAD_SHAPE,
                                "batch payload must be a JSON array of fix objects", payload, rec)
                    continue
                for j, element in enumerate(value):
                    if type(element) is not dict:
                        rejects.add(topic, device, Reason.BAD_SHAPE,
                                    f"element {j} of the batch is not a JSON object",
                                    _element_bytes(element), rec)
                        continue
                    objs.append(element)
                    obj_topic.append(i)
                    obj_device.append(device)
                    obj_backfill.append(True)
                    obj_element.append(j)

        fixes = self._validate(
            raw, objs, obj_topic, obj_device, obj_backfill, obj_element, rejects, now_ms
        )
        return Decoded(fixes=fixes, rejects=rejects, statuses=statuses, messages=len(raw),
                       media=terminal.media_batch, alarms=terminal.alarms,
                       command_states=terminal.states,
                       commands_skipped=terminal.commands_skipped)

    @staticmethod
    def _status(
        topic: str,
        device: str,
        payload: bytes,
        received_ms: int,
        statuses: DeviceStatus,
        rejects: Rejects,
    ) -> None:
        text = payload.strip().lower()
        if text == b"":
            return  # a cleared retained message: nothing to record
        if text not in (b"online", b"offline"):
            rejects.add(topic, device, Reason.BAD_STATUS,
                        "status payload must be 'online' or 'offline'", payload, received_ms)
            return
        statuses.device.append(device)
        statuses.online.append(text == b"online")
        statuses.received_ms.append(received_ms)

    def _validate(
        self,
        raw: RawBatch,
        objs: list[dict],
        obj_topic: list[int],
        obj_device: list[str],
        obj_backfill: list[bool],
        obj_element: list[int],
        rejects: Rejects,
        now_ms: int | None,
    ) -> FixBatch:
        n = len(objs)
        if n == 0:
            return FixBatch.empty()
        # first failing check per candidate wins: 0 = fine
        reason = np.zeros(n, np.int8)
        detail: dict[int, str] = {}
        codes = list(Reason)

        def fail(mask: np.ndarray, why: Reason, say) -> None:
            hit = np.flatnonzero(mask & (reason == 0))
            if hit.size:
                reason[hit] = codes.index(why) + 1
                for k in hit.tolist():
                    detail[k] = say(k)

        raw_values: dict[str, list] = {}
        known: dict[str, np.ndarray] = {}
        for key, (accepted, required) in _KEYS.items():
            values = list(map(dict.get, objs, repeat(key), repeat(_MISSING)))
            raw_values[key] = values
            missing = np.fromiter(map(is_, values, repeat(_MISSING)), bool, n)
            types = list(map(type, values))
            ok_type = np.fromiter(map(accepted.__contains__, types), bool, n)
            if required:
                fail(missing, Reason.MISSING_FIELD,
                     lambda k, key=key: f"required key {key!r} is missing")
                wrong = ~missing & ~ok_type
            else:
                is_null = np.fromiter(map(is_, types, repeat(_NONE)), bool, n)
                wrong = ~missing & ~is_null & ~ok_type
            want = _TYPE_NAMES[accepted]
            fail(wrong, Reason.BAD_TYPE,
                 lambda k, key=key, want=want, values=values:
                 f"{key!r} must be {want}, got {_json_type(values[k])}")
            known[key] = ok_type

        ts = _int_column(raw_values["ts"], known["ts"])
        fail(known["v"] & (_int_column(raw_values["v"], known["v"]) != WIRE_VERSION),
             Reason.BAD_VERSION,
             lambda k: f"wire version {raw_values['v'][k]!r} is not supported "
             f"(want {WIRE_VERSION})")

        columns: dict[str, np.ndarray] = {}
        for key, (accepted, _required) in _KEYS.items():
            if key in ("v", "ts", "dev"):
                continue
            if accepted is _INTEGER:
                columns[key] = _int_column(raw_values[key], known[key])
            else:
                col = _float_column(raw_values[key], known[key])
                fail(known[key] & ~np.isfinite(col), Reason.NOT_FINITE,
                     lambda k, key=key: f"{key!r} is not a finite number")
                columns[key] = col

        overflow = known["ts"] & (ts == np.iinfo(np.int64).min)
        for key, low, high in _RANGES:
            col = columns[key]
            bad = known[key] & ((col < low) | (col > high))
            if accepted_int := (_KEYS[key][0] is _INTEGER):
                bad |= known[key] & (col == np.iinfo(np.int64).min)  # did not fit in int64
            fail(bad, Reason.OUT_OF_RANGE,
                 lambda k, key=key, low=low, high=high, i=accepted_int:
                 f"{key!r} = {raw_values[key][k]!r} is outside "
                 f"{int(low) if i else low}..{int(high) if i else high}")
        fail(overflow | (known["ts"] & (ts < MIN_TS_MS)), Reason.OUT_OF_RANGE,
             lambda k: f"'ts' = {raw_values['ts'][k]!r} is before 2000-01-01; "
             "it must be Unix epoch milliseconds (seconds sent by mistake?)")

        now = _now_ms() if now_ms is None else now_ms
        fail(known["ts"] & (ts > now + self.max_future_ms), Reason.FUTURE_TIMESTAMP,
             lambda k: f"'ts' is {(int(ts[k]) - now) / 1000:.0f} s in the future "
             f"(limit {self.max_future_ms // 1000} s): check the terminal clock")

        topic_device = _objects(obj_device)
        dev = _objects(raw_values["dev"])
        fail(known["dev"] & (dev != topic_device), Reason.DEVICE_MISMATCH,
             lambda k: f"payload 'dev' {raw_values['dev'][k]!r} does not match the topic's "
             f"device {obj_device[k]!r}")

        for k in np.flatnonzero(reason).tolist():
            i = obj_topic[k]
            element = obj_element[k]
            payload = raw.payloads[i] if element < 0 else _element_bytes(objs[k])
            say = detail[k] if element < 0 else f"batch element {element}: {detail[k]}"
            rejects.add(raw.topics[i], obj_device[k], codes[reason[k] - 1], say, payload,
                        int(raw.received_ms[i]))

        good = reason == 0
        lid, lift, load = columns["lid"], columns["lift"], columns["load"]
        return FixBatch.from_columns(
            device=topic_device[good],
            ts=ts[good],
            lon=columns["lon"][good],
            lat=columns["lat"][good],
            speed=columns["spd"][good],
            heading=columns["hdg"][good],
            lid=np.where(known["lid"], lid, UNKNOWN)[good],
            lift=np.where(known["lift"], lift, UNKNOWN)[good],
            load=np.where(known["load"], load, UNKNOWN)[good],
            load_kg=columns["load_kg"][good],
            sats=np.where(known["sats"], columns["sats"], UNKNOWN)[good],
            hdop=columns["hdop"][good],
            seq=np.where(known["seq"], columns["seq"], UNKNOWN)[good],
            alarm=np.where(known["alarm"], columns["alarm"], UNKNOWN)[good],
            received=raw.received_ms[np.asarray(obj_topic)][good],
            backfill=np.asarray(obj_backfill, bool)[good],
        )


# --- terminal evidence and control: media, alarm words, command states -----------------------
# Few messages and each on its own (a photo is hundreds of KB, not one of 5,000 fixes), so
# plain Python per message: every check names the key and what was wrong with it.

MEDIA_HEADER_MAX = 1024  # bytes of a media header line (≈ 250 with the longest cmd)
MEDIA_FORMAT = re.compile(r"[a-z0-9]{1,8}")
MAX_COMMAND_ID = 64
MAX_COMMAND_DETAIL = 1000
_DWORD = 2**32 - 1


class _Bad(Exception):
    """One message refused: the reason and what to tell the sender."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def _get_int(obj: dict, key: str, low: int, high: int, why: Reason) -> int:
    """A required integer key within [low, high]."""
    value = obj.get(key, _MISSING)
    if value is _MISSING:
        raise _Bad(why, f"required key {key!r} is missing")
    if type(value) is not int:
        raise _Bad(why, f"{key!r} must be an integer, got {_json_type(value)}")
    if not low <= value <= high:
        raise _Bad(why, f"{key!r} = {value!r} is outside {low}..{high}")
    return value


def _get_text(obj: dict, key: str, longest: int, why: Reason) -> str:
    """A required string key of 1 to ``longest`` characters."""
    value = obj.get(key, _MISSING)
    if value is _MISSING:
        raise _Bad(why, f"required key {key!r} is missing")
    if type(value) is not str:
        raise _Bad(why, f"{key!r} must be a string, got {_json_type(value)}")
    if not 1 <= len(value) <= longest:
        raise _Bad(why, f"{key!r} must be 1 to {longest} characters, got {len(value)}")
    return value


def _optional_text(obj: dict, key: str, longest: int, why: Reason) -> str | None:
    """Absent or null: None; otherwise as ``_get_text``."""
    return None if obj.get(key) is None else _get_text(obj, key, longest, why)


class _Terminal:
    """Decodes one batch's media, alarm and command-state messages into typed batches; a bad
    one becomes a reject and never costs its neighbours."""

    def __init__(self, decoder: WireDecoder, rejects: Rejects, now_ms: int) -> None:
        self.decoder, self.rejects, self.now_ms = decoder, rejects, now_ms
        self.media_batch = MediaBatch()
        self.alarms = TerminalAlarms()
        self.states = CommandStates()
        self.commands_skipped = 0

    def _head(self, obj: dict, why: Reason) -> int:
        """The version and the device time every message of these kinds carries."""
        if _get_int(obj, "v", -(2**63), 2**63 - 1, why) != WIRE_VERSION:
            raise _Bad(Reason.BAD_VERSION, f"wire version {obj['v']!r} is not supported "
                       f"(want {WIRE_VERSION})")
        ts = _get_int(obj, "ts", -(2**63), 2**63 - 1, why)
        if ts < MIN_TS_MS:
            raise _Bad(why, f"'ts' = {ts!r} is before 2000-01-01; it must be Unix epoch "
                       "milliseconds (seconds sent by mistake?)")
        if ts > self.now_ms + self.decoder.max_future_ms:
            raise _Bad(Reason.FUTURE_TIMESTAMP,
                       f"'ts' is {(ts - self.now_ms) / 1000:.0f} s in the future (limit "
                       f"{self.decoder.max_future_ms // 1000} s): check the terminal clock")
        return ts

    def media(self, topic: str, device: str, payload: bytes, received_ms: int) -> None:
        keep = payload[: self.decoder.max_payload_bytes]  # dead letters keep a bounded copy
        try:
            self._media(device, payload, received_ms)
        except _Bad as bad:
            self.rejects.add(topic, device, bad.reason, bad.detail, keep, received_ms)

    def _media(self, device: str, payload: bytes, received_ms: int) -> None:
        limit = self.decoder.max_media_bytes
        if len(payload) > limit + MEDIA_HEADER_MAX + 1:
            raise _Bad(Reason.TOO_LARGE, f"media payload is {len(payload)} bytes, limit "
                       f"{limit} of data ([media] max_bytes) + {MEDIA_HEADER_MAX} of header")
        if payload.find(b"\n", 0, MEDIA_HEADER_MAX + 1) < 0:
            raise _Bad(Reason.BAD_MEDIA, "media payload must be a JSON header line of at most "
                       f"{MEDIA_HEADER_MAX} bytes, a newline, then the data")
        try:
            header, data = split_media(payload)
        except (MediaError, ValueError, RecursionError) as e:
            raise _Bad(Reason.BAD_MEDIA, str(e) or "media header is not JSON") from None
        why = Reason.BAD_MEDIA
        ts = self._head(header, why)
        media_id = _get_int(header, "id", 0, _DWORD, why)
        kind = _get_text(header, "type", 16, why)
        if kind not in MEDIA_TYPES:
            raise _Bad(why, f"'type' = {kind!r} is not one of {', '.join(MEDIA_TYPES)}")
        fmt = _get_text(header, "format", 8, why)
        if not MEDIA_FORMAT.fullmatch(fmt):
            raise _Bad(why, f"'format' = {fmt!r} must be 1 to 8 of a-z and 0-9 (e.g. 'jpeg')")
        event = _get_int(header, "event", 0, 255, why)
        channel = _get_int(header, "channel", 0, 255, why)
        lon, lat = header.get("lon"), header.get("lat")
        if (lon is None) != (lat is None):
            raise _Bad(why, "'lon' and 'lat' come together or not at all")
        for key, value, bound in (("lon", lon, 180.0), ("lat", lat, 90.0)):
            if value is None:
                continue
            if type(value) not in (int, float):
                raise _Bad(why, f"{key!r} must be a number, got {_json_type(value)}")
            if not math.isfinite(value) or not -bound <= value <= bound:
                raise _Bad(why, f"{key!r} = {value!r} is outside {-bound}..{bound}")
        command = _optional_text(header, "cmd", MAX_COMMAND_ID, why)
        if not data:
            raise _Bad(why, "the media item has no data after the header line")
        if len(data) > limit:
            raise _Bad(Reason.TOO_LARGE, f"media data is {len(data)} bytes, limit {limit} "
                       "([media] max_bytes)")
        if fmt == "jpeg" and not data.startswith(b"\xff\xd8"):
            raise _Bad(why, "'format' is jpeg but the data does not start with FF D8 (SOI)")
        out = self.media_batch
        out.device.append(device)
        out.media_id.append(media_id)
        out.ts.append(ts)
        out.media_type.append(kind)
        out.media_format.append(fmt)
        out.event.append(event)
        out.channel.append(channel)
        out.lon.append(None if lon is None else float(lon))
        out.lat.append(None if lat is None else float(lat))
        out.command.append(command)
        out.data.append(data)
        out.received_ms.append(received_ms)

    def alarm(self, topic: str, device: str, value: object, payload: bytes,
              received_ms: int) -> None:
        why = Reason.BAD_ALARM
        try:
            if type(value) is not dict:
                raise _Bad(why, "alarm payload must be one JSON object")
            ts = self._head(value, why)
            word = _get_int(value, "alarm", 0, _DWORD, why)
        except _Bad as bad:
            self.rejects.add(topic, device, bad.reason, bad.detail, payload, received_ms)
            return
        self.alarms.device.append(device)
        self.alarms.ts.append(ts)
        self.alarms.alarm.append(word)
        self.alarms.received_ms.append(received_ms)

    def command_state(self, topic: str, device: str, value: object, payload: bytes,
                      received_ms: int) -> None:
        why = Reason.BAD_COMMAND_STATE
        try:
            if type(value) is not dict:
                raise _Bad(why, "command state payload must be one JSON object")
            ts = self._head(value, why)
            command_id = _get_text(value, "id", MAX_COMMAND_ID, why)
            state = _get_text(value, "state", 16, why)
            if state not in COMMAND_STATES:
                raise _Bad(why, f"'state' = {state!r} is not one of {', '.join(COMMAND_STATES)}")
            detail = _optional_text(value, "detail", MAX_COMMAND_DETAIL, why)
            result = value.get("result")
            if result is not None and type(result) is not dict:
                raise _Bad(why, f"'result' must be an object, got {_json_type(result)}")
        except _Bad as bad:
            self.rejects.add(topic, device, bad.reason, bad.detail, payload, received_ms)
            return
        out = self.states
        out.device.append(device)
        out.command_id.append(command_id)
        out.state.append(state)
        out.ts.append(ts)
        out.detail.append(detail)
        out.result.append(result)
        out.received_ms.append(received_ms)


def _objects(values: list) -> np.ndarray:
    """A 1-D object array even when the values are lists (np.array would nest them)."""
    return np.fromiter(values, dtype=object, count=len(values))


def _int_column(values: list, ok: np.ndarray) -> np.ndarray:
    """Python ints → int64; entries that are not ok become 0, ints beyond int64 become
    int64.min (a value no range check accepts)."""
    arr = _objects(values)
    arr[~ok] = 0
    try:
        return arr.astype(np.int64)
    except OverflowError:
        fits = np.fromiter(
            (-(2**63) < v <= 2**63 - 1 for v in arr.tolist()), bool, len(values)
        )
        arr[~fits] = np.iinfo(np.int64).min
        return arr.astype(np.int64)


def _float_column(values: list, ok: np.ndarray) -> np.ndarray:
    arr = _objects(values)
    arr[~ok] = np.nan
    try:
        return arr.astype(np.float64)
    except OverflowError:  # an int too large for a double: treat as non-finite
        return np.array([float(v) if abs(v) < 1e308 else np.inf for v in arr.tolist()])


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if type(value) is float and value.is_integer() and abs(value) >= 2**63:
        return "an integer beyond 64 bits"
    return {bool: "a boolean", str: "a string", list: "an array", dict: "an object",
            float: "a non-integer number", int: "an integer"}.get(type(value), "?")


def _element_bytes(element: object) -> bytes:
    return json.dumps(element, ensure_ascii=False, allow_nan=True).encode()


def _now_ms() -> int:
    import time

    return time.time_ns() // 1_000_000
