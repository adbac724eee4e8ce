"""Cases from confirmed violations through their life cycle with due dates; the closure view
(on time / late / overdue) per district and month; the signed inbound webhook (bad signature
refused, a replayed message applied once); the audit log refuses changes."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest

from alerts.signing import headers as sign_headers
from tests.api.conftest import add_violation


def confirmed(api, sample_city, district: str, company: str, n: int = 1) -> list[str]:
    ids = []
    for _ in range(n):
        vid = add_violation(api, sample_city, district=district, company=company)
        r = api.post("officer" if district == api.districts[0] else "supervisor",
                     f"/v1/violations/{vid}/review",
                     json={"decision": "confirm", "reason": "evidence_clear"})
        assert r.status_code == 200, r.text
        ids.append(vid)
    return ids


@pytest.fixture
def setup(api, districts):
    api.districts = districts
    return api


def company_of(api, account: str) -> str:
    return api.get(account, "/v1/me").json()["company"]


def test_case_life_cycle_and_closure(setup, sample_city, districts):
    api = setup
    company = company_of(api, "company")
    ids = confirmed(api, sample_city, districts[0], company, n=2)
    unreviewed = add_violation(api, sample_city, district=districts[0], company=company)
    r = api.post("officer", "/v1/cases", json={"violations": [*ids, unreviewed]})
    assert r.status_code == 409 and unreviewed in r.json()["detail"]
    r = api.post("officer", "/v1/cases", json={"violations": ids, "note": "two off-route legs"})
    assert r.status_code == 201, r.text
    case = r.json()
    assert case["state"] == "new" and case["district_id"] == districts[0]
    assert case["company_id"] == company and sorted(case["violations"]) == sorted(ids)
    assert api.post("officer", "/v1/cases", json={"violations": ids[:1]}).status_code == 409

    act = f"/v1/cases/{case['id']}/actions"
    assert api.post("officer", act, json={"action": "close"}).status_code == 409
    assert api.post("officer", act, json={"action": "dispatch"}).status_code == 422
    assert api.post("officer", act, json={"action": "dispatch", "team": "T1",
                                          "due_at": "2026-12-10T18:00:00"}).status_code == 422
    due = datetime.now(UTC) + timedelta(days=5)
    r = api.post("officer", act, json={"action": "dispatch", "team": "district team 1",
                                       "due_at": due.isoformat()})
    assert r.status_code == 200 and r.json()["state"] == "dispatched"
    assert api.post("officer", act, json={"action": "handle"}).status_code == 422
    r = api.post("officer", act, json={"action": "handle", "action_taken": "fine",
                                       "penalty_yuan": "5000"})
    assert r.status_code == 200 and float(r.json()["penalty_yuan"]) == 5000
    r = api.post("officer", act, json={"action": "close"})
    assert r.status_code == 200 and r.json()["state"] == "closed"
    assert api.post("officer", act, json={"action": "withdraw", "note": "x"}).status_code == 409

    # the company sees its case; the other company and the other district's officer do not
    assert api.get("company", f"/v1/cases/{case['id']}").status_code == 200
    assert api.get("company2", f"/v1/cases/{case['id']}").status_code == 404
    assert api.get("officer2", f"/v1/cases/{case['id']}").status_code == 404
    assert api.post("company", act, json={"action": "withdraw", "note": "x"}).status_code == 403
    history = api.get("supervisor", f"/v1/audit?resource=case&resource_id={case['id']}").json()
    assert [h["action"] for h in history] == ["case.close", "case.handle", "case.dispatch",
                                              "case.open"]
    assert history[0]["before"]["state"] == "handled" and history[0]["after"]["state"] == "closed"


def test_closure_view_on_time_late_overdue(setup, sample_city, districts):
    api = setup
    company = company_of(api, "company")
    district = districts[0]
    month = datetime.now(UTC).astimezone().strftime("%Y-%m")

    def case_due(days: float) -> int:
        ids = confirmed(api, sample_city, district, company)
        case = api.post("officer", "/v1/cases", json={"violations": ids}).json()
        due = datetime.now(UTC) + timedelta(days=days)
        r = api.post("officer", f"/v1/cases/{case['id']}/actions",
                     json={"action": "dispatch", "team": "T", "due_at": due.isoformat()})
        assert r.status_code == 200, r.text
        return case["id"]

    def closure() -> dict:
        rows = api.get("officer", "/v1/cases/closure").json()
        return {(r["district_id"], r["month"][:7]): r for r in rows}

    before = closure().get((district, month), {"closed_on_time": 0, "closed_late": 0,
                                               "overdue": 0, "due": 0})
    on_time = case_due(+3)
    late = case_due(-0.0001)  # due a moment ago: closed now, it is late
    overdue = case_due(-0.0001)
    for cid in (on_time, late):
        for step in ({"action": "handle", "action_taken": "warning"}, {"action": "close"}):
            assert api.post("officer", f"/v1/cases/{cid}/actions", json=step).status_code == 200
    # the due dates of 'late' and 'overdue' are this month only if today is not the 1st
    after = closure()
    row = next(r for (d, m), r in after.items() if d == district and m == month)
    if datetime.now(UTC).day > 1:
        assert row["closed_on_time"] - before["closed_on_time"] == 1
        assert row["closed_late"] - before["closed_late"] == 1
        assert row["overdue"] - before["overdue"] == 1
    assert 0 <= float(row["on_time_rate"]) <= 1
    assert {d for d, _ in after} == {district}, "an officer sees their districts only"
    listed = {c["id"] for c in api.get("officer", "/v1/cases?overdue=true").json()}
    assert overdue in listed and on_time not in listed and late not in listed


def _hook(api, body: dict, *, message_id: str | None = None, secret: str | None = None,
          raw: bytes | None = None) -> httpx.Response:
    payload = raw if raw is not None else json.dumps(body).encode()
    mid = message_id or f"msg_{uuid.uuid4().hex}"
    hdrs = sign_headers(secret or api.webhook_secret, mid, payload)
    return httpx.post(f"{api.url}/v1/hooks/cases", content=payload, headers=hdrs, timeout=10)


def test_inbound_webhook_signed_and_idempotent(setup, sample_city, districts):
    api = setup
    company = company_of(api, "company")
    case = api.post("officer", "/v1/cases",
                    json={"violations": confirmed(api, sample_city, districts[0],
                                                  company)}).json()
    due = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    body = {"case_id": case["id"], "action": "dispatch", "team": "external", "due_at": due,
            "external_ref": "ENF-2026-0042"}
    from alerts.signing import new_secret

    r = _hook(api, body, secret=new_secret())
    assert r.status_code == 401 and "signature" in r.json()["detail"]
    payload = json.dumps(body).encode()
    hdrs = sign_headers(api.webhook_secret, "msg_tamper", payload)
    r = httpx.post(f"{api.url}/v1/hooks/cases", content=payload.replace(b"external", b"evil"),
                   headers=hdrs, timeout=10)
    assert r.status_code == 401
    stale = sign_headers(api.webhook_secret, "msg_old", payload,
                         timestamp=int(datetime.now(UTC).timestamp()) - 3600)
    r = httpx.post(f"{api.url}/v1/hooks/cases", content=payload, headers=stale, timeout=10)
    assert r.status_code == 401 and "stale" in r.json()["detail"]
    assert api.get("supervisor", f"/v1/cases/{case['id']}").json()["state"] == "new"

    mid = f"msg_{uuid.uuid4().hex}"
    first = _hook(api, body, message_id=mid)
    assert first.status_code == 200, first.text
    assert first.json()["state"] == "dispatched" and first.json()["external_ref"] == "ENF-2026-0042"
    replay = _hook(api, body, message_id=mid)
    assert replay.status_code == 200 and replay.json()["replayed"] is True
    assert replay.json()["dispatched_at"] == first.json()["dispatched_at"]
    audits = api.sql("SELECT actor, role FROM audit_log WHERE resource = 'case'"
                     " AND resource_id = %s AND action = 'case.dispatch'", (str(case["id"]),))
    assert audits == [(f"webhook:{mid}", "system")], "a replayed message is applied once"
    # a refused update is answered the same way when it comes again
    bad_mid = f"msg_{uuid.uuid4().hex}"
    r1 = _hook(api, {"case_id": case["id"], "action": "close"}, message_id=bad_mid)
    r2 = _hook(api, {"case_id": case["id"], "action": "close"}, message_id=bad_mid)
    assert r1.status_code == r2.status_code == 409
    assert _hook(api, {}, raw=b"{broken").status_code == 422
    assert _hook(api, {"case_id": 10**9, "action": "close"}).status_code == 404


def test_audit_log_is_append_only(setup):
    api = setup
    api.post("supervisor", "/v1/cases", json={"violations": ["nope"]})  # refused: no audit
    with psycopg.connect(api.dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO audit_log (actor, role, action, resource) VALUES"
                     " ('t', 'test', 'probe', 'test')")
        for statement in ("UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log",
                          "TRUNCATE audit_log"):
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                conn.execute(statement)
