"""Reference data as the database holds it now: permits with their effective validity and
suspensions, vehicles, and sites with their status history — what ``muckwatch run`` merges
over the city bundle while it runs (issue #22, docs/permits.md).

Effective validity is by device time: a permit revoked at 14:00 ends at 14:00 (its
``valid_to`` is moved to just before), a suspension is a gap; a fix recorded before the
change — late ones included — is judged by the permit as it was then. Sites likewise: a
site closed (or full) from 14:00 is closed for fixes from 14:00 on (``load_sites``: each
closure an interval, store.registry), and a site whose licence has expired is closed from
the local midnight after its expiry day (``Fence.closed_intervals``, in the city's time zone).
"""

from __future__ import annotations

import psycopg
import shapely.geometry

from domain.city import FAR_MS, Permit, Vehicle
from store.registry import load_sites

__all__ = ["CHANNEL", "load", "load_sites"]

# migration 0011: NOTIFY on permits, suspensions, vehicles, fences; 0012: site status
# changes and companies
CHANNEL = "muckwatch_reference"
_FAR = FAR_MS  # 9999-12-31: an open-ended suspension

_PERMITS = """
SELECT p.id, p.plate, p.origin, p.destinations, p.corridor_m, p.valid_from,
       CASE WHEN p.status = 'revoked'
            THEN least(p.valid_to, p.status_changed_at - interval '1 millisecond')
            ELSE p.valid_to END,
       p.route, p.hours,
       coalesce((SELECT array_agg(ARRAY[(extract(epoch FROM s.from_ts) * 1000)::bigint,
                                        coalesce((extract(epoch FROM s.to_ts) * 1000)::bigint,
                                                 %(far)s)] ORDER BY s.from_ts)
                 FROM permit_suspensions s WHERE s.permit_id = p.id), '{}'),
       coalesce(p.job, p.id), p.declared_volume_m3, coalesce(j.hauled, 0)
FROM permits p
LEFT JOIN (SELECT q.job, sum(t.volume_m3) AS hauled
           FROM trips t JOIN permits q ON q.id = t.permit_id
           WHERE q.valid_to > now() - interval '1 day'
           GROUP BY q.job) j ON j.job = p.job
ORDER BY p.id
"""
_VEHICLES = """SELECT plate, device_id, company_id, rated_load_kg, volume_m3, vehicle_type,
       inspection_expires
FROM vehicles ORDER BY plate"""


def _permit(row: tuple) -> Permit:
    (pid, plate, origin, destinations, corridor, valid_from, valid_to, route, hours, gaps,
     job, declared, hauled) = row
    return Permit(pid, plate, origin, tuple(destinations), float(corridor), valid_from,
                  valid_to, shapely.geometry.shape(route), hours,
                  tuple((int(a), int(b)) for a, b in gaps), job=job,
                  declared_volume_m3=float(declared) if declared is not None else None,
                  hauled_m3=float(hauled))


def _vehicle(row: tuple) -> Vehicle:
    plate, device_id, company_id, rated_kg, volume, kind, inspection = row
    return Vehicle(plate, device_id, company_id,
                   float(rated_kg) if rated_kg is not None else None,
                   float(volume) if volume is not None else None, kind, inspection)


async def load(conn: psycopg.AsyncConnection) -> tuple[list[Permit], list[Vehicle]]:
    """Every permit (effective validity, suspensions) and vehicle in the database."""
    cur = await conn.execute(_PERMITS, {"far": _FAR})
    permits = [_permit(r) for r in await cur.fetchall()]
    cur = await conn.execute(_VEHICLES)
    vehicles = [_vehicle(r) for r in await cur.fetchall()]
    return permits, vehicles
