"""Live reference data for ``muckwatch run`` (issue #22): permits, suspensions, revocations,
vehicles and site status changes in the database apply while the ingest runs, by device time.

The database notifies ``muckwatch_reference`` on every change (migration 0011). A listener
re-reads permits and vehicles, merges them over the city bundle (database rows win by permit
id and by plate; rows only in the database are added) and builds the rules' reference on a
worker thread; the service swaps it in *between* batches (``take``), so a batch is judged by
one reference from start to end. A permit's validity, suspensions and revocation are device
times, so a fix recorded before a revocation — even one arriving late — is still judged by
the permit, and every fix after it is not (docs/permits.md). Sites take the database's
status, capacity, licence expiry and closures (their outlines stay the bundle's): a site
closed from T is no allowed destination for fixes from T on, late ones included.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Mapping

import psycopg
from psycopg import sql

from domain.city import City
from rules.reference import Reference
from store.live_reference import CHANNEL, load, load_sites
from store.registry import SiteState

log = logging.getLogger(__name__)


def merge(city: City, permits, vehicles,
          sites: Mapping[str, SiteState] | None = None) -> tuple[City, list[str]]:
    """The bundle with the database's permits, vehicles and sites over it; also the ids of
    database permits left out because a site they name is not a fence of this city. A site
    the database holds takes its status, capacity, licence and closures from there (its
    history replaces the bundle's status); one it does not keeps the bundle's."""
    fences = {f.id for f in city.fences}
    by_id = {p.id: p for p in city.permits}
    skipped = []
    for p in permits:
        if p.origin in fences and all(d in fences for d in p.destinations):
            by_id[p.id] = p
        else:
            skipped.append(p.id)
    by_plate = {v.plate: v for v in city.vehicles}
    from_db = {v.plate: v for v in vehicles}
    taken = {v.device_id for v in from_db.values()}
    merged = {plate: v for plate, v in by_plate.items()
              if plate in from_db or v.device_id not in taken}
    merged.update(from_db)
    fence_list = city.fences
    if sites:
        fence_list = [sites[f.id].apply(f) if f.id in sites else f for f in city.fences]
    return dataclasses.replace(city, permits=list(by_id.values()), fences=fence_list,
                               vehicles=sorted(merged.values(), key=lambda v: v.plate)), skipped


class LiveReference:
    """Follows the database's reference data; ``take()`` hands over a newer Reference."""

    def __init__(self, dsn: str, city: City, retry_s: float = 5.0) -> None:
        self.dsn = dsn
        self.city = city  # the bundle (SIGHUP replaces it through ``rebase``)
        self.retry_s = retry_s
        self._pending: Reference | None = None
        self._changed = asyncio.Event()
        self._loaded = asyncio.Event()
        self._database: tuple | None = None  # the last (permits, vehicles, sites) read
        self.loads = 0

    async def first_load(self, timeout_s: float) -> bool:
        """Wait (bounded) until the database's permits are in: the first batches should not
        be judged by the bundle alone. False when the database did not answer in time."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._loaded.wait(), timeout_s)
        return self._loaded.is_set()

    def take(self) -> Reference | None:
        """The newest reference not yet handed over, if any (called between batches)."""
        pending, self._pending = self._pending, None
        return pending

    def over(self, city: City) -> City:
        """``city`` (a reloaded bundle) with the database's reference data last read merged
        over it, at once: a reload must never judge fixes by the bundle's permits alone,
        not even until the next read (whose indexes and permits may differ)."""
        if self._database is None:
            return city
        return merge(city, *self._database)[0]

    def rebase(self, city: City) -> None:
        """A reloaded bundle: merge the database over it again."""
        self.city = city
        self._changed.set()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                async with await psycopg.AsyncConnection.connect(self.dsn,
                                                                 autocommit=True) as conn:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
                    await self._reload(conn)  # after LISTEN: no change falls in between
                    while not stop.is_set():
                        async for _ in conn.notifies(timeout=0.5, stop_after=1):
                            self._changed.set()
                        if self._changed.is_set():
                            await asyncio.sleep(0.2)  # let a burst of changes settle
                            async for _ in conn.notifies(timeout=0.01):
                                pass
                            await self._reload(conn)
            except (psycopg.Error, OSError) as e:
                log.warning("live reference data: %s; permits stay as they are, retrying in "
                            "%.0f s", str(e).strip().splitlines()[-1], self.retry_s)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.retry_s)

    async def _reload(self, conn: psycopg.AsyncConnection) -> None:
        self._changed.clear()
        permits, vehicles = await load(conn)
        sites = await load_sites(conn)
        self._database = (permits, vehicles, sites)
        city, skipped = merge(self.city, permits, vehicles, sites)
        if skipped:
            log.warning("permits naming sites this city does not have, left out: %s",
                        ", ".join(skipped[:20]) + (" …" if len(skipped) > 20 else ""))
        self._pending = await asyncio.to_thread(Reference.from_city, city)
        self.loads += 1
        self._loaded.set()
        closed = sum(1 for f in city.fences if f.closures or f.licence_expires)
        log.info("reference data from the database: %d permits, %d vehicles, %d sites with "
                 "closures or a licence expiry", len(city.permits), len(city.vehicles), closed)
