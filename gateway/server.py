"""``muckwatch gateway``: JT/T 808 terminals over TCP in, wire-format v1 on MQTT out.

Per connection, a session: register (0x0100 → 0x8100 with an auth code), authenticate
(0x0102), then location reports (0x0200), batches (0x0704) and heartbeats, each answered.
Everything a read brought in is decoded at once; its fixes are published with QoS 1 and the
terminal gets its 0x8001 'ok' only after the broker acknowledged them — if the broker does
not, the answer is 'fail' and the terminal sends again (nothing acknowledged is lost).

A bad frame is answered with result 2 (bad message) where its header can be read, counted
and logged; it never ends the connection loop or the server. Limits: frame size, unparsed
bytes per connection, an idle timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import hashlib
import hmac
import logging
import secrets
import struct
import time
from dataclasses import dataclass, field

import orjson

from domain.wire import partition_topic
from gateway import codec
from gateway.codec import CodecError, Frame, Header
from gateway.mqtt import AsyncPublisher, BrokerUnavailable
from gateway.sensors import SensorMapping, to_fix

log = logging.getLogger(__name__)

PLATFORM_VERSION = 1  # the 2019 protocol version we answer 2019 terminals with


def device_for_phone(phone: str) -> str:
    """2013 (12 digits) and 2019 (20 digits) phones of one terminal give one device id."""
    return phone.lstrip("0").rjust(12, "0")


@dataclass
class GatewayStats:
    connections: int = 0
    open_connections: int = 0
    frames: int = 0
    bad_frames: int = 0
    dropped_bytes: int = 0
    fixes: int = 0
    unpositioned: int = 0
    backfill_batches: int = 0
    publish_failures: int = 0
    unsupported: int = 0
    by_message: dict[str, int] = field(default_factory=dict)
    registrations: dict[str, int] = field(default_factory=dict)  # by protocol: 2011/2013/2019
    status_published: int = 0  # online / offline announcements the broker acknowledged
    status_failures: int = 0  # … and those it did not (logged; the next one corrects it)

    def as_json(self) -> str:
        return orjson.dumps(self.__dict__).decode()


@dataclass
class Directory:
    """Which device id and terminal model a phone is; loaded from devices_file."""

    devices: dict[str, tuple[str, str]] = field(default_factory=dict)  # phone → (device, model)
    allow_unknown: bool = True

    @classmethod
    def load(cls, path: str, allow_unknown: bool) -> Directory:
        out = cls(allow_unknown=allow_unknown)
        if not path:
            return out
        with open(path, encoding="utf-8", newline="") as f:
            for n, row in enumerate(csv.reader(f), 1):
                if not row or row[0].startswith("#") or row[0] == "phone":
                    continue
                if len(row) < 2 or not row[0].strip().isdigit():
                    raise ValueError(f"{path}:{n}: expected phone,device_id[,model]")
                out.devices[device_for_phone(row[0].strip())] = (
                    row[1].strip(), row[2].strip() if len(row) > 2 else "")
        return out

    def lookup(self, phone: str) -> tuple[str, str] | None:
        key = device_for_phone(phone)
        if key in self.devices:
            return self.devices[key]
        return (key, "") if self.allow_unknown else None


class Gateway:
    def __init__(self, publisher: AsyncPublisher, directory: Directory,
                 default_mapping: SensorMapping, model_mappings: dict[str, SensorMapping],
                 *, topic_root: str = "muck/v1", auth_secret: str = "",
                 idle_timeout_s: float = 180.0, max_frame_bytes: int = 4096,
                 max_buffer_bytes: int = 65_536, publish_timeout_s: float = 10.0,
                 partitions: int = 0) -> None:
        self.publisher = publisher
        self.partitions = partitions  # [mqtt] partitions: the topic's partition level
        self.directory = directory
        self.default_mapping = default_mapping
        self.model_mappings = model_mappings
        self.topic_root = topic_root
        self.key = (auth_secret or secrets.token_hex(32)).encode()
        self.idle_timeout_s = idle_timeout_s
        self.max_frame_bytes = max_frame_bytes
        self.max_buffer_bytes = max_buffer_bytes
        self.publish_timeout_s = publish_timeout_s
        self.stats = GatewayStats()
        self.models: dict[str, str] = {}  # device → model, learnt from registrations
        self.writers: set[asyncio.StreamWriter] = set()
        # each device's newest authenticated session: an older connection of the same
        # terminal that times out later must not announce it offline
        self.current: dict[str, Session] = {}

    def close_connections(self) -> None:
        for writer in list(self.writers):
            writer.close()

    def auth_code(self, phone: str) -> str:
        digest = hmac.new(self.key, device_for_phone(phone).encode(), hashlib.sha256)
        return digest.hexdigest()[:16]

    async def announce(self, device: str, *, online: bool) -> None:
        """The terminal's online / offline state, retained on its status topic (what an MQTT
        terminal says with its retained status and last will: docs/protocol.md), so the
        ingest keeps ``device_status`` and its history for everyone's view of who is
        online. Best effort: a failure is logged and counted, never fails the terminal."""
        topic = partition_topic(self.topic_root, device, self.partitions, "status")
        try:
            await self.publisher.publish_all([(topic, b"online" if online else b"offline")],
                                             self.publish_timeout_s, retain=True)
            self.stats.status_published += 1
        except BrokerUnavailable as e:
            self.stats.status_failures += 1
            log.warning("%s: status %s not published: %s", device,
                        "online" if online else "offline", e)

    def mapping_for(self, device: str, model: str) -> SensorMapping:
        return self.model_mappings.get(model or self.models.get(device, ""),
                                       self.default_mapping)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = Session(self, writer)
        self.writers.add(writer)
        self.stats.connections += 1
        self.stats.open_connections += 1
        buffer = bytearray()
        try:
            while True:
                try:
                    data = await asyncio.wait_for(reader.read(65_536), self.idle_timeout_s)
                except TimeoutError:
                    log.info("%s: idle for %g s, closing", session.peer, self.idle_timeout_s)
                    break
                if not data:
                    break
                buffer += data
                frames, dropped = codec.split_frames(buffer, self.max_frame_bytes)
                if dropped:
                    self.stats.dropped_bytes += dropped
                    log.warning("%s: dropped %d bytes that were not a frame", session.peer,
                                dropped)
                if len(buffer) > self.max_buffer_bytes:
                    log.warning("%s: %d unparsed bytes, over the limit: closing",
                                session.peer, len(buffer))
                    break
                if frames:
                    await session.process(frames)
                if session.closing:
                    break
        except (ConnectionError, OSError) as e:
            log.info("%s: connection lost: %s", session.peer, e)
        except Exception:  # one connection's bug must never take the server down
            log.exception("%s: unexpected error; closing this connection", session.peer)
        finally:
            self.stats.open_connections -= 1
            self.writers.discard(writer)
            # logout, close, idle timeout, a broken link — unless the terminal has since
            # connected again
            if session.device is not None and self.current.get(session.device) is session:
                del self.current[session.device]
                await self.announce(session.device, online=False)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()


class Session:
    """One terminal connection: who it is, and answering what it sends."""

    def __init__(self, gateway: Gateway, writer: asyncio.StreamWriter) -> None:
        self.gw = gateway
        self.writer = writer
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.device: str | None = None  # set once authenticated
        self.phone: str | None = None
        self.serial = 0
        self.closing = False
        self.announce_online = False  # authenticated in this read: say so on the status topic
        self.reassembler = codec.Reassembler()

    def reply(self, to: Header, msg_id: int, body: bytes) -> bytes:
        self.serial = (self.serial + 1) & 0xFFFF
        version = PLATFORM_VERSION if to.is_2019 else None
        return codec.encode_frame(Header(msg_id, to.phone, self.serial, version), body)

    def general(self, to: Header, result: int) -> bytes:
        return self.reply(to, codec.PLATFORM_REPLY,
                          codec.encode_general_reply(to.serial, to.msg_id, result))

    async def process(self, raw_frames: list[bytes]) -> None:
        stats = self.gw.stats
        replies: list[bytes] = []
        publishes: list[tuple[str, bytes]] = []
        waiting: list[tuple[Header, int]] = []  # replies that depend on the broker's ack
        for raw in raw_frames:
            stats.frames += 1
            try:
                frame = codec.decode_frame(raw)
                whole = self._whole(frame)
                if whole is None:
                    continue
                self._handle(whole, replies, publishes, waiting)
            except CodecError as e:
                stats.bad_frames += 1
                header = _readable_header(raw)
                log.warning("%s: bad frame (%s)%s", self.peer, e,
                            f", msg 0x{header.msg_id:04X}" if header else "")
                if header is not None:
                    replies.append(self.general(header, codec.BAD_MESSAGE))
        result = codec.OK
        if publishes:
            try:
                await self.gw.publisher.publish_all(publishes, self.gw.publish_timeout_s)
                stats.fixes += sum(1 for t, _ in publishes if not t.endswith("/batch"))
            except BrokerUnavailable as e:
                stats.publish_failures += 1
                log.error("%s: %s; answering 'fail' so the terminal sends again", self.peer, e)
                result = codec.FAIL
        replies += [self.general(h, result) for h, _ in waiting]
        if self.announce_online and self.device is not None:
            self.announce_online = False
            await self.gw.announce(self.device, online=True)
        if replies:
            self.writer.write(b"".join(replies))
            await self.writer.drain()

    def _whole(self, frame: Frame) -> Frame | None:
        h = frame.header
        if h.package_total is None:
            return frame
        body = self.reassembler.add(h, frame.body, time.monotonic())
        if body is None:
            return None
        return Frame(Header(h.msg_id, h.phone, h.serial, h.version, h.encryption), body)

    def _handle(self, frame: Frame, replies: list[bytes], publishes: list,
                waiting: list) -> None:
        h = frame.header
        name = f"0x{h.msg_id:04X}"
        by = self.gw.stats.by_message
        by[name] = by.get(name, 0) + 1
        if h.msg_id == codec.REGISTER:
            reg = codec.decode_registration(frame.body, h.is_2019)
            regs = self.gw.stats.registrations
            regs[reg.protocol] = regs.get(reg.protocol, 0) + 1
            known = self.gw.directory.lookup(h.phone)
            if known is None:
                replies.append(self.reply(h, codec.REGISTER_REPLY,
                                          codec.encode_register_reply(h.serial, 4)))
                return
            self.gw.models[known[0]] = known[1] or reg.model
            replies.append(self.reply(h, codec.REGISTER_REPLY, codec.encode_register_reply(
                h.serial, 0, self.gw.auth_code(h.phone))))
        elif h.msg_id == codec.AUTH:
            auth = codec.decode_authentication(frame.body, h.is_2019)
            known = self.gw.directory.lookup(h.phone)
            ok = False
            if known is not None and hmac.compare_digest(auth.code, self.gw.auth_code(h.phone)):
                self.device, self.phone = known[0], h.phone
                self.gw.current[self.device] = self
                self.announce_online = True
                ok = True
            replies.append(self.general(h, codec.OK if ok else codec.FAIL))
        elif h.msg_id == codec.HEARTBEAT:
            replies.append(self.general(h, codec.OK))
        elif h.msg_id == codec.LOGOUT:
            replies.append(self.general(h, codec.OK))
            self.closing = True
        elif h.msg_id in (codec.LOCATION, codec.BATCH):
            if self.device is None or device_for_phone(h.phone) != \
                    device_for_phone(self.phone or ""):
                replies.append(self.general(h, codec.FAIL))  # authenticate first
                return
            mapping = self.gw.mapping_for(self.device, "")
            if h.msg_id == codec.LOCATION:
                locations, blind = [codec.decode_location(frame.body)], False
            else:
                kind, locations = codec.decode_batch(frame.body)
                blind = kind == 1
            fixes = []
            for loc in locations:
                fix = to_fix(loc, h.serial, mapping)
                if fix is None:
                    self.gw.stats.unpositioned += 1
                else:
                    fixes.append(fix)
            root = partition_topic(self.gw.topic_root, self.device, self.gw.partitions)
            if blind and fixes:
                publishes.append((root + "/batch", orjson.dumps(fixes)))
                self.gw.stats.backfill_batches += 1
            else:
                publishes += [(root, orjson.dumps(f)) for f in fixes]
            waiting.append((h, 0))
        elif h.msg_id in (codec.TERMINAL_REPLY,):
            return  # the terminal acknowledging one of ours: nothing to answer
        else:
            self.gw.stats.unsupported += 1
            replies.append(self.general(h, codec.UNSUPPORTED))


def _readable_header(raw: bytes) -> Header | None:
    """The msg id, phone and serial of a frame too broken to decode, if they can be read,
    so it can still be answered with 'bad message'."""
    try:
        data = codec.unescape(raw)
    except CodecError:
        return None
    if len(data) < 12:
        return None
    msg_id, props = struct.unpack_from(">HH", data, 0)
    try:
        if props & 0x4000:
            if len(data) < 17:
                return None
            return Header(msg_id, codec.bcd_decode(data[5:15]),
                          struct.unpack_from(">H", data, 15)[0], data[4])
        return Header(msg_id, codec.bcd_decode(data[4:10]),
                      struct.unpack_from(">H", data, 10)[0])
    except CodecError:
        return None


async def serve(settings, listen: str | None = None, mqtt_url: str | None = None,
                stop: asyncio.Event | None = None, ready=None) -> GatewayStats:
    """Run the gateway until ``stop`` is set (SIGTERM/SIGINT from the CLI)."""
    from urllib.parse import urlparse

    from gateway.sensors import MappingError

    g, m = settings.gateway, settings.mqtt
    host, _, port = (listen or g.listen).rpartition(":")
    broker_host, broker_port = m.host, m.port
    if mqtt_url:
        url = urlparse(mqtt_url if "://" in mqtt_url else f"mqtt://{mqtt_url}")
        broker_host, broker_port = url.hostname or "127.0.0.1", url.port or 1883
    try:
        default = SensorMapping.parse(g.lid, g.lift, "[gateway]")
        models = {}
        for n, table in enumerate(g.models, 1):
            model = str(table.get("model", "")).strip()
            if not model:
                raise MappingError(f"[[gateway.models]] #{n}: model is required")
            models[model] = SensorMapping.parse(table.get("lid", ""), table.get("lift", ""),
                                                f"[[gateway.models]] {model!r}")
        directory = Directory.load(g.devices_file, g.allow_unknown)
    except (MappingError, OSError) as e:
        raise ValueError(str(e)) from None
    publisher = AsyncPublisher(broker_host, broker_port, g.client_id, m.username, m.password,
                               m.keepalive_s)
    await publisher.connect()
    gateway = Gateway(publisher, directory, default, models, topic_root=m.topic_root,
                      auth_secret=g.auth_secret, idle_timeout_s=g.idle_timeout_s,
                      max_frame_bytes=g.max_frame_bytes, max_buffer_bytes=g.max_buffer_bytes,
                      publish_timeout_s=g.publish_timeout_s, partitions=m.partitions)
    server = await asyncio.start_server(gateway.handle, host or "0.0.0.0", int(port),
                                        backlog=4096)
    bound = server.sockets[0].getsockname()
    log.info("gateway listening on %s:%d, publishing to %s:%d (%d known terminals%s)",
             bound[0], bound[1], broker_host, broker_port, len(directory.devices),
             ", unknown ones accepted" if directory.allow_unknown else "")
    if ready is not None:
        ready(bound)
    stop = stop or asyncio.Event()
    try:
        await stop.wait()
    finally:
        server.close()
        gateway.close_connections()
        await server.wait_closed()
        await publisher.close()
    return gateway.stats


__all__ = ["Directory", "Gateway", "GatewayStats", "device_for_phone", "serve"]
