"""``muckwatch gateway``: JT/T 808 terminals over TCP in, wire-format v1 on MQTT out, commands
from MQTT out to the terminals.

Per connection, a session: register (0x0100 → 0x8100 with an auth code), authenticate
(0x0102), then location reports (0x0200), batches (0x0704) and heartbeats, each answered.
Everything a read brought in is decoded at once; its fixes (and the alarm word of reports
without a position) are published with QoS 1 and the terminal gets its 0x8001 'ok' only after
the broker acknowledged them — if the broker does not, the answer is 'fail' and the terminal
sends again (nothing acknowledged is lost). Photos (0x0800, 0x0801 in subpackages) are
reassembled in bounded memory (``gateway.uploads``), missing packages asked for again with
0x8800, and the item is answered complete only once the broker acknowledged it.

Every gateway subscribes to ``{root}/+/command``; the one holding the terminal's connection
writes the command to it (0x8300, 0x8103, 0x8201, 0x8801), and publishes how it fared from
the terminal's answer (0x0001, 0x0201, 0x0805) or its silence until the deadline.

A bad frame is answered with result 2 (bad message) where its header can be read, counted
and logged; it never ends the connection loop or the server. Limits: frame size, unparsed
bytes per connection, an idle timeout, uploads in progress.
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
from collections import OrderedDict
from dataclasses import dataclass, field, replace

import orjson

from domain.wire import (
    TopicKind,
    alarm_message,
    command_state_message,
    media_message,
    parse_topic,
    partition_topic,
)
from gateway import codec, commands, media
from gateway.codec import CodecError, Frame, Header, Location
from gateway.mqtt import AsyncPublisher, BrokerUnavailable
from gateway.sensors import SensorMapping, to_fix
from gateway.uploads import Upload, UploadBuffer, upload_key

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
    alarms: int = 0  # alarm words of reports without a position, published
    media_events: int = 0  # 0x0800
    media_items: int = 0  # photos (or other items) published, broker-acknowledged
    media_bytes: int = 0  # … and their data bytes
    media_resend_requests: int = 0  # 0x8800s naming missing packages
    media_dropped: int = 0  # uploads dropped for the memory bounds or a closed connection
    media_incomplete: int = 0  # uploads given up after media_resend_tries requests
    commands_sent: int = 0  # commands written to a terminal
    command_states: dict[str, int] = field(default_factory=dict)  # states reached, by state
    bad_commands: int = 0  # command payloads that were not valid (logged, ignored)
    commands_expired: int = 0  # commands that arrived after their deadline (ignored)

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


MAX_PENDING_COMMANDS = 64  # per connection: unanswered commands beyond this are not sent
_REMEMBERED = 4096  # recent command ids (a redelivered command is not sent twice) and
#                     (device, media id) → capture command, each


@dataclass(frozen=True, slots=True)
class PendingCommand:
    """A command written to a terminal, waiting for its answer (keyed by our serial)."""

    id: str
    kind: str
    msg_id: int
    deadline_ms: int
    device: str


class Gateway:
    def __init__(self, publisher: AsyncPublisher, directory: Directory,
                 default_mapping: SensorMapping, model_mappings: dict[str, SensorMapping],
                 *, topic_root: str = "muck/v1", auth_secret: str = "",
                 idle_timeout_s: float = 180.0, max_frame_bytes: int = 4096,
                 max_buffer_bytes: int = 65_536, publish_timeout_s: float = 10.0,
                 partitions: int = 0, media_resend_after_s: float = 10.0,
                 media_resend_tries: int = 3, media_max_pending: int = 4,
                 media_max_bytes: int = 64 * 1024 * 1024) -> None:
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
        self.protocols: dict[str, str] = {}  # device → 2011/2013/2019, from registrations
        self.writers: set[asyncio.StreamWriter] = set()
        # each device's newest authenticated session: an older connection of the same
        # terminal that times out later must not announce it offline
        self.current: dict[str, Session] = {}
        self.media_resend_after_s = media_resend_after_s
        self.media_resend_tries = media_resend_tries
        self.uploads = UploadBuffer(media_max_pending, media_max_bytes, self._upload_dropped)
        # commands written to terminals, by (session, our serial), until answered or due
        self.pending: dict[tuple[Session, int], PendingCommand] = {}
        self.seen_commands: OrderedDict[str, None] = OrderedDict()
        self.captures: OrderedDict[tuple[str, int], str] = OrderedDict()
        self._tasks: set[asyncio.Task] = set()
        self._timer: asyncio.Task | None = None

    async def start(self) -> None:
        """Receive commands (the publisher is connected) and run the timers: resend
        requests for stalled uploads, command timeouts."""
        await self.publisher.subscribe(f"{self.topic_root}/+/command", self.command_received)
        self._timer = asyncio.ensure_future(self._timers())

    async def stop(self) -> None:
        for task in [self._timer, *self._tasks]:
            if task is not None:
                task.cancel()
        await asyncio.gather(*[t for t in [self._timer, *self._tasks] if t is not None],
                             return_exceptions=True)
        self._timer = None

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

    def _upload_dropped(self, upload: Upload, why: str) -> None:
        self.stats.media_dropped += 1
        owner = upload.owner
        log.warning("%s: multimedia upload %s dropped (%d of %d packages): %s",
                    owner.peer if isinstance(owner, Session) else "?", upload.media_id,
                    len(upload.parts), upload.total, why)

    # --- commands ------------------------------------------------------------------------

    def command_received(self, topic: str, payload: bytes) -> None:
        """The subscription's callback (on the event loop, inside paho's read)."""
        task = asyncio.ensure_future(self.on_command(topic, payload))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def on_command(self, topic: str, payload: bytes) -> None:
        """A command for a terminal: sent if this gateway holds its connection. Anything
        else — another gateway's terminal, an expired or malformed command — is ignored
        (the database's sweeper times it out), never fatal."""
        parsed = parse_topic(topic, self.topic_root)
        if parsed is None or parsed[0] is not TopicKind.COMMAND:
            return
        device = parsed[1]
        session = self.current.get(device)
        if session is None or session.phone is None:
            return
        try:
            command = commands.parse_command(payload)
            msg_id, body = commands.encode_command(command, session.version is not None)
        except CodecError as e:
            self.stats.bad_commands += 1
            log.warning("%s: command ignored: %s", device, e)
            return
        if command.id in self.seen_commands:
            return  # the broker delivered it again: it was sent once
        if command.deadline_ms <= _now_ms():
            self.stats.commands_expired += 1
            log.info("%s: command %s arrived after its deadline: not sent", device, command.id)
            return
        if sum(1 for s, _ in self.pending if s is session) >= MAX_PENDING_COMMANDS:
            log.warning("%s: %d commands unanswered: command %s not sent", device,
                        MAX_PENDING_COMMANDS, command.id)
            return
        _remember(self.seen_commands, command.id, None)
        serial = session.send(msg_id, body)
        self.pending[(session, serial)] = PendingCommand(command.id, command.kind, msg_id,
                                                         command.deadline_ms, device)
        self.stats.commands_sent += 1
        log.info("%s: command %s (%s) sent as 0x%04X serial %d", device, command.id,
                 command.kind, msg_id, serial)
        await self.publish_all([self.state(device, command.id, "sent")], states=1)

    def state(self, device: str, command_id: str, state: str, detail: str = "",
              result: dict | None = None) -> tuple[str, bytes]:
        """A command state message and its topic."""
        self.stats.command_states[state] = self.stats.command_states.get(state, 0) + 1
        return (partition_topic(self.topic_root, device, self.partitions, "command/state"),
                command_state_message(command_id, state, ts=_now_ms(), detail=detail,
                                      result=result))

    async def publish_all(self, messages: list[tuple[str, bytes]], states: int = 0) -> bool:
        """Best effort (command states: the database's sweeper covers a lost one)."""
        try:
            await self.publisher.publish_all(messages, self.publish_timeout_s)
            return True
        except BrokerUnavailable as e:
            self.stats.publish_failures += 1
            log.error("%d messages (%d command states) not published: %s", len(messages),
                      states, e)
            return False

    def remember_capture(self, device: str, media_ids: list[int], command_id: str) -> None:
        for media_id in media_ids:
            _remember(self.captures, (device, media_id), command_id)

    # --- timers ----------------------------------------------------------------------------

    async def _timers(self) -> None:
        period = min(1.0, max(0.05, self.media_resend_after_s / 4))
        while True:
            await asyncio.sleep(period)
            try:
                await self.tick(time.monotonic(), _now_ms())
            except Exception:  # a bug here must not stop the timers for good
                log.exception("gateway timers")

    async def tick(self, now: float, now_ms: int) -> None:
        """Ask again for the missing packages of uploads nothing arrived for in
        ``media_resend_after_s`` (and give up after ``media_resend_tries`` requests); retry
        the publish of complete ones the broker did not acknowledge; time commands out."""
        for upload in self.uploads.quiet(now, self.media_resend_after_s):
            session = upload.owner
            assert isinstance(session, Session)
            if self.uploads.get(session, upload.key) is not upload:
                continue  # finished or dropped while an earlier one was being published
            if upload.requests >= self.media_resend_tries:
                if upload.complete:
                    self.uploads.drop(upload, "the broker did not acknowledge it")
                    continue
                self.uploads.finish(upload)
                self.stats.media_incomplete += 1
                log.warning("%s: multimedia upload %s given up: %d of %d packages, nothing "
                            "new after %d requests", session.peer, upload.media_id,
                            len(upload.parts), upload.total, upload.requests)
                continue
            upload.requests += 1
            upload.quiet_since = now
            if upload.complete:
                answer = await session.publish_upload(upload)
            else:
                answer = session.resend_request(upload)
            if answer is not None:
                session.write(answer)
        due = [key for key, p in self.pending.items() if p.deadline_ms <= now_ms]
        if due:
            timed_out = [self.pending.pop(key) for key in due]
            await self.publish_all([self.state(p.device, p.id, "timeout",
                                               "no answer from the terminal")
                                    for p in timed_out], states=len(timed_out))

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
            self.uploads.drop_owner(session, "the connection closed")
            if session.device is not None and self.current.get(session.device) is session:
                del self.current[session.device]
                await self.announce(session.device, online=False)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()


@dataclass
class _Read:
    """What the frames of one read call for."""

    replies: list[bytes] = field(default_factory=list)
    # published together; the general replies in ``waiting`` say 'ok' only once all of
    # them are acknowledged
    publishes: list[tuple[str, bytes]] = field(default_factory=list)
    waiting: list[Header] = field(default_factory=list)
    fixes: int = 0
    alarms: int = 0
    states: int = 0
    uploads: list[Upload] = field(default_factory=list)  # complete: publish, then 0x8800


class Session:
    """One terminal connection: who it is, and answering what it sends."""

    def __init__(self, gateway: Gateway, writer: asyncio.StreamWriter) -> None:
        self.gw = gateway
        self.writer = writer
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.device: str | None = None  # set once authenticated
        self.phone: str | None = None
        self.version: int | None = None  # the terminal's 2019 protocol version (None: older)
        self.protocol = ""  # 2011/2013/2019 once known from a registration
        self.serial = 0
        self.closing = False
        self.announce_online = False  # authenticated in this read: say so on the status topic
        self.reassembler = codec.Reassembler()
        self.announced: int | None = None  # the media id of the last 0x0800
        # uploads published lately, (total, first serial) → media id: a late copy of one of
        # their packages is not a new upload
        self.completed: OrderedDict[tuple[int, int], int] = OrderedDict()

    def reply(self, to: Header, msg_id: int, body: bytes) -> bytes:
        self.serial = (self.serial + 1) & 0xFFFF
        version = PLATFORM_VERSION if to.is_2019 else None
        return codec.encode_frame(Header(msg_id, to.phone, self.serial, version), body)

    def general(self, to: Header, result: int) -> bytes:
        return self.reply(to, codec.PLATFORM_REPLY,
                          codec.encode_general_reply(to.serial, to.msg_id, result))

    def write(self, data: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)

    def send(self, msg_id: int, body: bytes) -> int:
        """Write a message of ours (a command) to the authenticated terminal; its serial."""
        assert self.phone is not None
        self.serial = (self.serial + 1) & 0xFFFF
        version = PLATFORM_VERSION if self.version is not None else None
        self.write(codec.encode_frame(Header(msg_id, self.phone, self.serial, version), body))
        return self.serial

    async def process(self, raw_frames: list[bytes]) -> None:
        stats = self.gw.stats
        read = _Read()
        for raw in raw_frames:
            stats.frames += 1
            try:
                frame = codec.decode_frame(raw)
                if frame.header.msg_id == media.UPLOAD:
                    self._upload(frame, read)
                    continue
                whole = self._whole(frame)
                if whole is None:
                    continue
                self._handle(whole, read)
            except CodecError as e:
                stats.bad_frames += 1
                header = _readable_header(raw)
                log.warning("%s: bad frame (%s)%s", self.peer, e,
                            f", msg 0x{header.msg_id:04X}" if header else "")
                if header is not None:
                    read.replies.append(self.general(header, codec.BAD_MESSAGE))
        result = codec.OK
        if read.publishes:
            try:
                await self.gw.publisher.publish_all(read.publishes, self.gw.publish_timeout_s)
                stats.fixes += read.fixes
                stats.alarms += read.alarms
            except BrokerUnavailable as e:
                stats.publish_failures += 1
                log.error("%s: %s; answering 'fail' so the terminal sends again", self.peer, e)
                if read.states:
                    log.error("%s: %d command states lost", self.peer, read.states)
                result = codec.FAIL
        replies = read.replies + [self.general(h, result) for h in read.waiting]
        for upload in read.uploads:
            answer = await self.publish_upload(upload)
            if answer is not None:
                replies.append(answer)
        if self.announce_online and self.device is not None:
            self.announce_online = False
            await self.gw.announce(self.device, online=True)
        if replies:
            self.write(b"".join(replies))
            await self.writer.drain()

    def _whole(self, frame: Frame) -> Frame | None:
        h = frame.header
        if h.package_total is None:
            return frame
        body = self.reassembler.add(h, frame.body, time.monotonic())
        if body is None:
            return None
        return Frame(Header(h.msg_id, h.phone, h.serial, h.version, h.encryption), body)

    def _authenticated(self, h: Header) -> bool:
        return self.device is not None and \
            device_for_phone(h.phone) == device_for_phone(self.phone or "")

    def _count(self, h: Header) -> None:
        name = f"0x{h.msg_id:04X}"
        by = self.gw.stats.by_message
        by[name] = by.get(name, 0) + 1

    # --- multimedia ----------------------------------------------------------------------

    def _upload(self, frame: Frame, read: _Read) -> None:
        """One package of a 0x0801 (or a whole small one): filed; once the last index has
        come, the missing ones are asked for; once complete, the item is published."""
        h = frame.header
        self._count(h)
        if not self._authenticated(h):
            read.replies.append(self.general(h, codec.FAIL))  # authenticate first
            return
        if self.protocol == "2011":  # its 0x0801 has no location: not supported
            self.gw.stats.unsupported += 1
            read.replies.append(self.general(h, codec.UNSUPPORTED))
            return
        if h.package_total is None:
            h = replace(h, package_total=1, package_index=1)
        key = upload_key(h)
        if key in self.completed:  # a late copy of a published item's package
            if h.package_index == h.package_total:  # the terminal may have missed our answer
                read.replies.append(self.reply(h, media.UPLOAD_REPLY, media.encode_upload_reply(
                    self.completed[key], [])))
            return
        upload, _ = self.gw.uploads.add(self, h, frame.body, time.monotonic())
        if upload is None:
            return  # dropped at once: larger than the gateway's bound (counted)
        if upload.complete:
            if not upload.publishing:
                upload.publishing = True
                read.uploads.append(upload)
        elif h.package_index == h.package_total:
            read.replies.append(self.resend_request(upload))

    def resend_request(self, upload: Upload) -> bytes:
        """0x8800 naming the packages still missing."""
        self.gw.stats.media_resend_requests += 1
        return self.reply(upload.header, media.UPLOAD_REPLY, media.encode_upload_reply(
            self.media_id(upload), upload.missing()))

    def media_id(self, upload: Upload) -> int:
        """Package 1 names the item; while it is missing, the last 0x0800 is the best guess
        (0 when there was none)."""
        if upload.media_id is not None:
            return upload.media_id
        return self.announced or 0

    async def publish_upload(self, upload: Upload) -> bytes | None:
        """Publish a complete item; the 0x8800 that tells the terminal it arrived whole, or
        None if the broker did not acknowledge it (no answer: the terminal sends again, and
        the timer tries once more meanwhile)."""
        upload.publishing = True
        try:
            return await self._publish_upload(upload)
        finally:
            upload.publishing = False

    async def _publish_upload(self, upload: Upload) -> bytes | None:
        stats = self.gw.stats
        assert self.device is not None
        try:
            item = media.decode_upload(upload.body())
            kind, form = media.TYPES.get(item.event.media_type), \
                media.FORMATS.get(item.event.media_format)
            if kind is None or form is None:
                raise CodecError(f"multimedia type {item.event.media_type} / format "
                                 f"{item.event.media_format} is not one JT/T 808 defines")
        except CodecError as e:
            self.gw.uploads.finish(upload)
            stats.bad_frames += 1
            log.warning("%s: multimedia upload dropped: %s", self.peer, e)
            return self.general(upload.header, codec.BAD_MESSAGE)
        event, loc = item.event, item.location
        positioned = bool(loc.status & 0x02)
        payload = media_message(
            item.data, ts=_epoch_ms(loc), lon=loc.lon if positioned else None,
            lat=loc.lat if positioned else None, media_id=event.media_id, media_type=kind,
            media_format=form, event=event.event, channel=event.channel,
            command=self.gw.captures.get((self.device, event.media_id)))
        topic = partition_topic(self.gw.topic_root, self.device, self.gw.partitions, "media")
        try:
            await self.gw.publisher.publish_all([(topic, payload)], self.gw.publish_timeout_s)
        except BrokerUnavailable as e:
            stats.publish_failures += 1
            log.error("%s: multimedia %d not published (%s); not answering, so the terminal "
                      "sends it again", self.peer, event.media_id, e)
            return None
        self.gw.uploads.finish(upload)
        stats.media_items += 1
        stats.media_bytes += len(item.data)
        _remember(self.completed, upload.key, event.media_id, 16)
        return self.reply(upload.header, media.UPLOAD_REPLY,
                          media.encode_upload_reply(event.media_id, []))

    # --- everything else -----------------------------------------------------------------

    def _handle(self, frame: Frame, read: _Read) -> None:
        h = frame.header
        self._count(h)
        if h.msg_id == codec.REGISTER:
            reg = codec.decode_registration(frame.body, h.is_2019)
            regs = self.gw.stats.registrations
            regs[reg.protocol] = regs.get(reg.protocol, 0) + 1
            known = self.gw.directory.lookup(h.phone)
            if known is None:
                read.replies.append(self.reply(h, codec.REGISTER_REPLY,
                                               codec.encode_register_reply(h.serial, 4)))
                return
            self.gw.models[known[0]] = known[1] or reg.model
            self.gw.protocols[known[0]] = self.protocol = reg.protocol
            read.replies.append(self.reply(h, codec.REGISTER_REPLY, codec.encode_register_reply(
                h.serial, 0, self.gw.auth_code(h.phone))))
        elif h.msg_id == codec.AUTH:
            auth = codec.decode_authentication(frame.body, h.is_2019)
            known = self.gw.directory.lookup(h.phone)
            ok = False
            if known is not None and hmac.compare_digest(auth.code, self.gw.auth_code(h.phone)):
                self.device, self.phone, self.version = known[0], h.phone, h.version
                self.protocol = self.protocol or self.gw.protocols.get(
                    self.device, "2019" if h.is_2019 else "2013")
                self.gw.current[self.device] = self
                self.announce_online = True
                ok = True
            read.replies.append(self.general(h, codec.OK if ok else codec.FAIL))
        elif h.msg_id == codec.HEARTBEAT:
            read.replies.append(self.general(h, codec.OK))
        elif h.msg_id == codec.LOGOUT:
            read.replies.append(self.general(h, codec.OK))
            self.closing = True
        elif h.msg_id in (codec.LOCATION, codec.BATCH):
            if not self._authenticated(h):
                read.replies.append(self.general(h, codec.FAIL))  # authenticate first
                return
            if h.msg_id == codec.LOCATION:
                locations, blind = [codec.decode_location(frame.body)], False
            else:
                kind, locations = codec.decode_batch(frame.body)
                blind = kind == 1
            self._locations(locations, h.serial, blind, read)
            read.waiting.append(h)
        elif h.msg_id == media.EVENT:
            if not self._authenticated(h):
                read.replies.append(self.general(h, codec.FAIL))
                return
            event = media.decode_event(frame.body)
            self.announced = event.media_id
            self.gw.stats.media_events += 1
            read.replies.append(self.general(h, codec.OK))
        elif h.msg_id in (codec.TERMINAL_REPLY, commands.POSITION_REPLY, media.CAPTURE_REPLY):
            if self._authenticated(h):
                self._answer(frame, read)
            # answers are not answered
        else:
            self.gw.stats.unsupported += 1
            read.replies.append(self.general(h, codec.UNSUPPORTED))

    def _locations(self, locations: list[Location], serial: int, blind: bool,
                   read: _Read) -> None:
        """Fixes to publish; a report without a position publishes its alarm word, if any."""
        assert self.device is not None
        mapping = self.gw.mapping_for(self.device, "")
        fixes = []
        for loc in locations:
            fix = to_fix(loc, serial, mapping)
            if fix is not None:
                fixes.append(fix)
                continue
            self.gw.stats.unpositioned += 1
            if loc.alarm:
                read.publishes.append((partition_topic(
                    self.gw.topic_root, self.device, self.gw.partitions, "alarm"),
                    alarm_message(_epoch_ms(loc), loc.alarm)))
                read.alarms += 1
        root = partition_topic(self.gw.topic_root, self.device, self.gw.partitions)
        if blind and fixes:
            read.publishes.append((root + "/batch", orjson.dumps(fixes)))
            self.gw.stats.backfill_batches += 1
        else:
            read.publishes += [(root, orjson.dumps(f)) for f in fixes]
            read.fixes += len(fixes)

    def _answer(self, frame: Frame, read: _Read) -> None:
        """The terminal's answer to one of our commands: its state, published with the
        rest of the read (a 0x0201's location also as a fix)."""
        h = frame.header
        assert self.device is not None
        if h.msg_id == codec.TERMINAL_REPLY:
            serial, msg_id, code = codec.decode_general_reply(frame.body)
        elif h.msg_id == commands.POSITION_REPLY:
            serial, loc = commands.decode_position_reply(frame.body)
            self._locations([loc], h.serial, False, read)
            msg_id, code = commands.POSITION_QUERY, 0
        else:
            serial, code, media_ids = media.decode_capture_reply(frame.body)
            msg_id = media.CAPTURE
        pending = self.gw.pending.get((self, serial))
        if pending is None or pending.msg_id != msg_id:
            return  # an answer to something else (or to a command already timed out)
        # 2011 has no 0x0805: its 0x0001 'ok' is the capture's whole answer
        last_word = pending.kind == "capture" and self.protocol == "2011"
        if h.msg_id == codec.TERMINAL_REPLY and code == codec.OK and not last_word and \
                pending.kind in ("position", "capture"):
            return  # received; the 0x0201 or 0x0805 will say how it went
        del self.gw.pending[(self, serial)]
        result: dict | None = None
        if h.msg_id == codec.TERMINAL_REPLY:
            state, detail = commands.GENERAL_REPLY_STATES.get(
                code, ("failed", f"terminal answered {code}"))
            if last_word and state == "delivered":
                result = {"media_ids": []}
        elif h.msg_id == commands.POSITION_REPLY:
            positioned = bool(loc.status & 0x02)
            state, detail = "delivered", ""
            result = {"ts": _epoch_ms(loc), "lon": loc.lon if positioned else None,
                      "lat": loc.lat if positioned else None, "spd": loc.speed_kmh,
                      "alarm": loc.alarm}
        else:
            state, detail = commands.CAPTURE_REPLY_STATES.get(
                code, ("failed", f"terminal answered {code}"))
            if state == "delivered":
                result = {"media_ids": media_ids}
                self.gw.remember_capture(self.device, media_ids, pending.id)
        log.info("%s: command %s %s%s", self.device, pending.id, state,
                 f" ({detail})" if detail else "")
        read.publishes.append(self.gw.state(self.device, pending.id, state, detail, result))
        read.states += 1


def _epoch_ms(loc: Location) -> int:
    return int(loc.time.timestamp() * 1000)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _remember(memory: OrderedDict, key, value, limit: int = _REMEMBERED) -> None:
    memory[key] = value
    memory.move_to_end(key)
    while len(memory) > limit:
        memory.popitem(last=False)


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
    nodes = m.addresses()  # [mqtt] hosts: a clustered broker's nodes, or host:port
    if mqtt_url:
        url = urlparse(mqtt_url if "://" in mqtt_url else f"mqtt://{mqtt_url}")
        nodes = [(url.hostname or "127.0.0.1", url.port or 1883)]
    broker_host, broker_port = nodes[0]
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
                               m.keepalive_s, nodes=nodes)
    await publisher.connect()
    gateway = Gateway(publisher, directory, default, models, topic_root=m.topic_root,
                      auth_secret=g.auth_secret, idle_timeout_s=g.idle_timeout_s,
                      max_frame_bytes=g.max_frame_bytes, max_buffer_bytes=g.max_buffer_bytes,
                      publish_timeout_s=g.publish_timeout_s, partitions=m.partitions,
                      media_resend_after_s=g.media_resend_after_s,
                      media_resend_tries=g.media_resend_tries,
                      media_max_pending=g.media_max_pending, media_max_bytes=g.media_max_bytes)
    await gateway.start()
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
        await gateway.stop()
        await publisher.close()
    return gateway.stats


__all__ = ["Directory", "Gateway", "GatewayStats", "device_for_phone", "serve"]
