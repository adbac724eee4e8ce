"""The command dispatcher, inside ``muckwatch run``: queued commands to the broker, rules'
actions when a violation opens, timeouts, and the seals of finished evidence.

Each tick (``[terminal] poll_s``, or at once when the API queues a command and NOTIFYs):

1. **Actions**: every ``[[terminal.on_violation]]`` rule whose violations opened lately gets
   its text (0x8300) and photo (0x8801) commands queued — once per violation and kind,
   however many workers run a dispatcher (a unique index decides).
2. **Publish**: queued commands are claimed (``FOR UPDATE SKIP LOCKED``), published with QoS
   1 to ``{root}/{device}/command`` — every gateway subscribes, the one holding the terminal
   sends it — and marked ``published`` in the same transaction, committed only after the
   broker acknowledged: a broker that is down leaves them queued, never lost.
3. **Timeouts**: commands nobody answered in time end ``timeout``, saying what is known.
4. **Seals**: ended violations whose evidence window is complete get their evidence bundle
   sealed (store/evidence.py), so a change after the fact shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from dataclasses import dataclass

import psycopg

from domain.config import ConfigError
from domain.settings import Settings
from domain.wire import command_message, command_topic
from gateway.mqtt import AsyncPublisher, BrokerUnavailable
from store import commands, evidence, media

log = logging.getLogger(__name__)

CLAIM_LIMIT = 500  # commands per publish round; the rest go next tick
SEAL_EVERY_S = 30.0
SEAL_LIMIT = 200


@dataclass
class DispatchMetrics:
    published: int = 0
    actions: int = 0
    expired: int = 0
    sealed: int = 0
    broker_failures: int = 0
    database_failures: int = 0


def load_actions(settings: Settings) -> list[commands.ViolationAction]:
    """``[[terminal.on_violation]]`` checked at start: a bad table stops the worker with its
    text rather than never sending anything."""
    try:
        return [commands.ViolationAction.from_config(t, f"[[terminal.on_violation]] #{n}")
                for n, t in enumerate(settings.terminal.on_violation, 1)]
    except commands.CommandError as e:
        raise ConfigError(str(e)) from None


class CommandDispatcher:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.actions = load_actions(settings)
        self.metrics = DispatchMetrics()
        m = settings.mqtt
        # its own MQTT connection, never the ingest's sessions; unique per process
        client_id = f"{m.client_id}-commands-{socket.gethostname()}-{os.getpid()}"[:64]
        self.publisher = AsyncPublisher(m.host, m.port, client_id, m.username, m.password,
                                        m.keepalive_s, nodes=m.addresses())
        self._wake = asyncio.Event()
        self._last_seal = 0.0
        self._conn: psycopg.AsyncConnection | None = None  # kept between ticks

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        poll_s = self.settings.terminal.poll_s
        listener = asyncio.ensure_future(self._listen(stop))
        connected = False
        try:
            while not stop.is_set():
                if not connected:
                    try:
                        await self.publisher.connect()
                        connected = True
                    except BrokerUnavailable as e:
                        self.metrics.broker_failures += 1
                        log.warning("command dispatcher: %s; trying again", e)
                try:
                    await self.tick(publish=connected)
                except (psycopg.Error, OSError) as e:
                    self.metrics.database_failures += 1
                    log.warning("command dispatcher: database: %s", e)
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(_first(stop.wait(), self._wake.wait()), poll_s)
        finally:
            listener.cancel()
            with contextlib.suppress(Exception):
                await self.publisher.close()
            if self._conn is not None:
                with contextlib.suppress(psycopg.Error, OSError):
                    await self._conn.close()

    async def tick(self, *, publish: bool = True) -> None:
        """One round: actions, publish, timeouts, seals (each committed on its own)."""
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            conn = self._conn = await psycopg.AsyncConnection.connect(
                self.settings.database.dsn, autocommit=False,
                connect_timeout=self.settings.database.connect_timeout_s)
        try:
            await self._round(conn, publish)
        except BaseException:
            with contextlib.suppress(psycopg.Error, OSError):
                await conn.rollback()
            raise

    async def _round(self, conn: psycopg.AsyncConnection, publish: bool) -> None:
        t = self.settings.terminal
        if self.actions:
            made = await commands.queue_actions(conn, self.actions, t.command_timeout_s)
            await conn.commit()
            self.metrics.actions += made
        if publish:
            await self._publish(conn)
        expired = await commands.expire(conn)
        await conn.commit()
        self.metrics.expired += expired
        now = time.monotonic()
        if now - self._last_seal >= SEAL_EVERY_S:
            self._last_seal = now
            sealed = await evidence.seal_due(
                conn, evidence.due_age_s(self.settings.rules.evidence_s), SEAL_LIMIT,
                evidence_s=self.settings.rules.evidence_s,
                blobs=media.blob_store(self.settings.media))
            await conn.commit()
            self.metrics.sealed += sealed

    async def _publish(self, conn: psycopg.AsyncConnection) -> None:
        root = self.settings.mqtt.topic_root
        while True:
            claimed = await commands.claim(conn, CLAIM_LIMIT)
            if not claimed:
                await conn.commit()
                return
            messages = [(command_topic(root, c.device_id),
                         command_message(c.id, c.kind, c.args, deadline_ms=c.deadline_ms))
                        for c in claimed]
            try:
                await self.publisher.publish_all(messages, 10.0)
            except BrokerUnavailable as e:
                await conn.rollback()  # still queued: published next tick
                self.metrics.broker_failures += 1
                log.warning("command dispatcher: %d command(s) not published: %s",
                            len(claimed), e)
                return
            await commands.mark_published(conn, [c.id for c in claimed])
            await conn.commit()
            self.metrics.published += len(claimed)
            if len(claimed) < CLAIM_LIMIT:
                return

    async def _listen(self, stop: asyncio.Event) -> None:
        """Wake on the API's NOTIFY so a command goes out at once, not at the next poll."""
        dsn = self.settings.database.dsn
        while not stop.is_set():
            try:
                async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
                    await commands.listen(conn)
                    async for _ in conn.notifies():
                        self._wake.set()
            except (psycopg.Error, OSError):
                await asyncio.sleep(self.settings.terminal.poll_s)


async def _first(*waits) -> None:
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


__all__ = ["CommandDispatcher", "DispatchMetrics", "load_actions"]
