"""Appeals: a company contests a violation with text and attachments; an officer upholds or
overturns it, and the score follows (an overturned violation is dismissed)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field

from api import uploads
from api.auth import Principal, need
from store import audit, review

router = APIRouter(tags=["appeals"])


class DecisionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    outcome: Literal["uphold", "overturn"]
    note: str | None = Field(default=None, max_length=4000)


@router.post("/v1/violations/{violation_id}/appeals", status_code=201,
             summary="File an appeal (multipart: text + up to N files, JPEG/PNG/PDF)")
def file_appeal(violation_id: str, request: Request,
                text: Annotated[str, Form(min_length=1, max_length=10_000)],
                files: Annotated[list[UploadFile] | None, File()] = None,
                who: Principal = Depends(need("appeals.file"))) -> dict:
    config = request.app.state.config
    files = files or []
    if len(files) > config.max_attachments:
        raise HTTPException(413, f"at most {config.max_attachments} attachments per appeal")
    staged: list[uploads.StagedFile] = []
    try:
        for f in files:
            staged.append(uploads.stage(f, config.uploads_dir, config.max_upload_bytes))
        with request.app.state.db.transaction() as conn:
            appeal = review.file_appeal(conn, who.scope, violation_id, text=text,
                                        actor=who.account, attachments=[s.row() for s in staged])
            audit.record(conn, actor=who.account, role=who.role, action="appeal.file",
                         resource="appeal", resource_id=appeal["id"], after=appeal)
    except BaseException:
        uploads.discard(staged)
        raise
    uploads.commit(staged, config.uploads_dir)
    return appeal


@router.get("/v1/appeals", summary="Appeals in the caller's scope")
def appeals(request: Request, who: Principal = Depends(need("appeals.read")),
            state: Literal["pending", "upheld", "overturned"] | None = None,
            limit: Annotated[int, Query(ge=1, le=1000)] = 100,
            offset: Annotated[int, Query(ge=0)] = 0) -> list[dict]:
    with request.app.state.db.transaction() as conn:
        return review.list_appeals(conn, who.scope, state=state, limit=limit, offset=offset)


@router.get("/v1/appeals/{appeal_id}", summary="One appeal with its attachments")
def appeal(appeal_id: int, request: Request,
           who: Principal = Depends(need("appeals.read"))) -> dict:
    with request.app.state.db.transaction() as conn:
        return review.get_appeal(conn, who.scope, appeal_id)


@router.post("/v1/appeals/{appeal_id}/decision",
             summary="Uphold (violation stands) or overturn (dismissed, leaves the score)")
def decide(appeal_id: int, body: DecisionBody, request: Request,
           who: Principal = Depends(need("appeals.decide"))) -> dict:
    with request.app.state.db.transaction() as conn:
        before, after = review.decide_appeal(conn, who.scope, appeal_id, outcome=body.outcome,
                                             note=body.note, actor=who.account)
        audit.record(conn, actor=who.account, role=who.role, action=f"appeal.{body.outcome}",
                     resource="appeal", resource_id=appeal_id, before=before, after=after)
    return after


@router.get("/v1/attachments/{attachment_id}", summary="An attachment's bytes",
            response_class=FileResponse)
def attachment(attachment_id: int, request: Request,
               who: Principal = Depends(need("appeals.read"))) -> FileResponse:
    with request.app.state.db.transaction() as conn:
        row = review.attachment(conn, who.scope, attachment_id)
    path = uploads.path_of(request.app.state.config.uploads_dir, row["sha256"])
    if not path.is_file():
        raise HTTPException(410, f"attachment {attachment_id}'s file is missing from storage")
    return FileResponse(path, media_type=row["content_type"], filename=row["filename"],
                        headers={"X-Content-SHA256": row["sha256"],
                                 "X-Content-Type-Options": "nosniff"})
