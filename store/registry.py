"""The registry (issue #22, docs/permits.md "Registry"): sites with a status (open / closed /
full) and its history, capacity and licence expiry; vehicles with rated load, volume, type
and inspection expiry; companies with their licence.

A status change holds from its ``from`` (≥ now: like a permit's revocation it never reaches
into the past) until the next change of the site; ``site_status_changes`` keeps every one,
so "was site S open at device time t" is answerable (``site_open_at``, migration 0012) and
the running ingest judges each fix by the site as it was then (``closure_rows`` /
``site_states``). Every change writes its audit row (store.audit) in the caller's
transaction. Every statement is constant text; values, the caller's scope and optional
filters are bound parameters.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from domain.city import FAR_MS, SITE_KINDS, SITE_STATUSES, Fence
from store import audit
from store.review import Conflict, NotFound, Scope

SITE_COLUMNS = ("id", "kind", "name", "status", "status_from", "capacity_m3",
                "licence_expires")
VEHICLE_FIELDS = ("rated_load_kg", "volume_m3", "vehicle_type", "inspection_expires")
COMPANY_FIELDS = ("licence_no", "licence_expires")
SITE_FIELDS = ("capacity_m3", "licence_expires")

_SITE_KINDS = "('construction_site', 'disposal_site', 'transfer_dock')"
_SITE_SELECT = (f"SELECT {', '.join(f'f.{c}' for c in SITE_COLUMNS)},"
                " site_status_at(f.id, now(), %(tz)s) AS current_status FROM fences f")
_GET_SITE = _SITE_SELECT + f" WHERE f.id = %(id)s AND f.kind IN {_SITE_KINDS}"
_GET_SITE_LOCKED = _GET_SITE + " FOR UPDATE OF f"
_LIST_SITES = _SITE_SELECT + f""" WHERE f.kind IN {_SITE_KINDS}
  AND (%(kind)s::text IS NULL OR f.kind = %(kind)s)
  AND (%(current)s::text IS NULL OR site_status_at(f.id, now(), %(tz)s) = %(current)s)
ORDER BY f.id LIMIT %(limit)s OFFSET %(offset)s"""
_SITE_CHANGES = """SELECT id, status, from_ts, reason, changed_by, changed_at
FROM site_status_changes WHERE site_id = %(id)s ORDER BY from_ts, id"""
_INSERT_CHANGE = """INSERT INTO site_status_changes (site_id, status, from_ts, reason, changed_by)
VALUES (%(id)s, %(status)s, %(from)s, %(reason)s, %(actor)s)"""
# fences.status / status_from: the last word of the history (by from_ts, then id) — the state
# the site is in once every scheduled change has taken effect; 'open' without history
SYNC_SITE_STATUS = """UPDATE fences f
SET status = coalesce(c.status, 'open'), status_from = c.from_ts
FROM (SELECT %(id)s::text AS site_id) s
LEFT JOIN LATERAL (SELECT status, from_ts FROM site_status_changes
                   WHERE site_id = s.site_id ORDER BY from_ts DESC, id DESC LIMIT 1) c ON true
WHERE f.id = s.site_id"""
_UPDATE_SITE = """UPDATE fences SET
    capacity_m3 = CASE WHEN %(set_capacity_m3)s THEN %(capacity_m3)s::numeric
                       ELSE capacity_m3 END,
    licence_expires = CASE WHEN %(set_licence_expires)s THEN %(licence_expires)s::date
                           ELSE licence_expires END
WHERE id = %(id)s"""

# vehicles and companies: a company sees its own; every other role the whole city
_SCOPE_V = "(%(scope_company)s::text IS NULL OR v.company_id = %(scope_company)s)"
_VEHICLE_SELECT = """SELECT v.plate, v.device_id, v.company_id, c.name AS company_name,
       v.rated_load_kg, v.volume_m3, v.vehicle_type, v.inspection_expires,
       v.inspection_expires < (now() AT TIME ZONE %(tz)s)::date AS inspection_expired
FROM vehicles v LEFT JOIN companies c ON c.id = v.company_id"""
_GET_VEHICLE = _VEHICLE_SELECT + f" WHERE v.plate = %(plate)s AND {_SCOPE_V}"
_GET_VEHICLE_LOCKED = _GET_VEHICLE + " FOR UPDATE OF v"
_LIST_VEHICLES = _VEHICLE_SELECT + f""" WHERE {_SCOPE_V}
  AND (%(company)s::text IS NULL OR v.company_id = %(company)s)
  AND (%(vehicle_type)s::text IS NULL OR v.vehicle_type = %(vehicle_type)s)
ORDER BY v.plate LIMIT %(limit)s OFFSET %(offset)s"""
_UPDATE_VEHICLE = """UPDATE vehicles SET
    rated_load_kg = CASE WHEN %(set_rated_load_kg)s THEN %(rated_load_kg)s::real
                         ELSE rated_load_kg END,
    volume_m3 = CASE WHEN %(set_volume_m3)s THEN %(volume_m3)s::real ELSE volume_m3 END,
    vehicle_type = CASE WHEN %(set_vehicle_type)s THEN %(vehicle_type)s::text
                        ELSE vehicle_type END,
    inspection_expires = CASE WHEN %(set_inspection_expires)s THEN %(inspection_expires)s::date
                              ELSE inspection_expires END
WHERE plate = %(plate)s"""

_SCOPE_C = "(%(scope_company)s::text IS NULL OR c.id = %(scope_company)s)"
_COMPANY_SELECT = """SELECT c.id, c.name, c.licence_no, c.licence_expires,
       c.licence_expires < (now() AT TIME ZONE %(tz)s)::date AS licence_expired,
       (SELECT count(*) FROM vehicles v WHERE v.company_id = c.id) AS vehicles
FROM companies c"""
_GET_COMPANY = _COMPANY_SELECT + f" WHERE c.id = %(id)s AND {_SCOPE_C}"
_GET_COMPANY_LOCKED = _GET_COMPANY + " FOR UPDATE OF c"
_LIST_COMPANIES = _COMPANY_SELECT + f""" WHERE {_SCOPE_C}
ORDER BY c.id LIMIT %(limit)s OFFSET %(offset)s"""
_UPDATE_COMPANY = """UPDATE companies SET
    licence_no = CASE WHEN %(set_licence_no)s THEN %(licence_no)s::text ELSE licence_no END,
    licence_expires = CASE WHEN %(set_licence_expires)s THEN %(licence_expires)s::date
                           ELSE licence_expires END
WHERE id = %(id)s"""

# --- what the rules and the approval checks read -------------------------------------------
# (ids NULL: every site)
STATE_SITES = f"""SELECT id, status, capacity_m3, licence_expires FROM fences
WHERE kind IN {_SITE_KINDS} AND (%(ids)s::text[] IS NULL OR id = ANY(%(ids)s))"""
# every interval in which a site is closed or full: a change holds until the next one.
# Milliseconds rounded up: a fix (whole ms) is at or after a change exactly when its ms is
# at or after the change's rounded-up ms, so the pipeline agrees with site_open_at.
STATE_CLOSURES = """SELECT site_id, status, from_ms, to_ms FROM (
    SELECT c.site_id, c.status, c.from_ts, c.id,
           ceil(extract(epoch FROM c.from_ts) * 1000)::bigint AS from_ms,
           coalesce(ceil(extract(epoch FROM lead(c.from_ts) OVER w) * 1000)::bigint,
                    %(far)s) AS to_ms
    FROM site_status_changes c
    WHERE (%(ids)s::text[] IS NULL OR c.site_id = ANY(%(ids)s))
    WINDOW w AS (PARTITION BY c.site_id ORDER BY c.from_ts, c.id)) h
WHERE status <> 'open'
ORDER BY site_id, from_ts, id"""


@dataclass(frozen=True, slots=True)
class SiteState:
    """A site as the database holds it: the last decision, capacity, licence and the
    intervals in which it is closed or full (epoch ms, [from, to))."""

    status: str
    capacity_m3: float | None
    licence_expires: date | None
    closures: tuple[tuple[int, int, str], ...]

    def apply(self, fence: Fence) -> Fence:
        """The fence with this state (its geometry and the rest as the bundle has them)."""
        return replace(fence, status=self.status, capacity_m3=self.capacity_m3,
                       licence_expires=self.licence_expires, closures=self.closures)


def combine(sites: Iterable[Sequence], closures: Iterable[Sequence]) -> dict[str, SiteState]:
    """Rows of STATE_SITES and STATE_CLOSURES → site id → SiteState."""
    by_site: dict[str, list[tuple[int, int, str]]] = {}
    for site_id, status, start, end in closures:
        if end > start:  # two changes at one instant: the first holds for no time
            by_site.setdefault(site_id, []).append((int(start), int(end), str(status)))
    return {sid: SiteState(status, None if cap is None else float(cap), licence,
                           tuple(by_site.get(sid, ())))
            for sid, status, cap, licence in sites}


async def load_sites(conn: psycopg.AsyncConnection) -> dict[str, SiteState]:
    """Every site's state, read by the running ingest (store.live_reference)."""
    params = {"ids": None, "far": FAR_MS}
    cur = await conn.execute(STATE_SITES, params)
    sites = await cur.fetchall()
    cur = await conn.execute(STATE_CLOSURES, params)
    return combine(sites, await cur.fetchall())


def site_states(conn: psycopg.Connection,
                ids: Sequence[str] | None = None) -> dict[str, SiteState]:
    """Every site's state (or those of ``ids``)."""
    params = {"ids": None if ids is None else list(ids), "far": FAR_MS}
    sites = conn.execute(STATE_SITES, params).fetchall()
    closures = conn.execute(STATE_CLOSURES, params).fetchall()
    return combine(sites, closures)


# a status the bundle states, when it differs from the site's status now (the latest change
# at or before now; 'open' without one): a change from now in the history (nothing when they
# agree, so a re-import adds no rows); then fences.status follows the history
_BUNDLE_STATUS = """INSERT INTO site_status_changes (site_id, status, from_ts, reason, changed_by)
SELECT f.id, %(status)s, now(), 'city bundle', 'import' FROM fences f
WHERE f.id = %(id)s
  AND coalesce((SELECT c.status FROM site_status_changes c
                WHERE c.site_id = f.id AND c.from_ts <= now()
                ORDER BY c.from_ts DESC, c.id DESC LIMIT 1), 'open') <> %(status)s"""


def import_statuses(cur: psycopg.Cursor, fences: Iterable[Fence]) -> None:
    """The statuses a bundle states (``muckwatch import city``, store.reference): each one
    that differs from the site's status now becomes a change from now."""
    stated = [{"id": f.id, "status": f.status} for f in fences if f.status is not None]
    cur.executemany(_BUNDLE_STATUS, stated)
    cur.executemany(SYNC_SITE_STATUS, stated)


def with_state(conn: psycopg.Connection, fences: Sequence[Fence]) -> list[Fence]:
    """``fences`` with the database's status, capacity, licence and closures on their
    sites (for the approval checks)."""
    states = site_states(conn, [f.id for f in fences if f.kind in SITE_KINDS])
    return [states[f.id].apply(f) if f.id in states else f for f in fences]


# --- sites -------------------------------------------------------------------------------------

def _now(conn: psycopg.Connection) -> datetime:
    row = conn.execute("SELECT now()").fetchone()
    assert row is not None
    return row[0]


def get_site(conn: psycopg.Connection, site_id: str, *, timezone: str = "Asia/Shanghai",
             lock: bool = False) -> dict:
    """A site with its registry columns, its state now and its status history."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_GET_SITE_LOCKED if lock else _GET_SITE,
                          {"id": site_id, "tz": timezone}).fetchone()
        if row is None:
            raise NotFound(f"no site {site_id!r}")
        row["changes"] = cur.execute(_SITE_CHANGES, {"id": site_id}).fetchall()
    return row


def list_sites(conn: psycopg.Connection, *, kind: str | None = None,
               current: str | None = None, timezone: str = "Asia/Shanghai", limit: int = 1000,
               offset: int = 0) -> list[dict]:
    """Sites by id; ``current`` filters the state now (open, closed, full,
    licence_expired)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_LIST_SITES, {"kind": kind, "current": current, "tz": timezone,
                                         "limit": limit, "offset": offset}).fetchall()


def set_site_status(conn: psycopg.Connection, site_id: str, *, status: str,
                    from_ts: datetime | None, reason: str | None, actor: str, role: str,
                    timezone: str = "Asia/Shanghai") -> tuple[dict, dict]:
    """The site is ``status`` from ``from_ts`` (default now; not in the past) until its next
    change. Closing or marking full needs a reason. Returns (before, after)."""
    if status not in SITE_STATUSES:
        raise ValueError(f"status must be one of {', '.join(SITE_STATUSES)}, not {status!r}")
    reason = reason.strip() if reason and reason.strip() else None
    if status != "open" and reason is None:
        raise ValueError(f"a reason is required to mark a site {status}")
    now = _now(conn)
    if from_ts is not None and from_ts.tzinfo is None:
        raise ValueError("from needs a UTC offset (ISO 8601 with +08:00 or Z)")
    start = now if from_ts is None else from_ts
    if start < now:
        raise ValueError(f"a status change cannot take effect in the past (from "
                         f"{start.isoformat()} is before now, {now.isoformat()})")
    before = get_site(conn, site_id, timezone=timezone, lock=True)
    last_from = before["status_from"]
    if before["status"] == status and (last_from is None or start >= last_from):
        raise Conflict(f"site {site_id} is already {status}"
                       + (f" (from {last_from.isoformat()})" if last_from else ""))
    conn.execute(_INSERT_CHANGE, {"id": site_id, "status": status, "from": start,
                                  "reason": reason, "actor": actor})
    conn.execute(SYNC_SITE_STATUS, {"id": site_id})
    after = get_site(conn, site_id, timezone=timezone)
    audit.record(conn, actor=actor, role=role, action="site.status", resource="site",
                 resource_id=site_id, before=before, after=after)
    return before, after


def _changes(changes: Mapping[str, Any], allowed: Sequence[str]) -> dict[str, Any]:
    """Bound parameters for an update: ``set_<field>`` says whether the field is given (a
    given None clears it), the value beside it."""
    unknown = sorted(set(changes) - set(allowed))
    if unknown:
        raise ValueError(f"unknown field(s): {', '.join(unknown)}")
    if not changes:
        raise ValueError(f"nothing to change: give any of {', '.join(allowed)}")
    for key in ("rated_load_kg", "volume_m3", "capacity_m3"):
        value = changes.get(key)
        if value is not None and not value > 0:
            raise ValueError(f"{key} must be positive")
    params: dict[str, Any] = {}
    for key in allowed:
        params[f"set_{key}"] = key in changes
        params[key] = changes.get(key)
    return params


def update_site(conn: psycopg.Connection, site_id: str, changes: Mapping[str, Any], *,
                actor: str, role: str, timezone: str = "Asia/Shanghai") -> dict:
    """Set a site's capacity_m3 and / or licence_expires (given fields only)."""
    params = _changes(changes, SITE_FIELDS)
    before = get_site(conn, site_id, timezone=timezone, lock=True)
    conn.execute(_UPDATE_SITE, {**params, "id": site_id})
    after = get_site(conn, site_id, timezone=timezone)
    audit.record(conn, actor=actor, role=role, action="site.update", resource="site",
                 resource_id=site_id, before=before, after=after)
    return after


# --- vehicles and companies --------------------------------------------------------------------

def get_vehicle(conn: psycopg.Connection, scope: Scope, plate: str, *,
                timezone: str = "Asia/Shanghai", lock: bool = False) -> dict:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_GET_VEHICLE_LOCKED if lock else _GET_VEHICLE,
                          {**scope.params(), "plate": plate, "tz": timezone}).fetchone()
    if row is None:
        raise NotFound(f"no vehicle {plate!r}")
    return row


def list_vehicles(conn: psycopg.Connection, scope: Scope, *, company: str | None = None,
                  vehicle_type: str | None = None, timezone: str = "Asia/Shanghai",
                  limit: int = 1000, offset: int = 0) -> list[dict]:
    params = {**scope.params(), "company": company, "vehicle_type": vehicle_type,
              "tz": timezone, "limit": limit, "offset": offset}
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_LIST_VEHICLES, params).fetchall()


def update_vehicle(conn: psycopg.Connection, plate: str, changes: Mapping[str, Any], *,
                   actor: str, role: str, timezone: str = "Asia/Shanghai") -> dict:
    """Set a vehicle's rated load, volume, type and / or inspection expiry (given fields
    only; None clears one)."""
    params = _changes(changes, VEHICLE_FIELDS)
    before = get_vehicle(conn, Scope(), plate, timezone=timezone, lock=True)
    conn.execute(_UPDATE_VEHICLE, {**params, "plate": plate})
    after = get_vehicle(conn, Scope(), plate, timezone=timezone)
    audit.record(conn, actor=actor, role=role, action="vehicle.update", resource="vehicle",
                 resource_id=plate, before=before, after=after)
    return after


def get_company(conn: psycopg.Connection, scope: Scope, company_id: str, *,
                timezone: str = "Asia/Shanghai", lock: bool = False) -> dict:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_GET_COMPANY_LOCKED if lock else _GET_COMPANY,
                          {**scope.params(), "id": company_id, "tz": timezone}).fetchone()
    if row is None:
        raise NotFound(f"no company {company_id!r}")
    return row


def list_companies(conn: psycopg.Connection, scope: Scope, *, timezone: str = "Asia/Shanghai",
                   limit: int = 1000, offset: int = 0) -> list[dict]:
    params = {**scope.params(), "tz": timezone, "limit": limit, "offset": offset}
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_LIST_COMPANIES, params).fetchall()


def update_company(conn: psycopg.Connection, company_id: str, changes: Mapping[str, Any], *,
                   actor: str, role: str, timezone: str = "Asia/Shanghai") -> dict:
    """Set a company's licence number and / or expiry (given fields only)."""
    params = _changes(changes, COMPANY_FIELDS)
    before = get_company(conn, Scope(), company_id, timezone=timezone, lock=True)
    conn.execute(_UPDATE_COMPANY, {**params, "id": company_id})
    after = get_company(conn, Scope(), company_id, timezone=timezone)
    audit.record(conn, actor=actor, role=role, action="company.update", resource="company",
                 resource_id=company_id, before=before, after=after)
    return after
