"""JT/T 808 codec: frames and location bodies round-trip for 2013 and 2019 headers, escaped
bytes anywhere (the check byte too), and any byte string decodes or raises CodecError only."""

from __future__ import annotations

import contextlib
import struct
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.codec import (
    CodecError,
    Header,
    Location,
    decode_frame,
    decode_general_reply,
    decode_location,
    encode_frame,
    encode_general_reply,
    encode_location,
    escape,
    split_frames,
    unescape,
    xor,
)

headers = st.builds(
    Header,
    msg_id=st.integers(0, 0xFFFF),
    phone=st.one_of(st.from_regex(r"[0-9]{12}", fullmatch=True)),
    serial=st.integers(0, 0xFFFF),
    version=st.none(),
) | st.builds(
    Header,
    msg_id=st.integers(0, 0xFFFF),
    phone=st.from_regex(r"[0-9]{20}", fullmatch=True),
    serial=st.integers(0, 0xFFFF),
    version=st.integers(0, 255),
)


@settings(max_examples=200, deadline=None)
@given(header=headers, body=st.binary(max_size=300))
def test_frames_round_trip(header, body):
    frame = encode_frame(header, body)
    assert frame[0] == frame[-1] == 0x7E and 0x7E not in frame[1:-1]
    decoded = decode_frame(frame[1:-1])
    assert decoded.header == header and decoded.body == body


def test_an_escaped_byte_in_the_body_and_in_the_check_byte():
    header = Header(0x0200, "013812345678", 1)
    # find a body whose check byte needs escaping, with 7E and 7D inside it as well
    for filler in range(256):
        body = bytes([0x7E, 0x7D, filler])
        frame = encode_frame(header, body)
        inner = unescape(frame[1:-1])
        if inner[-1] in (0x7E, 0x7D):
            break
    else:
        pytest.fail("no body gives an escapable check byte")
    assert frame[-3:-1] in (b"\x7d\x01", b"\x7d\x02"), "the check byte itself is escaped"
    assert b"\x7d\x02\x7d\x01" in frame
    assert decode_frame(frame[1:-1]).body == body


def test_subpackage_fields():
    header = Header(0x0704, "013812345678", 9, package_total=3, package_index=2)
    assert decode_frame(encode_frame(header, b"abc")[1:-1]).header == header
    bad = Header(0x0704, "013812345678", 9, package_total=3, package_index=4)
    with pytest.raises(CodecError, match="subpackage 4 of 3"):
        decode_frame(encode_frame(bad, b"abc")[1:-1])


@pytest.mark.parametrize(("mutate", "words"), [
    (lambda f: f[:-1] + bytes([f[-1] ^ 0x55]), "check byte"),
    (lambda f: f[:5], "shorter than the smallest header"),
    (lambda f: f + b"\x7d", "escape sequence"),
    (lambda f: f[:4] + b"\x7d\x05" + f[6:], "invalid escape sequence 7D 05"),
])
def test_broken_frames_say_what_is_wrong(mutate, words):
    frame = encode_frame(Header(0x0002, "013812345678", 7), b"")[1:-1]
    with pytest.raises(CodecError, match=words):
        decode_frame(mutate(frame))


locations = st.builds(
    Location,
    alarm=st.integers(0, 2**32 - 1), status=st.integers(0, 2**32 - 1),
    lat=st.integers(-90_000_000, 90_000_000).map(lambda v: v / 1e6),
    lon=st.integers(-180_000_000, 180_000_000).map(lambda v: v / 1e6),
    altitude_m=st.integers(0, 0xFFFF), speed_kmh=st.integers(0, 0xFFFF).map(lambda v: v / 10),
    direction=st.integers(0, 359),
    time=st.datetimes(min_value=datetime(2000, 1, 2), max_value=datetime(2099, 12, 30))
    .map(lambda d: d.replace(microsecond=0, tzinfo=UTC)),
    extras=st.dictionaries(st.integers(0, 255), st.binary(max_size=20), max_size=5),
)


@settings(max_examples=200, deadline=None)
@given(loc=locations)
def test_locations_round_trip(loc):
    back = decode_location(encode_location(loc))
    assert (back.lat, back.lon, back.speed_kmh, back.time, back.extras, back.alarm) == \
        (loc.lat, loc.lon, loc.speed_kmh, loc.time, loc.extras, loc.alarm)
    assert back.status & ~0x0C == loc.status & ~0x0C


def test_a_location_from_the_standards_table():
    """22.543096 N, 114.057865 E, 30.5 km/h, heading 90, 2026-11-19 10:00:00 GMT+8, full
    (status bits 8–9 = 11), mileage item 0x01 = 1234.5 km, satellites 0x31 = 12."""
    body = struct.pack(">IIIIHHH", 0, 0x0300, 22_543_096, 114_057_865, 12, 305, 90) + \
        bytes.fromhex("261119100000") + bytes([0x01, 4]) + struct.pack(">I", 12345) + \
        bytes([0x31, 1, 12])
    loc = decode_location(body)
    assert (loc.lat, loc.lon, loc.speed_kmh, loc.direction) == (22.543096, 114.057865, 30.5, 90)
    assert loc.time == datetime(2026, 11, 19, 2, 0, tzinfo=UTC), "GMT+8 → UTC"
    assert loc.load == 2 and loc.extras[0x31] == b"\x0c"
    south_west = struct.pack(">IIIIHHH", 0, 0x0C, 1_000_000, 2_000_000, 0, 0, 0) + \
        bytes.fromhex("261119100000")
    assert (decode_location(south_west).lat, decode_location(south_west).lon) == (-1.0, -2.0)


def test_general_reply():
    assert decode_general_reply(encode_general_reply(70000, 0x0200, 2)) == (70000 & 0xFFFF,
                                                                           0x0200, 2)


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=200))
def test_fuzzed_bytes_raise_only_codec_errors(data):
    for decode in (decode_frame, decode_location, decode_general_reply):
        with contextlib.suppress(CodecError):  # anything else fails the test
            decode(data)


@settings(max_examples=100, deadline=None)
@given(frames=st.lists(st.binary(max_size=50), max_size=5), noise=st.binary(max_size=10),
       cut=st.integers(0, 400))
def test_split_frames_finds_every_frame_across_reads(frames, noise, cut):
    encoded = [encode_frame(Header(0x0200, "013812345678", k), body)
               for k, body in enumerate(frames)]
    stream = noise.replace(b"\x7e", b"") + b"".join(encoded)
    buffer = bytearray(stream[:cut])
    found, _ = split_frames(buffer)
    buffer += stream[cut:]
    more, _ = split_frames(buffer)
    assert [decode_frame(f).body for f in found + more] == frames
    assert xor(b"\x01\x02\x03") == 0 and escape(b"\x7e\x7d") == b"\x7d\x02\x7d\x01"


def test_decode_command_prints_json_and_refuses_bad_frames():
    import json
    import subprocess
    import sys

    body = struct.pack(">IIIIHHH", 1, 0x0300, 22_543_096, 114_057_865, 12, 305, 90) + \
        bytes.fromhex("261119100000") + bytes([0x31, 1, 12])
    frame = encode_frame(Header(0x0200, "013812345678", 5, version=1), body)

    def run(*args):
        return subprocess.run([sys.executable, "-m", "muckwatch", "jt808", "decode", *args],
                              capture_output=True, text=True, timeout=60)
    out = run(frame.hex(" "))
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["header"]["msg_id"] == "0x0200" and data["header"]["protocol"] == "2019"
    assert data["header"]["phone"] == "00000000013812345678"
    body = data["body"]
    assert (body["lat"], body["lon"], body["speed_kmh"], body["direction"]) == \
        (22.543096, 114.057865, 30.5, 90)
    assert body["time"] == "2026-11-19T02:00:00Z" and body["alarm"] == 1
    assert body["load"] == 2 and body["extras"] == {"satellites": 12}
    bad = run(frame.hex()[:-6] + "007e")
    assert bad.returncode == 2 and "not a valid JT/T 808 frame: check byte" in bad.stderr


@pytest.mark.parametrize("protocol", ["2011", "2013", "2019"])
def test_registration_and_authentication_bodies(protocol):
    is_2019 = protocol == "2019"
    from gateway.codec import (
        Authentication,
        Registration,
        decode_authentication,
        decode_register_reply,
        decode_registration,
        encode_authentication,
        encode_register_reply,
        encode_registration,
    )

    reg = Registration(44, 300, "MUCK", "ZT-808A", "T123456", 2, "粤B0352X", protocol)
    assert decode_registration(encode_registration(reg, is_2019), is_2019) == reg
    auth = Authentication("a1b2c3", "860000000000001" if is_2019 else "",
                          "2.1.0" if is_2019 else "")
    assert decode_authentication(encode_authentication(auth, is_2019), is_2019) == auth
    assert decode_register_reply(encode_register_reply(9, 0, "a1b2c3")) == (9, 0, "a1b2c3")
    assert decode_register_reply(encode_register_reply(9, 4)) == (9, 4, "")
    with pytest.raises(CodecError, match="not GBK"):
        decode_registration(encode_registration(reg, is_2019)[:-3] + b"\xff\xff", is_2019)


# maker, model and terminal id as firmware writes them: padded on either side
padded_text = st.text(st.sampled_from("ABCZ-09 "), min_size=1, max_size=7).map(str.strip) \
    .filter(bool)


@settings(max_examples=300, deadline=None)
@given(protocol=st.sampled_from(["2011", "2013"]), maker=padded_text, model=padded_text,
       tid=padded_text, colour=st.sampled_from([0, 1, 2, 3, 4, 5, 9]),
       plate=st.text(st.sampled_from("粤B0123456789ABCDEFGHJKLMNPQRSTUVWXYZ挂"), min_size=0,
                     max_size=17),
       left=st.integers(0, 3), zeros_left=st.booleans())
def test_2011_and_2013_registrations_are_told_apart_and_trimmed(protocol, maker, model, tid,
                                                                colour, plate, left,
                                                                zeros_left):
    """The two layouts share the header; the body alone tells them apart, whatever the
    plate (a VIN of 17 characters makes a 2011 body as long as a 2013 one), and a field
    padded with zero bytes or spaces on the left reads as its text."""
    import struct

    from gateway.codec import decode_registration

    sizes = {"2011": (5, 8, 7), "2013": (5, 20, 7)}[protocol]
    pad = b"\x00" if zeros_left else b" "

    def field(text: str, n: int) -> bytes:
        raw = (pad * left + text.encode("gbk"))[:n]
        return raw.ljust(n, b"\x00")

    body = (struct.pack(">HH", 44, 300) + field(maker, sizes[0]) + field(model, sizes[1])
            + field(tid, sizes[2]) + bytes([colour]) + plate.encode("gbk"))
    reg = decode_registration(body, False)
    assert reg.protocol == protocol
    assert reg.maker == maker[:sizes[0] - left].strip() or left >= sizes[0]
    assert reg.model == model[:sizes[1] - left].strip() or left >= sizes[1]
    assert (reg.plate_color, reg.plate) == (colour, plate.strip())


def test_a_2011_registration_too_short_for_either_layout_is_refused():
    from gateway.codec import decode_registration

    with pytest.raises(CodecError, match=r"shorter than 25 \(the 2011 layout"):
        decode_registration(b"\x00\x2c" * 5, False)


@settings(max_examples=100, deadline=None)
@given(locs=st.lists(locations, max_size=6), kind=st.sampled_from([0, 1]))
def test_batches_round_trip(locs, kind):
    from gateway.codec import decode_batch, encode_batch

    got_kind, got = decode_batch(encode_batch(kind, locs))
    assert got_kind == kind and [x.time for x in got] == [x.time for x in locs]


def test_named_extras_and_vendor_items_kept_raw():
    from gateway.codec import named_extras

    extras = {0x01: struct.pack(">I", 12345), 0x02: struct.pack(">H", 520),
              0x03: struct.pack(">H", 305), 0x25: struct.pack(">I", 3),
              0x2A: struct.pack(">H", 0x0100), 0x2B: struct.pack(">I", 7),
              0x30: b"\x1f", 0x31: b"\x0c", 0xE1: b"\x01\x02", 0x01 + 0x40: b"\x09"}
    assert named_extras(extras) == {
        "mileage_km": 1234.5, "fuel_l": 52.0, "tachograph_kmh": 30.5, "vehicle_signals": 3,
        "io_status": 256, "analog": 7, "signal_strength": 31, "satellites": 12,
        "0xE1": "0102", "0x41": "09"}


def test_reassembly_is_bounded():
    from gateway.codec import Reassembler

    r = Reassembler(max_pending=2, max_packages=4, max_age_s=10)

    def part(serial, total, index):
        return Header(0x0704, "013812345678", serial, package_total=total, package_index=index)
    assert r.add(part(10, 2, 1), b"ab", now=0) is None
    assert r.add(part(11, 2, 2), b"cd", now=1) == b"abcd"
    r.add(part(20, 3, 1), b"x", now=2)
    r.add(part(30, 3, 1), b"y", now=2)
    r.add(part(40, 3, 1), b"z", now=2)  # a third message in progress: the oldest goes
    assert r.dropped == 1
    assert r.add(part(50, 2, 1), b"late", now=100) is None and r.dropped == 3, "stale dropped"
    with pytest.raises(CodecError, match="exceed the limit"):
        r.add(part(60, 9, 1), b"", now=100)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=120), is_2019=st.booleans())
def test_fuzzed_bodies_raise_only_codec_errors(data, is_2019):
    from gateway.codec import (
        decode_authentication,
        decode_batch,
        decode_register_reply,
        decode_registration,
        describe,
    )

    for decode in (decode_batch, decode_register_reply,
                   lambda d: decode_registration(d, is_2019),
                   lambda d: decode_authentication(d, is_2019), lambda d: describe(d.hex())):
        with contextlib.suppress(CodecError):
            decode(data)


def test_the_documented_example_decodes_as_shown():
    import json
    import re
    from pathlib import Path

    from gateway.codec import describe

    doc = (Path(__file__).resolve().parents[2] / "docs" / "jt808.md").read_text()
    frame = re.search(r"muckwatch jt808 decode '([0-9A-F ]+)'", doc).group(1)
    shown = json.loads(re.search(r"prints the frame as JSON.*?```json\n(.*?)```", doc,
                                 re.S).group(1))
    assert describe(frame) == shown
