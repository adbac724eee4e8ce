"""``muckwatch run``: the ingest service loop — receive a batch, process it, ack it.

Nothing acknowledged is ever lost: a batch is acked only after the store committed it. When
the database is unavailable the same batch is retried with capped exponential backoff (the
broker keeps holding everything unacked). SIGTERM/SIGINT stop taking new batches, finish and
ack the one in flight, and disconnect; what the broker still holds is redelivered to the next
run of the same persistent session.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from alerts.outbox import AlertRouter
from alerts.worker import DeliveryWorker, WorkerOptions
from domain.city import City, load_city
from domain.config import ConfigError, parse_partition_set
from domain.settings import Settings
from ingest.receiver import BrokerError, MqttReceiver, PartitionedReceiver
from ingest.wire import RawBatch, WireDecoder, subscriptions
from muckwatch.dispatch import CommandDispatcher
from muckwatch.handover import StateHandover
from muckwatch.live_reference import LiveReference
from muckwatch.observability import IngestMetrics, render, serve_http
from muckwatch.pipeline import BatchResult, Pipeline
from muckwatch.stages import GeofenceStage, Sequencer
from rules.engine import RuleEngine
from rules.reference import Reference
from store.database import DatabaseError, Store
from store.media import blob_store

log = logging.getLogger(__name__)
TAKE_OVER_PATIENCE_S = 120.0  # SIGHUP's take-over of partitions keeps trying this long

# with no message for this long the pipeline runs on an empty batch, so the rules' wall clock
# still advances: fixes in the reorder window are released, SIGNAL_LOSS found on a quiet broker
IDLE_TICK_S = 1.0
_IDLE = RawBatch([], [], np.zeros(0, np.int64))


BATCH_MS_BUCKETS = ("1", "2", "5", "10", "20", "50", "100", "200", "500", "1000", "+Inf")


@dataclass
class IngestStats:
    """Running totals, printed as one JSON line when the service stops."""

    batches: int = 0
    messages: int = 0
    fixes: int = 0
    inserted: int = 0
    duplicates: int = 0
    rejected: int = 0
    rejects: dict[str, int] = field(default_factory=dict)
    statuses: int = 0
    events: int = 0
    alerts: int = 0
    media: int = 0  # photos stored (new rows)
    alarms: int = 0  # alarm words of reports without a position (new rows)
    command_states: int = 0  # commands moved forward by their gateway's report
    db_retries: int = 0
    stage_ms_total: dict[str, float] = field(default_factory=dict)
    stage_ms_max: dict[str, float] = field(default_factory=dict)
    # batches by processing time (ms, upper bounds; the last bucket is everything slower)
    batch_ms_buckets: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(BATCH_MS_BUCKETS, 0))
    started_at: float = field(default_factory=time.time)

    def add(self, r: BatchResult) -> None:
        self.batches += 1
        self.messages += r.messages
        self.fixes += r.fixes
        self.inserted += r.inserted
        self.duplicates += r.duplicates
        self.statuses += r.statuses
        self.events += r.events
        self.alerts += r.alerts
        self.media += r.media_inserted
        self.alarms += r.alarms_inserted
        self.command_states += r.command_states_applied
        for reason, n in r.rejects.items():
            self.rejects[reason] = self.rejects.get(reason, 0) + n
            self.rejected += n
        for stage, ms in r.stage_ms.items():
            self.stage_ms_total[stage] = round(self.stage_ms_total.get(stage, 0.0) + ms, 3)
            self.stage_ms_max[stage] = round(max(self.stage_ms_max.get(stage, 0.0), ms), 3)
        total = sum(r.stage_ms.values())
        bucket = next((b for b in BATCH_MS_BUCKETS if b != "+Inf" and total <= float(b)),
                      "+Inf")
        self.batch_ms_buckets[bucket] += 1

    def as_json(self) -> str:
        data = asdict(self)
        data["seconds"] = round(time.time() - data.pop("started_at"), 3)
        return json.dumps(data, sort_keys=True)


def build_pipeline(settings: Settings, city: City) -> Pipeline:
    """The composition root: every stage, configured, in order."""
    rules = RuleEngine(Reference.from_city(city), settings.rules)
    store = Store(settings.database.dsn, settings.database.connect_timeout_s,
                  evidence_s=settings.rules.evidence_s,
                  evidence_max_fixes=settings.rules.evidence_max_fixes)
    return Pipeline(
        decoder=WireDecoder(
            root=settings.mqtt.topic_root,
            max_payload_bytes=settings.ingest.max_payload_bytes,
            max_future_ms=settings.ingest.max_future_s * 1000,
            max_media_bytes=settings.media.max_bytes,
        ),
        sequencer=Sequencer(),
        geofence=GeofenceStage.for_city(city),
        rules=rules,
        store=store,
        alerts=AlertRouter(evidence_url=settings.alerts.evidence_url),
        # rule state saved for, and restored from, the worker that consumes a vehicle next
        handover=StateHandover(
            rules, store, owner=worker_name(settings), snapshot_s=settings.ingest.snapshot_s,
            # a shared subscription moves vehicles without telling us: re-read the state of
            # one that was away longer than a batch or two takes
            reclaim_after_s=settings.ingest.reclaim_after_s if settings.mqtt.share_group
            else 0.0),
        # photos' bytes: [media] dir, or the S3 bucket when one is set
        blobs=blob_store(settings.media),
    )


def worker_name(settings: Settings) -> str:
    """Who wrote a snapshot, for operators: workers that share partitions share the client
    id prefix, so the host and process tell them apart."""
    return f"{settings.mqtt.client_id}@{socket.gethostname()}:{os.getpid()}"


def build_receiver(settings: Settings) -> MqttReceiver | PartitionedReceiver:
    """The broker side, by how the deployment spreads vehicles over workers
    (docs/scaling.md): topic partitions, an EMQX shared subscription, or one worker."""
    mqtt, ingest = settings.mqtt, settings.ingest  # validated by domain.config.validate
    wait_s = ingest.batch_wait_ms / 1000
    if mqtt.partitions:
        chosen = parse_partition_set(ingest.partitions, mqtt.partitions)
        return PartitionedReceiver(mqtt, mqtt.topic_root, chosen, batch_max=ingest.batch_max,
                                   batch_wait_s=wait_s,
                                   max_buffer_bytes=ingest.max_buffer_bytes)
    topics = subscriptions(mqtt.topic_root)
    if mqtt.share_group:
        topics = [f"$share/{mqtt.share_group}/{t}" for t in topics]
    return MqttReceiver(mqtt, topics, batch_max=ingest.batch_max, batch_wait_s=wait_s,
                        max_buffer_bytes=ingest.max_buffer_bytes)


class IngestService:
    def __init__(self, settings: Settings, city: City,
                 reload_settings: Callable[[], Settings] | None = None) -> None:
        """``reload_settings``: how SIGHUP re-reads the configuration (for partitions to
        take over); None: SIGHUP reloads the city bundle only."""
        self.settings = settings
        self._reload_settings = reload_settings
        self.city_dir = city.directory
        self.receiver = build_receiver(settings)
        self.pipeline = build_pipeline(settings, city)
        # the one place this process's database connections come from (the batch writer's,
        # and short sessions for subscriptions and health)
        self.database = self.pipeline.store.store
        self.stats = IngestStats()
        self.metrics = IngestMetrics()
        self._stop = asyncio.Event()
        self._reload: asyncio.Task | None = None
        # permits, suspensions and vehicles changed in the database apply while running
        self.live = LiveReference(settings.database.dsn, city)
        self.worker = DeliveryWorker(settings.database.dsn,
                                     WorkerOptions.from_settings(settings.alerts)) \
            if settings.alerts.worker else None
        # commands to terminals, rules' actions, timeouts and evidence seals
        self.dispatcher = CommandDispatcher(settings) if settings.terminal.dispatcher \
            else None

    def request_stop(self) -> None:
        self._stop.set()

    def request_reload(self) -> None:
        """SIGHUP: re-read the city bundle and swap in a new fence index and permits without
        stopping; with topic partitions, also take over the partitions added to
        ``[ingest] partitions`` in the config file.

        The index is built on a worker thread; batches keep using the old one until the new
        one is complete, then the next batch picks up the new one. A bundle with errors is
        refused and the old fences stay in force."""
        if self._reload is not None and not self._reload.done():
            log.info("reload already in progress")
            return

        async def reload() -> None:
            await self._take_over_partitions()
            await self._reload_fences()
        self._reload = asyncio.ensure_future(reload())

    async def _take_over_partitions(self) -> None:
        """Partitions added in the config file are consumed from now on: their sessions
        (with what the broker queued and the previous owner never acked) connect here, and
        their vehicles are claimed with their saved rule state as their fixes arrive
        (docs/scaling.md). Giving partitions up takes a restart: the vehicles' state must be
        saved before the next owner reads it."""
        receiver = self.receiver
        if self._reload_settings is None or not isinstance(receiver, PartitionedReceiver):
            return
        try:
            settings = self._reload_settings()
            if settings.mqtt.partitions != self.settings.mqtt.partitions:
                raise ConfigError(f"[mqtt] partitions changed from {self.settings.mqtt.partitions}"
                                  f" to {settings.mqtt.partitions}: that re-maps most vehicles;"
                                  " restart every worker and every publisher with it")
            wanted = parse_partition_set(settings.ingest.partitions, settings.mqtt.partitions)
        except ConfigError as e:  # PartitionSpecError included
            log.error("partitions not changed: %s", e)
            return
        dropped = sorted(set(receiver.partitions) - set(wanted))
        if dropped:
            log.error("partitions %s are no longer in [ingest] partitions: giving partitions "
                      "up needs a restart (SIGTERM saves their vehicles' state); still "
                      "consuming them", ",".join(map(str, dropped)))
        added = sorted(set(wanted) - set(receiver.partitions))
        if not added:
            return
        # a clustered broker that just lost a node may refuse sessions until it has elected
        # new leaders for them: keep trying for a while rather than leave them unconsumed
        names = ",".join(map(str, added))
        deadline, delay = time.monotonic() + TAKE_OVER_PATIENCE_S, 1.0
        while True:
            try:
                await receiver.add_partitions(added)
                break
            except BrokerError as e:
                if time.monotonic() > deadline or self._stop.is_set():
                    log.error("partitions %s not taken over: %s", names, e)
                    return
                log.warning("partitions %s not taken over yet: %s; trying again in %.0f s",
                            names, e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        log.info("took over topic partitions %s; now consuming %s", ",".join(map(str, added)),
                 ",".join(map(str, receiver.partitions)))

    async def _reload_fences(self) -> None:
        t0 = time.perf_counter()
        try:
            city = await asyncio.to_thread(load_city, self.city_dir)
            stage = await asyncio.to_thread(GeofenceStage.for_city, city)
            # with the database's permits already merged: the engine never runs on the
            # bundle's alone (other permits, other indexes) until the next read
            reference = await asyncio.to_thread(
                lambda: Reference.from_city(self.live.over(city)))
        except Exception as e:  # keep serving with the fences we have
            log.error("fence reload from %s refused, keeping the current fences: %s",
                      self.city_dir, e)
            return
        self.pipeline.geofence.swap_from(stage)
        self.pipeline.rules.engine.swap_reference(reference)
        self.live.rebase(city)  # the database's permits over the new bundle, next
        await self._load_subscriptions()
        log.info("reloaded fences: %d fences from %s in %.2f s", len(city.fences),
                 self.city_dir, time.perf_counter() - t0)

    async def _load_subscriptions(self) -> None:
        """Alert subscriptions from the table (the config file's are synced there first, at
        start). A database hiccup keeps the current ones."""
        import psycopg

        from alerts.subscriptions import SubscriptionError, load_from_db_async

        router = self.pipeline.alerts.router
        try:
            async with self.database.session() as conn:
                subs = await load_from_db_async(conn)
        except (DatabaseError, psycopg.Error, SubscriptionError) as e:
            log.warning("alert subscriptions not reloaded, keeping %d: %s",
                        len(router.subscriptions), e)
            return
        router.subscriptions = subs

    async def _reload_subscriptions_periodically(self) -> None:
        """Subscriptions added or changed in the table apply within ``reload_s``, whether
        or not telemetry is flowing."""
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.settings.alerts.reload_s)
            if not self._stop.is_set():
                await self._load_subscriptions()

    async def _sync_config_subscriptions(self) -> None:
        if not self.settings.alerts.subscriptions:
            return
        from alerts.commands import sync_config

        def sync() -> list[str]:
            with self.database.sync_session() as conn:
                return sync_config(conn, self.settings.alerts.subscriptions)
        ids = await asyncio.to_thread(sync)
        log.info("alert subscriptions from the config file: %s", ", ".join(ids))

    async def run(self, install_signal_handlers: bool = True) -> IngestStats:
        loop = asyncio.get_running_loop()
        if install_signal_handlers:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.request_stop)
            loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        await self._sync_config_subscriptions()
        await self._load_subscriptions()
        worker_task = asyncio.ensure_future(self.worker.run(self._stop)) \
            if self.worker is not None else None
        reloader = asyncio.ensure_future(self._reload_subscriptions_periodically())
        dispatcher_task = asyncio.ensure_future(self.dispatcher.run(self._stop)) \
            if self.dispatcher is not None else None
        live = asyncio.ensure_future(self.live.run(self._stop))
        if not await self.live.first_load(timeout_s=10.0):
            log.warning("permits from the database not loaded yet: judging by the city "
                        "bundle's until they are")
        await self.receiver.start()
        http = await self._serve_observability()
        mqtt = self.settings.mqtt
        spread = (f", topic partitions {','.join(map(str, self.receiver.partitions))} of "
                  f"{mqtt.partitions}" if isinstance(self.receiver, PartitionedReceiver)
                  else f", shared subscription group {mqtt.share_group}" if mqtt.share_group
                  else "")
        log.info("ingest running: batch_max=%d wait=%dms, %d alert subscription(s)%s%s",
                 self.settings.ingest.batch_max, self.settings.ingest.batch_wait_ms,
                 len(self.pipeline.alerts.router.subscriptions),
                 ", delivery worker on" if worker_task else "", spread)
        try:
            next_batch = None
            while not self._stop.is_set():
                next_batch = next_batch or asyncio.ensure_future(self.receiver.next_batch())
                stop_wait = asyncio.ensure_future(self._stop.wait())
                done, _ = await asyncio.wait({next_batch, stop_wait}, timeout=IDLE_TICK_S,
                                             return_when=asyncio.FIRST_COMPLETED)
                stop_wait.cancel()
                if stop_wait in done:
                    next_batch.cancel()
                    break
                if next_batch not in done:
                    # no traffic for a while: the rules' clock still runs — fixes waiting
                    # out the reorder window are released, silent terminals found
                    await self._process_until_committed(_IDLE)
                    continue
                batch, next_batch = next_batch.result(), None
                if len(batch):
                    await self._process_until_committed(batch)
            # drain: whatever is already buffered is processed and acked before leaving
            while not self._stop_hard and (batch := self.receiver.take()) and len(batch):
                await self._process_until_committed(batch)
            if not self._stop_hard:
                # the state as it stands, for whoever consumes these vehicles next …
                # the state as it stands, for whoever consumes these vehicles next, then the
                # fixes still inside the reorder window (the next owner re-evaluates them from
                # telemetry and reaches the same violation ids) — through the same stages
                saved, events, alerts = await self.pipeline.shutdown()
                log.info("rule state of %d vehicles saved for the next owner", saved)
                self.stats.events += events
                self.stats.alerts += alerts
        finally:
            self._stop.set()
            reloader.cancel()
            live.cancel()
            if http is not None:
                http.close()
            await self.receiver.stop()
            await self.pipeline.store.close()
            if worker_task is not None:
                await worker_task
            if dispatcher_task is not None:
                await dispatcher_task
        return self.stats

    _stop_hard = False

    async def _serve_observability(self):
        """/metrics and /healthz on [observability] listen; a port that cannot be bound is
        logged and skipped — telemetry matters more than its metrics."""
        listen = self.settings.observability.listen
        if not listen:
            return None
        try:
            server = await serve_http(listen, {"/metrics": self._metrics,
                                               "/healthz": self._health})
        except (OSError, ValueError) as e:
            log.error("metrics and health endpoint not started: cannot listen on %s: %s",
                      listen, e)
            return None
        host, port = server.sockets[0].getsockname()[:2]
        log.info("metrics on http://%s:%d/metrics, health on /healthz", host, port)
        return server

    async def _metrics(self) -> tuple[int, str, str]:
        return 200, "text/plain; version=0.0.4", render(
            self.stats, self.metrics, backlog=self.receiver.pending(),
            connected=self.receiver.connected,
            delivery=self.worker.metrics if self.worker is not None else None,
            handover=self.pipeline.handover.handover,
            dispatch=self.dispatcher.metrics if self.dispatcher is not None else None)

    async def _health(self) -> tuple[int, str, str]:
        """200 when the broker session is up and the database answers within 2 s."""
        broker = "ok" if self.receiver.connected else "disconnected (reconnecting)"
        try:
            await self.database.ping(timeout_s=2.0)
            database = "ok"
        except DatabaseError as e:
            database = f"unavailable: {e}"
        ok = broker == "ok" and database == "ok"
        body = json.dumps({"status": "ok" if ok else "degraded", "broker": broker,
                           "database": database, "backlog": self.receiver.pending()})
        return (200 if ok else 503), "application/json", body + "\n"

    async def _process_until_committed(self, batch) -> None:
        newer = self.live.take()  # between batches: one batch, one reference
        if newer is not None:
            self.pipeline.rules.engine.swap_reference(newer)
        delay = 0.5
        while True:
            try:
                result = await self.pipeline.process(batch)
            except DatabaseError as e:
                self.stats.db_retries += 1
                if self._stop.is_set():
                    # stopping with the database down: leave the batch unacked for redelivery
                    log.error("%s; stopping without ack, the broker keeps the batch", e)
                    self._stop_hard = True
                    return
                log.warning("%s; retrying in %.1f s", e, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
                delay = min(delay * 2, self.settings.ingest.retry_backoff_max_s)
                continue
            if batch is _IDLE and not result.events:
                return  # an idle tick that found nothing: not a batch worth counting
            self.receiver.ack(batch)
            self.stats.add(result)
            self.metrics.observe_batch(result.messages, result.stage_ms, result.violation_events)
            if result.alerts and self.worker is not None:
                self.worker.wake()
            return
