"""Multimedia and command bodies: round trips for any value (hypothesis), the layouts of the
standard's tables checked byte by byte, hostile bodies refused with a CodecError only, and
the reassembler naming the packages a 0x8800 must ask for again."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import commands, media
from gateway.codec import CodecError, Header, Location, Reassembler

WHEN = datetime(2026, 12, 3, 2, 0, 0, tzinfo=UTC)
events = st.builds(media.MediaEvent, st.integers(0, 2**32 - 1), st.sampled_from([0, 1, 2]),
                   st.sampled_from([0, 1, 2, 3, 4]), st.integers(0, 7), st.integers(0, 255))


def place(lat: float = 22.55, lon: float = 114.05) -> Location:
    return Location(0, 0x0302, lat, lon, 12, 30.5, 90, WHEN)


@settings(max_examples=200, deadline=None)
@given(event=events, data=st.binary(max_size=3000))
def test_event_and_upload_round_trip(event, data):
    assert media.decode_event(media.encode_event(event)) == event
    upload = media.MediaUpload(event, place(), data)
    got = media.decode_upload(media.encode_upload(upload))
    assert got.event == event and got.data == data
    assert (got.location.lat, got.location.lon, got.location.time) == (22.55, 114.05, WHEN)


def test_the_upload_layout_is_the_standards():
    body = media.encode_upload(media.MediaUpload(media.MediaEvent(7, 0, 0, 0, 1), place(),
                                                 b"\xff\xd8\xff\xd9"))
    # id DWORD, type, format, event, channel; 28 bytes of location; the data
    assert body[:8] == bytes.fromhex("00000007 00 00 00 01".replace(" ", ""))
    assert len(body) == 8 + 28 + 4 and body[-4:] == b"\xff\xd8\xff\xd9"


@settings(max_examples=100, deadline=None)
@given(media_id=st.integers(0, 2**32 - 1),
       missing=st.lists(st.integers(1, 65535), max_size=255))
def test_upload_reply_round_trip(media_id, missing):
    assert media.decode_upload_reply(media.encode_upload_reply(media_id, missing)) == \
        (media_id, missing)


def test_capture_and_its_reply():
    capture = media.Capture(channel=2, shots=3, interval_s=5, resolution=2, quality=3)
    body = media.encode_capture(capture)
    assert len(body) == 12 and body[:5] == bytes.fromhex("0200030005")
    assert media.decode_capture(body) == capture
    assert media.decode_capture_reply(media.encode_capture_reply(9, 0, [11, 12])) == \
        (9, 0, [11, 12])
    assert media.decode_capture_reply(media.encode_capture_reply(9, 2, [])) == (9, 2, [])


@pytest.mark.parametrize("is_2019", [False, True])
def test_text_to_the_driver(is_2019):
    message = commands.Text("您已偏离许可路线，请返回 (off your permit route)")
    body = commands.encode_text(message, is_2019)
    assert body[0] == commands.DISPLAY | commands.TTS
    assert commands.decode_text(body, is_2019) == message
    with pytest.raises(CodecError, match="longer than"):
        commands.encode_text(commands.Text("长" * 600), is_2019)


@settings(max_examples=100, deadline=None)
@given(values=st.dictionaries(st.sampled_from(sorted(commands.PARAMS.values())),
                              st.integers(0, 2**32 - 1), min_size=1))
def test_parameters_round_trip(values):
    got = commands.decode_params(commands.encode_params(values))
    assert {k: int.from_bytes(v, "big") for k, v in got.items()} == values


def test_position_reply():
    serial, loc = commands.decode_position_reply(commands.encode_position_reply(42, place()))
    assert serial == 42 and (loc.lat, loc.lon, loc.speed_kmh) == (22.55, 114.05, 30.5)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=80))
def test_hostile_bodies_raise_only_codec_errors(data):
    for decode in (media.decode_event, media.decode_upload, media.decode_upload_reply,
                   media.decode_capture, media.decode_capture_reply, commands.decode_params,
                   commands.decode_position_reply, lambda d: commands.decode_text(d, True)):
        with contextlib.suppress(CodecError):
            decode(data)


def test_the_reassembler_names_the_missing_packages():
    r = Reassembler()

    def package(index: int) -> Header:
        return Header(media.UPLOAD, "013800000001", 100 + index - 1, None, 0, 5, index)
    for i in (1, 2, 4):
        assert r.add(package(i), bytes([i]), now=0.0) is None
    assert r.missing(package(1)) == [3, 5]
    assert r.add(package(5), b"\x05", now=1.0) is None
    assert r.missing(package(2)) == [3]
    assert r.add(package(3), b"\x03", now=2.0) == bytes([1, 2, 3, 4, 5])
    assert r.missing(package(3)) == []
