"""The delivery worker: claims due outbox rows, POSTs them signed, records the outcome.

* **Claim with a lease**: one statement picks a subscription's due rows ``FOR UPDATE SKIP
  LOCKED``, counts the attempt and pushes ``due_at`` a lease ahead. Several workers never
  claim the same row; a worker that dies mid-flight leaves rows that fall due again when the
  lease ends — redelivered with the same ``webhook-id``, which receivers dedupe on. No HTTP
  call ever runs inside a database transaction.
* **Outcome**: 2xx → delivered. 410 Gone → the subscription is disabled (its receiver said
  so). Anything else (other status, timeout, refused connection) → retried after the next
  delay of the schedule (± jitter), or after ``Retry-After`` if the receiver sent one; after
  the last attempt the row is ``dead`` (a dead letter operators can replay).
* **Isolation**: at most ``max_in_flight`` deliveries per subscription; each subscription is
  claimed separately, so one slow or dead receiver holds only its own slots, never the
  others' — and never the ingest, which only inserts rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import random
import time
from dataclasses import dataclass, field

import httpx
import orjson
import psycopg

from alerts.signing import headers as signed_headers
from alerts.subscriptions import Subscription, load_from_db_async
from domain.config import parse_schedule

log = logging.getLogger(__name__)

_CLAIM = """
WITH due AS (
    SELECT id FROM alert_outbox
    WHERE subscription_id = %(subscription)s AND state = 'pending' AND due_at <= now()
      AND EXISTS (SELECT 1 FROM alert_subscriptions s
                  WHERE s.id = %(subscription)s AND s.enabled)
    ORDER BY due_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED)
UPDATE alert_outbox o
SET attempts = o.attempts + 1, last_attempt_at = now(),
    due_at = now() + %(lease)s * interval '1 second'
FROM due WHERE o.id = due.id
RETURNING o.id, o.webhook_id, o.payload, o.attempts
"""
_DELIVERED = """
UPDATE alert_outbox SET state = 'delivered', delivered_at = now(), last_status = %(status)s,
    last_error = NULL
WHERE id = %(id)s AND state = 'pending'
"""
_RETRY = """
UPDATE alert_outbox SET state = %(state)s, last_status = %(status)s, last_error = %(error)s,
    due_at = now() + %(delay)s * interval '1 second'
WHERE id = %(id)s AND state = 'pending'
"""
_GONE = """
UPDATE alert_subscriptions SET enabled = false, updated_at = now(),
    disabled_reason = %(reason)s
WHERE id = %(id)s
"""


def retry_after_s(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), capped at a day."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), 86_400.0)
    with contextlib.suppress(TypeError, ValueError):
        when = email.utils.parsedate_to_datetime(value).timestamp()
        return min(max(0.0, when - (time.time() if now is None else now)), 86_400.0)
    return None


@dataclass
class DeliveryMetrics:
    attempts: int = 0
    delivered: int = 0
    failed: int = 0  # attempts that did not succeed (retried or dead)
    dead: int = 0
    disabled: list[str] = field(default_factory=list)


@dataclass
class WorkerOptions:
    schedule: tuple[float, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
    jitter: float = 0.1
    timeout_s: float = 15.0
    max_in_flight: int = 4
    poll_s: float = 1.0
    lease_s: float = 60.0

    @classmethod
    def from_settings(cls, s) -> WorkerOptions:
        return cls(parse_schedule(s.retry_schedule_s), s.jitter, s.timeout_s,
                   s.max_in_flight, s.poll_s, s.lease_s)


LISTEN_ALERTS = "LISTEN muckwatch_alerts"  # the store NOTIFYs this channel (NOTIFY_ALERTS)


class DeliveryWorker:
    def __init__(self, dsn: str, options: WorkerOptions | None = None) -> None:
        self.dsn = dsn
        self.options = options or WorkerOptions()
        self.metrics = DeliveryMetrics()
        self._in_flight: dict[str, int] = {}
        self._tasks: set[asyncio.Task] = set()
        self._wake = asyncio.Event()
        self._conn: psycopg.AsyncConnection | None = None

    def wake(self) -> None:
        """New alerts are committed: look now rather than at the next poll (the ingest calls
        this in-process; workers in other processes hear the store's NOTIFY)."""
        self._wake.set()

    async def _listen(self, stop: asyncio.Event) -> None:
        """LISTEN for the store's NOTIFY so a worker in another process starts a delivery
        within milliseconds of the commit; polling every ``poll_s`` stays as the fallback."""
        while not stop.is_set():
            try:
                async with await psycopg.AsyncConnection.connect(
                        self.dsn, autocommit=True,
                        application_name="muckwatch-alerts-listen") as conn:
                    await conn.execute(LISTEN_ALERTS)
                    self._wake.set()  # anything committed before we listened
                    async for _ in conn.notifies():
                        self._wake.set()
            except psycopg.OperationalError:
                pass  # the poll covers the gap; try again shortly
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.options.poll_s)

    async def run(self, stop: asyncio.Event) -> DeliveryMetrics:
        """Deliver until ``stop`` is set; then let in-flight deliveries finish (bounded by
        the timeout: anything cut off is redelivered after its lease)."""
        listener = asyncio.ensure_future(self._listen(stop))
        try:
            return await self._run(stop)
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    async def _run(self, stop: asyncio.Event) -> DeliveryMetrics:
        o = self.options
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=50)
        async with httpx.AsyncClient(timeout=o.timeout_s, limits=limits,
                                     follow_redirects=False) as client:
            conn: psycopg.AsyncConnection | None = None
            while not stop.is_set():
                try:
                    if conn is None or conn.closed:
                        conn = await psycopg.AsyncConnection.connect(
                            self.dsn, autocommit=True, application_name="muckwatch-alerts")
                    self._conn = conn
                    await self._claim_round(conn, client)
                except psycopg.OperationalError as e:
                    log.warning("alerts: database unavailable (%s); retrying",
                                str(e).strip().splitlines()[-1] if str(e).strip() else e)
                    if conn is not None:
                        await conn.close()
                    conn = None
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(_first(stop.wait(), self._wake.wait()), o.poll_s)
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=o.timeout_s + 1)
            if conn is not None:
                await conn.close()
        return self.metrics

    async def _claim_round(self, conn, client) -> None:
        for sub in await load_from_db_async(conn):
            if not sub.enabled:
                continue
            free = self.options.max_in_flight - self._in_flight.get(sub.id, 0)
            if free <= 0:
                continue
            cur = await conn.execute(_CLAIM, {"subscription": sub.id, "limit": free,
                                              "lease": self.options.lease_s})
            for row_id, webhook_id, payload, attempts in await cur.fetchall():
                self._in_flight[sub.id] = self._in_flight.get(sub.id, 0) + 1
                task = asyncio.ensure_future(
                    self._deliver(client, sub, row_id, webhook_id, payload, attempts))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _deliver(self, client: httpx.AsyncClient, sub: Subscription, row_id: int,
                       webhook_id: str, payload: dict, attempts: int) -> None:
        body = orjson.dumps(payload)
        status: int | None = None
        error: str | None = None
        retry_after = None
        try:
            response = await client.post(sub.url, content=body,
                                         headers=signed_headers(sub.secret, webhook_id, body))
            status = response.status_code
            retry_after = retry_after_s(response.headers.get("retry-after"))
            if not 200 <= status < 300:
                error = f"HTTP {status}"
        except httpx.TimeoutException:
            error = f"timeout after {self.options.timeout_s:g} s"
        except httpx.HTTPError as e:
            error = f"{type(e).__name__}: {e}"
        self.metrics.attempts += 1
        try:
            conn = self._conn
            if conn is None or conn.closed:
                raise psycopg.OperationalError("no database connection")
            # one connection shared by all tasks: psycopg serialises its use
            await self._record(conn, sub, row_id, webhook_id, attempts, status, error,
                               retry_after)
        except psycopg.OperationalError as e:
            # the lease brings the row back; the receiver dedupes the repeat by webhook-id
            log.warning("alerts: could not record the outcome of %s: %s", webhook_id, e)
        finally:
            self._in_flight[sub.id] -= 1
            self._wake.set()

    async def _record(self, conn, sub: Subscription, row_id: int, webhook_id: str,
                      attempts: int, status: int | None, error: str | None,
                      retry_after: float | None) -> None:
        if error is None:
            await conn.execute(_DELIVERED, {"id": row_id, "status": status})
            self.metrics.delivered += 1
            return
        self.metrics.failed += 1
        if status == 410:
            reason = f"receiver answered 410 Gone for {webhook_id}"
            await conn.execute(_RETRY, {"id": row_id, "state": "failed", "status": status,
                                        "error": error, "delay": 0})
            await conn.execute(_GONE, {"id": sub.id, "reason": reason})
            self.metrics.disabled.append(sub.id)
            log.warning("alerts: subscription %s disabled: %s", sub.id, reason)
            return
        schedule = self.options.schedule
        if attempts >= len(schedule):
            state, delay = "dead", 0.0
            self.metrics.dead += 1
            log.warning("alerts: %s to %s dead after %d attempts (%s)", webhook_id, sub.id,
                        attempts, error)
        else:
            state = "pending"
            delay = schedule[attempts] * random.uniform(1 - self.options.jitter,
                                                        1 + self.options.jitter)
            if retry_after is not None:
                delay = retry_after
        await conn.execute(_RETRY, {"id": row_id, "state": state, "status": status,
                                    "error": error[:500], "delay": delay})


async def _first(*aws) -> None:
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
