"""JT/T 808 multimedia bodies (photos as evidence, 现场取证): the terminal's 0x0800 event and
0x0801 upload, the platform's 0x8800 answer (which packages to send again) and 0x8801
"take a photo now". Same layouts in 2013 and 2019 (2011's 0x0801 lacks the location: not
supported). A 0x0801 body usually spans many subpackages; the gateway reassembles them
(``gateway.uploads``) and names the missing ones, which 0x8800 then asks for.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from gateway.codec import CodecError, Location, decode_location, encode_location

EVENT, UPLOAD, UPLOAD_REPLY, CAPTURE = 0x0800, 0x0801, 0x8800, 0x8801
CAPTURE_REPLY = 0x0805

# 0x0800 / 0x0801 fields
TYPES = {0: "image", 1: "audio", 2: "video"}
FORMATS = {0: "jpeg", 1: "tif", 2: "mp3", 3: "wav", 4: "wmv"}
EVENTS = {0: "platform command", 1: "timed", 2: "robbery alarm", 3: "collision or rollover",
          4: "door opened", 5: "door closed", 6: "door from open to closed at speed",
          7: "fixed distance"}
_HEAD = struct.Struct(">IBBBB")  # multimedia id, type, format, event, channel


@dataclass(frozen=True, slots=True)
class MediaEvent:
    """0x0800: the terminal is about to upload (or has) a multimedia item."""

    media_id: int
    media_type: int  # TYPES
    media_format: int  # FORMATS
    event: int  # EVENTS
    channel: int


@dataclass(frozen=True, slots=True)
class MediaUpload:
    """0x0801, reassembled: the item, where and when it was taken, and its bytes."""

    event: MediaEvent
    location: Location
    data: bytes


def decode_event(body: bytes) -> MediaEvent:
    if len(body) != _HEAD.size:
        raise CodecError(f"0x0800 body must be {_HEAD.size} bytes, not {len(body)}")
    return MediaEvent(*_HEAD.unpack(body))


def encode_event(event: MediaEvent) -> bytes:
    return _HEAD.pack(event.media_id & 0xFFFFFFFF, event.media_type, event.media_format,
                      event.event, event.channel)


def decode_upload(body: bytes) -> MediaUpload:
    """A whole 0x0801 body: the 8-byte head, the 28-byte location basic information (no
    extra items), then the data."""
    if len(body) < _HEAD.size + 28:
        raise CodecError(f"0x0801 body of {len(body)} bytes is shorter than "
                         f"{_HEAD.size + 28} (head and location)")
    event = MediaEvent(*_HEAD.unpack_from(body, 0))
    location = decode_location(body[_HEAD.size:_HEAD.size + 28])
    return MediaUpload(event, location, bytes(body[_HEAD.size + 28:]))


def encode_upload(upload: MediaUpload) -> bytes:
    basic = encode_location(Location(
        upload.location.alarm, upload.location.status, upload.location.lat,
        upload.location.lon, upload.location.altitude_m, upload.location.speed_kmh,
        upload.location.direction, upload.location.time))
    return encode_event(upload.event) + basic + upload.data


def encode_upload_reply(media_id: int, missing: list[int]) -> bytes:
    """0x8800: the multimedia id and the package indexes (1-based) to send again; none
    means everything arrived."""
    if len(missing) > 255:
        raise CodecError("0x8800 can ask for at most 255 packages at once")
    return struct.pack(f">IB{len(missing)}H", media_id & 0xFFFFFFFF, len(missing), *missing)


def decode_upload_reply(body: bytes) -> tuple[int, list[int]]:
    if len(body) < 5:
        raise CodecError("0x8800 body shorter than 5 bytes")
    media_id, n = struct.unpack_from(">IB", body, 0)
    if len(body) != 5 + 2 * n:
        raise CodecError(f"0x8800 lists {n} packages in {len(body) - 5} bytes")
    return media_id, list(struct.unpack_from(f">{n}H", body, 5))


@dataclass(frozen=True, slots=True)
class Capture:
    """0x8801 "take a photo now": on a camera channel, a number of shots (0xFFFF: record
    until told to stop, 0: stop), seconds between them, whether to keep them on the terminal
    (1) or upload at once (0), and the picture settings."""

    channel: int
    shots: int = 1
    interval_s: int = 0
    save: int = 0
    resolution: int = 1  # 1: 320×240, 2: 640×480, 3: 800×600, 4: 1024×768, …
    quality: int = 5  # 1 (best) … 10
    brightness: int = 128
    contrast: int = 64
    saturation: int = 64
    chroma: int = 128


_CAPTURE = struct.Struct(">BHHBBBBBBB")


def encode_capture(capture: Capture) -> bytes:
    return _CAPTURE.pack(capture.channel, capture.shots, capture.interval_s, capture.save,
                         capture.resolution, capture.quality, capture.brightness,
                         capture.contrast, capture.saturation, capture.chroma)


def decode_capture(body: bytes) -> Capture:
    if len(body) != _CAPTURE.size:
        raise CodecError(f"0x8801 body must be {_CAPTURE.size} bytes, not {len(body)}")
    return Capture(*_CAPTURE.unpack(body))


def decode_capture_reply(body: bytes) -> tuple[int, int, list[int]]:
    """0x0805 (the terminal's answer to 0x8801): the command's serial, result (0 ok, 1 fail,
    2 channel not supported) and the ids of the items it made."""
    if len(body) < 3:
        raise CodecError("0x0805 body shorter than 3 bytes")
    serial, result = struct.unpack_from(">HB", body, 0)
    if result != 0 or len(body) == 3:
        return serial, result, []
    if len(body) < 5:
        raise CodecError("0x0805 body truncated before its item count")
    (n,) = struct.unpack_from(">H", body, 3)
    if len(body) != 5 + 4 * n:
        raise CodecError(f"0x0805 lists {n} items in {len(body) - 5} bytes")
    return serial, result, list(struct.unpack_from(f">{n}I", body, 5))


def encode_capture_reply(serial: int, result: int, media_ids: list[int]) -> bytes:
    body = struct.pack(">HB", serial & 0xFFFF, result)
    if result == 0:
        body += struct.pack(f">H{len(media_ids)}I", len(media_ids), *media_ids)
    return body
