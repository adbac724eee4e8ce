"""Violations and their review: the queue an officer works through, one violation with its
evidence, confirm or dismiss with a reason code."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from api import evidence
from api.auth import Principal, need
from store import audit, review

router = APIRouter(tags=["review"])
Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0)]


class ReviewBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision: Literal["confirm", "dismiss"]
    reason: str = Field(min_length=1, max_length=64,
                        description="a code from GET /v1/reasons for this decision")
    note: str | None = Field(default=None, max_length=4000)


@router.get("/v1/reasons", summary="Review reason codes (English and Chinese labels)")
def reasons(request: Request, who: Principal = Depends(need("reasons.read"))) -> list[dict]:
    with request.app.state.db.transaction() as conn:
        return review.reasons(conn)


@router.get("/v1/review/queue", summary="New violations to review, gravest and oldest first")
def queue(request: Request, who: Principal = Depends(need("queue.read")),
          district: str | None = None, min_severity: Annotated[int, Query(ge=1, le=3)] = 1,
          rule: str | None = None, limit: Limit = 100, offset: Offset = 0) -> dict:
    with request.app.state.db.transaction() as conn:
        return {"counts": review.queue_counts(conn, who.scope),
                "violations": review.review_queue(conn, who.scope, district=district,
                                                  min_severity=min_severity, rule=rule,
                                                  limit=limit, offset=offset)}


@router.get("/v1/violations", summary="Violations in the caller's scope, newest first")
def violations(request: Request, who: Principal = Depends(need("violations.read")),
               review_state: Annotated[Literal["new", "confirmed", "dismissed"] | None,
                                       Query(alias="review")] = None,
               rule: str | None = None, district: str | None = None,
               min_severity: Annotated[int, Query(ge=1, le=3)] = 1,
               since: datetime | None = None, until: datetime | None = None,
               limit: Limit = 100, offset: Offset = 0) -> list[dict]:
    with request.app.state.db.transaction() as conn:
        return review.list_violations(conn, who.scope, review=review_state, rule=rule,
                                      district=district, min_severity=min_severity,
                                      since=since, until=until, limit=limit, offset=offset)


@router.get("/v1/violations/{violation_id}", summary="One violation with its evidence track")
def violation(violation_id: str, request: Request,
              who: Principal = Depends(need("violations.read"))) -> dict:
    with request.app.state.db.transaction() as conn:
        return review.get_violation(conn, who.scope, violation_id, evidence=True)


@router.post("/v1/violations/{violation_id}/review",
             summary="Confirm or dismiss a new violation (once; audited)")
def review_violation(violation_id: str, body: ReviewBody, request: Request,
                     who: Principal = Depends(need("violations.review"))) -> dict:
    with request.app.state.db.transaction() as conn:
        before, after = review.review(conn, who.scope, violation_id, decision=body.decision,
                                      reason=body.reason, note=body.note, actor=who.account)
        audit.record(conn, actor=who.account, role=who.role, action=f"review.{body.decision}",
                     resource="violation", resource_id=violation_id,
                     before=_review_part(before), after=_review_part(after))
        evidence.seal_reviewed(conn, request, who, violation_id)  # what the decision rested on
    return after


def _review_part(row: dict) -> dict:
    return {k: row[k] for k in ("review", "review_reason", "review_note", "reviewed_by",
                                "reviewed_at", "state")}
