"""Evidence bundles (docs/evidence.md): a violation's track, sensor timeline and photos with
their hash chain, sealed so a change after the fact shows — to whoever may see the violation
(a company only its own vehicles'); sealing by officers and supervisors, audited."""

from __future__ import annotations

import psycopg
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from api.auth import Principal, need
from store import audit, evidence, media

router = APIRouter(tags=["evidence"])


def _blobs(request: Request) -> media.BlobStore:
    return media.blob_store(request.app.state.config.media)


def _with_urls(body: dict) -> dict:
    body["photos"] = [{**p, "url": f"/v1/media/{p['id']}"} for p in body["photos"]]
    return body


def _audit(conn: psycopg.Connection, who: Principal, violation_id: str, row: dict) -> None:
    audit.record(conn, actor=who.account, role=who.role, action="evidence.seal",
                 resource="evidence", resource_id=violation_id,
                 after={k: row[k] for k in ("seq", "head", "prev_seal", "seal", "sealed_at")})


@router.get("/v1/violations/{violation_id}/evidence",
            summary="The evidence bundle: violation, track, photos, item hashes, head, seal")
def show(violation_id: str, request: Request,
         who: Principal = Depends(need("evidence.read"))) -> dict:
    with request.app.state.db.transaction() as conn:
        b, seal = evidence.bundle(conn, _blobs(request), violation_id,
                                  evidence_s=request.app.state.config.evidence_s,
                                  scope=who.scope)
    return _with_urls(evidence.bundle_json(b, seal))


@router.post("/v1/violations/{violation_id}/evidence/seal",
             summary="Seal an ended violation's evidence (once; again returns the seal)")
def seal(violation_id: str, request: Request,
         who: Principal = Depends(need("evidence.seal"))) -> JSONResponse:
    with request.app.state.db.transaction() as conn:
        row, made = evidence.seal(conn, _blobs(request), violation_id,
                                  evidence_s=request.app.state.config.evidence_s,
                                  sealed_by=who.account, scope=who.scope)
        if made:
            _audit(conn, who, violation_id, row)
    return JSONResponse({**evidence.seal_json(row), "created": made}, 201 if made else 200)


@router.get("/v1/violations/{violation_id}/evidence/verify",
            summary="Recompute the bundle and compare it with its seal")
def verify(violation_id: str, request: Request,
           who: Principal = Depends(need("evidence.read"))) -> dict:
    with request.app.state.db.transaction() as conn:
        return evidence.verify(conn, _blobs(request), violation_id, scope=who.scope)


def seal_reviewed(conn: psycopg.Connection, request: Request, who: Principal,
                  violation_id: str) -> None:
    """After an officer confirmed or dismissed: seal what the decision rested on, if the
    violation has ended and its window is complete (else the dispatcher seals it when due)."""
    row = evidence.seal_if_due(conn, _blobs(request), violation_id,
                               evidence_s=request.app.state.config.evidence_s,
                               sealed_by=who.account)
    if row is not None:
        _audit(conn, who, violation_id, row)
