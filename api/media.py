"""Photos from terminals (evidence, 现场取证): the ones of a violation, and the image itself —
to whoever may see the violation; a company only its own vehicles' (docs/api.md, Photos)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request, Response

from api.auth import Principal, need
from store import media, review

router = APIRouter(tags=["evidence"])


@router.get("/v1/violations/{violation_id}/media",
            summary="The photos taken for a violation or while it lasted")
def for_violation(violation_id: str, request: Request,
                  who: Principal = Depends(need("media.read"))) -> list[dict]:
    with request.app.state.db.transaction() as conn:
        review.get_violation(conn, who.scope, violation_id)  # 404 outside the scope
        rows = media.media_for_violation_sync(conn, violation_id)
    return [{**r, "url": f"/v1/media/{r['id']}"} for r in rows]


@router.get("/v1/media/{media_id}", summary="One photo (its bytes, as the terminal sent them)",
            response_class=Response,
            responses={200: {"content": {"image/jpeg": {}}}})
def content(media_id: int, request: Request,
            who: Principal = Depends(need("media.read"))) -> Response:
    with request.app.state.db.transaction() as conn:
        row = media.media_by_id_sync(conn, media_id)
        if row is not None and row["violation_id"] is not None and who.role != "company":
            review.get_violation(conn, who.scope, row["violation_id"])  # an officer's districts
    if row is None or (who.role == "company" and row["company_id"] != who.company):
        raise HTTPException(404, f"no media {media_id}")
    if request.headers.get("if-none-match") == f'"{row["sha256"]}"':
        return Response(status_code=304)
    try:
        data = media.blob_store(request.app.state.config.media).get(row["sha256"],
                                                                  row["media_format"])
    except media.MediaMissing as e:
        raise HTTPException(410, f"media {media_id}: its bytes are gone from the store ({e})"
                            ) from None
    return Response(data, media_type=media.content_type(row["media_format"]),
                    headers={"ETag": f'"{row["sha256"]}"',
                             "Cache-Control": "private, max-age=86400, immutable"})
