"""The registry (issue #22, docs/permits.md "Registry"): sites with their status (open /
closed / full, with its history), capacity and licence; vehicles with rated load, volume,
type and inspection; companies with their licence. Officers and supervisors close and
re-open sites (``sites.status``), supervisors edit the rest (``registry.manage``); a company
reads its own vehicles and company. The SQL and the audit rows are ``store.registry``."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from api.auth import Principal, need
from store import registry as store

router = APIRouter(tags=["registry"])
Limit = Annotated[int, Query(ge=1, le=5000)]
Offset = Annotated[int, Query(ge=0)]


class SiteStatusBody(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    status: Literal["open", "closed", "full"]
    from_ts: datetime | None = Field(default=None, alias="from",
                                     description="when it takes effect (default now, not past)")
    reason: str | None = Field(default=None, max_length=4000,
                               description="required to close or mark full")


class SitePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    capacity_m3: float | None = Field(default=None, gt=0, le=1e9)
    licence_expires: date | None = Field(default=None, description="valid through this day")


class VehiclePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rated_load_kg: float | None = Field(default=None, gt=0, le=1e6)
    volume_m3: float | None = Field(default=None, gt=0, le=1e4)
    vehicle_type: str | None = Field(default=None, min_length=1, max_length=100)
    inspection_expires: date | None = Field(default=None, description="valid through this day")


class CompanyPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    licence_no: str | None = Field(default=None, min_length=1, max_length=100)
    licence_expires: date | None = Field(default=None, description="valid through this day")


def _tz(request: Request) -> str:
    return request.app.state.config.timezone


def _given(body: BaseModel) -> dict[str, Any]:
    """The fields the caller sent (a field sent as null clears it; one left out is kept)."""
    return body.model_dump(include=body.model_fields_set)


@router.get("/v1/registry/sites", summary="Sites with status, capacity, licence and state now")
def sites(request: Request, who: Principal = Depends(need("registry.read")),
          kind: Literal["construction_site", "disposal_site", "transfer_dock"] | None = None,
          current: Literal["open", "closed", "full", "licence_expired"] | None = None,
          limit: Limit = 1000, offset: Offset = 0) -> list[dict]:
    with request.app.state.db.transaction() as conn:
        return store.list_sites(conn, kind=kind, current=current, timezone=_tz(request),
                                limit=limit, offset=offset)


@router.get("/v1/registry/sites/{site_id}", summary="One site with its status history")
def site(site_id: str, request: Request,
         who: Principal = Depends(need("registry.read"))) -> dict:
    with request.app.state.db.transaction() as conn:
        return store.get_site(conn, site_id, timezone=_tz(request))


@router.post("/v1/registry/sites/{site_id}/status",
             summary="Close, mark full or re-open a site from a time (≥ now); audited")
def site_status(site_id: str, body: SiteStatusBody, request: Request,
                who: Principal = Depends(need("sites.status"))) -> dict:
    with request.app.state.db.transaction() as conn:
        _, after = store.set_site_status(conn, site_id, status=body.status,
                                         from_ts=body.from_ts, reason=body.reason,
                                         actor=who.account, role=who.role,
                                         timezone=_tz(request))
    return after


@router.patch("/v1/registry/sites/{site_id}", summary="Set a site's capacity or licence expiry")
def patch_site(site_id: str, body: SitePatch, request: Request,
               who: Principal = Depends(need("registry.manage"))) -> dict:
    with request.app.state.db.transaction() as conn:
        return store.update_site(conn, site_id, _given(body), actor=who.account, role=who.role,
                                 timezone=_tz(request))


@router.get("/v1/registry/vehicles", summary="Vehicles in the caller's scope")
def vehicles(request: Request, who: Principal = Depends(need("registry.read")),
             company: str | None = None, vehicle_type: str | None = None,
             limit: Limit = 1000, offset: Offset = 0) -> list[dict]:
    with request.app.state.db.transaction() as conn:
        return store.list_vehicles(conn, who.scope, company=company, vehicle_type=vehicle_type,
                                   timezone=_tz(request), limit=limit, offset=offset)


@router.get("/v1/registry/vehicles/{plate}", summary="One vehicle")
def vehicle(plate: str, request: Request,
            who: Principal = Depends(need("registry.read"))) -> dict:
    with request.app.state.db.transaction() as conn:
        return store.get_vehicle(conn, who.scope, plate, timezone=_tz(request))


@router.patch("/v1/registry/vehicles/{plate}",
              summary="Set a vehicle's rated load, volume, type or inspection expiry")
def patch_vehicle(plate: str, body: VehiclePatch, request: Request,
                  who: Principal = Depends(need("registry.manage"))) -> dict:
    with request.app.state.db.transaction() as conn:
        return store.update_vehicle(conn, plate, _given(body), actor=who.account,
                                    role=who.role, timezone=_tz(request))


@router.get("/v1/registry/companies", summary="Companies in the caller's scope")
def companies(request: Request, who: Principal = Depends(need("registry.read")),
              limit: Limit = 1000, offset: Offset = 0) -> list[dict]:
    with request.app.state.db.transaction() as conn:
        return store.list_companies(conn, who.scope, timezone=_tz(request), limit=limit,
                                    offset=offset)


@router.get("/v1/registry/companies/{company_id}", summary="One company")
def company(company_id: str, request: Request,
            who: Principal = Depends(need("registry.read"))) -> dict:
    with request.app.state.db.transaction() as conn:
        return store.get_company(conn, who.scope, company_id, timezone=_tz(request))


@router.patch("/v1/registry/companies/{company_id}",
              summary="Set a company's licence number or expiry")
def patch_company(company_id: str, body: CompanyPatch, request: Request,
                  who: Principal = Depends(need("registry.manage"))) -> dict:
    with request.app.state.db.transaction() as conn:
        return store.update_company(conn, company_id, _given(body), actor=who.account,
                                    role=who.role, timezone=_tz(request))
