"""Where every truck is now: the ``live_positions`` table (migration 0016), written with each
batch, and the reads the console's live map makes of it.

Write side: a batch's newest fix per device is COPYed into a staging table and upserted in
one statement, guarded so an older fix (late, backfilled, redelivered) never moves a truck
back; then ``NOTIFY muckwatch_live``, delivered at commit, wakes the API's stream. One COPY,
one statement and one notification per batch, whatever its size.

Read side: a snapshot (every row), the rows written since a reader's previous read (by
transaction id, so a transaction that commits late is not skipped), the open violations per
device and the devices whose terminal announced it went offline.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import psycopg
from psycopg.rows import dict_row

from domain.batches import FixBatch

CHANNEL = "muckwatch_live"
_LISTEN = "LISTEN muckwatch_live"

_CREATE_STAGING = ("CREATE TEMP TABLE IF NOT EXISTS stage_live (LIKE telemetry)"
                   " ON COMMIT DELETE ROWS")
_COPY_STAGING = (
    "COPY stage_live (device_id, ts, lon, lat, speed_kmh, heading_deg, lid, lift, load,"
    " load_kg, sats, hdop, seq, alarm, received_at, backfill) FROM STDIN (FORMAT BINARY)"
)
_UPSERT = """
INSERT INTO live_positions AS p (device_id, ts, lon, lat, speed_kmh, heading_deg, lid, lift,
                                 load, load_kg, received_at, district_id, xid)
SELECT device_id, ts, lon, lat, speed_kmh, heading_deg, lid, lift, load, load_kg, received_at,
       district_at(lon, lat), pg_current_xact_id()
FROM stage_live
ON CONFLICT (device_id) DO UPDATE SET
    ts = excluded.ts, lon = excluded.lon, lat = excluded.lat, speed_kmh = excluded.speed_kmh,
    heading_deg = excluded.heading_deg, lid = excluded.lid, lift = excluded.lift,
    load = excluded.load, load_kg = excluded.load_kg, received_at = excluded.received_at,
    district_id = excluded.district_id, xid = excluded.xid
WHERE p.ts < excluded.ts
"""
_NOTIFY = "NOTIFY muckwatch_live"


def newest_per_device(fixes: FixBatch) -> np.ndarray:
    """Index of each device's newest fix (by device time) in the batch."""
    if len(fixes) == 0:
        return np.empty(0, np.intp)
    order = np.lexsort((fixes.ts, fixes.device.astype(str)))
    devices = fixes.device.astype(str)[order]
    last = np.ones(len(order), bool)
    last[:-1] = devices[:-1] != devices[1:]
    return order[last]


async def prepare(conn: psycopg.AsyncConnection) -> None:
    """Create the per-connection staging table (once per connection)."""
    await conn.execute(_CREATE_STAGING)


async def write_positions(conn: psycopg.AsyncConnection, payload: bytes) -> int:
    """Upsert the staged newest fixes (``payload``: binary COPY rows in telemetry's column
    order, one per device) inside the caller's transaction; returns the rows that moved."""
    async with conn.cursor() as cur:
        async with cur.copy(_COPY_STAGING) as copy:
            await copy.write(payload)
        await cur.execute(_UPSERT)
        moved = cur.rowcount
        if moved:
            await cur.execute(_NOTIFY)
    return moved


async def listen(conn: psycopg.AsyncConnection) -> None:
    """Subscribe an autocommit connection to the batches' notifications."""
    await conn.execute(_LISTEN)


# --- reads ----------------------------------------------------------------------------------

COLUMNS = ("device_id", "plate", "company_id", "ts", "lon", "lat", "speed_kmh", "heading_deg",
           "lid", "lift", "load", "load_kg", "district_id")

_SELECT = """
SELECT p.device_id, v.plate, v.company_id, (extract(epoch FROM p.ts) * 1000)::bigint,
       p.lon, p.lat, p.speed_kmh, p.heading_deg, p.lid, p.lift, p.load, p.load_kg,
       p.district_id
FROM live_positions p LEFT JOIN vehicles v ON v.device_id = p.device_id
WHERE (%(company)s::text IS NULL OR v.company_id = %(company)s)
"""
_SNAPSHOT = _SELECT + " ORDER BY p.device_id"
# rows written by transactions that were not yet visible at the previous read; the same
# statement returns the horizon for the next one
_CHANGED = _SELECT + " AND p.xid >= %(since)s::xid8"
_HORIZON = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text"
_VIOLATING = """
SELECT device_id, array_agg(DISTINCT rule ORDER BY rule) FROM violations
WHERE state = 'open' GROUP BY device_id
"""
_OFFLINE = "SELECT device_id FROM device_status WHERE NOT online ORDER BY device_id"


def _one(row: tuple | None):
    """The single value of a one-row, one-column statement (always a row)."""
    assert row is not None
    return row[0]


@dataclass(frozen=True, slots=True)
class Changes:
    rows: list[tuple]
    horizon: str  # pass back as ``since`` on the next read


def read_snapshot(conn: psycopg.Connection, company: str | None = None) -> Changes:
    """Every vehicle's newest position (a company: its own), and the horizon to read
    changes from."""
    with conn.cursor() as cur:
        horizon = _one(cur.execute(_HORIZON).fetchone())
        rows = cur.execute(_SNAPSHOT, {"company": company}).fetchall()
    return Changes(rows, horizon)


async def read_changes(conn: psycopg.AsyncConnection, since: str | None) -> Changes:
    """Positions written since the horizon ``since`` (all of them when None), city-wide —
    the stream filters per subscriber."""
    async with conn.cursor() as cur:
        await cur.execute(_HORIZON)
        horizon = _one(await cur.fetchone())
        if since is None:
            await cur.execute(_SNAPSHOT, {"company": None})
        else:
            await cur.execute(_CHANGED, {"company": None, "since": since})
        rows = await cur.fetchall()
    return Changes(rows, horizon)


def read_violating(conn: psycopg.Connection) -> dict[str, list[str]]:
    """Rules open now, per device."""
    return {d: list(rules) for d, rules in conn.execute(_VIOLATING).fetchall()}


async def read_violating_async(conn: psycopg.AsyncConnection) -> dict[str, list[str]]:
    async with conn.cursor() as cur:
        await cur.execute(_VIOLATING)
        return {d: list(rules) for d, rules in await cur.fetchall()}


def read_offline(conn: psycopg.Connection) -> list[str]:
    """Devices whose terminal last announced it went offline (MQTT status / last will)."""
    return [r[0] for r in conn.execute(_OFFLINE).fetchall()]


async def read_offline_async(conn: psycopg.AsyncConnection) -> list[str]:
    async with conn.cursor() as cur:
        await cur.execute(_OFFLINE)
        return [r[0] for r in await cur.fetchall()]


_VEHICLE = """
SELECT v.plate, v.device_id, v.company_id, c.name, p.district_id, s.online,
       (extract(epoch FROM p.ts) * 1000)::bigint, p.lon, p.lat, p.speed_kmh, p.heading_deg,
       p.lid, p.lift, p.load, p.load_kg
FROM vehicles v
LEFT JOIN companies c ON c.id = v.company_id
LEFT JOIN live_positions p ON p.device_id = v.device_id
LEFT JOIN device_status s ON s.device_id = v.device_id
WHERE v.plate = %(plate)s AND (%(company)s::text IS NULL OR v.company_id = %(company)s)
"""
_VEHICLE_PERMITS = """
SELECT id, origin, destinations, valid_from, valid_to, current_status AS state
FROM permit_states
WHERE plate = %(plate)s AND valid_to > %(at)s - interval '1 day' AND valid_from <= %(at)s
ORDER BY valid_from, id
"""
_OPEN_RULES = ("SELECT coalesce(array_agg(DISTINCT rule ORDER BY rule), '{}') FROM violations"
               " WHERE state = 'open' AND device_id = %(device)s")
_POSITION_KEYS = ("ts", "lon", "lat", "speed_kmh", "heading_deg", "lid", "lift", "load",
                  "load_kg")


def read_vehicle(conn: psycopg.Connection, plate: str, at: datetime,
                 company: str | None = None) -> dict | None:
    """One truck now (None when unknown, or not the company's): its newest position and
    sensors, online state, company, the permits around now and its open violations."""
    row = conn.execute(_VEHICLE, {"plate": plate, "company": company}).fetchone()
    if row is None:
        return None
    plate, device, company_id, company_name, district, online, *position = row
    with conn.cursor(row_factory=dict_row) as cur:
        permits = cur.execute(_VEHICLE_PERMITS, {"plate": plate, "at": at}).fetchall()
    violating = _one(conn.execute(_OPEN_RULES, {"device": device}).fetchone())
    return {"plate": plate, "device_id": device, "company_id": company_id,
            "company_name": company_name, "district_id": district, "online": online,
            "position": dict(zip(_POSITION_KEYS, position, strict=True))
            if position[0] is not None else None,
            "permits": permits, "violating": list(violating)}


TRACK_COLUMNS = ("ts", "lon", "lat", "speed_kmh", "heading_deg", "lid", "lift", "load",
                 "load_kg")
_TRACK = """
SELECT (extract(epoch FROM ts) * 1000)::bigint, lon, lat, speed_kmh, heading_deg, lid, lift,
       load, load_kg
FROM telemetry WHERE device_id = %(device)s AND ts >= %(since)s AND ts < %(until)s
ORDER BY ts
"""
_TRACK_VIOLATIONS = """
SELECT id, rule, severity, state, review, permit_id,
       (extract(epoch FROM start_ts) * 1000)::bigint AS start_ts,
       (extract(epoch FROM end_ts) * 1000)::bigint AS end_ts,
       start_lon, start_lat, end_lon, end_lat, peak
FROM violations
WHERE device_id = %(device)s AND state <> 'retracted' AND start_ts < %(until)s
  AND coalesce(end_ts, 'infinity') >= %(since)s
ORDER BY start_ts, id
"""
_DEVICE_OF = ("SELECT device_id, company_id FROM vehicles WHERE plate = %(plate)s"
              " AND (%(company)s::text IS NULL OR company_id = %(company)s)")


def read_track(conn: psycopg.Connection, plate: str, since: datetime, until: datetime,
               company: str | None = None) -> dict | None:
    """A truck's fixes in [since, until) (one primary-key range scan) and the violations
    overlapping it; None when the plate is unknown (or not the company's)."""
    found = conn.execute(_DEVICE_OF, {"plate": plate, "company": company}).fetchone()
    if found is None:
        return None
    device, company_id = found
    params = {"device": device, "since": since, "until": until}
    rows = conn.execute(_TRACK, params).fetchall()
    with conn.cursor(row_factory=dict_row) as cur:
        violations = cur.execute(_TRACK_VIOLATIONS, params).fetchall()
    return {"plate": plate, "device_id": device, "company_id": company_id,
            "columns": TRACK_COLUMNS, "rows": rows, "violations": violations}
