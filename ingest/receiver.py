"""MQTT receive side: a lean MQTT v5 session on the asyncio loop, whole batches out.

Why not a library client: measured here (bench/pipeline.py, py-spy), paho-mqtt's v5 receive
path costs ≈ 110 µs of Python per message (it builds a ``Properties`` object and an
``MQTTMessage`` for every PUBLISH, on a network thread that then fights the event loop for the
GIL) and held the whole ingest to ≈ 7,700 msg/s; aiomqtt's ``async for`` (one await per
message) does ≈ 7,600 msg/s. A subscriber needs little of MQTT — CONNECT, SUBSCRIBE, PUBLISH
in, PUBACK out, PINGREQ — so this module speaks exactly that: ``data_received`` cuts PUBLISH
packets out of the socket buffer in one tight loop (a few µs each) and the event loop is woken
once per batch, never per message.

Delivery guarantee: a persistent session (Clean Start 0, Session Expiry) and acks only after
the pipeline committed the batch; a crash before that makes the broker redeliver, and the
store's (device, ts) key makes the redelivery harmless. Receive Maximum is raised far above
the batch size: acks wait for a whole batch, so the default window (65,535 unset → broker's
limit) must not stall delivery. After a reconnect the broker resends every unacknowledged
PUBLISH with its original packet id, so messages from a lost connection are dropped from the
buffer and never acked on the new one (an ack would free a packet id the broker may already
have reused for a message not yet committed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from collections.abc import Callable

import numpy as np

from domain.settings import MqttSettings
from ingest.wire import RawBatch

log = logging.getLogger(__name__)

CONNECT, CONNACK, PUBLISH, PUBACK = 1, 2, 3, 4
SUBSCRIBE, SUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 12, 13, 14
REASONS = {0x80: "unspecified error", 0x81: "malformed packet", 0x82: "protocol error",
           0x83: "implementation specific error", 0x84: "unsupported protocol version",
           0x85: "client identifier not valid", 0x86: "bad user name or password",
           0x87: "not authorized", 0x88: "server unavailable", 0x89: "server busy",
           0x8A: "banned", 0x8C: "bad authentication method", 0x8E: "session taken over",
           0x8F: "topic filter invalid", 0x97: "quota exceeded", 0x9F: "connection rate exceeded"}


class BrokerError(RuntimeError):
    """The broker could not be reached or refused us; the message says where and why."""


class ProtocolError(ValueError):
    """The broker sent bytes that are not MQTT v5 as we asked for it."""


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack(">H", len(data)) + data


def _packet(kind: int, flags: int, body: bytes) -> bytes:
    return bytes([kind << 4 | flags]) + _varint(len(body)) + body


def connect_packet(s: MqttSettings) -> bytes:
    """CONNECT for a persistent session: MQTT 5 (clean start 0, a session expiry, our
    receive maximum) or 3.1.1 (clean session 0: the broker keeps the session until we
    unsubscribe)."""
    flags = (0x80 if s.username else 0) | (0x40 if s.username and s.password else 0)
    if s.protocol == "3.1.1":
        body = _string("MQTT") + bytes([4, flags]) + struct.pack(">H", s.keepalive_s) + \
            _string(s.client_id)
    else:
        props = b"\x11" + struct.pack(">I", s.session_expiry_s) + \
            b"\x21" + struct.pack(">H", min(s.receive_maximum, 65_535))
        body = _string("MQTT") + bytes([5, flags]) + struct.pack(">H", s.keepalive_s) + \
            _varint(len(props)) + props + _string(s.client_id)
    if s.username:
        body += _string(s.username)
        if s.password:
            body += _string(s.password)
    return _packet(CONNECT, 0, body)


def subscribe_packet(packet_id: int, topics: list[str], qos: int = 1, v5: bool = True
                     ) -> bytes:
    body = struct.pack(">H", packet_id) + (b"\x00" if v5 else b"") + b"".join(
        _string(t) + bytes([qos]) for t in topics)
    return _packet(SUBSCRIBE, 0x2, body)


def puback_packets(packet_ids: np.ndarray) -> bytes:
    """PUBACK (success, no properties) for every id, as one buffer: built with numpy."""
    out = np.empty((len(packet_ids), 4), np.uint8)
    out[:, 0] = PUBACK << 4
    out[:, 1] = 2
    out[:, 2] = packet_ids >> 8
    out[:, 3] = packet_ids & 0xFF
    return out.tobytes()


class _Session(asyncio.Protocol):
    """One TCP connection to the broker; hands every complete packet to the receiver."""

    def __init__(self, receiver: MqttReceiver, generation: int) -> None:
        self.receiver = receiver
        self.generation = generation
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.connack: asyncio.Future = asyncio.get_running_loop().create_future()
        self.suback: asyncio.Future = asyncio.get_running_loop().create_future()
        self.closed = asyncio.get_running_loop().create_future()
        self.last_heard = time.monotonic()

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        for fut in (self.connack, self.suback):
            if not fut.done():
                fut.set_exception(ConnectionError(str(exc or "connection closed")))
                fut.exception()  # whoever awaits it still gets it; nobody may (no log noise)
        if not self.closed.done():
            self.closed.set_result(exc)

    def data_received(self, data: bytes) -> None:
        self.last_heard = time.monotonic()
        buf = self.buffer
        buf += data
        try:
            used = self.receiver._packets(buf, self)
        except (ProtocolError, IndexError, UnicodeDecodeError) as e:
            log.error("broker sent a malformed packet (%s); reconnecting", e)
            assert self.transport is not None
            self.transport.close()
            return
        del buf[:used]
        receiver = self.receiver
        if receiver.buffered_bytes > receiver.max_buffer_bytes and not receiver.paused:
            # photos are up to megabytes each: stop reading (TCP pushes back on the broker,
            # which keeps the messages) until the pipeline has taken what is buffered
            receiver.paused = True
            assert self.transport is not None
            self.transport.pause_reading()


class MqttReceiver:
    def __init__(
        self,
        settings: MqttSettings,
        topics: list[str],
        *,
        batch_max: int,
        batch_wait_s: float,
        wakeup: asyncio.Event | None = None,
        wake_at: int | None = None,
        max_buffer_bytes: int = 256 * 1024 * 1024,
    ) -> None:
        self.settings = settings
        self.topics = topics
        self.batch_max = batch_max
        self.batch_wait_s = batch_wait_s
        self._topics: list[str] = []
        self._payloads: list[bytes] = []
        self._mids: list[int] = []  # packet id, or -1 for QoS 0 (nothing to ack)
        self._times: list[float] = []  # arrival time of each message (per socket read)
        self._wakeup: asyncio.Event | None = wakeup  # shared when sessions are merged
        self._wake_at = wake_at or batch_max  # buffered messages that wake next_batch
        self._session: _Session | None = None
        self._generation = 0
        self._closing = False
        self._supervisor: asyncio.Task | None = None
        # the broker's nodes, tried in turn: a clustered broker survives losing one
        self.addresses = settings.addresses()
        self._node = 0
        self.v5 = settings.protocol != "3.1.1"
        self.where = f"{settings.host}:{settings.port}"
        self.max_buffer_bytes = max_buffer_bytes
        self.buffered_bytes = 0  # payload bytes received and not yet taken
        self.paused = False

    # --- connection ------------------------------------------------------------------------

    async def _open(self) -> _Session:
        """Connect, CONNACK, SUBSCRIBE, SUBACK; raises BrokerError with the reason."""
        loop = asyncio.get_running_loop()
        self._generation += 1
        generation = self._generation
        host, port = self.addresses[self._node % len(self.addresses)]
        self.where = f"{host}:{port}"
        try:
            _, session = await asyncio.wait_for(loop.create_connection(
                lambda: _Session(self, generation), host, port),
                timeout=10 if len(self.addresses) == 1 else 3)
        except (OSError, TimeoutError) as e:
            reason = getattr(e, "strerror", None) or e or "timed out"
            raise BrokerError(f"cannot reach the MQTT broker at {self.where}: {reason}") from None
        assert session.transport is not None
        session.transport.write(connect_packet(self.settings))
        try:
            # a cluster node whose session leader just died holds a CONNECT for seconds:
            # with other nodes to try, give up on it soon and go round again
            present = await asyncio.wait_for(session.connack,
                                             10 if len(self.addresses) == 1 else 2)
            session.transport.write(subscribe_packet(1, self.topics, v5=self.v5))
            await asyncio.wait_for(session.suback, 10)
        except (BrokerError, ConnectionError, TimeoutError) as e:
            session.transport.close()
            if isinstance(e, BrokerError):
                raise
            raise BrokerError(f"MQTT broker at {self.where}: {e or 'no answer in time'}") \
                from None
        self._session = session
        log.info("connected to %s (session present: %s)", self.where, present)
        return session

    async def start(self, timeout_s: float = 10.0) -> None:
        if self._wakeup is None:
            self._wakeup = asyncio.Event()
        session = await asyncio.wait_for(self._open_any(), timeout_s)
        self._supervisor = asyncio.ensure_future(self._supervise(session))

    async def _supervise(self, session: _Session) -> None:
        """Keepalive while connected; reconnect (1 s … 30 s backoff) when the connection
        drops or the broker goes quiet for 1.5 keepalive periods."""
        keepalive = max(self.settings.keepalive_s, 1)
        while not self._closing:
            try:
                await asyncio.wait_for(asyncio.shield(session.closed), keepalive / 2)
            except TimeoutError:
                if time.monotonic() - session.last_heard > keepalive * 1.5:
                    log.warning("broker at %s silent for %.0f s; reconnecting", self.where,
                                keepalive * 1.5)
                    session.transport.close()  # type: ignore[union-attr]
                else:
                    session.transport.write(bytes([PINGREQ << 4, 0]))  # type: ignore[union-attr]
                continue
            if self._closing:
                return
            self._drop_unacked(session.generation)
            log.warning("disconnected from broker at %s; reconnecting", self.where)
            if len(self.addresses) > 1:
                self._node += 1  # its node may be gone: the next one first
            delay = 1.0 if len(self.addresses) == 1 else 0.5
            while not self._closing:
                try:
                    session = await self._open_any()
                    break
                except BrokerError as e:
                    log.warning("%s; retrying in %.1f s", e, delay)
                    await asyncio.sleep(delay)
                    # one broker: back off; a cluster: another round soon (an election
                    # takes seconds, and every round already tries each node)
                    delay = min(delay * 2, 30.0) if len(self.addresses) == 1 else 0.5

    async def _open_any(self) -> _Session:
        """Each node once, starting with the current one; the last error if none answers."""
        error: BrokerError | None = None
        for _ in self.addresses:
            try:
                return await self._open()
            except BrokerError as e:
                error = e
                if len(self.addresses) > 1:
                    log.warning("%s; trying the next node", e)
                    self._node += 1
        assert error is not None
        raise error

    def _drop_unacked(self, generation: int) -> None:
        """Messages of a lost connection: the broker resends them on the next one."""
        dropped = len(self._topics)
        self._topics.clear()
        self._payloads.clear()
        self._mids.clear()
        self._times.clear()
        self.buffered_bytes = 0
        self.paused = False  # a new connection reads from the start
        if dropped:
            log.info("%d buffered messages of the lost connection will be redelivered", dropped)

    # --- packets (called from data_received; the hot path) ---------------------------------

    def _packets(self, buf: bytearray, session: _Session) -> int:
        """Handle every complete packet in ``buf``; return how many bytes were used."""
        pos, n = 0, len(buf)
        topics, payloads, mids = self._topics, self._payloads, self._mids
        before = len(topics)
        v5 = self.v5
        while n - pos >= 2:
            first = buf[pos]
            length, i, shift = 0, pos + 1, 0
            while True:
                if i >= n:
                    return self._arrived(pos, before)
                byte = buf[i]
                length |= (byte & 0x7F) << shift
                i += 1
                if not byte & 0x80:
                    break
                shift += 7
                if shift > 21:
                    raise ProtocolError("remaining length longer than 4 bytes")
            end = i + length
            if end > n:
                break
            kind = first >> 4
            if kind == PUBLISH:
                qos = (first >> 1) & 3
                if qos == 2:
                    raise ProtocolError("a QoS 2 PUBLISH on a QoS 1 subscription")
                topic_len = buf[i] << 8 | buf[i + 1]
                j = i + 2 + topic_len
                topics.append(buf[i + 2:j].decode("utf-8", "replace"))
                if qos:
                    mids.append(buf[j] << 8 | buf[j + 1])
                    j += 2
                else:
                    mids.append(-1)
                if v5:  # properties: their length is one byte unless ≥ 128 bytes
                    props = buf[j]
                    if props & 0x80:
                        plen, shift = 0, 0
                        while True:
                            byte = buf[j]
                            plen |= (byte & 0x7F) << shift
                            j += 1
                            shift += 7
                            if not byte & 0x80:
                                break
                        j += plen
                    else:
                        j += 1 + props
                payloads.append(bytes(buf[j:end]))
            else:
                self._control(kind, bytes(buf[i:end]), session)
            pos = end
        return self._arrived(pos, before)

    def _arrived(self, used: int, before: int) -> int:
        new = len(self._topics) - before
        if new:
            self.buffered_bytes += sum(map(len, self._payloads[before:]))
            now = time.time()
            self._times.extend([now] * new)
            if len(self._topics) >= self._wake_at and self._wakeup is not None:
                self._wakeup.set()
        return used

    def _control(self, kind: int, body: bytes, session: _Session) -> None:
        if kind == CONNACK:
            if len(body) < 2:
                raise ProtocolError("CONNACK shorter than 2 bytes")
            if body[1] >= 0x80:
                reason = REASONS.get(body[1], f"reason 0x{body[1]:02X}")
                session.connack.set_exception(BrokerError(
                    f"MQTT broker at {self.where} refused the connection: {reason}"))
            elif not session.connack.done():
                session.connack.set_result(bool(body[0] & 0x01))
        elif kind == SUBACK:
            # MQTT 5: packet id, properties, codes; 3.1.1: packet id, codes
            start = (3 + body[2] if len(body) > 2 else len(body)) if self.v5 else 2
            codes = body[start:]
            refused = [t for t, c in zip(self.topics, codes, strict=False) if c >= 0x80]
            if refused or len(codes) != len(self.topics):
                session.suback.set_exception(BrokerError(
                    f"MQTT broker at {self.where} refused the subscription to "
                    f"{', '.join(refused) or self.topics}: "
                    f"{REASONS.get(max(codes, default=0x80), 'refused')}"))
            elif not session.suback.done():
                session.suback.set_result(True)
        elif kind == DISCONNECT:
            reason = REASONS.get(body[0], f"reason 0x{body[0]:02X}") if body else "normal"
            log.warning("broker at %s disconnected us: %s", self.where, reason)
        # PINGRESP, PUBACK/PUBREC/PUBCOMP (we publish nothing): being heard is enough

    # --- asyncio side ----------------------------------------------------------------------

    async def next_batch(self) -> RawBatch:
        """Wait until a batch is full or the oldest message waited ``batch_wait_s``."""
        assert self._wakeup is not None
        await _batch_due(self._wakeup, self.batch_max, self.batch_wait_s, self.pending,
                         self.oldest)
        return self.take()

    def take(self, limit: int | None = None) -> RawBatch:
        """Everything buffered now (up to ``limit``, default batch_max), possibly empty."""
        k = limit or self.batch_max
        topics, payloads = self._topics[:k], self._payloads[:k]
        mids = np.asarray(self._mids[:k], np.int32)
        times = np.asarray(self._times[:k], np.float64)
        del self._topics[:k], self._payloads[:k], self._mids[:k], self._times[:k]
        self.buffered_bytes -= sum(map(len, payloads))
        if self.paused and self.buffered_bytes <= self.max_buffer_bytes // 2:
            self.paused = False
            session = self._session
            if session is not None and session.transport is not None \
                    and not session.transport.is_closing():
                session.transport.resume_reading()
        return RawBatch(topics=topics, payloads=payloads,
                        received_ms=(times * 1000).astype(np.int64),
                        ack_ids=mids[mids >= 0].astype(np.uint16), connection=self._generation)

    def pending(self) -> int:
        return len(self._topics)

    def oldest(self) -> float | None:
        """Arrival time of the oldest buffered message (None: nothing buffered)."""
        return self._times[0] if self._times else None

    @property
    def connected(self) -> bool:
        session = self._session
        return session is not None and session.transport is not None \
            and not session.transport.is_closing() and not session.closed.done()

    def ack(self, batch: RawBatch) -> None:
        """Ack after commit, in one write. A batch from a lost connection is not acked: the
        broker redelivers it on this one, and the store absorbs the duplicates."""
        self.ack_ids(batch.ack_ids, batch.connection)

    def ack_ids(self, ids: np.ndarray, connection: int) -> None:
        session = self._session
        if not len(ids) or session is None or session.transport is None:
            return
        if connection != session.generation or session.transport.is_closing():
            return
        session.transport.write(puback_packets(ids))

    async def stop(self) -> None:
        """Disconnect without acking anything still buffered: the broker keeps it for us."""
        self._closing = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        session = self._session
        if session is not None and session.transport is not None \
                and not session.transport.is_closing():
            session.transport.write(bytes([DISCONNECT << 4, 0]))
            session.transport.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(session.closed), 5)


async def _batch_due(wakeup: asyncio.Event, batch_max: int, wait_s: float,
                     pending: Callable[[], int], oldest: Callable[[], float | None]) -> None:
    """Return once ``batch_max`` messages are buffered or the oldest has waited ``wait_s``
    (the receive side sets ``wakeup`` when a batch fills)."""
    while pending() < batch_max:
        first = oldest()
        timeout = wait_s if first is None else wait_s - (time.time() - first)
        if first is not None and timeout <= 0:
            return
        wakeup.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wakeup.wait(), timeout)


class PartitionedReceiver:
    """One persistent session per topic partition, merged into one stream of batches.

    Why a session per partition and not per worker: the partition, with everything the
    broker queued for it, is what moves between workers. A worker that takes partition k
    over connects as ``{client_id}-p{k}`` and receives what the previous owner left unacked
    and what arrived while nobody listened; the broker hands a session to one connection at
    a time, so two workers never consume the same partition at once (docs/scaling.md).
    Same interface as ``MqttReceiver``; a merged batch acks each message on its own
    session."""

    def __init__(
        self,
        settings: MqttSettings,
        root: str,
        partitions: tuple[int, ...],
        *,
        batch_max: int,
        batch_wait_s: float,
        max_buffer_bytes: int = 256 * 1024 * 1024,
    ) -> None:
        self.settings, self.root = settings, root
        self.max_buffer_bytes = max_buffer_bytes
        self.batch_max = batch_max
        self.batch_wait_s = batch_wait_s
        self.partitions = partitions
        self._wakeup = asyncio.Event()
        self.parts: dict[int, MqttReceiver] = {k: self._session(k) for k in partitions}
        self._rotate = 0
        self.where = f"{settings.host}:{settings.port}"

    def _session(self, k: int) -> MqttReceiver:
        from dataclasses import replace

        return MqttReceiver(
            replace(self.settings, client_id=f"{self.settings.client_id}-p{k}"),
            partition_filters(self.root, k), batch_max=self.batch_max,
            batch_wait_s=self.batch_wait_s, wakeup=self._wakeup,
            wake_at=max(1, self.batch_max // max(len(self.partitions), 1)),
            max_buffer_bytes=self.max_buffer_bytes)

    async def start(self, timeout_s: float = 10.0) -> None:
        await asyncio.gather(*(r.start(timeout_s) for r in self.parts.values()))

    async def add_partitions(self, partitions: list[int], timeout_s: float = 10.0) -> None:
        """Take over more partitions while running: their sessions connect here (the broker
        hands each to its newest connection). All of them or none."""
        sessions = {k: self._session(k) for k in partitions if k not in self.parts}
        started = await asyncio.gather(*(r.start(timeout_s) for r in sessions.values()),
                                       return_exceptions=True)
        failed = [e for e in started if isinstance(e, BaseException)]
        if failed:
            await asyncio.gather(*(r.stop() for r in sessions.values()),
                                 return_exceptions=True)
            raise failed[0] if isinstance(failed[0], BrokerError) else BrokerError(
                f"MQTT broker at {self.where}: {failed[0] or 'no answer in time'}")
        self.parts.update(sessions)
        self.partitions = tuple(sorted(self.parts))

    async def next_batch(self) -> RawBatch:
        await _batch_due(self._wakeup, self.batch_max, self.batch_wait_s, self.pending,
                         self.oldest)
        return self.take()

    def oldest(self) -> float | None:
        times = [t for r in self.parts.values() if (t := r.oldest()) is not None]
        return min(times) if times else None

    def take(self) -> RawBatch:
        """Up to batch_max buffered messages, starting with a different partition each time
        so a backlog in one does not starve the others."""
        order = list(self.parts.items())
        self._rotate = (self._rotate + 1) % len(order)
        taken, room = [], self.batch_max
        for k, r in order[self._rotate:] + order[:self._rotate]:
            if room <= 0:
                break
            if r.pending():
                batch = r.take(room)
                taken.append((k, batch))
                room -= len(batch)
        if not taken:
            return RawBatch([], [], np.zeros(0, np.int64))
        return RawBatch(
            topics=[t for _, b in taken for t in b.topics],
            payloads=[p for _, b in taken for p in b.payloads],
            received_ms=np.concatenate([b.received_ms for _, b in taken]),
            acks=[(k, b.connection, b.ack_ids) for k, b in taken])

    def pending(self) -> int:
        return sum(r.pending() for r in self.parts.values())

    @property
    def connected(self) -> bool:
        return all(r.connected for r in self.parts.values())

    def ack(self, batch: RawBatch) -> None:
        for k, connection, ids in batch.acks:
            self.parts[k].ack_ids(ids, connection)

    async def stop(self) -> None:
        await asyncio.gather(*(r.stop() for r in self.parts.values()))


def partition_filters(root: str, k: int) -> list[str]:
    """What the session of partition k subscribes to. Partition 0 also takes the topics
    without a partition level (terminals not yet provisioned with one): all of them reach
    one worker, so their order holds too. Never ``{root}/+/command``: commands go to the
    terminals, and the gateways subscribe to them (domain.wire.command_topic)."""
    filters = [f"{root}/p/{k}/#"]
    if k == 0:
        filters += [f"{root}/+/{tail}" for tail in UNPARTITIONED]
    return filters


# what a terminal without a partition level publishes (docs/protocol.md)
UNPARTITIONED = ("telemetry", "telemetry/batch", "status", "media", "alarm", "command/state")
