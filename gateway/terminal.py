"""The terminal side of JT/T 808: what a vehicle terminal sends, so the simulator, the tests
and the benchmark can drive the gateway the way real terminals do — including photos in
subpackages and the answers to the platform's commands (``SimulatedTerminal``), and hostile
terminals that drop, repeat or reorder packages, never complete an upload or send oversized
frames."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import OrderedDict
from collections.abc import Collection
from datetime import UTC, datetime

from gateway import codec, commands, media
from gateway.codec import Authentication, Frame, Header, Location, Registration


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
        self._uploads: OrderedDict[int, list[bytes]] = OrderedDict()  # media id → packages

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


    # --- multimedia and answers to commands ------------------------------------------------

    def media_event(self, event: media.MediaEvent) -> bytes:
        return self.frame(media.EVENT, media.encode_event(event))

    def media_upload(self, upload: media.MediaUpload,
                     package_bytes: int = codec.MAX_BODY) -> list[bytes]:
        """A 0x0801 as the frames a terminal sends: the body split into packages of at most
        ``package_bytes`` (≤ 1023), consecutive serials, each header naming the total and its
        index. Kept, so ``resend`` can send packages again exactly as they were."""
        if not 0 < package_bytes <= codec.MAX_BODY:
            raise ValueError(f"a package holds 1..{codec.MAX_BODY} bytes")
        body = media.encode_upload(upload)
        parts = [body[i:i + package_bytes] for i in range(0, len(body), package_bytes)]
        if len(parts) > 256:
            raise ValueError(f"{len(parts)} packages: a gateway takes at most 256")
        frames = []
        for index, part in enumerate(parts, 1):
            self.serial = (self.serial + 1) & 0xFFFF
            frames.append(codec.encode_frame(Header(
                media.UPLOAD, self.phone, self.serial, self.version, 0, len(parts), index),
                part))
        self._uploads[upload.event.media_id] = frames
        while len(self._uploads) > 16:
            self._uploads.popitem(last=False)
        return frames

    def resend(self, media_id: int, indexes: Collection[int]) -> list[bytes]:
        """The packages a 0x8800 asked for, with their original serials and indexes."""
        frames = self._uploads.get(media_id, [])
        return [frames[i - 1] for i in indexes if 1 <= i <= len(frames)]

    def general_reply(self, serial: int, msg_id: int, result: int = codec.OK) -> bytes:
        """0x0001: the terminal's answer to a platform message (0 ok, 1 fail, 2 bad message,
        3 unsupported)."""
        return self.frame(codec.TERMINAL_REPLY,
                          codec.encode_general_reply(serial, msg_id, result))

    def position_reply(self, serial: int, loc: Location) -> bytes:
        return self.frame(commands.POSITION_REPLY, commands.encode_position_reply(serial, loc))

    def capture_reply(self, serial: int, result: int, media_ids: list[int]) -> bytes:
        return self.frame(media.CAPTURE_REPLY,
                          media.encode_capture_reply(serial, result, media_ids))


def tiny_jpeg(size: int = 0) -> bytes:
    """A valid baseline JPEG of one grey pixel (SOI, tables, one 8×8 block, EOI), padded with
    comment segments to at least ``size`` bytes: a photo of any size without an imaging
    library."""
    dqt = b"\xff\xdb\x00\x43\x00" + b"\x01" * 64
    sof = b"\xff\xc0\x00\x0b\x08\x00\x01\x00\x01\x01\x01\x11\x00"
    # one code of length 1 each: DC category 0, AC end-of-block
    dht = b"".join(b"\xff\xc4\x00\x14" + bytes([table]) + b"\x01" + bytes(15) + b"\x00"
                   for table in (0x00, 0x10))
    sos = b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00"
    image = dqt + sof + dht + sos + b"\x3f" + b"\xff\xd9"  # DC 0, EOB, padded with ones
    comments = b""
    need = size - 2 - len(image)
    while need > 0:
        n = min(max(need - 4, 0), 65533)
        comments += b"\xff\xfe" + (n + 2).to_bytes(2, "big") + b"muck" * (n // 4) + \
            b"w" * (n % 4)
        need -= n + 4
    return b"\xff\xd8" + comments + image


class SimulatedTerminal:
    """A JT/T 808 terminal on its own TCP connection, answering the platform like a real one:
    text and parameters with a 0x0001 (``results`` overrides the result per message id),
    position queries with a 0x0201 of ``location``, capture commands with a 0x0805 naming new
    media ids and then their photos as uploads, 0x8800 with the packages asked for.

    Hostile switches for uploads: ``drop`` (package indexes left out the first time),
    ``duplicate`` (every package twice), ``reorder`` (shuffled), ``never_complete`` (0x8800
    requests ignored), ``oversized`` (a frame larger than the gateway takes first)."""

    def __init__(self, phone: str, version: int | None = None, *, legacy_2011: bool = False,
                 location: Location | None = None, photo: bytes = b"",
                 package_bytes: int = 512, drop: Collection[int] = (),
                 duplicate: bool = False, reorder: bool = False, never_complete: bool = False,
                 oversized: bool = False, answer_commands: bool = True,
                 results: dict[int, int] | None = None, capture_result: int = 0,
                 seed: int = 0) -> None:
        self.t = Terminal(phone, version, legacy_2011=legacy_2011)
        self.location = location or Location(0, 0x0302, 22.55, 114.05, 12, 30.5, 90,
                                              datetime.now(UTC).replace(microsecond=0))
        self.photo = photo or tiny_jpeg(3000)
        self.package_bytes = package_bytes
        self.drop, self.duplicate, self.reorder = set(drop), duplicate, reorder
        self.never_complete, self.oversized = never_complete, oversized
        self.answer_commands = answer_commands
        self.results = results or {}
        self.capture_result = capture_result
        self.random = random.Random(seed)
        self.commands: list[Frame] = []  # every command the platform sent
        self.resend_requests: list[tuple[int, list[int]]] = []  # 0x8800s naming packages
        self.uploaded: list[int] = []  # media ids the platform said arrived whole
        self.next_media_id = 1
        self._waiting: dict[int, asyncio.Future] = {}  # our serial → the platform's answer
        self._done: dict[int, asyncio.Future] = {}  # media id → complete
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task | None = None
        self._uploads: set[asyncio.Task] = set()

    async def connect(self, host: str, port: int, timeout_s: float = 10.0) -> None:
        """Open the connection, register and authenticate."""
        self._reader, self._writer = await asyncio.open_connection(host, port)
        self._task = asyncio.ensure_future(self._read())
        _, body = await self.request(self.t.register(), timeout_s)
        _, result, code = codec.decode_register_reply(body)
        if result != 0:
            raise ConnectionError(f"{self.t.phone}: registration refused ({result})")
        _, body = await self.request(self.t.authenticate(code), timeout_s)
        if codec.decode_general_reply(body)[2] != codec.OK:
            raise ConnectionError(f"{self.t.phone}: authentication refused")

    def write(self, *frames: bytes) -> None:
        assert self._writer is not None, "connect() first"
        self._writer.write(b"".join(frames))

    async def request(self, frame: bytes, timeout_s: float = 10.0) -> tuple[int, bytes]:
        """Send one frame and wait for the platform's answer to it (0x8001 or 0x8100)."""
        serial = self.t.serial
        answer = self._waiting[serial] = asyncio.get_running_loop().create_future()
        self.write(frame)
        try:
            return await asyncio.wait_for(answer, timeout_s)
        finally:
            self._waiting.pop(serial, None)

    async def report(self, loc: Location | None = None) -> int:
        """A 0x0200; the 0x8001 result."""
        _, body = await self.request(self.t.location(loc or self.location))
        return codec.decode_general_reply(body)[2]

    async def upload(self, data: bytes = b"", *, media_id: int | None = None, event: int = 1,
                     channel: int = 1, loc: Location | None = None,
                     announce: bool = True) -> int:
        """Announce (0x0800) and upload (0x0801) a photo, hostile switches applied; its
        media id. ``uploaded`` / ``wait_uploaded`` tell when the platform has it whole."""
        if media_id is None:
            media_id, self.next_media_id = self.next_media_id, self.next_media_id + 1
        self._done.setdefault(media_id, asyncio.get_running_loop().create_future())
        head = media.MediaEvent(media_id, 0, 0, event, channel)
        if announce:
            _, body = await self.request(self.t.media_event(head))
            if codec.decode_general_reply(body)[2] != codec.OK:
                raise ConnectionError(f"{self.t.phone}: 0x0800 refused")
        frames = self.t.media_upload(media.MediaUpload(head, loc or self.location,
                                                       data or self.photo), self.package_bytes)
        sent = [f for i, f in enumerate(frames, 1) if i not in self.drop]
        if self.duplicate:
            sent = [f for f in sent for _ in range(2)]
        if self.reorder:
            self.random.shuffle(sent)
        if self.oversized:
            sent.insert(0, b"\x7e" + b"\x01" * 5000 + b"\x7e")
        self.write(*sent)
        return media_id

    async def wait_uploaded(self, media_id: int, timeout_s: float = 10.0) -> None:
        done = self._done.setdefault(media_id, asyncio.get_running_loop().create_future())
        await asyncio.wait_for(asyncio.shield(done), timeout_s)

    async def close(self, logout: bool = True) -> None:
        for task in [*self._uploads]:
            task.cancel()
        if self._writer is not None:
            if logout:
                with contextlib.suppress(ConnectionError, OSError):
                    self.write(self.t.logout())
                    await self._writer.drain()
            self._writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await self._writer.wait_closed()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _read(self) -> None:
        assert self._reader is not None
        buffer = bytearray()
        while data := await self._reader.read(65536):
            buffer += data
            frames, _ = codec.split_frames(buffer)
            for raw in frames:
                self._dispatch(codec.decode_frame(raw))
        for answer in self._waiting.values():
            if not answer.done():
                answer.set_exception(ConnectionError("the platform closed the connection"))

    def _dispatch(self, frame: Frame) -> None:
        h, body = frame.header, frame.body
        if h.msg_id in (codec.PLATFORM_REPLY, codec.REGISTER_REPLY):
            (serial,) = codec.decode_general_reply(body)[:1] if h.msg_id == \
                codec.PLATFORM_REPLY else codec.decode_register_reply(body)[:1]
            answer = self._waiting.get(serial)
            if answer is not None and not answer.done():
                answer.set_result((h.msg_id, body))
        elif h.msg_id == media.UPLOAD_REPLY:
            media_id, missing = media.decode_upload_reply(body)
            if not missing:
                self.uploaded.append(media_id)
                done = self._done.setdefault(media_id,
                                             asyncio.get_running_loop().create_future())
                if not done.done():
                    done.set_result(None)
                return
            self.resend_requests.append((media_id, missing))
            if not self.never_complete:
                self.write(*self.t.resend(media_id, missing))
        elif h.msg_id in (commands.TEXT, commands.SET_PARAMS, commands.POSITION_QUERY,
                          media.CAPTURE):
            self.commands.append(frame)
            if self.answer_commands:
                self._command(frame)

    def _command(self, frame: Frame) -> None:
        h = frame.header
        if h.msg_id in self.results:
            self.write(self.t.general_reply(h.serial, h.msg_id, self.results[h.msg_id]))
        elif h.msg_id == commands.POSITION_QUERY:
            self.write(self.t.position_reply(h.serial, self.location))
        elif h.msg_id == media.CAPTURE:
            capture = media.decode_capture(frame.body)
            if self.capture_result != 0:
                self.write(self.t.capture_reply(h.serial, self.capture_result, []))
                return
            ids = list(range(self.next_media_id, self.next_media_id + capture.shots))
            self.next_media_id += capture.shots
            self.write(self.t.capture_reply(h.serial, 0, ids))
            for media_id in ids:
                task = asyncio.ensure_future(self.upload(media_id=media_id, event=0,
                                                         channel=capture.channel))
                self._uploads.add(task)
                task.add_done_callback(self._uploads.discard)
        else:
            self.write(self.t.general_reply(h.serial, h.msg_id, codec.OK))


def replies(data: bytearray) -> list[tuple[int, bytes]]:
    """(msg id, body) of every complete platform frame in ``data`` (consumed)."""
    frames, _ = codec.split_frames(data)
    out = []
    for raw in frames:
        frame = codec.decode_frame(raw)
        out.append((frame.header.msg_id, frame.body))
    return out
