"""Review and appeals move the credit score; replays and late data never undo a review;
attachments are checked by content, size-limited and stored by SHA-256."""

from __future__ import annotations

import asyncio
import hashlib
import struct
import zlib
from datetime import UTC, datetime

from domain.batches import DeviceStatus, FixBatch, Rejects
from domain.events import Phase, ViolationEvent
from store.database import Store
from tests.api.conftest import add_violation


def score(api, company: str) -> float:
    """Minus the company's deductions: the score without its floor at 0 (the tests pile
    violations on one company)."""
    rows = api.sql("SELECT deductions FROM company_scores(now()) WHERE company_id = %s",
                   (company,))
    return -float(rows[0][0])


def png(width: int = 2) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    raw = b"".join(b"\0" + b"\xff\0\0" * width for _ in range(width))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, width, 8, 2, 0,
                                                               0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def company_of(api, account: str) -> str:
    return api.get(account, "/v1/me").json()["company"]


def test_review_decides_what_counts(api, sample_city, districts):
    company = company_of(api, "company")
    base = score(api, company)
    fresh = add_violation(api, sample_city, district=districts[0], company=company,
                          rule="UNAUTHORISED_DUMP", severity=3, age_days=1)
    assert score(api, company) == base, "an unreviewed violation waits 7 days"
    r = api.post("officer", f"/v1/violations/{fresh}/review",
                 json={"decision": "confirm", "reason": "evidence_clear", "note": "clear track"})
    assert r.status_code == 200, r.text
    assert r.json()["review"] == "confirmed" and r.json()["reviewed_by"] == "officer"
    confirmed = score(api, company)
    assert confirmed < base
    # a second review is refused: decisions are made once
    again = api.post("supervisor", f"/v1/violations/{fresh}/review",
                     json={"decision": "dismiss", "reason": "sensor_fault"})
    assert again.status_code == 409 and "already confirmed" in again.json()["detail"]

    old = add_violation(api, sample_city, district=districts[0], company=company,
                        rule="NO_PERMIT", severity=3, age_days=8)
    counted = score(api, company)
    assert counted < confirmed, "unreviewed for more than 7 days: it counts"
    r = api.post("officer", f"/v1/violations/{old}/review",
                 json={"decision": "dismiss", "reason": "permit_data_error"})
    assert r.status_code == 200 and r.json()["review"] == "dismissed"
    assert score(api, company) == confirmed, "a dismissed violation leaves the score"

    r = api.post("officer", f"/v1/violations/{old}/review",
                 json={"decision": "dismiss", "reason": "other"})
    assert r.status_code in (409, 422)
    other = add_violation(api, sample_city, district=districts[0], company=company)
    r = api.post("officer", f"/v1/violations/{other}/review",
                 json={"decision": "dismiss", "reason": "other"})
    assert r.status_code == 422 and "note" in r.json()["detail"]
    r = api.post("officer", f"/v1/violations/{other}/review",
                 json={"decision": "confirm", "reason": "sensor_fault"})
    assert r.status_code == 422 and "dismiss" in r.json()["detail"]
    audit = api.sql("SELECT actor, action, before->>'review', after->>'review' FROM audit_log"
                    " WHERE resource = 'violation' AND resource_id = %s ORDER BY id", (old,))
    assert audit == [("officer", "review.dismiss", "new", "dismissed")]


def test_replay_and_late_data_never_touch_a_reviewed_violation(api, sample_city, districts):
    vid = add_violation(api, sample_city, district=districts[0], state="open")
    row = api.sql("SELECT device_id, plate, company_id, extract(epoch FROM start_ts) * 1000,"
                  " start_lon, start_lat FROM violations WHERE id = %s", (vid,))[0]
    r = api.post("officer", f"/v1/violations/{vid}/review",
                 json={"decision": "confirm", "reason": "patrol_witnessed"})
    assert r.status_code == 200
    start = int(row[3])

    def event(phase: Phase) -> ViolationEvent:
        return ViolationEvent(id=vid, rule="OFF_ROUTE", phase=phase, device_id=row[0],
                              plate=row[1], company_id=row[2], start_ts=start,
                              end_ts=None if phase == Phase.OPENED else start + 60_000,
                              start_lon=row[4], start_lat=row[5], severity=3, peak=500.0,
                              late=True)

    async def write(events):
        store = Store(api.dsn)
        try:
            await store.write(FixBatch.empty(), Rejects(), DeviceStatus(), events)
        finally:
            await store.close()

    before = api.sql("SELECT state, review, severity, peak, updated_at FROM violations"
                     " WHERE id = %s", (vid,))
    asyncio.run(write([event(Phase.RETRACTED)]))
    asyncio.run(write([event(Phase.OPENED), event(Phase.CLOSED)]))
    assert api.sql("SELECT state, review, severity, peak, updated_at FROM violations"
                   " WHERE id = %s", (vid,)) == before


def test_appeal_overturned_leaves_the_score(api, sample_city, districts):
    company = company_of(api, "company")
    vid = add_violation(api, sample_city, district=districts[0], company=company,
                        rule="UNCOVERED_LOAD", severity=3)
    assert api.post("officer", f"/v1/violations/{vid}/review",
                    json={"decision": "confirm", "reason": "evidence_clear"}).status_code == 200
    confirmed = score(api, company)
    picture, pdf = png(), b"%PDF-1.4\n% test\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
    r = api.post("company", f"/v1/violations/{vid}/appeals",
                 data={"text": "the lid sensor was replaced that day; invoice attached"},
                 files=[("files", ("lid.png", picture, "image/png")),
                        ("files", ("invoice.pdf", pdf, "application/pdf"))])
    assert r.status_code == 201, r.text
    appeal = r.json()
    assert appeal["state"] == "pending" and len(appeal["attachments"]) == 2
    sha = hashlib.sha256(picture).hexdigest()
    assert appeal["attachments"][0]["sha256"] == sha
    assert (api.uploads / sha[:2] / sha).read_bytes() == picture
    r = api.post("company", f"/v1/violations/{vid}/appeals", data={"text": "again"})
    assert r.status_code == 409 and "pending" in r.json()["detail"]
    assert score(api, company) == confirmed, "a pending appeal changes nothing yet"
    # the officer reads the attachment; another company cannot
    att = appeal["attachments"][0]["id"]
    got = api.get("officer", f"/v1/attachments/{att}")
    assert got.status_code == 200 and got.content == picture
    assert got.headers["content-type"] == "image/png" and got.headers["x-content-sha256"] == sha
    assert api.get("company2", f"/v1/attachments/{att}").status_code == 404
    assert api.get("officer2", f"/v1/appeals/{appeal['id']}").status_code == 404
    # only an officer of the district or a supervisor decides
    assert api.post("company", f"/v1/appeals/{appeal['id']}/decision",
                    json={"outcome": "overturn"}).status_code == 403
    r = api.post("officer", f"/v1/appeals/{appeal['id']}/decision",
                 json={"outcome": "overturn", "note": "invoice checks out"})
    assert r.status_code == 200 and r.json()["state"] == "overturned"
    assert r.json()["violation_review"] == "dismissed"
    assert score(api, company) > confirmed
    assert api.post("officer", f"/v1/appeals/{appeal['id']}/decision",
                    json={"outcome": "uphold"}).status_code == 409


def test_appeal_upheld_confirms_an_unreviewed_violation(api, sample_city, districts):
    company = company_of(api, "company")
    vid = add_violation(api, sample_city, district=districts[0], company=company,
                        rule="OFF_ROUTE", severity=3)
    base = score(api, company)
    r = api.post("company", f"/v1/violations/{vid}/appeals", data={"text": "we had a detour"})
    assert r.status_code == 201
    r = api.post("supervisor", f"/v1/appeals/{r.json()['id']}/decision",
                 json={"outcome": "uphold", "note": "no detour was authorised"})
    assert r.status_code == 200 and r.json()["violation_review"] == "confirmed"
    assert score(api, company) < base


def test_bad_attachments_are_refused_and_nothing_is_stored(api, sample_city, districts):
    company = company_of(api, "company")
    vid = add_violation(api, sample_city, district=districts[0], company=company)
    files_before = sorted(p.name for p in api.uploads.rglob("*") if p.is_file())
    appeals_before = api.sql("SELECT count(*) FROM appeals")[0][0]
    cases = [
        ([("files", ("evil.jpg", b"#!/bin/sh\nrm -rf /\n", "image/jpeg"))], 415, "JPEG"),
        ([("files", ("a.png", png(), "application/pdf"))], 415, "image/png"),
        ([("files", ("big.png", png() + b"\0" * 200_001, "image/png"))], 413, "larger"),
        ([("files", ("empty.pdf", b"", "application/pdf"))], 422, "empty"),
        ([("files", (f"{i}.png", png(), "image/png")) for i in range(4)], 413, "at most 3"),
        # a good file next to a bad one: the whole appeal is refused, the good file too
        ([("files", ("ok.png", png(7), "image/png")),
          ("files", ("bad.gif", b"GIF89a....", "image/gif"))], 415, "bad.gif"),
    ]
    for files, status, words in cases:
        r = api.post("company", f"/v1/violations/{vid}/appeals", data={"text": "see file"},
                     files=files)
        assert r.status_code == status, (words, r.status_code, r.text)
        assert words in r.json()["detail"], r.text
    r = api.post("company", f"/v1/violations/{vid}/appeals", data={"text": ""})
    assert r.status_code == 422
    assert api.sql("SELECT count(*) FROM appeals")[0][0] == appeals_before
    files_after = sorted(p.name for p in api.uploads.rglob("*") if p.is_file())
    assert files_after == files_before


def test_datetimes_are_city_time(api, sample_city, districts):
    vid = add_violation(api, sample_city, district=districts[0])
    got = api.get("supervisor", f"/v1/violations/{vid}").json()
    start = datetime.fromisoformat(got["start_ts"])
    assert start.utcoffset().total_seconds() == 8 * 3600
    assert start.astimezone(UTC) <= datetime.now(UTC)
