"""The terminal side of JT/T 808: what a vehicle terminal sends, so the simulator, the tests
and the benchmark can drive the gateway the way real terminals do."""

from __future__ import annotations

from gateway import codec
from gateway.codec import Authentication, Header, Location, Registration


class Terminal:
    """Frames from one terminal (its phone, its protocol version), serials counting up.
    ``version`` is the 2019 protocol version (None: a 2013 header); ``legacy_2011`` makes
    a terminal of JT/T 808-2011 (the 2013 header, the 2011 registration body)."""

    def __init__(self, phone: str, version: int | None = None, *,
                 legacy_2011: bool = False) -> None:
        if legacy_2011 and version is not None:
            raise ValueError("a 2011 terminal has no 2019 protocol version")
        self.phone = phone if version is None else phone.rjust(20, "0")
        self.version = version
        self.protocol = "2019" if version is not None else "2011" if legacy_2011 else "2013"
        self.serial = 0

    def frame(self, msg_id: int, body: bytes) -> bytes:
        self.serial = (self.serial + 1) & 0xFFFF
        return codec.encode_frame(Header(msg_id, self.phone, self.serial, self.version), body)

    def register(self, plate: str = "粤B00001", model: str = "MW-1", maker: str = "MUCK",
                 plate_color: int = 2) -> bytes:
        reg = Registration(44, 300, maker, model, self.phone[-7:], plate_color, plate,
                           self.protocol)
        return self.frame(codec.REGISTER, codec.encode_registration(reg, self.version is not None))

    def authenticate(self, code: str) -> bytes:
        auth = Authentication(code, "86" + self.phone[-13:], "1.0")
        return self.frame(codec.AUTH,
                          codec.encode_authentication(auth, self.version is not None))

    def heartbeat(self) -> bytes:
        return self.frame(codec.HEARTBEAT, b"")

    def logout(self) -> bytes:
        return self.frame(codec.LOGOUT, b"")

    def location(self, loc: Location) -> bytes:
        return self.frame(codec.LOCATION, codec.encode_location(loc))

    def batch(self, locations: list[Location], blind_area: bool = True) -> bytes:
        return self.frame(codec.BATCH, codec.encode_batch(int(blind_area), locations))

    def batches(self, locations: list[Location], blind_area: bool = True) -> list[bytes]:
        """A backlog as as many 0x0704 frames as it takes to keep each body within the
        1023 bytes a frame can carry (what terminals do with a long blind area)."""
        frames: list[bytes] = []
        chunk: list[Location] = []
        size = 3
        for loc in locations:
            n = len(codec.encode_location(loc)) + 2
            if chunk and size + n > codec.MAX_BODY:
                frames.append(self.batch(chunk, blind_area))
                chunk, size = [], 3
            chunk.append(loc)
            size += n
        if chunk:
            frames.append(self.batch(chunk, blind_area))
        return frames


def replies(data: bytearray) -> list[tuple[int, bytes]]:
    """(msg id, body) of every complete platform frame in ``data`` (consumed)."""
    frames, _ = codec.split_frames(data)
    out = []
    for raw in frames:
        frame = codec.decode_frame(raw)
        out.append((frame.header.msg_id, frame.body))
    return out
