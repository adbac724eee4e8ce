"""Decoding what terminals send besides fixes: media (photos), alarm words, command states;
and commands, which the ingest sees on a wide subscription and skips."""

from __future__ import annotations

import json

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.wire import (
    COMMAND_STATES,
    MEDIA_TYPES,
    alarm_message,
    command_message,
    command_state_message,
    media_message,
    partition_topic,
)
from ingest.wire import MEDIA_HEADER_MAX, RawBatch, Reason, WireDecoder

NOW = 1_795_000_000_000
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8 + b"\xff\xd9"


def decode(*messages: tuple[str, bytes], decoder: WireDecoder | None = None):
    raw = RawBatch([t for t, _ in messages], [p for _, p in messages],
                   np.full(len(messages), NOW + 5, np.int64))
    return (decoder or WireDecoder()).decode(raw, now_ms=NOW)


def media(device: str = "D1", data: bytes = JPEG, **header) -> tuple[str, bytes]:
    """A media message with ``header`` keys replaced (None: removed)."""
    head = {"v": 1, "ts": NOW, "id": 7, "type": "image", "format": "jpeg", "event": 0,
            "channel": 1, "lon": 114.05, "lat": 22.54}
    head.update(header)
    head = {k: v for k, v in head.items() if v is not None}
    return f"muck/v1/{device}/media", json.dumps(head).encode() + b"\n" + data


def test_media_decodes_with_every_header_field():
    payload = media_message(JPEG, ts=NOW - 1000, lon=114.05, lat=22.54, media_id=2**32 - 1,
                            event=3, channel=255, command="c" * 64)
    d = decode(("muck/v1/p/3/D1/media", payload),
               ("muck/v1/D2/media", media_message(b"RIFF", ts=NOW, lon=None, lat=None,
                                                   media_id=0, media_type="audio",
                                                   media_format="wav")))
    assert len(d.rejects) == 0 and len(d.media) == 2
    m = d.media
    assert m.device == ["D1", "D2"] and m.media_id == [2**32 - 1, 0]
    assert m.ts == [NOW - 1000, NOW] and m.media_type == ["image", "audio"]
    assert m.media_format == ["jpeg", "wav"] and m.event == [3, 0] and m.channel == [255, 1]
    assert m.lon == [114.05, None] and m.lat == [22.54, None]
    assert m.command == ["c" * 64, None]
    assert m.data == [JPEG, b"RIFF"] and m.received_ms == [NOW + 5] * 2
    assert d.fix_count == 0 and d.messages == 2


def test_a_photo_is_not_cut_by_the_telemetry_size_limit():
    photo = b"\xff\xd8" + bytes(300_000)
    d = decode(media(data=photo), ("muck/v1/D1/telemetry", b"x" * 65_537))
    assert d.media.data == [photo]
    assert d.rejects.reason == [Reason.TOO_LARGE]


@pytest.mark.parametrize(
    ("header", "reason", "words"),
    [
        ({"v": 2}, Reason.BAD_VERSION, "wire version 2 is not supported"),
        ({"v": None}, Reason.BAD_MEDIA, "required key 'v' is missing"),
        ({"ts": None}, Reason.BAD_MEDIA, "required key 'ts' is missing"),
        ({"ts": NOW / 1}, Reason.BAD_MEDIA, "'ts' must be an integer, got a non-integer"),
        ({"ts": NOW // 1000}, Reason.BAD_MEDIA, "seconds sent by mistake"),
        ({"ts": NOW + 600_001}, Reason.FUTURE_TIMESTAMP, "check the terminal clock"),
        ({"id": -1}, Reason.BAD_MEDIA, "'id' = -1 is outside 0..4294967295"),
        ({"id": 2**32}, Reason.BAD_MEDIA, "'id' = 4294967296 is outside"),
        ({"id": "7"}, Reason.BAD_MEDIA, "'id' must be an integer, got a string"),
        ({"id": True}, Reason.BAD_MEDIA, "'id' must be an integer, got a boolean"),
        ({"type": "photo"}, Reason.BAD_MEDIA, "'type' = 'photo' is not one of image"),
        ({"type": 0}, Reason.BAD_MEDIA, "'type' must be a string"),
        ({"format": "JPEG"}, Reason.BAD_MEDIA, "'format' = 'JPEG' must be 1 to 8 of a-z"),
        ({"format": "../x"}, Reason.BAD_MEDIA, "'format' = '../x'"),
        ({"format": "jpegjpegj"}, Reason.BAD_MEDIA, "'format' must be 1 to 8 characters"),
        ({"format": ""}, Reason.BAD_MEDIA, "'format' must be 1 to 8 characters, got 0"),
        ({"event": 256}, Reason.BAD_MEDIA, "'event' = 256 is outside 0..255"),
        ({"channel": -1}, Reason.BAD_MEDIA, "'channel' = -1 is outside 0..255"),
        ({"channel": None}, Reason.BAD_MEDIA, "required key 'channel' is missing"),
        ({"lat": None}, Reason.BAD_MEDIA, "'lon' and 'lat' come together or not at all"),
        ({"lon": 180.5}, Reason.BAD_MEDIA, "'lon' = 180.5 is outside -180.0..180.0"),
        ({"lat": "22.5"}, Reason.BAD_MEDIA, "'lat' must be a number, got a string"),
        ({"lat": False}, Reason.BAD_MEDIA, "'lat' must be a number, got a boolean"),
        ({"cmd": "c" * 65}, Reason.BAD_MEDIA, "'cmd' must be 1 to 64 characters, got 65"),
        ({"cmd": 12}, Reason.BAD_MEDIA, "'cmd' must be a string, got an integer"),
    ],
)
def test_media_header_rejections_are_specific(header, reason, words):
    d = decode(media(**header))
    assert d.rejects.reason == [reason], d.rejects.detail
    assert words in d.rejects.detail[0]
    assert len(d.media) == 0


def test_media_data_and_framing_rejections():
    small = WireDecoder(max_media_bytes=10_000)
    topic = "muck/v1/D1/media"
    d = decode(
        (topic, b'{"v":1}'),  # no newline
        (topic, b"x" * (MEDIA_HEADER_MAX + 1) + b"\n" + JPEG),  # header line too long
        (topic, b"{nope\n" + JPEG),
        (topic, b"[1,2]\n" + JPEG),
        media(data=b""),
        media(data=b"GIF89a"),  # said jpeg, is not
        media(data=b"\xff\xd8" + bytes(10_000)),  # data over max_bytes
        (topic, b"\n" * 20_000),  # the whole payload over max_bytes + header
        media(data=b"\xff\xd8" + bytes(9_998)),  # exactly max_bytes: fine
        decoder=small)
    assert d.rejects.reason == [Reason.BAD_MEDIA] * 6 + [Reason.TOO_LARGE] * 2
    detail = d.rejects.detail
    assert "a JSON header line of at most 1024 bytes" in detail[0] == detail[1]
    assert "media header is not JSON" in detail[2]
    assert "one JSON object" in detail[3]
    assert "no data after the header line" in detail[4]
    assert "does not start with FF D8" in detail[5]
    assert "media data is 10002 bytes, limit 10000" in detail[6]
    assert "media payload is 20000 bytes" in detail[7]
    assert len(d.media) == 1, "a bad photo never costs a good one in the same batch"
    assert all(len(p) <= 65_536 for p in d.rejects.payload), "dead letters stay bounded"


def test_alarm_words_decode_and_bad_ones_are_specific():
    topic = "muck/v1/D1/alarm"
    d = decode(
        (topic, alarm_message(NOW - 5, 0x130)),
        ("muck/v1/p/0/D2/alarm", alarm_message(NOW, 2**32 - 1)),
        (topic, alarm_message(NOW, 2**32)),
        (topic, orjson.dumps({"v": 1, "ts": NOW})),
        (topic, b"[1]"),
        (topic, orjson.dumps({"v": 2, "ts": NOW, "alarm": 1})),
        (topic, orjson.dumps({"v": 1, "ts": NOW + 700_000, "alarm": 1})),
        (topic, b'{"v":1,"ts":NaN,"alarm":1}'),
        (topic, b"x" * 70_000))
    a = d.alarms
    assert a.device == ["D1", "D2"] and a.ts == [NOW - 5, NOW]
    assert a.alarm == [0x130, 2**32 - 1] and a.received_ms == [NOW + 5] * 2
    assert d.rejects.reason == [Reason.BAD_ALARM, Reason.BAD_ALARM, Reason.BAD_ALARM,
                                Reason.BAD_VERSION, Reason.FUTURE_TIMESTAMP,
                                Reason.NOT_FINITE, Reason.TOO_LARGE]
    assert "'alarm' = 4294967296 is outside 0..4294967295" in d.rejects.detail[0]
    assert "required key 'alarm' is missing" in d.rejects.detail[1]
    assert "alarm payload must be one JSON object" in d.rejects.detail[2]


def test_command_states_decode_and_bad_ones_are_specific():
    topic = partition_topic("muck/v1", "D1", 4, "command/state")
    assert topic.startswith("muck/v1/p/") and topic.endswith("/D1/command/state")
    good = command_state_message("c1", "delivered", ts=NOW, detail="ok",
                                 result={"media_ids": [1, 2]})
    d = decode(
        (topic, command_state_message("c1", "sent", ts=NOW - 10)),
        ("muck/v1/D1/command/state", good),
        (topic, orjson.dumps({"v": 1, "id": "c1", "state": "done", "ts": NOW})),
        (topic, orjson.dumps({"v": 1, "id": "", "state": "sent", "ts": NOW})),
        (topic, orjson.dumps({"v": 1, "id": "c" * 65, "state": "sent", "ts": NOW})),
        (topic, orjson.dumps({"v": 1, "state": "sent", "ts": NOW})),
        (topic, orjson.dumps({"v": 1, "id": "c1", "state": "failed", "ts": NOW,
                              "result": [1]})),
        (topic, orjson.dumps({"v": 1, "id": "c1", "state": "failed", "ts": NOW,
                              "detail": "x" * 1001})),
        (topic, orjson.dumps({"v": 1, "id": "c1", "state": "sent"})),
        (topic, b'"sent"'))
    s = d.command_states
    assert s.device == ["D1", "D1"] and s.command_id == ["c1", "c1"]
    assert s.state == ["sent", "delivered"] and s.ts == [NOW - 10, NOW]
    assert s.detail == [None, "ok"] and s.result == [None, {"media_ids": [1, 2]}]
    assert d.rejects.reason == [Reason.BAD_COMMAND_STATE] * 8
    detail = d.rejects.detail
    assert "'state' = 'done' is not one of queued, published, sent" in detail[0]
    assert "'id' must be 1 to 64 characters, got 0" in detail[1]
    assert "got 65" in detail[2] and "required key 'id' is missing" in detail[3]
    assert "'result' must be an object, got an array" in detail[4]
    assert "'detail' must be 1 to 1000 characters" in detail[5]
    assert "required key 'ts' is missing" in detail[6]
    assert "command state payload must be one JSON object" in detail[7]


def test_commands_are_skipped_and_counted_not_dead_lettered():
    cmd = command_message("c1", "position", {}, deadline_ms=NOW + 60_000)
    d = decode(("muck/v1/D1/command", cmd), ("muck/v1/D2/command", b"junk"),
               ("muck/v1/p/1/D3/command", cmd), ("muck/v1/D4/command/other", cmd))
    assert d.commands_skipped == 3
    assert d.rejects.reason == [Reason.BAD_TOPIC]
    assert len(d.media) == len(d.alarms) == len(d.command_states) == 0


# --- properties ------------------------------------------------------------------------------

headers = st.fixed_dictionaries(
    {"v": st.just(1), "ts": st.integers(946_684_800_000, NOW + 600_000),
     "id": st.integers(0, 2**32 - 1), "type": st.sampled_from(MEDIA_TYPES),
     "format": st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True),
     "event": st.integers(0, 255), "channel": st.integers(0, 255)},
    optional={"cmd": st.text(min_size=1, max_size=64)})
positions = st.none() | st.tuples(st.floats(-180, 180), st.floats(-90, 90))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(headers, positions, st.binary(min_size=1, max_size=2000)),
                min_size=1, max_size=8))
def test_any_valid_media_round_trips_exactly(items):
    messages = []
    for header, position, data in items:
        if header["format"] == "jpeg":
            data = b"\xff\xd8" + data
        lon, lat = position or (None, None)
        messages.append(("muck/v1/M/media", media_message(
            data, ts=header["ts"], lon=lon, lat=lat, media_id=header["id"],
            media_type=header["type"], media_format=header["format"], event=header["event"],
            channel=header["channel"], command=header.get("cmd"))))
    d = decode(*messages)
    assert len(d.rejects) == 0, d.rejects.detail
    m = d.media
    assert [(h["ts"], h["id"], h["type"], h["format"], h["event"], h["channel"],
             h.get("cmd")) for h, _, _ in items] == list(zip(
        m.ts, m.media_id, m.media_type, m.media_format, m.event, m.channel, m.command,
        strict=True))
    assert m.lon == [p[0] if p else None for _, p, _ in items]
    assert m.lat == [p[1] if p else None for _, p, _ in items]
    assert [len(x) for x in m.data] == [len(data) + (2 if h["format"] == "jpeg" else 0)
                                        for h, _, data in items]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) |
    st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=70),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=3),
    max_leaves=6)
junk_header = st.dictionaries(
    st.sampled_from(["v", "ts", "id", "type", "format", "event", "channel", "lon", "lat",
                     "cmd", "alarm", "state", "detail", "result", "x"]),
    json_values | st.sampled_from([1, NOW, "image", "jpeg", "sent", *COMMAND_STATES]),
    max_size=10)
junk_payload = st.one_of(
    st.tuples(junk_header, st.binary(max_size=30)).map(
        lambda hd: json.dumps(hd[0]).encode() + b"\n" + hd[1]),
    junk_header.map(lambda h: json.dumps(h).encode()),
    st.binary(max_size=60))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["media", "alarm", "command/state"]), junk_payload),
                min_size=1, max_size=12))
def test_any_junk_is_a_typed_item_or_a_specific_reject(messages):
    """Never an exception, never a silent drop: every message is accounted for once."""
    d = decode(*[(f"muck/v1/J/{kind}", payload) for kind, payload in messages])
    taken = len(d.media) + len(d.alarms) + len(d.command_states)
    assert taken + len(d.rejects) == len(messages)
    assert set(d.rejects.reason) <= set(Reason)
    assert all(d.rejects.detail)
