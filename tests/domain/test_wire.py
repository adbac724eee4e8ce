"""The publisher's side of wire format v1: the fix object every publisher writes through
``fix_message`` is the one docs/protocol.md shows and the one the decoder reads back."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.batches import UNKNOWN
from domain.wire import (
    OPTIONAL_FIELDS,
    TopicKind,
    encode_batch,
    encode_fix,
    fix_message,
    parse_topic,
    partition_topic,
)
from ingest.wire import RawBatch, WireDecoder

NOW = 1_795_000_000_000


def test_fix_message_is_the_documented_object():
    assert fix_message(NOW, 114.05, 22.54, spd=32.5, lid=1, load=None) == {
        "v": 1, "ts": NOW, "lon": 114.05, "lat": 22.54, "spd": 32.5, "lid": 1}


def test_a_member_the_format_does_not_have_is_refused():
    with pytest.raises(ValueError, match="speed"):
        fix_message(NOW, 114.05, 22.54, speed=30)


def test_topics_a_publisher_builds_are_the_ones_the_decoder_parses():
    assert parse_topic(partition_topic("muck/v1", "D-1", 0)) == (TopicKind.TELEMETRY, "D-1")
    assert parse_topic(partition_topic("muck/v1", "D-1", 16, "telemetry/batch")) == \
        (TopicKind.BATCH, "D-1")


_value = {
    "spd": st.floats(0, 250), "hdg": st.integers(0, 359), "lid": st.sampled_from([0, 1]),
    "lift": st.sampled_from([0, 1]), "load": st.sampled_from([0, 1, 2]),
    "load_kg": st.floats(0, 60_000), "sats": st.integers(0, 64), "hdop": st.floats(0, 50),
    "seq": st.integers(0, 2**31 - 1),
}


@given(
    ts=st.integers(NOW - 86_400_000, NOW),
    lon=st.floats(73, 135), lat=st.floats(18, 54),
    optional=st.fixed_dictionaries({}, optional={k: v | st.none() for k, v in _value.items()}),
    batch=st.booleans(),
)
def test_every_fix_written_decodes_to_the_same_values(ts, lon, lat, optional, batch):
    assert set(optional) <= OPTIONAL_FIELDS
    fix = fix_message(ts, lon, lat, dev="D1", **optional)
    topic = f"muck/v1/D1/telemetry{'/batch' if batch else ''}"
    payload = encode_batch([fix]) if batch else encode_fix(fix)
    decoded = WireDecoder().decode(RawBatch([topic], [payload], np.array([NOW], np.int64)),
                                   now_ms=NOW)
    assert len(decoded.rejects) == 0
    f = decoded.fixes
    assert (f.ts[0], f.lon[0], f.lat[0]) == (ts, lon, lat)
    for member, column in (("lid", f.lid), ("lift", f.lift), ("load", f.load),
                           ("sats", f.sats), ("seq", f.seq)):
        value = optional.get(member)
        assert column[0] == (UNKNOWN if value is None else value)
    for member, column in (("spd", f.speed), ("hdop", f.hdop), ("load_kg", f.load_kg)):
        value = optional.get(member)
        assert math.isnan(column[0]) if value is None else column[0] == pytest.approx(value)
