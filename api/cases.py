"""Enforcement cases: open from confirmed violations, dispatch to a district team with a due
date, handle, close or withdraw; closure rates per district and month; and the signed
inbound webhook an external enforcement system updates cases through."""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from alerts.signing import SignatureError, verify
from api.auth import Principal, need
from store import audit, cases
from store.review import Conflict, NotFound, Scope

router = APIRouter(tags=["cases"])


class OpenCase(BaseModel):
    model_config = ConfigDict(extra="forbid")
    violations: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        min_length=1, max_length=200)
    note: str | None = Field(default=None, max_length=4000)


class CaseMove(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["dispatch", "handle", "close", "withdraw"]
    team: str | None = Field(default=None, max_length=200)
    due_at: datetime | None = None
    action_taken: str | None = Field(default=None, max_length=2000)
    penalty_yuan: Decimal | None = Field(default=None, ge=0, le=10_000_000)
    note: str | None = Field(default=None, max_length=4000)
    external_ref: str | None = Field(default=None, max_length=200)


class InboundCaseUpdate(CaseMove):
    case_id: int


@router.post("/v1/cases", status_code=201, summary="Open a case from confirmed violations")
def open_case(body: OpenCase, request: Request,
              who: Principal = Depends(need("cases.write"))) -> dict:
    with request.app.state.db.transaction() as conn:
        case = cases.open_case(conn, who.scope, body.violations, actor=who.account,
                               note=body.note)
        audit.record(conn, actor=who.account, role=who.role, action="case.open",
                     resource="case", resource_id=case["id"], after=case)
    return case


@router.get("/v1/cases", summary="Cases in the caller's scope")
def list_cases(request: Request, who: Principal = Depends(need("cases.read")),
               state: Literal["new", "dispatched", "handled", "closed", "withdrawn"] | None = None,
               district: str | None = None, overdue: bool = False,
               limit: Annotated[int, Query(ge=1, le=1000)] = 100,
               offset: Annotated[int, Query(ge=0)] = 0) -> list[dict]:
    with request.app.state.db.transaction() as conn:
        return cases.list_cases(conn, who.scope, state=state, district=district,
                                overdue=overdue, limit=limit, offset=offset)


@router.get("/v1/cases/closure", summary="On time / late / overdue per district and month")
def closure(request: Request, who: Principal = Depends(need("closure.read")),
            since: date | None = None, until: date | None = None) -> list[dict]:
    with request.app.state.db.transaction() as conn:
        return cases.closure(conn, who.scope, since=since, until=until)


@router.get("/v1/cases/{case_id}", summary="One case with its violations")
def get_case(case_id: int, request: Request,
             who: Principal = Depends(need("cases.read"))) -> dict:
    with request.app.state.db.transaction() as conn:
        return cases.get_case(conn, who.scope, case_id)


@router.post("/v1/cases/{case_id}/actions", summary="Move a case along its life cycle")
def move_case(case_id: int, body: CaseMove, request: Request,
              who: Principal = Depends(need("cases.write"))) -> dict:
    with request.app.state.db.transaction() as conn:
        return _move(conn, who.scope, case_id, body, actor=who.account, role=who.role)


def _move(conn, scope: Scope, case_id: int, body: CaseMove, *, actor: str, role: str) -> dict:
    before, after = cases.move(conn, scope, case_id, body.action, team=body.team,
                               due_at=body.due_at, action_taken=body.action_taken,
                               penalty_yuan=body.penalty_yuan, note=body.note,
                               external_ref=body.external_ref)
    audit.record(conn, actor=actor, role=role, action=f"case.{body.action}", resource="case",
                 resource_id=case_id, before=before, after=after)
    return after


@router.post("/v1/hooks/cases", summary="Inbound: an enforcement system updates a case "
                                       "(Standard Webhooks signature; idempotent by webhook-id)")
async def inbound(request: Request) -> JSONResponse:
    config = request.app.state.config
    if not config.webhook_secret:
        raise HTTPException(404, "inbound webhooks are off ([api] webhook_secret is empty)")
    body = await request.body()
    if len(body) > 65_536:
        raise HTTPException(413, "webhook body larger than 64 KiB")
    try:
        verify(config.webhook_secret, dict(request.headers), body)
    except SignatureError as e:
        raise HTTPException(401, f"webhook signature refused: {e}") from None
    message_id = request.headers["webhook-id"][:200]
    from starlette.concurrency import run_in_threadpool

    status, result = await run_in_threadpool(_apply_inbound, request, message_id, body)
    return JSONResponse(result, status_code=status)


def _apply_inbound(request: Request, message_id: str, body: bytes) -> tuple[int, dict]:
    db = request.app.state.db
    with db.transaction() as conn:
        seen = cases.inbound_seen(conn, message_id)
        if seen is not None:
            return seen[0], {**seen[1], "replayed": True}
    try:
        update = InboundCaseUpdate.model_validate(json.loads(body))
    except (ValueError, ValidationError) as e:
        return _remember(db, message_id, None, 422, {"detail": f"bad case update: {e}"})
    actor = f"webhook:{message_id}"
    try:
        with db.transaction() as conn:
            after = _move(conn, Scope(), update.case_id, update, actor=actor, role="system")
            result = json.loads(json.dumps(after, default=str))
            if not cases.inbound_record(conn, message_id, update.case_id, 200, result):
                raise _Raced
        return 200, result
    except _Raced:
        with db.transaction() as conn:
            seen = cases.inbound_seen(conn, message_id)
        assert seen is not None
        return seen[0], {**seen[1], "replayed": True}
    except NotFound as e:
        return _remember(db, message_id, update.case_id, 404, {"detail": str(e)})
    except Conflict as e:
        return _remember(db, message_id, update.case_id, 409, {"detail": str(e)})
    except ValueError as e:
        return _remember(db, message_id, update.case_id, 422, {"detail": str(e)})


class _Raced(Exception):
    """Another delivery of the same message committed first."""


def _remember(db, message_id: str, case_id: int | None, status: int,
              result: dict) -> tuple[int, dict]:
    """A refused update is answered the same way when the message is delivered again."""
    with db.transaction() as conn:
        if not cases.inbound_record(conn, message_id, case_id, status, result):
            seen = cases.inbound_seen(conn, message_id)
            assert seen is not None
            return seen[0], {**seen[1], "replayed": True}
    return status, result
