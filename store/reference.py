"""Reference data (companies, vehicles, fences, permits) into the database, for analysts' joins.

Upserts by id, so re-importing an edited bundle updates rows in place.
"""

from __future__ import annotations

import json

import psycopg
import shapely

from domain.city import City


def import_city(conn: psycopg.Connection, city: City, progress=None) -> dict[str, int]:
    """Upsert the bundle's companies, vehicles, fences and permits in one transaction;
    ``progress(table)`` is called after each table (the CLI's progress bar)."""
    tick = progress or (lambda table: None)
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO companies (id, name) VALUES (%s, %s)"
            " ON CONFLICT (id) DO UPDATE SET name = excluded.name",
            [(c.id, c.name) for c in city.companies],
        )
        tick("companies")
        cur.executemany(
            "INSERT INTO vehicles (plate, device_id, company_id) VALUES (%s, %s, %s)"
            " ON CONFLICT (plate) DO UPDATE SET device_id = excluded.device_id,"
            " company_id = excluded.company_id",
            [(v.plate, v.device_id, v.company_id) for v in city.vehicles],
        )
        tick("vehicles")
        cur.executemany(
            "INSERT INTO fences (id, kind, name, windows, speed_limit_kmh, geometry)"
            " VALUES (%s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, name = excluded.name,"
            " windows = excluded.windows, speed_limit_kmh = excluded.speed_limit_kmh,"
            " geometry = excluded.geometry",
            [(f.id, f.kind, f.name, list(f.windows) or None, f.speed_limit_kmh,
              json.dumps(shapely.geometry.mapping(f.geometry))) for f in city.fences],
        )
        tick("fences")
        cur.executemany(
            "INSERT INTO permits (id, plate, origin, destinations, corridor_m, valid_from,"
            " valid_to, hours, route) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (id) DO UPDATE SET plate = excluded.plate, origin = excluded.origin,"
            " destinations = excluded.destinations, corridor_m = excluded.corridor_m,"
            " valid_from = excluded.valid_from, valid_to = excluded.valid_to,"
            " hours = excluded.hours, route = excluded.route",
            [(p.id, p.plate, p.origin, list(p.destinations), p.corridor_m, p.valid_from,
              p.valid_to, p.hours, json.dumps(shapely.geometry.mapping(p.route)))
             for p in city.permits],
        )
        tick("permits")
    return {"companies": len(city.companies), "vehicles": len(city.vehicles),
            "fences": len(city.fences), "permits": len(city.permits)}
