"""JT/T 808 (2013 and 2019) frames: delimiting, escaping, the XOR check, the header, and the
bodies the gateway needs — decoded to plain dataclasses, encoded back byte for byte.

Frame: ``7E | header | body | check | 7E``; ``check`` = XOR of header and body before
escaping; escaping turns ``7E`` into ``7D 02`` and ``7D`` into ``7D 01`` everywhere between
the delimiters, the check byte included. Big-endian. The header is msg id (WORD), body
properties (WORD: bits 0–9 body length, 10–12 encryption, 13 subpackage, 14 the 2019 version
flag), [2019: protocol version BYTE], terminal phone (BCD[6] in 2013, BCD[10] in 2019), serial
(WORD), and — if subpackaged — package total and index (WORD each).

Everything that can go wrong with bytes from the network raises ``CodecError`` (and only
that), with a message that says what was wrong.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

FLAG = 0x7E
ESCAPE = 0x7D
MAX_BODY = 1023  # 10 bits of body length

CHINA = timedelta(hours=8)  # terminals report BCD time in GMT+8


class CodecError(ValueError):
    """A frame or body that is not valid JT/T 808; says what is wrong."""


# --- framing -----------------------------------------------------------------------------------

def escape(raw: bytes) -> bytes:
    return raw.replace(b"\x7d", b"\x7d\x01").replace(b"\x7e", b"\x7d\x02")


def unescape(data: bytes) -> bytes:
    if b"\x7d" not in data:
        return data
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        b = data[i]
        if b == ESCAPE:
            if i + 1 >= n:
                raise CodecError("frame ends inside an escape sequence (7D at the end)")
            nxt = data[i + 1]
            if nxt == 0x01:
                out.append(0x7D)
            elif nxt == 0x02:
                out.append(0x7E)
            else:
                raise CodecError(f"invalid escape sequence 7D {nxt:02X} at byte {i}")
            i += 2
        else:
            out.append(b)
            i += 1
    return bytes(out)


def xor(data: bytes) -> int:
    check = 0
    for b in data:
        check ^= b
    return check


def split_frames(buffer: bytearray, max_frame: int = 4096) -> tuple[list[bytes], int]:
    """Cut complete ``7E … 7E`` frames (without the flags) off the front of ``buffer``.
    Returns the frames and how many bytes of garbage or oversized frames were dropped;
    an incomplete frame stays in the buffer."""
    frames: list[bytes] = []
    dropped = 0
    while True:
        start = buffer.find(b"\x7e")
        if start < 0:
            dropped += len(buffer)
            buffer.clear()
            break
        if start:
            dropped += start
            del buffer[:start]
        end = buffer.find(b"\x7e", 1)
        if end < 0:
            if len(buffer) > max_frame:
                dropped += len(buffer)
                buffer.clear()
            break
        if end == 1:  # 7E 7E: the end of one frame and the start of the next
            del buffer[:1]
            continue
        frame = bytes(buffer[1:end])
        del buffer[:end + 1]
        if len(frame) > max_frame:
            dropped += len(frame) + 2
            continue
        frames.append(frame)
    return frames, dropped


# --- header ------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Header:
    msg_id: int
    phone: str  # 12 digits (2013) or 20 digits (2019), leading zeros kept
    serial: int
    version: int | None = None  # 2019 protocol version; None for 2013
    encryption: int = 0
    package_total: int | None = None
    package_index: int | None = None

    @property
    def is_2019(self) -> bool:
        return self.version is not None


def bcd_decode(data: bytes) -> str:
    digits = data.hex()
    if not digits.isdigit():
        raise CodecError(f"BCD field {data.hex().upper()} has a non-decimal nibble")
    return digits


def bcd_encode(digits: str, length: int) -> bytes:
    if not digits.isdigit() or len(digits) > length * 2:
        raise CodecError(f"{digits!r} does not fit BCD[{length}]")
    return bytes.fromhex(digits.rjust(length * 2, "0"))


@dataclass(frozen=True, slots=True)
class Frame:
    header: Header
    body: bytes


def decode_frame(frame: bytes) -> Frame:
    """One frame between the flags (escaped, check byte included) → header and raw body."""
    raw = unescape(frame)
    if len(raw) < 13:
        raise CodecError(f"frame of {len(raw)} bytes is shorter than the smallest header")
    payload, check = raw[:-1], raw[-1]
    if xor(payload) != check:
        raise CodecError(f"check byte {check:02X} does not match the XOR "
                         f"{xor(payload):02X} of header and body")
    msg_id, props = struct.unpack_from(">HH", payload, 0)
    length = props & 0x03FF
    encryption = (props >> 10) & 0x07
    subpackage = bool(props & 0x2000)
    if props & 0x4000:
        if len(payload) < 17:
            raise CodecError("2019 header truncated")
        version = payload[4]
        phone = bcd_decode(payload[5:15])
        offset = 15
    else:
        version = None
        phone = bcd_decode(payload[4:10])
        offset = 10
    (serial,) = struct.unpack_from(">H", payload, offset)
    offset += 2
    total = index = None
    if subpackage:
        if len(payload) < offset + 4:
            raise CodecError("subpackage fields truncated")
        total, index = struct.unpack_from(">HH", payload, offset)
        offset += 4
        if total == 0 or not 1 <= index <= total:
            raise CodecError(f"subpackage {index} of {total} is impossible")
    body = payload[offset:]
    if len(body) != length:
        raise CodecError(f"body is {len(body)} bytes, the header says {length}")
    return Frame(Header(msg_id, phone, serial, version, encryption, total, index), body)


def encode_frame(header: Header, body: bytes) -> bytes:
    """Header and body → a complete frame with flags, check and escaping."""
    if len(body) > MAX_BODY:
        raise CodecError(f"body of {len(body)} bytes exceeds {MAX_BODY}: subpackage it")
    props = len(body) | (header.encryption & 0x07) << 10
    subpackage = header.package_total is not None
    if subpackage:
        props |= 0x2000
    if header.is_2019:
        props |= 0x4000
        head = struct.pack(">HHB", header.msg_id, props, header.version) + \
            bcd_encode(header.phone, 10)
    else:
        head = struct.pack(">HH", header.msg_id, props) + bcd_encode(header.phone, 6)
    head += struct.pack(">H", header.serial & 0xFFFF)
    if subpackage:
        head += struct.pack(">HH", header.package_total, header.package_index)
    payload = head + body
    return b"\x7e" + escape(payload + bytes([xor(payload)])) + b"\x7e"


# --- bodies ------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Location:
    """0x0200 body. Coordinates in signed degrees (hemisphere bits applied), time UTC."""

    alarm: int
    status: int
    lat: float
    lon: float
    altitude_m: int
    speed_kmh: float
    direction: int
    time: datetime
    extras: dict[int, bytes] = field(default_factory=dict)

    @property
    def load(self) -> int | None:
        """Status bits 8–9: 00 empty, 01 half, 11 full (10 is reserved → unknown)."""
        return {0: 0, 1: 1, 3: 2}.get((self.status >> 8) & 0x03)


def _bcd_time(data: bytes) -> datetime:
    digits = bcd_decode(data)
    try:
        local = datetime(2000 + int(digits[0:2]), int(digits[2:4]), int(digits[4:6]),
                         int(digits[6:8]), int(digits[8:10]), int(digits[10:12]))
    except ValueError:
        raise CodecError(f"time {digits} is not a valid YYMMDDhhmmss") from None
    return (local - CHINA).replace(tzinfo=UTC)


def _bcd_time_encode(at: datetime) -> bytes:
    local = at.astimezone(UTC).replace(tzinfo=None) + CHINA
    return bytes.fromhex(local.strftime("%y%m%d%H%M%S"))


def decode_location(body: bytes) -> Location:
    if len(body) < 28:
        raise CodecError(f"0x0200 body of {len(body)} bytes is shorter than 28")
    alarm, status, lat, lon, alt, speed, direction = struct.unpack_from(">IIIIHHH", body, 0)
    when = _bcd_time(body[22:28])
    lat_deg = lat / 1e6 * (-1 if status & 0x04 else 1)
    lon_deg = lon / 1e6 * (-1 if status & 0x08 else 1)
    if abs(lat_deg) > 90 or abs(lon_deg) > 180:
        raise CodecError(f"position {lat_deg}, {lon_deg} is out of range")
    extras: dict[int, bytes] = {}
    i = 28
    while i < len(body):
        if i + 2 > len(body):
            raise CodecError(f"extra item header truncated at byte {i}")
        item, length = body[i], body[i + 1]
        if i + 2 + length > len(body):
            raise CodecError(f"extra item 0x{item:02X} claims {length} bytes, "
                             f"{len(body) - i - 2} left")
        extras[item] = bytes(body[i + 2:i + 2 + length])
        i += 2 + length
    return Location(alarm, status, lat_deg, lon_deg, alt, speed / 10, direction, when, extras)


# standard extra items: (name, struct format, scale); vendor items (0xE1–0xFF) stay raw
EXTRA_ITEMS = {0x01: ("mileage_km", ">I", 0.1), 0x02: ("fuel_l", ">H", 0.1),
               0x03: ("tachograph_kmh", ">H", 0.1), 0x25: ("vehicle_signals", ">I", None),
               0x2A: ("io_status", ">H", None), 0x2B: ("analog", ">I", None),
               0x30: ("signal_strength", ">B", None), 0x31: ("satellites", ">B", None)}


def named_extras(extras: dict[int, bytes]) -> dict[str, object]:
    """Standard items by name and value; anything else (or malformed) as 0xNN: hex."""
    out: dict[str, object] = {}
    for item, raw in extras.items():
        spec = EXTRA_ITEMS.get(item)
        if spec is not None and len(raw) == struct.calcsize(spec[1]):
            (value,) = struct.unpack(spec[1], raw)
            out[spec[0]] = round(value * spec[2], 1) if spec[2] else value
        else:
            out[f"0x{item:02X}"] = raw.hex()
    return out


def encode_location(loc: Location) -> bytes:
    status = loc.status & ~0x0C | (0x04 if loc.lat < 0 else 0) | (0x08 if loc.lon < 0 else 0)
    body = struct.pack(">IIIIHHH", loc.alarm, status, round(abs(loc.lat) * 1e6),
                       round(abs(loc.lon) * 1e6), loc.altitude_m & 0xFFFF,
                       round(loc.speed_kmh * 10) & 0xFFFF, loc.direction & 0xFFFF)
    body += _bcd_time_encode(loc.time)
    for item, value in loc.extras.items():
        if len(value) > 255:
            raise CodecError(f"extra item 0x{item:02X} longer than 255 bytes")
        body += bytes([item, len(value)]) + value
    return body


def encode_general_reply(serial: int, msg_id: int, result: int) -> bytes:
    """0x8001 body: the terminal's serial, its msg id, result (0 ok, 1 fail, 2 bad message,
    3 unsupported)."""
    return struct.pack(">HHB", serial & 0xFFFF, msg_id, result)


def decode_general_reply(body: bytes) -> tuple[int, int, int]:
    if len(body) != 5:
        raise CodecError(f"0x8001/0x0001 body must be 5 bytes, not {len(body)}")
    return struct.unpack(">HHB", body)


# message ids
HEARTBEAT, LOGOUT, REGISTER, AUTH = 0x0002, 0x0003, 0x0100, 0x0102
LOCATION, BATCH, TERMINAL_REPLY = 0x0200, 0x0704, 0x0001
PLATFORM_REPLY, REGISTER_REPLY = 0x8001, 0x8100
OK, FAIL, BAD_MESSAGE, UNSUPPORTED = 0, 1, 2, 3


def gbk(data: bytes, what: str) -> str:
    """GBK text of a fixed or trailing field, trimmed of zero bytes and spaces at both ends:
    some firmware pads its maker / model on the left, and a padded model would never match
    the configured one."""
    try:
        return data.strip(b"\x00 ").decode("gbk")
    except UnicodeDecodeError:
        raise CodecError(f"{what} is not GBK text") from None


def _fixed(text: str, length: int, what: str) -> bytes:
    raw = text.encode("gbk")
    if len(raw) > length:
        raise CodecError(f"{what} {text!r} is longer than {length} bytes")
    return raw.ljust(length, b"\x00")


@dataclass(frozen=True, slots=True)
class Registration:
    """0x0100 body (2011: maker 5, model 8, terminal id 7 bytes; 2013: 5, 20, 7; 2019: 11,
    30, 30). ``protocol`` says which layout it was read with."""

    province: int
    city: int
    maker: str
    model: str
    terminal_id: str
    plate_color: int
    plate: str
    protocol: str = "2013"


_REG_SIZES = {"2011": (5, 8, 7), "2013": (5, 20, 7), "2019": (11, 30, 30)}
# plate colours of JT/T 415 (0: no plate — the field holds the VIN)
_PLATE_COLOURS = frozenset({0, 1, 2, 3, 4, 5, 9})


def _fixed_size(protocol: str) -> int:
    return 4 + sum(_REG_SIZES[protocol]) + 1


def registration_protocol(body: bytes, is_2019: bool) -> str:
    """Which layout a 0x0100 body has. 2019 says so in its header; 2011 and 2013 share the
    header, and differ in the model field (8 or 20 bytes): a body too short for 2013 is
    2011, and so is one whose 2013 plate-colour byte is no plate colour while its 2011 one is
    (a 2011 body long enough for 2013 — a VIN instead of a plate — has text there)."""
    if is_2019:
        return "2019"
    n2013, n2011 = _fixed_size("2013"), _fixed_size("2011")
    if len(body) >= n2013 and body[n2013 - 1] in _PLATE_COLOURS:
        return "2013"
    if len(body) >= n2011 and body[n2011 - 1] in _PLATE_COLOURS:
        return "2011"
    return "2013" if len(body) >= n2013 else "2011"


def decode_registration(body: bytes, is_2019: bool) -> Registration:
    protocol = registration_protocol(body, is_2019)
    maker_n, model_n, tid_n = _REG_SIZES[protocol]
    fixed = _fixed_size(protocol)
    if len(body) < fixed:
        raise CodecError(f"0x0100 body of {len(body)} bytes is shorter than {fixed} "
                         f"(the {protocol} layout)")
    province, city = struct.unpack_from(">HH", body, 0)
    i = 4
    maker = gbk(body[i:i + maker_n], "maker")
    i += maker_n
    model = gbk(body[i:i + model_n], "model")
    i += model_n
    terminal_id = gbk(body[i:i + tid_n], "terminal id")
    i += tid_n
    return Registration(province, city, maker, model, terminal_id, body[i],
                        gbk(body[i + 1:], "plate"), protocol)


def encode_registration(reg: Registration, is_2019: bool) -> bytes:
    """The body in ``reg.protocol``'s layout (2019 whenever the header is 2019's)."""
    maker_n, model_n, tid_n = _REG_SIZES["2019" if is_2019 else reg.protocol]
    return (struct.pack(">HH", reg.province, reg.city) + _fixed(reg.maker, maker_n, "maker")
            + _fixed(reg.model, model_n, "model")
            + _fixed(reg.terminal_id, tid_n, "terminal id") + bytes([reg.plate_color])
            + reg.plate.encode("gbk"))


def encode_register_reply(serial: int, result: int, auth_code: str = "") -> bytes:
    """0x8100: the terminal's serial, result (0 ok, 1 vehicle taken, 2 no such vehicle,
    3 terminal taken, 4 no such terminal) and, on success, the auth code."""
    body = struct.pack(">HB", serial & 0xFFFF, result)
    return body + auth_code.encode("gbk") if result == 0 else body


def decode_register_reply(body: bytes) -> tuple[int, int, str]:
    if len(body) < 3:
        raise CodecError("0x8100 body shorter than 3 bytes")
    serial, result = struct.unpack_from(">HB", body, 0)
    return serial, result, gbk(body[3:], "auth code")


@dataclass(frozen=True, slots=True)
class Authentication:
    """0x0102 body: 2013 is the auth code alone; 2019 adds its length, IMEI and version."""

    code: str
    imei: str = ""
    software_version: str = ""


def decode_authentication(body: bytes, is_2019: bool) -> Authentication:
    if not is_2019:
        return Authentication(gbk(body, "auth code"))
    if not body or len(body) < 1 + body[0] + 35:
        raise CodecError("2019 0x0102 body truncated (length, code, IMEI[15], version[20])")
    n = body[0]
    return Authentication(gbk(body[1:1 + n], "auth code"),
                          gbk(body[1 + n:16 + n], "IMEI"), gbk(body[16 + n:36 + n], "version"))


def encode_authentication(auth: Authentication, is_2019: bool) -> bytes:
    code = auth.code.encode("gbk")
    if not is_2019:
        return code
    if len(code) > 255:
        raise CodecError("auth code longer than 255 bytes")
    return bytes([len(code)]) + code + _fixed(auth.imei, 15, "IMEI") + \
        _fixed(auth.software_version, 20, "software version")


def decode_batch(body: bytes) -> tuple[int, list[Location]]:
    """0x0704: (type, locations); type 0 = regular batch, 1 = blind-area backfill."""
    if len(body) < 3:
        raise CodecError("0x0704 body shorter than 3 bytes")
    count, kind = struct.unpack_from(">HB", body, 0)
    if kind not in (0, 1):
        raise CodecError(f"0x0704 type {kind} is neither 0 (regular) nor 1 (blind area)")
    items, i = [], 3
    for k in range(count):
        if i + 2 > len(body):
            raise CodecError(f"0x0704 says {count} items, item {k + 1} is missing")
        (n,) = struct.unpack_from(">H", body, i)
        if i + 2 + n > len(body):
            raise CodecError(f"0x0704 item {k + 1} claims {n} bytes, {len(body) - i - 2} left")
        items.append(decode_location(body[i + 2:i + 2 + n]))
        i += 2 + n
    if i != len(body):
        raise CodecError(f"0x0704 has {len(body) - i} bytes after its {count} items")
    return kind, items


def encode_batch(kind: int, locations: list[Location]) -> bytes:
    body = struct.pack(">HB", len(locations), kind)
    for loc in locations:
        item = encode_location(loc)
        body += struct.pack(">H", len(item)) + item
    return body


class Reassembler:
    """Subpackaged messages back in one piece, bounded: at most ``max_pending`` messages in
    progress (the oldest is dropped), ``max_packages`` packages each, and ``max_age_s`` to
    complete. Packages are keyed by (msg id, total, first serial = serial − index + 1)."""

    def __init__(self, max_pending: int = 8, max_packages: int = 256,
                 max_age_s: float = 60.0) -> None:
        self.max_pending = max_pending
        self.max_packages = max_packages
        self.max_age_s = max_age_s
        self._parts: dict[tuple[int, int, int], tuple[float, dict[int, bytes]]] = {}
        self.dropped = 0

    def add(self, header: Header, body: bytes, now: float) -> bytes | None:
        """The whole body once every package arrived, else None."""
        total, index = header.package_total, header.package_index
        assert total is not None and index is not None
        if total > self.max_packages:
            raise CodecError(f"{total} packages exceed the limit of {self.max_packages}")
        for key in [k for k, (t, _) in self._parts.items() if now - t > self.max_age_s]:
            del self._parts[key]
            self.dropped += 1
        key = (header.msg_id, total, (header.serial - index + 1) & 0xFFFF)
        if key not in self._parts:
            if len(self._parts) >= self.max_pending:
                del self._parts[next(iter(self._parts))]
                self.dropped += 1
            self._parts[key] = (now, {})
        parts = self._parts[key][1]
        parts[index] = body
        if len(parts) < total:
            return None
        del self._parts[key]
        return b"".join(parts[i] for i in range(1, total + 1))

    def missing(self, header: Header) -> list[int]:
        """The package indexes (1-based) still missing from the message ``header``'s package
        belongs to — what a 0x8800 asks the terminal to send again; [] when it is complete
        or unknown."""
        total, index = header.package_total, header.package_index
        assert total is not None and index is not None
        entry = self._parts.get((header.msg_id, total, (header.serial - index + 1) & 0xFFFF))
        if entry is None:
            return []
        return [i for i in range(1, total + 1) if i not in entry[1]]


def describe(frame_hex: str) -> dict:
    """A frame given as hex (flags and spaces optional) → JSON-ready fields, for people."""
    text = "".join(frame_hex.split())
    try:
        data = bytes.fromhex(text)
    except ValueError:
        raise CodecError("not hexadecimal") from None
    if data[:1] == b"\x7e":
        data = data[1:]
    if data[-1:] == b"\x7e":
        data = data[:-1]
    frame = decode_frame(data)
    h = frame.header
    out: dict = {"header": {"msg_id": f"0x{h.msg_id:04X}", "phone": h.phone,
                            "serial": h.serial, "version": h.version,
                            "protocol": "2019" if h.is_2019 else "2013",
                            "encryption": h.encryption, "package_total": h.package_total,
                            "package_index": h.package_index}}
    if h.msg_id == 0x0200 and h.package_total is None:
        loc = decode_location(frame.body)
        out["body"] = {"alarm": loc.alarm, "status": loc.status, "lat": loc.lat,
                       "lon": loc.lon, "altitude_m": loc.altitude_m,
                       "speed_kmh": loc.speed_kmh, "direction": loc.direction,
                       "time": loc.time.isoformat().replace("+00:00", "Z"), "load": loc.load,
                       "extras": named_extras(loc.extras)}
    elif h.msg_id == BATCH and h.package_total is None:
        kind, locations = decode_batch(frame.body)
        out["body"] = {"type": "blind_area" if kind else "regular",
                       "locations": [{"lat": x.lat, "lon": x.lon, "speed_kmh": x.speed_kmh,
                                      "direction": x.direction,
                                      "time": x.time.isoformat().replace("+00:00", "Z"),
                                      "status": x.status, "alarm": x.alarm,
                                      "extras": named_extras(x.extras)} for x in locations]}
    elif h.msg_id == REGISTER and h.package_total is None:
        reg = decode_registration(frame.body, h.is_2019)
        out["header"]["protocol"] = reg.protocol
        out["body"] = {"province": reg.province, "city": reg.city, "maker": reg.maker,
                       "model": reg.model, "terminal_id": reg.terminal_id,
                       "plate_color": reg.plate_color, "plate": reg.plate}
    elif h.msg_id == AUTH and h.package_total is None:
        auth = decode_authentication(frame.body, h.is_2019)
        out["body"] = {"code": auth.code, "imei": auth.imei,
                       "software_version": auth.software_version}
    elif h.msg_id == REGISTER_REPLY:
        serial, result, code = decode_register_reply(frame.body)
        out["body"] = {"serial": serial, "result": result, "auth_code": code}
    elif h.msg_id in (0x8001, 0x0001):
        serial, msg_id, result = decode_general_reply(frame.body)
        out["body"] = {"serial": serial, "msg_id": f"0x{msg_id:04X}", "result": result}
    else:
        out["body"] = {"raw": frame.body.hex()}
    return out
