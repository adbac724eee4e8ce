"""Permit applications and permits with a life cycle (issue #22, docs/permits.md).

    application:  applied ──approve (checks pass)──▶ approved ──▶ one permit per plate
                     │ ├──reject (reason)──▶ rejected
                     │ └──withdraw (company)──▶ withdrawn
    permit:       active ──suspend──▶ suspended ──resume──▶ active
                  active | suspended ──revoke (at ≥ now)──▶ revoked
                  active | suspended ──valid_to passed──▶ expired   (expire_permits)

Every change writes its audit row (store.audit) in the caller's transaction, so a change
without its audit row cannot exist, whether it came through the API or the CLI. Every
statement is constant text; values, the caller's scope and optional filters are bound
parameters.

The approval checks are not here (``permits.checks``, a package at the same layer): the
caller hands in a ``checker`` — a function of the application row, the fences and the
plate → company map read here, and the database's ``now()`` — and this module stores its
report and refuses the approval when it says the application fails.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import psycopg
import shapely
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from domain.city import Fence, parse_window
from domain.coords import SYSTEMS
from domain.geojson import read_geometry
from store import audit, registry
from store.review import Conflict, NotFound, Scope


class Report(Protocol):
    """What a checker returns (``permits.checks.CheckReport``)."""

    @property
    def ok(self) -> bool: ...

    def as_dict(self) -> dict[str, Any]: ...


Checker = Callable[[Mapping[str, Any], Sequence[Fence], Mapping[str, str], datetime], Report]

APPLICATION_COLUMNS = (
    "id", "company_id", "origin", "destinations", "plates", "route", "route_crs",
    "route_submitted", "corridor_m", "hours", "valid_from", "valid_to", "declared_volume_m3",
    "status", "submitted_by", "submitted_at", "decided_by", "decided_at", "decision_reason",
    "check_report", "checked_at")
PERMIT_COLUMNS = (
    "id", "application_id", "plate", "company_id", "origin", "destinations", "corridor_m",
    "hours", "valid_from", "valid_to", "declared_volume_m3", "status", "status_changed_at",
    "status_reason", "status_changed_by", "created_at")
_LISTED_COLUMNS = (  # the list leaves the routes out
    "id", "company_id", "origin", "destinations", "plates", "route_crs", "corridor_m", "hours",
    "valid_from", "valid_to", "declared_volume_m3", "status", "submitted_by", "submitted_at",
    "decided_by", "decided_at", "decision_reason", "check_report", "checked_at")
SUSPENSION_COLUMNS = ("id", "from_ts", "to_ts", "reason", "created_by", "created_at",
                      "resumed_by", "resumed_at")
APPLICATION_STATES = ("applied", "approved", "rejected", "withdrawn")
PERMIT_STATES = ("active", "suspended", "revoked", "expired")
CURRENT_STATES = ("pending", "active", "suspended", "revoked", "expired")

# a company sees its own applications and permits; every other role with the permission
# the whole city (permits are city-wide: officers' districts do not narrow them)
_SCOPE_A = "(%(scope_company)s::text IS NULL OR a.company_id = %(scope_company)s)"
_SCOPE_P = "(%(scope_company)s::text IS NULL OR p.company_id = %(scope_company)s)"

_A_COLUMNS = ", ".join(f"a.{c}" for c in APPLICATION_COLUMNS)
_GET_APPLICATION = (f"SELECT {_A_COLUMNS} FROM permit_applications a"
                    f" WHERE a.id = %(id)s AND {_SCOPE_A}")
_GET_APPLICATION_LOCKED = _GET_APPLICATION + " FOR UPDATE"
_LIST_APPLICATIONS = f"""SELECT {", ".join(f"a.{c}" for c in _LISTED_COLUMNS)},
       (SELECT array_agg(p.id ORDER BY p.id) FROM permits p WHERE p.application_id = a.id)
           AS permits
FROM permit_applications a
WHERE {_SCOPE_A}
  AND (%(status)s::text IS NULL OR a.status = %(status)s)
  AND (%(company)s::text IS NULL OR a.company_id = %(company)s)
ORDER BY a.submitted_at DESC, a.id DESC LIMIT %(limit)s OFFSET %(offset)s"""
_INSERT_APPLICATION = """INSERT INTO permit_applications
    (company_id, origin, destinations, plates, route, route_crs, route_submitted, corridor_m,
     hours, valid_from, valid_to, declared_volume_m3, submitted_by)
VALUES (%(company_id)s, %(origin)s, %(destinations)s, %(plates)s, %(route)s, %(route_crs)s,
        %(route_submitted)s, %(corridor_m)s, %(hours)s, %(valid_from)s, %(valid_to)s,
        %(declared_volume_m3)s, %(actor)s)
RETURNING id"""
_STORE_REPORT = """UPDATE permit_applications SET check_report = %(report)s, checked_at = now()
WHERE id = %(id)s"""
_DECIDE = """UPDATE permit_applications
SET status = %(status)s, decided_by = %(actor)s, decided_at = now(),
    decision_reason = %(reason)s, check_report = coalesce(%(report)s, check_report),
    checked_at = CASE WHEN %(report)s::jsonb IS NULL THEN checked_at ELSE now() END
WHERE id = %(id)s AND status = 'applied'"""
# one permit per plate, id 'A<application id>-<plate>'; valid from the approval at the earliest
_ISSUE = """INSERT INTO permits
    (id, plate, origin, destinations, corridor_m, valid_from, valid_to, hours, route,
     application_id, company_id, declared_volume_m3, status, status_changed_at, status_reason,
     status_changed_by, job)
SELECT 'A' || a.id || '-' || plate, plate, a.origin, a.destinations, a.corridor_m,
       greatest(a.valid_from, now()), a.valid_to, a.hours, a.route, a.id, a.company_id,
       a.declared_volume_m3, 'active', now(), 'approved', %(actor)s, 'A' || a.id
FROM permit_applications a, unnest(a.plates) AS plate
WHERE a.id = %(id)s
RETURNING id"""
_REFERENCE_FENCES = """SELECT id, kind, name, windows, speed_limit_kmh, geometry FROM fences
WHERE kind = 'restricted_zone' OR id = ANY(%(ids)s) ORDER BY id"""
_VEHICLES = "SELECT plate, company_id FROM vehicles WHERE plate = ANY(%(plates)s)"

_P_COLUMNS = ", ".join(f"p.{c}" for c in PERMIT_COLUMNS)
_GET_PERMIT = f"""SELECT {_P_COLUMNS}, p.route, permit_status_at(p.id, now()) AS current_status
FROM permits p WHERE p.id = %(id)s AND {_SCOPE_P}"""
_GET_PERMIT_LOCKED = _GET_PERMIT + " FOR UPDATE OF p"
_LIST_PERMITS = f"""SELECT {_P_COLUMNS}, permit_status_at(p.id, now()) AS current_status
FROM permits p
WHERE {_SCOPE_P}
  AND (%(status)s::text IS NULL OR p.status = %(status)s)
  AND (%(current)s::text IS NULL OR permit_status_at(p.id, now()) = %(current)s)
  AND (%(company)s::text IS NULL OR p.company_id = %(company)s)
  AND (%(plate)s::text IS NULL OR p.plate = %(plate)s)
  AND (%(application)s::bigint IS NULL OR p.application_id = %(application)s)
ORDER BY p.id LIMIT %(limit)s OFFSET %(offset)s"""
_SUSPENSIONS = (f"SELECT {', '.join(SUSPENSION_COLUMNS)} FROM permit_suspensions"
                " WHERE permit_id = %(id)s ORDER BY from_ts, id")
_SET_STATUS = """UPDATE permits SET status = %(status)s, status_changed_at = %(at)s,
    status_reason = %(reason)s, status_changed_by = %(actor)s
WHERE id = %(id)s"""
_SUSPEND = """INSERT INTO permit_suspensions (permit_id, from_ts, to_ts, reason, created_by)
VALUES (%(id)s, %(from)s, %(until)s, %(reason)s, %(actor)s)"""
_END_SUSPENSIONS = """UPDATE permit_suspensions
SET to_ts = greatest(from_ts, now()), resumed_by = %(actor)s, resumed_at = now()
WHERE permit_id = %(id)s AND (to_ts IS NULL OR to_ts > now())"""
_EXPIRE = "SELECT permit_id, status_before FROM expire_permits(now())"
# suspended permits whose every suspension has ended by now: back to active
_LAPSED = """UPDATE permits p SET status = 'active',
    status_changed_at = (SELECT max(s.to_ts) FROM permit_suspensions s WHERE s.permit_id = p.id),
    status_reason = 'suspension ended', status_changed_by = %(actor)s
WHERE p.status = 'suspended'
  AND NOT EXISTS (SELECT 1 FROM permit_suspensions s
                  WHERE s.permit_id = p.id AND (s.to_ts IS NULL OR s.to_ts > now()))
RETURNING p.id"""


@dataclass(frozen=True)
class Decision:
    """The outcome of a decision: ``ok`` False when the checks refused the approval (the
    application stays 'applied', its report stored)."""

    ok: bool
    application: dict
    permits: list[dict]
    report: dict | None


def _now(conn: psycopg.Connection) -> datetime:
    row = conn.execute("SELECT now()").fetchone()
    assert row is not None
    return row[0]


def _text(value: str | None, what: str) -> str:
    if value is None or not value.strip():
        raise ValueError(f"{what} is required")
    return value.strip()


def _aware(value: datetime, what: str) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"{what} needs a UTC offset (ISO 8601 with +08:00 or Z)")
    return value


def _brief(row: Mapping[str, Any]) -> dict:
    """A row for the audit log, without the route (the application's row holds it)."""
    return {k: v for k, v in row.items() if k not in ("route", "route_submitted", "suspensions")}


# --- applications ------------------------------------------------------------------------------

def submit(conn: psycopg.Connection, *, company_id: str, origin: str,
           destinations: Sequence[str], plates: Sequence[str], route: Mapping[str, Any],
           crs: str, corridor_m: float, hours: str | None, valid_from: datetime,
           valid_to: datetime, declared_volume_m3: float, actor: str, role: str,
           checker: Checker | None = None) -> dict:
    """A company's application (出土申报). The route (a GeoJSON LineString in ``crs``) is
    converted to WGS-84 here. Refused (ValueError) when it is malformed or names a vehicle
    that is not the company's; the other checks run now when a ``checker`` is given — their
    report is stored for the officer and the company, and run again at approval."""
    if crs not in SYSTEMS:
        raise ValueError(f"crs must be one of {', '.join(SYSTEMS)}, not {crs!r}")
    route = json.loads(json.dumps(route))  # tuples (shapely's mapping) read as JSON lists
    line = read_geometry(route, ("LineString",), crs=crs)
    if hours is not None:
        start, end = parse_window(hours)
        if start == end:
            raise ValueError(f"hours {hours!r} cover no time of day")
    if _aware(valid_to, "valid_to") <= _aware(valid_from, "valid_from"):
        raise ValueError("valid_to must be after valid_from")
    if not plates or len(set(plates)) != len(plates):
        raise ValueError("plates must name at least one vehicle, each once")
    if not destinations or len(set(destinations)) != len(destinations):
        raise ValueError("destinations must name at least one site, each once")
    if not corridor_m > 0 or not declared_volume_m3 > 0:
        raise ValueError("corridor_m and declared_volume_m3 must be positive")
    if conn.execute("SELECT 1 FROM companies WHERE id = %s", (company_id,)).fetchone() is None:
        raise ValueError(f"company {company_id!r} is not registered")
    owners: dict[str, str] = dict(conn.execute(_VEHICLES, {"plates": list(plates)}).fetchall())
    unknown = [p for p in plates if p not in owners]
    if unknown:
        raise ValueError(f"not registered vehicle(s): {', '.join(unknown)}")
    foreign = [p for p in plates if owners[p] != company_id]
    if foreign:
        raise ValueError(f"vehicle(s) of another company: {', '.join(foreign)}")
    row = conn.execute(_INSERT_APPLICATION, {
        "company_id": company_id, "origin": origin, "destinations": list(destinations),
        "plates": list(plates), "route": Jsonb(shapely.geometry.mapping(line)),
        "route_crs": crs, "route_submitted": Jsonb(route), "corridor_m": corridor_m,
        "hours": hours, "valid_from": valid_from, "valid_to": valid_to,
        "declared_volume_m3": declared_volume_m3, "actor": actor}).fetchone()
    assert row is not None
    app_id = row[0]
    if checker is not None:
        report = _check(conn, get_application(conn, Scope(), app_id), checker)
        conn.execute(_STORE_REPORT, {"id": app_id, "report": Jsonb(report.as_dict())})
    after = get_application(conn, Scope(), app_id)
    audit.record(conn, actor=actor, role=role, action="application.submit",
                 resource="permit_application", resource_id=app_id, after=after)
    return after


def get_application(conn: psycopg.Connection, scope: Scope, app_id: int, *,
                    lock: bool = False) -> dict:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_GET_APPLICATION_LOCKED if lock else _GET_APPLICATION,
                          {**scope.params(), "id": app_id}).fetchone()
        if row is None:
            raise NotFound(f"no permit application {app_id}")
        row["permits"] = [r["id"] for r in cur.execute(
            "SELECT id FROM permits WHERE application_id = %s ORDER BY id", (app_id,))]
    return row


def list_applications(conn: psycopg.Connection, scope: Scope, *, status: str | None = None,
                      company: str | None = None, limit: int = 100,
                      offset: int = 0) -> list[dict]:
    """Applications in scope, newest first (without routes)."""
    params = {**scope.params(), "status": status, "company": company, "limit": limit,
              "offset": offset}
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_LIST_APPLICATIONS, params).fetchall()


def reference(conn: psycopg.Connection, application: Mapping[str, Any]
              ) -> tuple[list[Fence], dict[str, str]]:
    """What the checks read: the origin, the destinations (with their registry status and
    closures, store.registry) and every restricted zone as fences (WGS-84), and the company
    of each plate named."""
    ids = [application["origin"], *application["destinations"]]
    with conn.cursor(row_factory=dict_row) as cur:
        fences = [Fence(r["id"], r["kind"], shapely.geometry.shape(r["geometry"]), r["name"],
                        tuple(r["windows"] or ()), r["speed_limit_kmh"])
                  for r in cur.execute(_REFERENCE_FENCES, {"ids": ids})]
    fences = registry.with_state(conn, fences)
    vehicles: dict[str, str] = dict(
        conn.execute(_VEHICLES, {"plates": list(application["plates"])}).fetchall())
    return fences, vehicles


def _check(conn: psycopg.Connection, application: Mapping[str, Any], checker: Checker) -> Report:
    fences, vehicles = reference(conn, application)
    return checker(application, fences, vehicles, _now(conn))


def check(conn: psycopg.Connection, scope: Scope, app_id: int, checker: Checker) -> Report:
    """The checks over an application as the city is now; nothing is written."""
    return _check(conn, get_application(conn, scope, app_id), checker)


def decide(conn: psycopg.Connection, scope: Scope, app_id: int, *, decision: str,
           reason: str | None, actor: str, role: str, checker: Checker) -> Decision:
    """Approve (the checks run again; if they pass, one permit per plate) or reject (a reason
    is required). An application is decided once (Conflict after). A refused approval stores
    its report and an audit row and leaves the application 'applied': the officer rejects it
    or the company withdraws it and applies again — there is no override."""
    if decision not in ("approve", "reject"):
        raise ValueError(f"decision must be 'approve' or 'reject', not {decision!r}")
    if decision == "reject":
        reason = _text(reason, "a reason for the rejection")
    before = get_application(conn, scope, app_id, lock=True)
    if before["status"] != "applied":
        raise Conflict(f"permit application {app_id} is already {before['status']}"
                       f"{' by ' + before['decided_by'] if before['decided_by'] else ''}")
    if decision == "reject":
        conn.execute(_DECIDE, {"id": app_id, "status": "rejected", "actor": actor,
                               "reason": reason, "report": None})
        after = get_application(conn, scope, app_id)
        audit.record(conn, actor=actor, role=role, action="application.reject",
                     resource="permit_application", resource_id=app_id,
                     before=_brief(before), after=_brief(after))
        return Decision(True, after, [], None)
    report = _check(conn, before, checker)
    result = report.as_dict()
    if not report.ok:
        conn.execute(_STORE_REPORT, {"id": app_id, "report": Jsonb(result)})
        after = get_application(conn, scope, app_id)
        audit.record(conn, actor=actor, role=role, action="application.approve_refused",
                     resource="permit_application", resource_id=app_id,
                     before=_brief(before), after=_brief(after))
        return Decision(False, after, [], result)
    conn.execute(_DECIDE, {"id": app_id, "status": "approved", "actor": actor,
                           "reason": reason, "report": Jsonb(result)})
    issued = [r[0] for r in conn.execute(_ISSUE, {"id": app_id, "actor": actor})]
    after = get_application(conn, scope, app_id)
    audit.record(conn, actor=actor, role=role, action="application.approve",
                 resource="permit_application", resource_id=app_id,
                 before=_brief(before), after=_brief(after))
    permits = []
    for permit_id in sorted(issued):
        permit = get_permit(conn, Scope(), permit_id)
        audit.record(conn, actor=actor, role=role, action="permit.issue", resource="permit",
                     resource_id=permit_id, after=_brief(permit))
        permits.append(permit)
    return Decision(True, after, permits, result)


def withdraw(conn: psycopg.Connection, scope: Scope, app_id: int, *, reason: str | None,
             actor: str, role: str) -> dict:
    """The company takes back an application nobody has decided yet."""
    before = get_application(conn, scope, app_id, lock=True)
    if before["status"] != "applied":
        raise Conflict(f"permit application {app_id} is already {before['status']}")
    conn.execute(_DECIDE, {"id": app_id, "status": "withdrawn", "actor": actor,
                           "reason": reason, "report": None})
    after = get_application(conn, scope, app_id)
    audit.record(conn, actor=actor, role=role, action="application.withdraw",
                 resource="permit_application", resource_id=app_id, before=_brief(before),
                 after=_brief(after))
    return after


# --- permits -----------------------------------------------------------------------------------

def get_permit(conn: psycopg.Connection, scope: Scope, permit_id: str, *,
               lock: bool = False) -> dict:
    """A permit with its route, its state now (``current_status``) and its suspensions."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_GET_PERMIT_LOCKED if lock else _GET_PERMIT,
                          {**scope.params(), "id": permit_id}).fetchone()
        if row is None:
            raise NotFound(f"no permit {permit_id!r}")
        row["suspensions"] = cur.execute(_SUSPENSIONS, {"id": permit_id}).fetchall()
    return row


def list_permits(conn: psycopg.Connection, scope: Scope, *, status: str | None = None,
                 current: str | None = None, company: str | None = None,
                 plate: str | None = None, application: int | None = None, limit: int = 100,
                 offset: int = 0) -> list[dict]:
    """Permits in scope (without routes), by id; ``status`` filters the stored status,
    ``current`` the state now (pending, active, suspended, revoked, expired)."""
    params = {**scope.params(), "status": status, "current": current, "company": company,
              "plate": plate, "application": application, "limit": limit, "offset": offset}
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_LIST_PERMITS, params).fetchall()


def valid_at(conn: psycopg.Connection, permit_id: str, at: datetime) -> bool:
    """``permit_valid_at``: inside its validity, not revoked by then, not suspended then."""
    row = conn.execute("SELECT permit_valid_at(%s, %s)", (permit_id, at)).fetchone()
    return bool(row and row[0])


def _movable(permit: Mapping[str, Any], what: str) -> None:
    if permit["status"] == "revoked":
        raise Conflict(f"permit {permit['id']} is revoked (from "
                       f"{permit['status_changed_at'].isoformat()}); it cannot be {what}")
    if permit["status"] == "expired" or permit["current_status"] == "expired":
        raise Conflict(f"permit {permit['id']} expired at {permit['valid_to'].isoformat()}; "
                       f"it cannot be {what}")


def suspend(conn: psycopg.Connection, scope: Scope, permit_id: str, *,
            from_ts: datetime | None, until: datetime | None, reason: str | None, actor: str,
            role: str) -> tuple[dict, dict]:
    """Suspend from ``from_ts`` (default now; not in the past) until ``until`` (exclusive;
    None = until resumed). Returns (before, after)."""
    reason = _text(reason, "a reason for the suspension")
    now = _now(conn)
    start = now if from_ts is None else _aware(from_ts, "from")
    if start < now:
        raise ValueError(f"a suspension cannot start in the past (from {start.isoformat()} is "
                         f"before now, {now.isoformat()})")
    if until is not None and _aware(until, "until") <= start:
        raise ValueError("until must be after from")
    before = get_permit(conn, scope, permit_id, lock=True)
    _movable(before, "suspended")
    if before["status"] == "suspended":
        raise Conflict(f"permit {permit_id} is already suspended (from "
                       f"{before['status_changed_at'].isoformat()}); resume it first")
    conn.execute(_SUSPEND, {"id": permit_id, "from": start, "until": until, "reason": reason,
                            "actor": actor})
    conn.execute(_SET_STATUS, {"id": permit_id, "status": "suspended", "at": start,
                               "reason": reason, "actor": actor})
    after = get_permit(conn, scope, permit_id)
    _audit_move(conn, "permit.suspend", before, after, actor, role)
    return before, after


def resume(conn: psycopg.Connection, scope: Scope, permit_id: str, *, reason: str | None,
           actor: str, role: str) -> tuple[dict, dict]:
    """End the suspension now (a suspension that has not started yet is cancelled)."""
    before = get_permit(conn, scope, permit_id, lock=True)
    _movable(before, "resumed")
    if before["status"] != "suspended":
        raise Conflict(f"permit {permit_id} is {before['status']}, not suspended")
    conn.execute(_END_SUSPENSIONS, {"id": permit_id, "actor": actor})
    conn.execute(_SET_STATUS, {"id": permit_id, "status": "active", "at": _now(conn),
                               "reason": reason or "resumed", "actor": actor})
    after = get_permit(conn, scope, permit_id)
    _audit_move(conn, "permit.resume", before, after, actor, role)
    return before, after


def revoke(conn: psycopg.Connection, scope: Scope, permit_id: str, *, at: datetime | None,
           reason: str | None, actor: str, role: str) -> tuple[dict, dict]:
    """Revoke from ``at`` (default now; not in the past): the permit stops applying at that
    instant, for good. Returns (before, after)."""
    reason = _text(reason, "a reason for the revocation")
    now = _now(conn)
    effective = now if at is None else _aware(at, "at")
    if effective < now:
        raise ValueError(f"a revocation cannot take effect in the past ({effective.isoformat()}"
                         f" is before now, {now.isoformat()})")
    before = get_permit(conn, scope, permit_id, lock=True)
    _movable(before, "revoked")
    conn.execute(_SET_STATUS, {"id": permit_id, "status": "revoked", "at": effective,
                               "reason": reason, "actor": actor})
    after = get_permit(conn, scope, permit_id)
    _audit_move(conn, "permit.revoke", before, after, actor, role)
    return before, after


def _audit_move(conn: psycopg.Connection, action: str, before: Mapping[str, Any],
                after: Mapping[str, Any], actor: str, role: str) -> None:
    audit.record(conn, actor=actor, role=role, action=action, resource="permit",
                 resource_id=str(after["id"]),
                 before={**_brief(before), "suspensions": before["suspensions"]},
                 after={**_brief(after), "suspensions": after["suspensions"]})


def expire(conn: psycopg.Connection, *, actor: str, role: str) -> dict[str, list[str]]:
    """The stored status catches up with time: 'expired' where valid_to has passed, and
    'active' again where every suspension has ended. Nothing reads the stored status for
    validity (``permit_status_at`` derives it), so this may run whenever, e.g. daily."""
    expired = conn.execute(_EXPIRE).fetchall()
    for permit_id, status_before in expired:
        audit.record(conn, actor=actor, role=role, action="permit.expire", resource="permit",
                     resource_id=permit_id, before={"status": status_before},
                     after={"status": "expired", "reason": "validity ended"})
    lapsed = [r[0] for r in conn.execute(_LAPSED, {"actor": actor})]
    for permit_id in sorted(lapsed):
        audit.record(conn, actor=actor, role=role, action="permit.suspension_ended",
                     resource="permit", resource_id=permit_id, before={"status": "suspended"},
                     after={"status": "active", "reason": "suspension ended"})
    return {"expired": [r[0] for r in expired], "resumed": sorted(lapsed)}
