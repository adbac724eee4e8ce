"""Each layer's own view (分层应用): the caller's identity; credit grades, active permits and
disposal sites for everyone; per-company aggregates for the transport association;
"who passed here" for officers; the audit log for supervisors and analysts."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, HTTPException, Query, Request

from api.auth import Principal, need
from store import audit, public

router = APIRouter(tags=["published"])


def _now(request: Request) -> datetime:
    return datetime.now(ZoneInfo(request.app.state.config.timezone))


@router.get("/v1/me", summary="Who the token belongs to, and what it may do")
def me(who: Principal = Depends(need("me.read"))) -> dict:
    from api.access import MATRIX

    return {"account": who.account, "role": who.role, "company": who.company,
            "districts": list(who.districts),
            "permissions": sorted(p for p, roles in MATRIX.items() if who.role in roles)}


@router.get("/v1/public/grades", summary="Company credit scores, grades and ranks")
def grades(request: Request, who: Principal = Depends(need("scores.read")),
           as_of: datetime | None = None) -> list[dict]:
    with request.app.state.db.transaction() as conn:
        return public.grades(conn, as_of or _now(request))


@router.get("/v1/public/permits", summary="Permits valid now (no routes, no positions)")
def permits(request: Request, who: Principal = Depends(need("permits.read")),
            company: str | None = None, at: datetime | None = None,
            limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
            offset: Annotated[int, Query(ge=0)] = 0) -> list[dict]:
    with request.app.state.db.transaction() as conn:
        return public.active_permits(conn, at or _now(request), company=company, limit=limit,
                                     offset=offset)


@router.get("/v1/public/sites", summary="Disposal sites and transfer docks with outlines")
def sites(request: Request, who: Principal = Depends(need("sites.read"))) -> list[dict]:
    with request.app.state.db.transaction() as conn:
        return public.disposal_sites(conn)


@router.get("/v1/association/companies",
            summary="Per company: trips, violations per 1,000 trips, score (no positions)")
def association(request: Request, who: Principal = Depends(need("association.read")),
                since: datetime | None = None, until: datetime | None = None) -> list[dict]:
    until = until or _now(request)
    since = since or until - timedelta(days=30)
    if since >= until:
        raise HTTPException(422, "since must be before until")
    with request.app.state.db.transaction() as conn:
        return public.association_stats(conn, since, until)


@router.get("/v1/online-rate",
            summary="Per company: vehicles whose terminal was online on a day (上线率)")
def online_rate(request: Request, who: Principal = Depends(need("online.read")),
                day: date | None = None) -> list[dict]:
    day = day or _now(request).date()
    with request.app.state.db.transaction() as conn:
        return public.online_rate(conn, day, who.company if who.role == "company" else None)


@router.get("/v1/association/trends", summary="Daily company scores (score snapshots)")
def trends(request: Request, who: Principal = Depends(need("association.read")),
           since: date | None = None, until: date | None = None,
           company: str | None = None) -> list[dict]:
    until = until or _now(request).date() + timedelta(days=1)
    since = since or until - timedelta(days=90)
    with request.app.state.db.transaction() as conn:
        return public.score_trend(conn, since, until, company)


@router.get("/v1/passed", summary="Who passed here: loaded trucks near a place in a window")
def passed(request: Request, who: Principal = Depends(need("telemetry.read")),
           lon: Annotated[float, Query(ge=-180, le=180)] = 0.0,
           lat: Annotated[float, Query(ge=-90, le=90)] = 0.0,
           radius_m: Annotated[float, Query(gt=0, le=5000)] = 200.0,
           since: datetime | None = None, until: datetime | None = None,
           loaded_only: bool = True,
           limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[dict]:
    from store.passed import who_passed

    if since is None or until is None:
        raise HTTPException(422, "since and until are required (ISO 8601 with a time zone)")
    with request.app.state.db.transaction() as conn:
        rows = who_passed(conn, lon, lat, radius_m, since, until, loaded_only=loaded_only,
                          limit=limit)
    return [dataclasses.asdict(r) for r in rows]


@router.get("/v1/audit", summary="The audit log, newest first")
def audit_log(request: Request, who: Principal = Depends(need("audit.read")),
              resource: str | None = None, resource_id: str | None = None,
              actor: str | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
              offset: Annotated[int, Query(ge=0)] = 0) -> list[dict]:
    with request.app.state.db.transaction() as conn:
        return audit.entries(conn, resource=resource, resource_id=resource_id, actor=actor,
                             limit=limit, offset=offset)
