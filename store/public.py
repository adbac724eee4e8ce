"""What the platform publishes (分层应用, issue #21): credit grades and ranks, active permits
and disposal sites for everyone; per-company aggregates for the transport association.

Nothing here returns a position of a truck, a track or a person: these are the queries the
public and association roles are limited to.
"""

from __future__ import annotations

from datetime import date, datetime

import psycopg
from psycopg.rows import dict_row


def grades(conn: psycopg.Connection, as_of: datetime) -> list[dict]:
    """Every company's credit score and grade as of ``as_of``, ranked (1 = best; ties share
    a rank)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT rank() OVER (ORDER BY score DESC) AS rank, company_id, name, vehicles,"
            " violations, score, grade FROM company_scores(%s)"
            " ORDER BY score DESC, company_id", (as_of,)).fetchall()


def active_permits(conn: psycopg.Connection, at: datetime, *, company: str | None = None,
                   limit: int = 1000, offset: int = 0) -> list[dict]:
    """Permits valid at ``at`` (not suspended, revoked or expired: permit_valid_at): plate,
    company, origin and destinations by name, hours and validity — not the route, never a
    position."""
    params: dict = {"at": at, "limit": limit, "offset": offset}
    extra = ""
    if company is not None:
        extra = " AND ve.company_id = %(company)s"
        params["company"] = company
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT p.id, p.plate, ve.company_id, c.name AS company_name, p.origin,"
            " o.name AS origin_name, p.destinations,"
            " (SELECT array_agg(coalesce(f.name, f.id) ORDER BY d.n)"
            "    FROM unnest(p.destinations) WITH ORDINALITY d(id, n)"
            "    LEFT JOIN fences f ON f.id = d.id) AS destination_names,"
            " p.hours, p.valid_from, p.valid_to"
            " FROM permits p LEFT JOIN vehicles ve ON ve.plate = p.plate"
            " LEFT JOIN companies c ON c.id = ve.company_id"
            " LEFT JOIN fences o ON o.id = p.origin"
            " WHERE p.valid_from <= %(at)s AND p.valid_to > %(at)s"
            " AND permit_valid_at(p.id, %(at)s)" + extra +
            " ORDER BY p.plate, p.id LIMIT %(limit)s OFFSET %(offset)s", params).fetchall()


def disposal_sites(conn: psycopg.Connection) -> list[dict]:
    """Disposal sites (消纳场) and transfer docks with their outlines, their state now
    (``status``: open, closed, full or licence_expired — site_status_at in the session's
    time zone, the city's in the API) and capacity: where spoil may go."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT id, kind, name,"
            " site_status_at(id, now(), current_setting('TimeZone')) AS status, capacity_m3,"
            " geometry FROM fences"
            " WHERE kind IN ('disposal_site', 'transfer_dock') ORDER BY kind, id").fetchall()


def association_stats(conn: psycopg.Connection, since: datetime, until: datetime) -> list[dict]:
    """Per company over [since, until): trips, counted violations (not retracted, not
    dismissed), violations per 1,000 trips and per vehicle, and the current grade. No
    plates, no positions, no people."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "WITH t AS (SELECT company_id, count(*) AS trips FROM trips"
            "           WHERE left_at >= %(since)s AND left_at < %(until)s GROUP BY 1),"
            " v AS (SELECT company_id, count(*) AS violations,"
            "              count(*) FILTER (WHERE review = 'confirmed') AS confirmed"
            "       FROM violations WHERE state <> 'retracted' AND review <> 'dismissed'"
            "         AND start_ts >= %(since)s AND start_ts < %(until)s GROUP BY 1)"
            " SELECT s.company_id, s.name, s.vehicles, coalesce(t.trips, 0) AS trips,"
            "   coalesce(v.violations, 0) AS violations, coalesce(v.confirmed, 0) AS confirmed,"
            "   round(1000.0 * coalesce(v.violations, 0) / nullif(t.trips, 0), 2)"
            "     AS violations_per_1000_trips,"
            "   s.score, s.grade"
            " FROM company_scores(%(until)s) s"
            " LEFT JOIN t ON t.company_id = s.company_id"
            " LEFT JOIN v ON v.company_id = s.company_id"
            " ORDER BY violations_per_1000_trips DESC NULLS LAST, s.company_id",
            {"since": since, "until": until}).fetchall()


def score_trend(conn: psycopg.Connection, since: date, until: date,
                company: str | None = None) -> list[dict]:
    """Daily company scores from score_snapshots (written by `muckwatch scores snapshot`)."""
    params: dict = {"since": since, "until": until}
    extra = ""
    if company is not None:
        extra = " AND subject_id = %(company)s"
        params["company"] = company
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT day, subject_id AS company_id, violations, score, grade"
            " FROM score_snapshots WHERE subject = 'company'"
            " AND day >= %(since)s AND day < %(until)s" + extra +
            " ORDER BY subject_id, day", params).fetchall()


def online_rate(conn: psycopg.Connection, day: date, company: str | None = None) -> list[dict]:
    """Per company, of its registered vehicles, how many had their terminal online at some
    moment of the city's local ``day`` (上线率; the connection speaks the city's zone)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT r.company_id, c.name, r.vehicles, r.online, r.rate"
            " FROM online_rate(%(day)s) r LEFT JOIN companies c ON c.id = r.company_id"
            " WHERE %(company)s::text IS NULL OR r.company_id = %(company)s"
            " ORDER BY r.company_id", {"day": day, "company": company}).fetchall()
