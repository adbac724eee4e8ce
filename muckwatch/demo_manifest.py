"""The demo's paperwork: a company applies for a permit, the officer approves it, and one
truck hauls under it from the construction site to the disposal site, where the site's
operator confirms the receipt — the electronic manifest (电子联单) end to end, through the
HTTP API as the people's own tools would (issue #22, docs/permits.md).

The haul is short on purpose (the nearest construction site and open disposal site of the
city, a straight route between them), so it is done within about a minute and a half of
real time — legs are real device time, and a permit applies only from its approval.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import psycopg
import shapely
import shapely.ops

from domain.city import City
from geofence.projection import Projector
from simulator.scenarios import TruckTrack
from store.accounts import add_account, rotate_token

COMPANY_ACCOUNT = "demo-company"
OPERATOR_ACCOUNT = "demo-site-operator"
SPEED_KMH = 55.0  # under the 60 km/h muck-truck limit
DECLARED_M3 = 200.0


@dataclass(frozen=True)
class Haul:
    """Who hauls what from where to where."""

    plate: str
    device: str
    company: str
    origin: str
    destination: str
    route: shapely.LineString  # WGS-84, origin → destination


def plan_haul(city: City) -> Haul | None:
    """The nearest (construction site, open disposal site) pair whose straight route keeps
    out of restricted zones, and a registered truck holding no permit of the bundle: the
    last such (the fleet drives permit holders; the demo's NO_PERMIT offender is the
    first)."""
    projector = Projector(city.metric_epsg)

    def metric(g):
        return shapely.transform(g, lambda xy: np.column_stack(
            projector.to_metric(xy[:, 0], xy[:, 1])))

    holders = {p.plate for p in city.permits}
    free = [v for v in city.vehicles if v.plate not in holders]
    truck = free[-1] if len(free) > 1 else None
    if truck is None:
        return None
    sites = [f for f in city.fences if f.kind == "construction_site"]
    dumps = [f for f in city.fences if f.kind == "disposal_site"
             and (f.status or "open") == "open"]
    zones = [metric(f.geometry) for f in city.fences if f.kind == "restricted_zone"]
    pairs = sorted((metric(a.geometry).distance(metric(b.geometry)), a.id, b.id)
                   for a in sites for b in dumps)
    by_id = {f.id: f for f in city.fences}
    for _, a, b in pairs[:20]:
        # from just inside the site to just inside the disposal site, where they are
        # nearest: the shortest haul the city allows
        site, dump = by_id[a].geometry, by_id[b].geometry
        near_site, near_dump = shapely.ops.nearest_points(site, dump)
        start = _inside(site, near_site)
        end = _inside(dump, near_dump)
        route = shapely.LineString([start, end])
        if not any(metric(route).intersects(z) for z in zones):
            return Haul(truck.plate, truck.device_id, truck.company_id, a, b, route)
    return None


def _inside(area, edge: shapely.Point, share: float = 0.15) -> shapely.Point:
    """A point a little way from ``edge`` towards the inside of ``area`` (a share of the
    way to its representative point), so the first and last fixes are well inside."""
    centre = area.representative_point()
    p = shapely.LineString([edge, centre]).interpolate(share, normalized=True)
    return p if area.contains(p) else centre


def haul_track(city: City, haul: Haul, start_ms: int, interval_s: float) -> TruckTrack:
    """Loaded in the site, drives to the disposal site, tips, waits: one manifest line."""
    t = TruckTrack(city, haul.device, start_ms, interval_s=interval_s)
    line = t.metric(haul.route)
    t.go_to(*line.coords[0])
    t.dwell(8, lid=0, lift=0, load=2)
    t.drive(line, SPEED_KMH, lid=0, lift=0, load=2)
    t.dwell(6, lid=0, lift=0, load=2)
    t.dwell(15, lid=1, lift=1, load=2)
    t.dwell(6, lid=0, lift=0, load=0)
    return t


def accounts(dsn: str, company: str, site: str) -> tuple[str, str]:
    """Tokens for the demo's company and site operator: made once, and on later runs (a
    shared database) pointed at this run's company and site with a new token."""
    tokens = []
    with psycopg.connect(dsn) as conn:
        for account, role, company_id, sites in ((COMPANY_ACCOUNT, "company", company, None),
                                                 (OPERATOR_ACCOUNT, "site_operator", None,
                                                  [site])):
            row = conn.execute("SELECT role FROM api_accounts WHERE id = %s"
                               " AND revoked_at IS NULL", (account,)).fetchone()
            if row is not None and row[0] == role:
                conn.execute("UPDATE api_accounts SET company_id = %s,"
                             " sites = coalesce(%s, sites) WHERE id = %s",
                             (company_id, sites, account))
                conn.commit()
                tokens.append(rotate_token(conn, account))
                continue
            conn.execute("DELETE FROM api_accounts WHERE id = %s", (account,))
            conn.commit()
            tokens.append(add_account(conn, account, role, company=company_id,
                                      sites=tuple(sites or ())))
    return tokens[0], tokens[1]


def apply_and_approve(url: str, company_token: str, officer_token: str,
                      haul: Haul) -> tuple[str, list[str]]:
    """The company applies (出土申报), the officer approves: the permit id and what was
    done, a line per step."""
    now = datetime.now(UTC)
    body = {"origin": haul.origin, "destinations": [haul.destination],
            "plates": [haul.plate],
            "route": {"type": "LineString", "coordinates": [list(c) for c in haul.route.coords]},
            "crs": "wgs84", "corridor_m": 150, "valid_from": now.isoformat(),
            "valid_to": (now + timedelta(days=30)).isoformat(),
            "declared_volume_m3": DECLARED_M3}
    done = []
    with httpx.Client(base_url=url, timeout=10) as api:
        r = api.post("/v1/permits/applications", json=body,
                     headers={"Authorization": f"Bearer {company_token}"})
        r.raise_for_status()
        app = r.json()
        done.append(f"POST /v1/permits/applications → {r.status_code} application "
                    f"{app['id']} ({haul.company}: {haul.origin} → {haul.destination}, "
                    f"{haul.plate}, {DECLARED_M3:g} m³)")
        r = api.post(f"/v1/permits/applications/{app['id']}/decision",
                     json={"decision": "approve"},
                     headers={"Authorization": f"Bearer {officer_token}"})
        r.raise_for_status()
        permits = r.json()["permits"]
        permit = permits[0]["id"]
        done.append(f"POST /v1/permits/applications/{app['id']}/decision → "
                    f"{r.status_code} approved: permit {permit}")
    return permit, done


def arrival_of(dsn: str, haul: Haul, since_ms: int, timeout_s: float = 15.0) -> int | None:
    """The device time (ms) the haul arrived, once the pipeline has stored it."""
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(dsn, autocommit=True) as conn:
        while True:
            row = conn.execute(
                "SELECT (extract(epoch FROM arrived_at) * 1000)::bigint FROM trips"
                " WHERE plate = %s AND destination = %s AND arrived_at IS NOT NULL"
                "   AND left_at >= timestamptz 'epoch' + %s * interval '1 millisecond'"
                " ORDER BY arrived_at DESC LIMIT 1",
                (haul.plate, haul.destination, since_ms)).fetchone()
            if row is not None or time.monotonic() > deadline:
                return None if row is None else int(row[0])
            time.sleep(0.2)


def receipt_and_manifest(url: str, operator_token: str, officer_token: str, haul: Haul,
                         arrived_ms: int) -> list[str]:
    """The site operator confirms the load; the officer reads the manifest line."""
    done = []
    received = datetime.fromtimestamp(arrived_ms / 1000, UTC) + timedelta(seconds=5)
    with httpx.Client(base_url=url, timeout=10) as api:
        r = api.post("/v1/receipts", json={"site": haul.destination, "plate": haul.plate,
                                           "received_at": received.isoformat(),
                                           "volume_m3": 15.0},
                     headers={"Authorization": f"Bearer {operator_token}"})
        r.raise_for_status()
        done.append(f"POST /v1/receipts → {r.status_code} ({haul.destination} received "
                    f"{haul.plate} at {received:%H:%M:%S} UTC, 15 m³)")
        r = api.get("/v1/manifest", params={"plate": haul.plate},
                    headers={"Authorization": f"Bearer {officer_token}"})
        r.raise_for_status()
        data = r.json()
        lines = data.get("lines", data) if isinstance(data, dict) else data
        for line in lines[:1]:
            done.append(f"GET /v1/manifest?plate=… → {_describe(line)}")
        if not lines:
            done.append("GET /v1/manifest?plate=… → no manifest line (not landed yet)")
    return done


def _describe(line: dict) -> str:
    keys = ("permit_id", "origin", "left_at", "destination", "arrived_at", "volume_m3",
            "volume_source", "receipt_received_at", "status")
    return ", ".join(f"{k} {line.get(k)}" for k in keys if k in line)
