"""Wire format v1 decoding: every field, every rejection reason, and properties over junk."""

from __future__ import annotations

import json
import math

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.batches import UNKNOWN
from domain.wire import parse_topic
from ingest.wire import RawBatch, Reason, WireDecoder, subscriptions
from simulator.faults import bad_messages

NOW = 1_795_000_000_000  # 2026-11-18, fixed so tests do not depend on the clock


def decode(*messages: tuple[str, bytes], now: int = NOW):
    raw = RawBatch([t for t, _ in messages], [p for _, p in messages],
                   np.full(len(messages), NOW + 5, np.int64))
    return WireDecoder().decode(raw, now_ms=now)


def one(device: str = "D1", **fields) -> tuple[str, bytes]:
    fix = {"v": 1, "ts": NOW, "lon": 114.05, "lat": 22.54}
    fix.update(fields)
    return f"muck/v1/{device}/telemetry", json.dumps(fix, allow_nan=True).encode()


def test_every_field_decodes():
    d = decode(one(spd=32.5, hdg=270, lid=1, lift=0, load=2, load_kg=18500.5, sats=12,
                   hdop=0.9, seq=41, alarm=0x80000120, dev="D1"))
    assert len(d.rejects) == 0
    f = d.fixes
    assert f.device.tolist() == ["D1"]
    assert f.ts.tolist() == [NOW]
    assert (f.lon[0], f.lat[0]) == (114.05, 22.54)
    assert f.speed[0] == pytest.approx(32.5)
    assert f.heading[0] == 270
    assert (f.lid[0], f.lift[0], f.load[0]) == (1, 0, 2)
    assert f.load_kg[0] == pytest.approx(18500.5)
    assert (f.sats[0], f.seq[0], f.alarm[0]) == (12, 41, 0x80000120)
    assert f.hdop[0] == pytest.approx(0.9)
    assert f.received[0] == NOW + 5
    assert not f.backfill[0]


def test_optional_keys_absent_or_null_are_unknown_and_unknown_keys_ignored():
    d = decode(one(lid=None, vendor_x={"a": 1}, extra="ignored"))
    assert len(d.rejects) == 0
    f = d.fixes
    assert math.isnan(f.speed[0]) and math.isnan(f.heading[0]) and math.isnan(f.hdop[0])
    assert (f.lid[0], f.lift[0], f.load[0], f.sats[0], f.seq[0]) == (UNKNOWN,) * 5


@pytest.mark.parametrize(
    ("fields", "reason", "words"),
    [
        ({"lat": None}, Reason.BAD_TYPE, "'lat' must be a number, got null"),
        ({"ts": 1.5e12}, Reason.BAD_TYPE, "'ts' must be an integer"),
        ({"lid": True}, Reason.BAD_TYPE, "'lid' must be an integer, got a boolean"),
        ({"dev": 7}, Reason.BAD_TYPE, "'dev' must be a string"),
        ({"v": 3}, Reason.BAD_VERSION, "wire version 3"),
        ({"lon": -181}, Reason.OUT_OF_RANGE, "'lon' = -181"),
        ({"lat": 90.0001}, Reason.OUT_OF_RANGE, "'lat'"),
        ({"spd": -1}, Reason.OUT_OF_RANGE, "'spd'"),
        ({"lid": 2}, Reason.OUT_OF_RANGE, "'lid' = 2 is outside 0..1"),
        ({"load": 3}, Reason.OUT_OF_RANGE, "'load'"),
        ({"seq": -4}, Reason.OUT_OF_RANGE, "'seq'"),
        ({"alarm": 2**32}, Reason.OUT_OF_RANGE, "'alarm'"),
        ({"alarm": "0x100"}, Reason.BAD_TYPE, "'alarm' must be an integer"),
        ({"ts": NOW // 1000}, Reason.OUT_OF_RANGE, "seconds sent by mistake"),
        ({"ts": 2**70}, Reason.BAD_TYPE, "'ts' must be an integer, got an integer beyond 64"),
        ({"hdop": float("inf")}, Reason.NOT_FINITE, "non-finite number Infinity"),
        ({"ts": NOW + 600_001}, Reason.FUTURE_TIMESTAMP, "in the future"),
        ({"dev": "D2"}, Reason.DEVICE_MISMATCH, "'D2' does not match the topic's device 'D1'"),
    ],
)
def test_rejection_reasons_are_specific(fields, reason, words):
    d = decode(one(**fields), one(seq=1))
    assert len(d.fixes) == 1 and d.fixes.seq[0] == 1, "the valid neighbour must survive"
    assert d.rejects.reason == [reason]
    assert words in d.rejects.detail[0]
    assert d.rejects.device == ["D1"]


def test_ten_minutes_ahead_is_still_accepted():
    assert len(decode(one(ts=NOW + 600_000)).fixes) == 1


@pytest.mark.parametrize("missing", ["v", "ts", "lon", "lat"])
def test_missing_required_key(missing):
    topic, payload = one()
    obj = json.loads(payload)
    del obj[missing]
    d = decode((topic, json.dumps(obj).encode()))
    assert d.rejects.reason == [Reason.MISSING_FIELD]
    assert repr(missing) in d.rejects.detail[0]


def test_shape_json_size_topic_and_status():
    d = decode(
        ("muck/v1/D1/telemetry", b"[]"),
        ("muck/v1/D1/telemetry", b"{nope"),
        ("muck/v1/D1/telemetry/batch", b'{"v":1}'),
        ("muck/v1/D1/telemetry", b"x" * 65_537),
        ("muck/v1/a b/telemetry", one()[1]),
        ("muck/v1/D1/telemetry/extra", one()[1]),
        ("muck/v1/D1/status", b"online"),
        ("muck/v1/D2/status", b"offline"),
        ("muck/v1/D3/status", b""),
        ("muck/v1/D4/status", b"sleepy"),
    )
    assert d.rejects.reason == [Reason.BAD_SHAPE, Reason.BAD_JSON, Reason.BAD_SHAPE,
                                Reason.TOO_LARGE, Reason.BAD_TOPIC, Reason.BAD_TOPIC,
                                Reason.BAD_STATUS]
    assert d.statuses.device == ["D1", "D2"] and d.statuses.online == [True, False]
    assert len(d.rejects.payload[3]) <= 65_536, "dead letters keep a bounded copy"


@pytest.mark.parametrize("depth", [1_100, 30_000])
def test_deeply_nested_json_is_a_bad_json_reject_not_a_crash(depth):
    """Found by the fuzz test through the broker: orjson refuses > 1,024 levels and the
    stdlib fallback raised RecursionError, which took the whole batch down."""
    d = decode(("muck/v1/D1/telemetry", b"[" * depth + b"]" * depth), one("D2"))
    assert d.rejects.reason == [Reason.BAD_JSON] and d.fix_count == 1
    assert d.rejects.detail[0] == "invalid JSON: nested too deeply"


def test_exactly_64_kib_is_accepted_as_size():
    topic, payload = one()
    padded = payload[:-1] + b',"pad":"' + b"x" * (65_536 - len(payload) - 9) + b'"}'
    assert len(padded) == 65_536
    assert len(decode((topic, padded)).fixes) == 1


def test_batch_elements_are_judged_one_by_one_and_marked_backfill():
    elements = [{"v": 1, "ts": NOW - 2000 + i * 1000, "lon": 114.0, "lat": 22.5, "seq": i}
                for i in range(3)]
    elements.insert(1, {"v": 1, "ts": NOW, "lon": 500, "lat": 22.5})
    elements.append("garbage")
    d = decode(("muck/v1/D9/telemetry/batch", orjson.dumps(elements)))
    assert d.fixes.seq.tolist() == [0, 1, 2]
    assert d.fixes.backfill.all()
    assert d.rejects.reason == [Reason.BAD_SHAPE, Reason.OUT_OF_RANGE]
    assert d.rejects.detail[1].startswith("batch element 1:")
    assert json.loads(d.rejects.payload[1])["lon"] == 500


def test_fault_catalogue_matches_decoder():
    """The messages the demo publishes as 'bad' are rejected for exactly the stated reason."""
    bad = bad_messages("D1", "D2", NOW)
    d = decode(*[(b.topic, b.payload) for b in bad])
    assert len(d.fixes) == 0
    assert sorted(d.rejects.reason) == sorted(b.reason for b in bad)


def test_topics():
    assert parse_topic("muck/v1/013800000001/telemetry") == ("telemetry", "013800000001")
    assert parse_topic("muck/v1/x/telemetry/batch") == ("batch", "x")
    assert parse_topic("muck/v2/x/telemetry") is None
    assert parse_topic("muck/v1/" + "x" * 65 + "/telemetry") is None
    assert subscriptions() == ["muck/v1/#"], "wrong topics reach the ingest to be counted"


finite = st.floats(allow_nan=False, allow_infinity=False)
fix_strategy = st.fixed_dictionaries(
    {"v": st.just(1), "ts": st.integers(946_684_800_000, NOW + 600_000),
     "lon": st.floats(-180, 180), "lat": st.floats(-90, 90)},
    optional={"spd": st.floats(0, 400), "hdg": st.floats(0, 360), "lid": st.integers(0, 1),
              "lift": st.integers(0, 1), "load": st.integers(0, 2),
              "load_kg": st.floats(0, 200_000), "sats": st.integers(0, 255),
              "hdop": st.floats(0, 100), "seq": st.integers(0, 2**63 - 1),
              "alarm": st.integers(0, 2**32 - 1)},
)


@settings(max_examples=200, deadline=None)
@given(st.lists(fix_strategy, min_size=1, max_size=20))
def test_valid_fixes_round_trip_exactly(fixes):
    d = decode(*[("muck/v1/P/telemetry", orjson.dumps(f)) for f in fixes])
    assert len(d.rejects) == 0
    assert d.fixes.ts.tolist() == [f["ts"] for f in fixes]
    assert d.fixes.lon.tolist() == [f["lon"] for f in fixes]
    assert d.fixes.lat.tolist() == [f["lat"] for f in fixes]
    assert d.fixes.seq.tolist() == [f.get("seq", UNKNOWN) for f in fixes]
    assert d.fixes.load.tolist() == [f.get("load", UNKNOWN) for f in fixes]
    assert d.fixes.alarm.tolist() == [f.get("alarm", UNKNOWN) for f in fixes]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | finite | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=3),
    max_leaves=8,
)
junk_object = st.dictionaries(
    st.sampled_from(["v", "ts", "lon", "lat", "spd", "lid", "load", "seq", "dev", "x"]),
    json_values | st.integers(-(2**70), 2**70) | finite, max_size=8,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(junk_object.map(lambda o: json.dumps(o).encode()),
                          st.binary(max_size=40),
                          fix_strategy.map(orjson.dumps)), min_size=1, max_size=15))
def test_any_input_is_either_a_fix_or_a_specific_reject(payloads):
    """Never an exception, never a silent drop: every message is accounted for exactly once."""
    d = decode(*[("muck/v1/J/telemetry", p) for p in payloads])
    assert len(d.fixes) + len(d.rejects) == len(payloads)
    assert set(d.rejects.reason) <= set(Reason)
    assert all(d.rejects.detail)
