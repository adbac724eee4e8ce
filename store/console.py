"""The console's reference reads: fences to draw, permits with their routes (for corridors),
and the lists its filters offer. Constant SQL; scope by company where a company asks."""

from __future__ import annotations

from datetime import datetime

import psycopg
from psycopg.rows import dict_row

_FENCES = "SELECT id, kind, name, geometry FROM fences ORDER BY kind, id"
_PERMITS_NOW = """
SELECT p.id AS permit_id, p.plate, p.company_id, p.origin, p.destinations, p.corridor_m,
       p.route
FROM permits p
WHERE p.valid_from <= %(at)s AND p.valid_to > %(at)s
  AND permit_status_at(p.id, %(at)s) = 'active'
  AND (%(company)s::text IS NULL OR p.company_id = %(company)s)
ORDER BY p.id
"""
_PERMIT = """
SELECT p.id AS permit_id, p.plate, p.company_id, p.origin, p.destinations, p.corridor_m,
       p.route
FROM permits p
WHERE p.id = %(id)s AND (%(company)s::text IS NULL OR p.company_id = %(company)s)
"""
_DISTRICTS = "SELECT id, name FROM fences WHERE kind = 'district' ORDER BY id"
_COMPANIES = ("SELECT id, name FROM companies"
              " WHERE %(company)s::text IS NULL OR id = %(company)s ORDER BY id")


def fences(conn: psycopg.Connection) -> dict:
    """Every fence (districts included) as a GeoJSON FeatureCollection."""
    rows = conn.execute(_FENCES).fetchall()
    return {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": geometry,
         "properties": {"id": fid, "kind": kind, "name": name}}
        for fid, kind, name, geometry in rows]}


def permits_now(conn: psycopg.Connection, at: datetime, company: str | None = None
                ) -> list[dict]:
    """Permits in force at ``at`` (valid and neither suspended nor revoked), with routes."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_PERMITS_NOW, {"at": at, "company": company}).fetchall()


def permit(conn: psycopg.Connection, permit_id: str, company: str | None = None
           ) -> dict | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_PERMIT, {"id": permit_id, "company": company}).fetchone()


def filter_lists(conn: psycopg.Connection, company: str | None = None) -> dict:
    """Districts and companies (a company: only itself) for the console's filters."""
    with conn.cursor(row_factory=dict_row) as cur:
        return {"districts": cur.execute(_DISTRICTS).fetchall(),
                "companies": cur.execute(_COMPANIES, {"company": company}).fetchall()}
