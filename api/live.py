"""The live map's data: every truck's newest position, pushed to browsers as it is stored.

Why one hub per API process: 20,000 trucks at 1 Hz is 20,000 changed rows a second. Each
browser polling the database for them would multiply that read by the number of screens;
instead one task LISTENs for ``muckwatch_live`` (sent by the ingest at the commit of each
batch, store/live.py), reads what changed at most every ``min_interval_s``, keeps the whole
picture in memory and fans the changes out to every subscriber's queue (a company's only
its own vehicles). A new subscriber starts from the in-memory picture, not a query. A slow
subscriber whose queue is full is not waited for: its backlog is dropped and it gets a fresh
snapshot, so one stalled tab never holds back the others or grows memory.

Server-sent events rather than WebSockets: the flow is one-way, it is plain HTTP (proxies,
auth header, gzip), and a browser reads it with fetch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated

import orjson
import psycopg
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse

from api.auth import Principal, need
from store import live
from store.review import NotFound

log = logging.getLogger("muckwatch.api.live")
router = APIRouter(tags=["live map"])

KEEPALIVE_S = 15.0
MAX_TRACK = timedelta(hours=24)


def _ms() -> int:
    return time.time_ns() // 1_000_000


def event(name: str, data: dict) -> bytes:
    """One server-sent event (data is one JSON line)."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


@dataclass(eq=False)  # kept in a set by identity
class Subscriber:
    company: str | None  # None: every vehicle
    queue: asyncio.Queue[bytes] = field(default_factory=lambda: asyncio.Queue(maxsize=16))

    def offer(self, item: bytes, resync: bytes) -> None:
        """Queue ``item``; when the queue is full, replace the backlog by ``resync``."""
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(resync)


class LiveHub:
    """Reads changed positions, open violations and offline terminals, and fans them out."""

    def __init__(self, dsn: str, *, min_interval_s: float = 0.25, tick_s: float = 2.0) -> None:
        self.dsn = dsn
        self.min_interval_s = min_interval_s  # coalesce bursts of notifications
        self.tick_s = tick_s  # read anyway this often (offline / violations without fixes)
        self.rows: dict[str, tuple] = {}
        self.violating: dict[str, list[str]] = {}
        self.offline: list[str] = []
        self._subscribers: set[Subscriber] = set()
        self._task: asyncio.Task | None = None
        self._ready = asyncio.Event()
        self.reads = 0

    # --- subscribers -------------------------------------------------------------------

    async def subscribe(self, company: str | None) -> Subscriber:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="live-hub")
        await asyncio.wait_for(self._ready.wait(), 30.0)
        sub = Subscriber(company)
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subscribers.discard(sub)

    def snapshot(self, company: str | None) -> dict:
        rows = [r for r in self.rows.values() if company is None or r[2] == company]
        devices = {r[0] for r in rows}
        return {"columns": live.COLUMNS, "rows": rows, "now": _ms(),
                "violating": {d: v for d, v in self.violating.items()
                              if company is None or d in devices},
                "offline": [d for d in self.offline if company is None or d in devices]}

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    # --- the reader ----------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                await self._listen_and_read()
            except asyncio.CancelledError:
                raise
            except (psycopg.Error, OSError) as e:
                log.warning("live map: database unavailable (%s); retrying in 2 s",
                            str(e).strip().splitlines()[-1] if str(e).strip() else e)
                await asyncio.sleep(2.0)

    async def _listen_and_read(self) -> None:
        async with await psycopg.AsyncConnection.connect(
                self.dsn, autocommit=True, application_name="muckwatch-api-live") as listen, \
                await psycopg.AsyncConnection.connect(
                    self.dsn, autocommit=True, application_name="muckwatch-api-live") as read:
            await live.listen(listen)
            horizon: str | None = None  # None: read everything (a fresh start)
            while True:
                started = time.monotonic()
                changes = await live.read_changes(read, horizon)
                horizon = changes.horizon
                violating = await live.read_violating_async(read)
                offline = await live.read_offline_async(read)
                self.reads += 1
                self._publish(changes.rows, violating, offline)
                self._ready.set()
                # wait for the next batch's notification (or the tick), then let a burst of
                # them gather for min_interval_s
                async for _ in listen.notifies(timeout=self.tick_s, stop_after=1):
                    pass
                rest = self.min_interval_s - (time.monotonic() - started)
                if rest > 0:
                    await asyncio.sleep(rest)

    def _publish(self, rows: list[tuple], violating: dict[str, list[str]],
                 offline: list[str]) -> None:
        changed = [r for r in rows if self.rows.get(r[0]) != r]
        for r in changed:
            self.rows[r[0]] = r
        violating_changed = violating != self.violating
        offline_changed = offline != self.offline
        self.violating, self.offline = violating, offline
        if not self._subscribers or not (changed or violating_changed or offline_changed):
            return
        now = _ms()
        encoded: dict[str | None, list[bytes]] = {}
        for sub in list(self._subscribers):
            if sub.company not in encoded:
                encoded[sub.company] = self._events(sub.company, changed, violating_changed,
                                                    offline_changed, now)
            resync = event("snapshot", self.snapshot(sub.company))
            for item in encoded[sub.company]:
                sub.offer(item, resync)

    def _events(self, company: str | None, changed: list[tuple], violating_changed: bool,
                offline_changed: bool, now: int) -> list[bytes]:
        mine = changed if company is None else [r for r in changed if r[2] == company]
        devices = None if company is None else {r[0] for r in self.rows.values()
                                                if r[2] == company}
        out = []
        if mine:
            out.append(event("positions", {"rows": mine, "now": now}))
        if violating_changed:
            out.append(event("violating", {"violating": {
                d: v for d, v in self.violating.items() if devices is None or d in devices}}))
        if offline_changed:
            out.append(event("offline", {"offline": [
                d for d in self.offline if devices is None or d in devices]}))
        return out


def hub(request: Request) -> LiveHub:
    return request.app.state.live_hub


def _company(who: Principal) -> str | None:
    return who.company if who.role == "company" else None


@router.get("/v1/live/positions", summary="Every truck's newest position now (the live map)")
def positions(request: Request, who: Principal = Depends(need("live.read"))) -> Response:
    with request.app.state.db.transaction() as conn:
        company = _company(who)
        snap = live.read_snapshot(conn, company)
        violating = live.read_violating(conn)
        offline = live.read_offline(conn)
    devices = {r[0] for r in snap.rows}
    body = {"columns": live.COLUMNS, "rows": snap.rows, "now": _ms(),
            "violating": {d: v for d, v in violating.items() if company is None or d in devices},
            "offline": [d for d in offline if company is None or d in devices]}
    return Response(orjson.dumps(body), media_type="application/json")


@router.get("/v1/live/stream", summary="Server-sent events: a snapshot, then every change",
            response_class=StreamingResponse)
async def stream(request: Request, who: Principal = Depends(need("live.read"))
                 ) -> StreamingResponse:
    live_hub = hub(request)
    company = _company(who)
    sub = await live_hub.subscribe(company)

    async def events() -> AsyncIterator[bytes]:
        try:
            yield event("snapshot", live_hub.snapshot(company))
            while True:
                try:
                    yield await asyncio.wait_for(sub.queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    yield b": keepalive\n\n"
        finally:
            live_hub.unsubscribe(sub)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/v1/live/vehicles/{plate}",
            summary="One truck now: position, sensors, company, permits, open violations")
def vehicle(plate: str, request: Request, who: Principal = Depends(need("live.read"))) -> dict:
    with request.app.state.db.transaction() as conn:
        found = live.read_vehicle(conn, plate, datetime.now(UTC), company=_company(who))
    if found is None:
        raise NotFound(f"no vehicle {plate!r}")
    return found


@router.get("/v1/vehicles/{plate}/track",
            summary="A truck's fixes in a time range (≤ 24 h) and the violations in it")
def track(plate: str, request: Request,
          since: Annotated[int, Query(description="epoch ms")],
          until: Annotated[int, Query(description="epoch ms")],
          who: Principal = Depends(need("track.read"))) -> Response:
    start = datetime.fromtimestamp(since / 1000, UTC)
    end = datetime.fromtimestamp(until / 1000, UTC)
    if not start < end:
        raise ValueError("since must be before until")
    if end - start > MAX_TRACK:
        raise ValueError("a track covers at most 24 hours (since … until)")
    with request.app.state.db.transaction() as conn:
        found = live.read_track(conn, plate, start, end, company=_company(who))
    if found is None:
        raise NotFound(f"no vehicle {plate!r}")
    return Response(orjson.dumps(found), media_type="application/json")
