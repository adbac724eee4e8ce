"""JT/T 808 commands from the platform to a terminal, and the terminal's answers: 0x8300
text to the driver (shown and read aloud), 0x8103 parameter setting (e.g. the reporting
interval), 0x8201 position query and its 0x0201 answer. The terminal acknowledges 0x8300
and 0x8103 with a 0x0001 general reply carrying the command's serial.

Also the bridge from the platform's commands (``{root}/{device}/command``, docs/protocol.md)
to these frames — ``parse_command``, ``encode_command`` — and how the terminal's answers map
to command states.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import orjson

from domain.wire import COMMAND_KINDS
from gateway import media
from gateway.codec import CodecError, Location, decode_location, encode_location, gbk

TEXT, SET_PARAMS, POSITION_QUERY, POSITION_REPLY = 0x8300, 0x8103, 0x8201, 0x0201

# 0x8300 flag bits
EMERGENCY, DISPLAY, TTS = 0x01, 0x04, 0x08
MAX_TEXT_BYTES = 1000  # a frame's body holds 1023 bytes

# 0x8103 parameters muckwatch sets, all DWORD seconds
PARAMS = {"heartbeat_s": 0x0001, "report_interval_s": 0x0029,
          "sleep_report_interval_s": 0x0027, "alarm_report_interval_s": 0x0028}


@dataclass(frozen=True, slots=True)
class Text:
    text: str
    flags: int = DISPLAY | TTS
    text_type: int = 1  # 2019 only: 1 notice, 2 service


def encode_text(message: Text, is_2019: bool) -> bytes:
    raw = message.text.encode("gbk")
    if len(raw) > MAX_TEXT_BYTES:
        raise CodecError(f"text of {len(raw)} bytes is longer than {MAX_TEXT_BYTES}")
    head = bytes([message.flags, message.text_type]) if is_2019 else bytes([message.flags])
    return head + raw


def decode_text(body: bytes, is_2019: bool) -> Text:
    n = 2 if is_2019 else 1
    if len(body) < n:
        raise CodecError(f"0x8300 body shorter than {n} bytes")
    return Text(gbk(body[n:], "text"), body[0], body[1] if is_2019 else 1)


def encode_params(values: dict[int, int]) -> bytes:
    """0x8103 with DWORD parameters: count, then (id DWORD, length 4, value DWORD) each."""
    if not 0 < len(values) <= 255:
        raise CodecError("0x8103 sets 1 to 255 parameters")
    body = bytes([len(values)])
    for param, value in values.items():
        if not 0 <= value <= 0xFFFFFFFF:
            raise CodecError(f"parameter 0x{param:04X}: {value} does not fit a DWORD")
        body += struct.pack(">IBI", param, 4, value)
    return body


def decode_params(body: bytes) -> dict[int, bytes]:
    """Any 0x8103 body: parameter id → its raw value."""
    if not body:
        raise CodecError("0x8103 body is empty")
    count, i = body[0], 1
    out: dict[int, bytes] = {}
    for _ in range(count):
        if i + 5 > len(body):
            raise CodecError(f"0x8103 parameter {len(out) + 1} of {count} truncated")
        param, length = struct.unpack_from(">IB", body, i)
        if i + 5 + length > len(body):
            raise CodecError(f"0x8103 parameter 0x{param:04X} claims {length} bytes")
        out[param] = bytes(body[i + 5:i + 5 + length])
        i += 5 + length
    if i != len(body):
        raise CodecError(f"0x8103 body has {len(body) - i} bytes after its {count} parameters")
    return out


def encode_position_reply(serial: int, location: Location) -> bytes:
    """0x0201: the 0x8201's serial, then a location body as in 0x0200."""
    return struct.pack(">H", serial & 0xFFFF) + encode_location(location)


def decode_position_reply(body: bytes) -> tuple[int, Location]:
    if len(body) < 2:
        raise CodecError("0x0201 body shorter than 2 bytes")
    (serial,) = struct.unpack_from(">H", body, 0)
    return serial, decode_location(body[2:])


# --- commands from the platform's wire format (domain/wire.py) to frames -----------------------

@dataclass(frozen=True, slots=True)
class Command:
    """A command as published on ``{root}/{device}/command``."""

    id: str
    kind: str  # domain.wire.COMMAND_KINDS
    args: dict
    deadline_ms: int


def parse_command(payload: bytes) -> Command:
    """The command object of an MQTT payload; CodecError says what is wrong with it."""
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError as e:
        raise CodecError(f"command is not JSON: {e}") from None
    if type(data) is not dict or data.get("v") != 1:
        raise CodecError("command must be a JSON object with v = 1")
    cid, kind, args, deadline = (data.get("id"), data.get("kind"), data.get("args", {}),
                                 data.get("deadline"))
    if type(cid) is not str or not 1 <= len(cid) <= 64:  # docs/protocol.md: 1–64 characters
        raise CodecError("command id must be a string of 1 to 64 characters")
    if kind not in COMMAND_KINDS:
        raise CodecError(f"command kind {kind!r} is not one of {COMMAND_KINDS}")
    if type(args) is not dict:
        raise CodecError("command args must be an object")
    if type(deadline) is not int:
        raise CodecError("command deadline must be epoch milliseconds")
    return Command(cid, kind, args, deadline)


def _whole(args: dict, name: str, default: int | None = None, low: int = 0,
           high: int = 0xFFFFFFFF) -> int:
    value = args.get(name, default)
    if type(value) is not int or not low <= value <= high:
        raise CodecError(f"{name} must be an integer {low}..{high}, not {value!r}")
    return value


def encode_command(command: Command, is_2019: bool) -> tuple[int, bytes]:
    """(msg id, body) of the frame that carries ``command`` to a terminal speaking 2019
    (``is_2019``) or 2011/2013; CodecError when its arguments do not make one."""
    args = command.args
    if command.kind == "text":
        text = args.get("text")
        if type(text) is not str or not text:
            raise CodecError("text must be a non-empty string")
        return TEXT, encode_text(Text(text, _whole(args, "flags", DISPLAY | TTS, 0, 255)),
                                 is_2019)
    if command.kind == "params":
        unknown = sorted(args.keys() - PARAMS.keys())
        if unknown:
            raise CodecError(f"unknown parameters {unknown}; known: {sorted(PARAMS)}")
        return SET_PARAMS, encode_params({PARAMS[name]: _whole(args, name) for name in args})
    if command.kind == "position":
        return POSITION_QUERY, b""
    if command.kind == "capture":
        capture = media.Capture(
            channel=_whole(args, "channel", None, 1, 255),
            shots=_whole(args, "shots", 1, 1, 0xFFFE),
            interval_s=_whole(args, "interval_s", 0, 0, 0xFFFF),
            resolution=_whole(args, "resolution", 1, 1, 255),
            quality=_whole(args, "quality", 5, 1, 10))
        return media.CAPTURE, media.encode_capture(capture)
    raise CodecError(f"command kind {command.kind!r} cannot be sent to a JT/T 808 terminal")


# the terminal's 0x0001 result → (command state, detail)
GENERAL_REPLY_STATES = {0: ("delivered", ""), 1: ("failed", "terminal reported failure"),
                        2: ("failed", "terminal says the message was bad"),
                        3: ("unsupported", "")}
# the terminal's 0x0805 result → (command state, detail)
CAPTURE_REPLY_STATES = {0: ("delivered", ""), 1: ("failed", "terminal reported failure"),
                        2: ("failed", "no such channel")}
