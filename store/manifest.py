"""The electronic manifest (电子联单, issue #22, docs/permits.md "The manifest"): every loaded
leg is a manifest line (``trips``, written by the pipeline); a disposal site's or transfer
dock's operator confirms each load received (``disposal_receipts``); the database matches
receipts to lines one to one (migration 0014: triggers keep ``receipt_matches`` current
whichever of the two is written first) and reconciles each day per site and per job
(``reconcile_sites``, ``reconcile_jobs``).

Receipts are append-only: recording the same receipt again (same site, plate and time, same
values) is a replay and changes nothing; the same key with other values is refused — a
correction is a new receipt that ``replaces`` the wrong one. Every receipt recorded writes
its audit row (store.audit) in the caller's transaction. Every statement is constant text;
values, the caller's scope and optional filters are bound parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row

from store import audit
from store.review import Conflict, NotFound

RECEIVING_KINDS = ("disposal_site", "transfer_dock")
LINE_STATES = ("en_route", "arrived", "received", "not_closed")
RECEIPT_STATES = ("matched", "unmatched", "replaced")
FUTURE_TOLERANCE = timedelta(minutes=5)  # a receipt may be stamped this far ahead of now
MAX_VOLUME_M3 = 200.0  # one load; the largest muck trucks carry about 40 m³

LINE_COLUMNS = (
    "trip_id", "left_at", "device_id", "plate", "company_id", "company_name", "permit_id",
    "job", "origin", "transfers", "destination", "arrived_at", "volume_m3", "volume_source",
    "load_kg", "late", "receipt_id", "receipt_received_at", "receipt_volume_m3",
    "receipt_recorded_by", "not_closed_violation", "status")
RECEIPT_COLUMNS = (
    "id", "site_id", "site_name", "site_kind", "plate", "company_id", "received_at",
    "volume_m3", "note", "replaces", "replaced_by", "recorded_by", "recorded_at", "state",
    "trip_id", "trip_left_at", "arrived_at", "seconds_after_arrival", "permit_id", "job")


@dataclass(frozen=True, slots=True)
class ManifestScope:
    """Which lines and receipts a caller sees: a company its own trucks' lines; a site
    operator the lines leaving, passing or reaching its sites and its sites' receipts; None
    means no limit on that axis."""

    company: str | None = None
    sites: tuple[str, ...] | None = None

    def params(self) -> dict[str, Any]:
        return {"scope_company": self.company,
                "scope_sites": None if self.sites is None else list(self.sites)}


_DOCK_IN = ("EXISTS (SELECT 1 FROM jsonb_array_elements(m.transfers) x"
            " WHERE x->>'dock' = ANY(%(scope_sites)s))")
_SCOPE_M = (
    "(%(scope_company)s::text IS NULL OR m.company_id = %(scope_company)s)"
    " AND (%(scope_sites)s::text[] IS NULL OR m.origin = ANY(%(scope_sites)s)"
    f" OR m.destination = ANY(%(scope_sites)s) OR {_DOCK_IN})")
_SITE_M = ("(%(site)s::text IS NULL OR m.origin = %(site)s OR m.destination = %(site)s"
           " OR EXISTS (SELECT 1 FROM jsonb_array_elements(m.transfers) y"
           " WHERE y->>'dock' = %(site)s))")
_LINE_SELECT = f"SELECT {', '.join(f'm.{c}' for c in LINE_COLUMNS)} FROM manifest m"
_LIST_LINES = _LINE_SELECT + f""" WHERE {_SCOPE_M} AND {_SITE_M}
  AND (%(plate)s::text IS NULL OR m.plate = %(plate)s)
  AND (%(permit)s::text IS NULL OR m.permit_id = %(permit)s)
  AND (%(job)s::text IS NULL OR m.job = %(job)s)
  AND (%(company)s::text IS NULL OR m.company_id = %(company)s)
  AND (%(status)s::text IS NULL OR m.status = %(status)s)
  AND (%(since)s::timestamptz IS NULL OR m.left_at >= %(since)s)
  AND (%(until)s::timestamptz IS NULL OR m.left_at < %(until)s)
ORDER BY m.left_at DESC, m.trip_id LIMIT %(limit)s OFFSET %(offset)s"""
_LINE_OF_RECEIPT = _LINE_SELECT + " WHERE m.receipt_id = %(id)s"

_RECEIPT_SELECT = (f"SELECT {', '.join(f'r.{c}' for c in RECEIPT_COLUMNS)}"
                   " FROM manifest_receipts r")
_GET_RECEIPT = _RECEIPT_SELECT + " WHERE r.id = %(id)s"
_LIST_RECEIPTS = _RECEIPT_SELECT + """
WHERE (%(scope_sites)s::text[] IS NULL OR r.site_id = ANY(%(scope_sites)s))
  AND (%(site)s::text IS NULL OR r.site_id = %(site)s)
  AND (%(plate)s::text IS NULL OR r.plate = %(plate)s)
  AND (%(state)s::text IS NULL OR r.state = %(state)s)
  AND (%(day)s::date IS NULL OR (r.received_at >= (%(day)s::date)::timestamp AT TIME ZONE %(tz)s
                                 AND r.received_at < (%(day)s::date + 1)::timestamp
                                                     AT TIME ZONE %(tz)s))
  AND (%(since)s::timestamptz IS NULL OR r.received_at >= %(since)s)
  AND (%(until)s::timestamptz IS NULL OR r.received_at < %(until)s)
ORDER BY r.received_at DESC, r.id DESC LIMIT %(limit)s OFFSET %(offset)s"""

_SITE = "SELECT kind FROM fences WHERE id = %(id)s"
_PLATE = "SELECT 1 FROM vehicles WHERE plate = %(plate)s"
_NOW = "SELECT now()"
_REPLACED = """SELECT r.id, r.site_id, n.id AS replaced_by FROM disposal_receipts r
LEFT JOIN disposal_receipts n ON n.replaces = r.id WHERE r.id = %(id)s FOR UPDATE OF r"""
_INSERT = """INSERT INTO disposal_receipts
    (site_id, plate, received_at, volume_m3, note, replaces, recorded_by)
VALUES (%(site)s, %(plate)s, %(received_at)s, %(volume_m3)s, %(note)s, %(replaces)s, %(actor)s)
ON CONFLICT ON CONSTRAINT disposal_receipts_once DO NOTHING
RETURNING id"""
_SAME = """SELECT id,
       volume_m3 IS NOT DISTINCT FROM %(volume_m3)s::numeric
       AND note IS NOT DISTINCT FROM %(note)s::text
       AND replaces IS NOT DISTINCT FROM %(replaces)s::bigint AS same
FROM disposal_receipts
WHERE site_id = %(site)s AND plate = %(plate)s AND received_at = %(received_at)s"""

_BY_SITE = """SELECT * FROM reconcile_sites(%(day)s, %(tz)s)
WHERE (%(scope_sites)s::text[] IS NULL OR site_id = ANY(%(scope_sites)s))
  AND (%(site)s::text IS NULL OR site_id = %(site)s)"""
_BY_JOB = """SELECT * FROM reconcile_jobs(%(day)s, %(tz)s)
WHERE (%(scope_company)s::text IS NULL OR company_id = %(scope_company)s)
  AND (%(job)s::text IS NULL OR job = %(job)s)"""


@dataclass(frozen=True)
class Recorded:
    """A receipt as stored, the manifest line it confirms (None: none in its window), and
    whether this call stored it (False: the same receipt was recorded before)."""

    receipt: dict
    line: dict | None
    created: bool


def receiving_site(conn: psycopg.Connection, site: str) -> None:
    """ValueError unless ``site`` is a disposal site or transfer dock."""
    row = conn.execute(_SITE, {"id": site}).fetchone()
    if row is None:
        raise ValueError(f"unknown site {site!r}: not a fence of the city")
    if row[0] not in RECEIVING_KINDS:
        raise ValueError(f"site {site!r} is a {row[0]}: receipts are recorded at disposal "
                         "sites and transfer docks")


def get_receipt(conn: psycopg.Connection, receipt_id: int,
                scope: ManifestScope = ManifestScope()) -> dict:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_GET_RECEIPT, {"id": receipt_id}).fetchone()
    if row is None or (scope.sites is not None and row["site_id"] not in scope.sites):
        raise NotFound(f"no receipt {receipt_id}")
    return row


def line_of_receipt(conn: psycopg.Connection, receipt_id: int) -> dict | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_LINE_OF_RECEIPT, {"id": receipt_id}).fetchone()


def record_receipt(conn: psycopg.Connection, *, site: str, plate: str, received_at: datetime,
                   volume_m3: float | None = None, note: str | None = None,
                   replaces: int | None = None, actor: str, role: str) -> Recorded:
    """Record that ``site`` received a load of ``plate`` at ``received_at``; the database
    matches it to a manifest line at once. The caller has checked the caller's scope.

    ValueError (422): an unknown or non-receiving site, an unknown plate, a time without an
    offset or in the future, a bad volume, a ``replaces`` that is not a receipt of the
    site. Conflict (409): the same site, plate and time recorded with other values, or a
    receipt replaced already."""
    receiving_site(conn, site)
    if conn.execute(_PLATE, {"plate": plate}).fetchone() is None:
        raise ValueError(f"unknown plate {plate!r}: not in the vehicle registry")
    if received_at.tzinfo is None:
        raise ValueError("received_at needs a UTC offset (ISO 8601 with +08:00 or Z)")
    row = conn.execute(_NOW).fetchone()
    assert row is not None
    if received_at > row[0] + FUTURE_TOLERANCE:
        raise ValueError(f"received_at {received_at.isoformat()} is in the future (now is "
                         f"{row[0].isoformat()})")
    if volume_m3 is not None and not 0 < volume_m3 <= MAX_VOLUME_M3:
        raise ValueError(f"volume_m3 must be above 0 and at most {MAX_VOLUME_M3:g} m³")
    note = note.strip() if note and note.strip() else None
    params = {"site": site, "plate": plate, "received_at": received_at,
              "volume_m3": None if volume_m3 is None else Decimal(str(volume_m3)),
              "note": note, "replaces": replaces, "actor": actor}
    replaced: dict | None = None
    old: dict | None = None
    if replaces is not None:
        with conn.cursor(row_factory=dict_row) as cur:
            old = cur.execute(_REPLACED, {"id": replaces}).fetchone()
        if old is None or old["site_id"] != site:
            raise ValueError(f"replaces: {replaces} is not a receipt of site {site}")
    inserted = None
    if _existing(conn, params) is None:
        if old is not None:
            if old["replaced_by"] is not None:
                raise Conflict(f"receipt {replaces} is already replaced by receipt "
                               f"{old['replaced_by']}")
            replaced = get_receipt(conn, old["id"])
        try:
            inserted = conn.execute(_INSERT, params).fetchone()
        except psycopg.errors.UniqueViolation:  # replaced concurrently
            raise Conflict(f"receipt {replaces} is already replaced") from None
    if inserted is None:  # recorded before (or just now, concurrently): a replay
        existing = _existing(conn, params)
        assert existing is not None
        return Recorded(get_receipt(conn, existing), line_of_receipt(conn, existing), False)
    receipt = get_receipt(conn, inserted[0])
    line = line_of_receipt(conn, inserted[0])
    audit.record(conn, actor=actor, role=role, action="receipt.record", resource="receipt",
                 resource_id=inserted[0], before=replaced,
                 after={**receipt, "line": None if line is None else
                        {"trip_id": line["trip_id"], "left_at": line["left_at"]}})
    return Recorded(receipt, line, True)


def list_receipts(conn: psycopg.Connection, scope: ManifestScope, *, site: str | None = None,
                  plate: str | None = None, state: str | None = None, day: date | None = None,
                  since: datetime | None = None, until: datetime | None = None,
                  timezone: str = "Asia/Shanghai", limit: int = 100,
                  offset: int = 0) -> list[dict]:
    """Receipts in scope, newest first, each with what it confirms (``state``: matched,
    unmatched, replaced); ``day`` is a local date of ``timezone``."""
    params = {**scope.params(), "site": site, "plate": plate, "state": state, "day": day,
              "since": since, "until": until, "tz": timezone, "limit": limit,
              "offset": offset}
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_LIST_RECEIPTS, params).fetchall()


def list_lines(conn: psycopg.Connection, scope: ManifestScope, *, plate: str | None = None,
               permit: str | None = None, job: str | None = None, site: str | None = None,
               company: str | None = None, status: str | None = None,
               since: datetime | None = None, until: datetime | None = None,
               limit: int = 100, offset: int = 0) -> list[dict]:
    """Manifest lines in scope, latest departure first; ``site`` is the origin, the
    destination or a transfer dock passed; ``since`` / ``until`` bound the departure."""
    params = {**scope.params(), "plate": plate, "permit": permit, "job": job, "site": site,
              "company": company, "status": status, "since": since, "until": until,
              "limit": limit, "offset": offset}
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_LIST_LINES, params).fetchall()


def reconcile(conn: psycopg.Connection, scope: ManifestScope, *, day: date, by: str,
              timezone: str = "Asia/Shanghai", site: str | None = None,
              job: str | None = None) -> list[dict]:
    """The day's reconciliation (a local date of ``timezone``) per site or per job."""
    params = {**scope.params(), "day": day, "tz": timezone, "site": site, "job": job}
    if by not in ("site", "job"):
        raise ValueError(f"by must be site or job, not {by!r}")
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_BY_SITE if by == "site" else _BY_JOB, params).fetchall()


def _existing(conn: psycopg.Connection, params: dict[str, Any]) -> int | None:
    """The id of the receipt already recorded for this site, plate and time when it holds
    the same values (a replay); Conflict when it holds others; None when there is none."""
    same = conn.execute(_SAME, params).fetchone()
    if same is None:
        return None
    if not same[1]:
        raise Conflict(f"receipt {same[0]} already records {params['plate']} at "
                       f"{params['site']} at {params['received_at'].isoformat()} with other "
                       f"values; receipts never change: record the right one with "
                       f"\"replaces\": {same[0]}")
    return same[0]
