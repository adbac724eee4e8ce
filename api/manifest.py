"""The electronic manifest (电子联单, issue #22, docs/permits.md "The manifest"): a disposal
site's or transfer dock's operator confirms each load received (``receipts.write``); the
manifest lines — one per loaded leg — with their receipts (``manifest.read``); receipts
(``receipts.read``); the daily reconciliation per site or job (``reconciliation.read``).

Scope: officers, supervisors and analysts see the whole city; a company its own trucks'
lines and its own jobs; a site operator the lines leaving, passing or reaching its sites,
its sites' receipts and their reconciliation. The SQL and the audit rows are
``store.manifest``."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from api.auth import Principal, need
from store import manifest as store

router = APIRouter(tags=["manifest"])
Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0)]


class ReceiptBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    site: str | None = Field(default=None, min_length=1, max_length=64,
                             description="the disposal site / transfer dock (fence id); "
                                         "may be left out by an operator of one site")
    plate: str = Field(min_length=1, max_length=64, description="the truck's plate")
    received_at: datetime = Field(description="when the load was received, ISO 8601 with "
                                              "its offset; at most 5 minutes ahead of now")
    volume_m3: float | None = Field(default=None, gt=0, le=store.MAX_VOLUME_M3,
                                    description="the volume received, if measured")
    note: str | None = Field(default=None, max_length=2000)
    replaces: int | None = Field(default=None, ge=1,
                                 description="the id of a receipt of this site recorded in "
                                             "error, which this one replaces")


def _tz(request: Request) -> str:
    return request.app.state.config.timezone


def _scope(who: Principal) -> store.ManifestScope:
    if who.role == "company":
        return store.ManifestScope(company=who.company)
    if who.role == "site_operator":
        return store.ManifestScope(sites=who.sites)
    return store.ManifestScope()


@router.post("/v1/receipts", status_code=201,
             summary="A site operator confirms a load received; matched to its manifest line")
def record(body: ReceiptBody, request: Request,
           who: Principal = Depends(need("receipts.write"))) -> JSONResponse:
    site = body.site
    if site is None:
        if len(who.sites) != 1:
            raise HTTPException(422, f"site is required: the account records receipts at "
                                     f"{', '.join(who.sites)}")
        site = who.sites[0]
    with request.app.state.db.transaction() as conn:
        store.receiving_site(conn, site)  # an unknown site is 422 before the scope's 403
        if site not in who.sites:
            raise HTTPException(403, f"site {site} is not one of this account's sites "
                                     f"({', '.join(who.sites)})")
        done = store.record_receipt(conn, site=site, plate=body.plate,
                                    received_at=body.received_at, volume_m3=body.volume_m3,
                                    note=body.note, replaces=body.replaces, actor=who.account,
                                    role=who.role)
    return JSONResponse(_plain({"receipt": done.receipt, "manifest_line": done.line,
                                "replayed": not done.created}),
                        201 if done.created else 200)


@router.get("/v1/receipts", summary="Receipts with what each confirms (matched, unmatched, "
                                     "replaced)")
def receipts(request: Request, who: Principal = Depends(need("receipts.read")),
             site: str | None = None, plate: str | None = None,
             state: Literal["matched", "unmatched", "replaced"] | None = None,
             day: date | None = Query(default=None, description="a local date of the city"),
             since: datetime | None = None, until: datetime | None = None,
             limit: Limit = 100, offset: Offset = 0) -> Any:
    with request.app.state.db.transaction() as conn:
        return _plain(store.list_receipts(conn, _scope(who), site=site, plate=plate,
                                          state=state, day=day, since=since, until=until,
                                          timezone=_tz(request), limit=limit, offset=offset))


@router.get("/v1/receipts/{receipt_id}", summary="One receipt and the line it confirms")
def receipt(receipt_id: int, request: Request,
            who: Principal = Depends(need("receipts.read"))) -> Any:
    with request.app.state.db.transaction() as conn:
        row = store.get_receipt(conn, receipt_id, _scope(who))
        return _plain({"receipt": row,
                       "manifest_line": store.line_of_receipt(conn, receipt_id)})


@router.get("/v1/manifest", summary="Manifest lines (one per loaded leg) with their receipts")
def lines(request: Request, who: Principal = Depends(need("manifest.read")),
          plate: str | None = None, permit: str | None = None, job: str | None = None,
          site: str | None = Query(default=None, description="origin, destination or a "
                                                               "transfer dock passed"),
          company: str | None = None,
          status: Literal["en_route", "arrived", "received", "not_closed"] | None = None,
          since: datetime | None = Query(default=None, description="departure at or after"),
          until: datetime | None = Query(default=None, description="departure before"),
          limit: Limit = 100, offset: Offset = 0) -> Any:
    with request.app.state.db.transaction() as conn:
        return _plain(store.list_lines(conn, _scope(who), plate=plate, permit=permit, job=job,
                                       site=site, company=company, status=status,
                                       since=since, until=until, limit=limit, offset=offset))


@router.get("/v1/manifest/reconciliation",
            summary="A day's departures, arrivals, receipts and volumes per site or per job")
def reconciliation(request: Request, day: date,
                   who: Principal = Depends(need("reconciliation.read")),
                   by: Literal["site", "job"] | None = Query(
                       default=None, description="default: job for a company, else site"),
                   site: str | None = None, job: str | None = None) -> Any:
    if by is None:
        by = "job" if who.role == "company" else "site"
    if who.role == "company" and by != "job":
        raise HTTPException(403, "a company reconciles its own jobs: by=job")
    if who.role == "site_operator" and by != "site":
        raise HTTPException(403, "a site operator reconciles its own sites: by=site")
    with request.app.state.db.transaction() as conn:
        rows = store.reconcile(conn, _scope(who), day=day, by=by, timezone=_tz(request),
                               site=site, job=job)
    return _plain({"day": day, "by": by, "timezone": _tz(request), "rows": rows})


def _plain(value: Any) -> Any:
    """JSON types: volumes (numeric) as numbers, not strings; times ISO 8601 with the
    city's offset."""
    return jsonable_encoder(value)
