"""Reference data (companies, vehicles, fences, permits, districts) into the database, for
analysts' joins.

Upserts by id, so re-importing an edited bundle updates rows in place. Districts (issue #21)
are fences of kind 'district' plus their outlines in ``district_areas`` (PostgreSQL's built-in
polygon type, exterior rings only), which is replaced as a whole: a district dropped from the
bundle no longer tags violations, and every violation's district is recomputed
(``assign_violation_districts()``, store/migrations/0007_districts.sql).

Registry columns (issue #22, migration 0012) follow one rule: **what the bundle states wins,
what it leaves out is kept**. A site's status, capacity and licence, a vehicle's rated load,
volume, type and inspection, a company's licence are updated when the bundle gives them and
left as they are (set through the API, docs/permits.md "Registry") when it does not. A status
the bundle states that differs from the site's current one is recorded as a change in
``site_status_changes`` from the import's time (changed_by ``import``), so the history stays
whole and the running ingest applies it from then on.
"""

from __future__ import annotations

import json

import psycopg
import shapely
from shapely.geometry.base import BaseGeometry

from domain.city import City, Fence
from store import registry


def polygon_literals(geometry: BaseGeometry) -> list[str]:
    """One PostgreSQL ``polygon`` literal per part, ``'((lon,lat),…)'``: the exterior ring
    without its closing position (holes are ignored for the district lookup)."""
    literals = []
    for part in shapely.get_parts(geometry):
        ring = shapely.get_coordinates(part.exterior)[:-1]
        literals.append("(" + ",".join(f"({x!r},{y!r})" for x, y in ring.tolist()) + ")")
    return literals


def _fence_row(f: Fence) -> tuple:
    return (f.id, f.kind, f.name, list(f.windows) or None, f.speed_limit_kmh,
            json.dumps(shapely.geometry.mapping(f.geometry)), f.capacity_m3, f.licence_expires)




def _replace_districts(cur: psycopg.Cursor, city: City) -> None:
    """district_areas := the bundle's districts, and every violation re-tagged. Violations are
    locked against writes (reads go on) until the import commits, so a violation the ingest
    writes meanwhile cannot keep a district looked up in the outlines being replaced."""
    cur.execute("LOCK TABLE violations IN SHARE ROW EXCLUSIVE MODE")
    cur.execute("DELETE FROM district_areas")
    cur.executemany(
        "INSERT INTO district_areas (district_id, part, area) VALUES (%s, %s, %s::polygon)",
        [(d.id, k, literal) for d in city.districts
         for k, literal in enumerate(polygon_literals(d.geometry))],
    )
    cur.execute("SELECT assign_violation_districts()")


def import_city(conn: psycopg.Connection, city: City, progress=None) -> dict[str, int]:
    """Upsert the bundle's companies, vehicles, fences, permits and districts in one
    transaction, then re-tag every violation with its district; ``progress(table)`` is called
    after each table (the CLI's progress bar)."""
    tick = progress or (lambda table: None)
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO companies (id, name, licence_no, licence_expires)"
            " VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (id) DO UPDATE SET name = excluded.name,"
            " licence_no = coalesce(excluded.licence_no, companies.licence_no),"
            " licence_expires = coalesce(excluded.licence_expires, companies.licence_expires)",
            [(c.id, c.name, c.licence_no, c.licence_expires) for c in city.companies],
        )
        tick("companies")
        cur.executemany(
            "INSERT INTO vehicles (plate, device_id, company_id, rated_load_kg, volume_m3,"
            " vehicle_type, inspection_expires) VALUES (%s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (plate) DO UPDATE SET device_id = excluded.device_id,"
            " company_id = excluded.company_id,"
            " rated_load_kg = coalesce(excluded.rated_load_kg, vehicles.rated_load_kg),"
            " volume_m3 = coalesce(excluded.volume_m3, vehicles.volume_m3),"
            " vehicle_type = coalesce(excluded.vehicle_type, vehicles.vehicle_type),"
            " inspection_expires = coalesce(excluded.inspection_expires,"
            "                               vehicles.inspection_expires)",
            [(v.plate, v.device_id, v.company_id, v.rated_load_kg, v.volume_m3,
              v.vehicle_type, v.inspection_expires) for v in city.vehicles],
        )
        tick("vehicles")
        cur.executemany(
            "INSERT INTO fences (id, kind, name, windows, speed_limit_kmh, geometry,"
            " capacity_m3, licence_expires) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, name = excluded.name,"
            " windows = excluded.windows, speed_limit_kmh = excluded.speed_limit_kmh,"
            " geometry = excluded.geometry,"
            " capacity_m3 = coalesce(excluded.capacity_m3, fences.capacity_m3),"
            " licence_expires = coalesce(excluded.licence_expires, fences.licence_expires)",
            [_fence_row(f) for f in (*city.fences, *city.districts)],
        )
        registry.import_statuses(cur, city.fences)
        tick("fences")
        # bundle permits arrive 'active' with their vehicle's company (migration 0010); a
        # re-import updates what the bundle says and keeps the life cycle (a suspension or
        # revocation stays; an 'expired' one whose validity the bundle extended is 'active'
        # again), and never overwrites a permit issued from an application
        cur.executemany(
            "INSERT INTO permits (id, plate, origin, destinations, corridor_m, valid_from,"
            " valid_to, hours, route, company_id, status, job, declared_volume_m3)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s,"
            " (SELECT company_id FROM vehicles WHERE plate = %s), 'active', %s, %s)"
            " ON CONFLICT (id) DO UPDATE SET plate = excluded.plate, origin = excluded.origin,"
            " destinations = excluded.destinations, corridor_m = excluded.corridor_m,"
            " valid_from = excluded.valid_from, valid_to = excluded.valid_to,"
            " hours = excluded.hours, route = excluded.route,"
            " company_id = excluded.company_id, job = excluded.job,"
            " declared_volume_m3 = excluded.declared_volume_m3,"
            " status = CASE WHEN permits.status = 'expired' AND excluded.valid_to >= now()"
            "   THEN 'active' ELSE permits.status END"
            " WHERE permits.application_id IS NULL",
            [(p.id, p.plate, p.origin, list(p.destinations), p.corridor_m, p.valid_from,
              p.valid_to, p.hours, json.dumps(shapely.geometry.mapping(p.route)), p.plate,
              p.job_id, p.declared_volume_m3)
             for p in city.permits],
        )
        _replace_districts(cur, city)
        tick("permits")  # and districts: the CLI's bar counts four steps
    return {"companies": len(city.companies), "vehicles": len(city.vehicles),
            "fences": len(city.fences), "permits": len(city.permits),
            "districts": len(city.districts)}
