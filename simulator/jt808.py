"""The simulator speaking JT/T 808: every simulated truck as a terminal on its own TCP
connection to the gateway — register, authenticate, then its fixes as 0x0200 reports and its
blind-area batches as 0x0704 (type 1), each waiting for the gateway's answer.

Sensors travel the way the gateway's documented example mapping expects them: load in status
bits 8–9, lid and lift in bits 8 and 9 of the IO item 0x2A (``lid = "io:8"``,
``lift = "io:9"`` in ``[gateway]``), satellites in 0x31.

Each terminal also answers the platform's commands as a real one does, whenever it reads
from its connection (at its next report): text and parameters with a 0x0001 'ok', a position
query with a 0x0201 of its last report, a capture with a 0x0805 and a small photo uploaded in
0x0801 packages (resending any the gateway asks for).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from gateway import codec, commands, media
from gateway.codec import Frame, Location
from gateway.terminal import Terminal, tiny_jpeg

_LOAD_BITS = {0: 0b00, 1: 0b01, 2: 0b11}


def to_location(fix: dict) -> Location:
    status = 0x0002 | _LOAD_BITS.get(fix.get("load", 0), 0) << 8  # positioned, load state
    io = (fix.get("lid") or 0) << 8 | (fix.get("lift") or 0) << 9
    extras = {0x2A: io.to_bytes(2, "big")}
    if "sats" in fix:
        extras[0x31] = bytes([min(255, int(fix["sats"]))])
    when = datetime.fromtimestamp(fix["ts"] // 1000, UTC)
    return Location(0, status, round(fix["lat"], 6), round(fix["lon"], 6), 0,
                    max(0.0, float(fix.get("spd", 0.0))), int(fix.get("hdg", 0)) % 360, when,
                    extras)


@dataclass
class JT808Summary:
    messages: int = 0
    fixes: int = 0
    batches: int = 0
    refused: int = 0  # answers other than 'ok'
    connections: int = 0
    commands: int = 0  # commands from the platform answered
    photos: int = 0  # photos uploaded for capture commands
    wall_s: float = 0.0


class _Connection:
    def __init__(self, device: str, summary: JT808Summary | None = None) -> None:
        self.terminal = Terminal(device)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.buffer = bytearray()
        self.summary = summary or JT808Summary()
        self.last = Location(0, 0, 0.0, 0.0, 0, 0.0, 0, datetime.now(UTC).replace(microsecond=0))
        self.next_media_id = 1

    async def open(self, host: str, port: int) -> None:
        self.reader, self.writer = await asyncio.open_connection(host, port)
        [(_, body)] = await self.send(self.terminal.register())
        code = codec.decode_register_reply(body)[2]
        [(_, body)] = await self.send(self.terminal.authenticate(code))
        if codec.decode_general_reply(body)[2] != codec.OK:
            raise ConnectionError(f"{self.terminal.phone}: the gateway refused authentication")

    async def send(self, frame: bytes) -> list[tuple[int, bytes]]:
        """Send a frame and return the platform's answer to it (0x8001 or 0x8100, matched by
        serial); whatever else the platform sent meanwhile is answered on the way."""
        assert self.reader is not None and self.writer is not None
        serial = codec.decode_frame(frame[1:-1]).header.serial  # batches() made several
        self.writer.write(frame)
        answer: tuple[int, bytes] | None = None
        while True:
            frames, _ = codec.split_frames(self.buffer)
            for f in map(codec.decode_frame, frames):
                if answer is None and _answers(f, serial):
                    answer = (f.header.msg_id, f.body)
                else:
                    self._platform(f)
            if answer is not None:
                return [answer]
            data = await self.reader.read(4096)
            if not data:
                raise ConnectionError("the gateway closed the connection")
            self.buffer += data

    def _platform(self, f: Frame) -> None:
        """A command (or an answer to a photo) from the platform."""
        assert self.writer is not None
        h, t = f.header, self.terminal
        if h.msg_id in (commands.TEXT, commands.SET_PARAMS):
            self.writer.write(t.general_reply(h.serial, h.msg_id, codec.OK))
        elif h.msg_id == commands.POSITION_QUERY:
            self.writer.write(t.position_reply(h.serial, self.last))
        elif h.msg_id == media.CAPTURE:
            channel = media.decode_capture(f.body).channel
            media_id, self.next_media_id = self.next_media_id, self.next_media_id + 1
            head = media.MediaEvent(media_id, 0, 0, 0, channel)
            self.writer.write(t.capture_reply(h.serial, codec.OK, [media_id]) +
                              t.media_event(head) + b"".join(t.media_upload(
                                  media.MediaUpload(head, self.last, tiny_jpeg(4000)), 1000)))
            self.summary.photos += 1
        elif h.msg_id == media.UPLOAD_REPLY:
            media_id, missing = media.decode_upload_reply(f.body)
            self.writer.write(b"".join(t.resend(media_id, missing)))
            return
        else:
            return  # e.g. the answer to a 0x0800
        self.summary.commands += 1


def _answers(f: Frame, serial: int) -> bool:
    if f.header.msg_id == codec.PLATFORM_REPLY:
        return codec.decode_general_reply(f.body)[0] == serial
    if f.header.msg_id == codec.REGISTER_REPLY:
        return codec.decode_register_reply(f.body)[0] == serial
    return False


async def stream_jt808(deliveries: Iterable, host: str, port: int, *, start_ms: int,
                       speed: float = 0.0) -> JT808Summary:
    """Send ``simulator.mixed.Delivery`` objects through the gateway, in order (each answered
    before the next of the same truck; trucks in parallel within a simulated second)."""
    summary = JT808Summary()
    connections: dict[str, _Connection] = {}
    t0 = time.monotonic()

    async def deliver(d) -> None:
        conn = connections.get(d.device)
        if conn is None:
            conn = connections[d.device] = _Connection(d.device, summary)
            await conn.open(host, port)
            summary.connections += 1
        if d.is_batch:
            frames = conn.terminal.batches([to_location(f) for f in d.payload])
            summary.batches += 1
        else:
            conn.last = to_location(d.payload)
            frames = [conn.terminal.location(conn.last)]
        for frame in frames:
            [(_, body)] = await conn.send(frame)
            if codec.decode_general_reply(body)[2] != codec.OK:
                summary.refused += 1
            summary.messages += 1
        summary.fixes += d.fixes

    pending: list = []
    devices: set[str] = set()
    second = None
    for d in deliveries:
        if speed > 0:
            ahead = t0 + (d.at_ms - start_ms) / 1000 / speed - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
        if d.at_ms // 1000 != second or d.device in devices:
            await _flush(pending, deliver)
            devices.clear()
            second = d.at_ms // 1000
        pending.append(d)
        devices.add(d.device)
    await _flush(pending, deliver)
    for conn in connections.values():
        if conn.writer is not None:
            conn.writer.write(conn.terminal.logout())
            conn.writer.close()
    summary.wall_s = time.monotonic() - t0
    return summary


async def _flush(pending: list, deliver) -> None:
    """One simulated second's messages of distinct trucks, concurrently."""
    if pending:
        await asyncio.gather(*(deliver(d) for d in pending))
        pending.clear()
