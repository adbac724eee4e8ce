"""Permits with a life cycle (issue #22, docs/permits.md): a company applies (出土申报), an
officer approves — after the checks of ``permits.checks`` pass — or rejects with a reason
(核准); approved applications become one permit per plate, which officers suspend, resume and
revoke. The SQL and the audit rows are ``store.permits``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from api.auth import Principal, need
from domain.settings import PermitSettings
from permits.checks import checker
from store import permits as store

router = APIRouter(tags=["permits"])
Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0)]
Id = Annotated[str, Field(min_length=1, max_length=64)]


class LineString(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["LineString"]
    coordinates: list[list[float]] = Field(min_length=2, max_length=10_000)


class ApplicationBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    origin: Id = Field(description="construction site (工地) fence id")
    destinations: list[Id] = Field(min_length=1, max_length=20,
                                   description="disposal site / transfer dock fence ids")
    plates: list[Id] = Field(min_length=1, max_length=200,
                             description="the company's vehicles")
    route: LineString
    crs: Literal["wgs84", "gcj02", "bd09"] = Field(
        default="wgs84", description="the map the route was drawn on; stored as WGS-84")
    corridor_m: float = Field(gt=0, le=5000, description="corridor half-width, metres")
    hours: str | None = Field(default=None, pattern=r"^\d\d:\d\d-\d\d:\d\d$",
                              description='local "HH:MM-HH:MM"; absent = any hour')
    valid_from: datetime
    valid_to: datetime
    declared_volume_m3: float = Field(gt=0, le=10_000_000)


class DecisionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision: Literal["approve", "reject"]
    reason: str | None = Field(default=None, max_length=4000,
                               description="required to reject")


class WithdrawBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str | None = Field(default=None, max_length=4000)


class PermitAction(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    action: Literal["suspend", "resume", "revoke"]
    from_ts: datetime | None = Field(default=None, alias="from",
                                     description="suspend: start (default now, not past)")
    until: datetime | None = Field(default=None, description="suspend: end (exclusive); "
                                                             "absent = until resumed")
    at: datetime | None = Field(default=None,
                                description="revoke: effective time (default now, not past)")
    reason: str | None = Field(default=None, max_length=4000,
                               description="required to suspend and revoke")


def _settings(request: Request) -> PermitSettings:
    """``[permits]`` of the server's configuration (ApiConfig.permits)."""
    return request.app.state.config.permits


def _checker(request: Request) -> store.Checker:
    return checker(_settings(request), request.app.state.config.timezone)


@router.post("/v1/permits/applications", status_code=201,
             summary="A company applies for a permit (出土申报); the checks run at once")
def apply(body: ApplicationBody, request: Request,
          who: Principal = Depends(need("permits.apply"))) -> dict:
    assert who.company is not None
    with request.app.state.db.transaction() as conn:
        return store.submit(
            conn, company_id=who.company, origin=body.origin, destinations=body.destinations,
            plates=body.plates, route=body.route.model_dump(), crs=body.crs,
            corridor_m=body.corridor_m, hours=body.hours, valid_from=body.valid_from,
            valid_to=body.valid_to, declared_volume_m3=body.declared_volume_m3,
            actor=who.account, role=who.role, checker=_checker(request))


@router.get("/v1/permits/applications", summary="Permit applications in the caller's scope")
def applications(request: Request, who: Principal = Depends(need("applications.read")),
                 status: Literal["applied", "approved", "rejected", "withdrawn"] | None = None,
                 company: str | None = None, limit: Limit = 100,
                 offset: Offset = 0) -> list[dict]:
    with request.app.state.db.transaction() as conn:
        return store.list_applications(conn, who.scope, status=status, company=company,
                                       limit=limit, offset=offset)


@router.get("/v1/permits/applications/{app_id}",
            summary="One application with its route and its last check report")
def application(app_id: int, request: Request,
                who: Principal = Depends(need("applications.read"))) -> dict:
    with request.app.state.db.transaction() as conn:
        return store.get_application(conn, who.scope, app_id)


@router.get("/v1/permits/applications/{app_id}/check",
            summary="Run the approval checks now (nothing is stored)")
def check(app_id: int, request: Request,
          who: Principal = Depends(need("applications.read"))) -> dict:
    with request.app.state.db.transaction() as conn:
        return store.check(conn, who.scope, app_id, _checker(request)).as_dict()


@router.post("/v1/permits/applications/{app_id}/decision",
             summary="Approve (the checks must pass: else 422 with the report) or reject")
def decide(app_id: int, body: DecisionBody, request: Request,
           who: Principal = Depends(need("permits.decide"))) -> Any:
    with request.app.state.db.transaction() as conn:
        result = store.decide(conn, who.scope, app_id, decision=body.decision,
                              reason=body.reason, actor=who.account, role=who.role,
                              checker=_checker(request))
    if not result.ok:  # the report and its audit row are committed; nothing was approved
        report = result.report or {}
        failed = ", ".join(p["code"] for p in report.get("problems", ())
                           if p["severity"] == "error")
        return JSONResponse(_plain({"detail": f"the checks refuse the approval: {failed}",
                                    "report": report}), 422)
    return {"application": result.application, "permits": result.permits,
            "report": result.report}


@router.post("/v1/permits/applications/{app_id}/withdraw",
             summary="The company withdraws an application nobody has decided yet")
def withdraw(app_id: int, body: WithdrawBody, request: Request,
             who: Principal = Depends(need("permits.apply"))) -> dict:
    with request.app.state.db.transaction() as conn:
        return store.withdraw(conn, who.scope, app_id, reason=body.reason, actor=who.account,
                              role=who.role)


@router.get("/v1/permits", summary="Permits in the caller's scope, with their state now")
def permits(request: Request, who: Principal = Depends(need("permits.list")),
            status: Literal["active", "suspended", "revoked", "expired"] | None = None,
            current: Literal["pending", "active", "suspended", "revoked", "expired"] | None
            = None, company: str | None = None, plate: str | None = None,
            application: int | None = None, limit: Limit = 100,
            offset: Offset = 0) -> list[dict]:
    with request.app.state.db.transaction() as conn:
        return store.list_permits(conn, who.scope, status=status, current=current,
                                  company=company, plate=plate, application=application,
                                  limit=limit, offset=offset)


@router.get("/v1/permits/{permit_id}",
            summary="One permit with its route, state now and suspensions")
def permit(permit_id: str, request: Request,
           who: Principal = Depends(need("permits.list"))) -> dict:
    with request.app.state.db.transaction() as conn:
        return store.get_permit(conn, who.scope, permit_id)


@router.post("/v1/permits/{permit_id}/actions",
             summary="Suspend (from, until), resume or revoke (at) a permit; audited")
def act(permit_id: str, body: PermitAction, request: Request,
        who: Principal = Depends(need("permits.manage"))) -> dict:
    if body.action != "suspend" and (body.from_ts or body.until):
        raise HTTPException(422, "from and until belong to suspend")
    if body.action != "revoke" and body.at:
        raise HTTPException(422, "at belongs to revoke")
    with request.app.state.db.transaction() as conn:
        if body.action == "suspend":
            _, after = store.suspend(conn, who.scope, permit_id, from_ts=body.from_ts,
                                     until=body.until, reason=body.reason, actor=who.account,
                                     role=who.role)
        elif body.action == "resume":
            _, after = store.resume(conn, who.scope, permit_id, reason=body.reason,
                                    actor=who.account, role=who.role)
        else:
            _, after = store.revoke(conn, who.scope, permit_id, at=body.at,
                                    reason=body.reason, actor=who.account, role=who.role)
    return after


def _plain(value: Any) -> Any:
    """JSONResponse needs JSON types (the report holds ISO strings already)."""
    from fastapi.encoders import jsonable_encoder

    return jsonable_encoder(value)
