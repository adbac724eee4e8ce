"""The registry through the real server (issue #22): an officer closes a disposal site and
re-opens it, every change audited in its transaction; a supervisor edits capacities,
licences, vehicles and companies; a company reads its own; the public sees each site's
status now; a closed destination fails the approval checks. Sites DS03, DS06 and DS07 are
used: no permit of the test companies names them, so the permit tests are not disturbed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import httpx

from tests.api.test_permits import body, company_of, templates


def patch(api, account: str, path: str, payload: dict) -> httpx.Response:
    with api.client(account) as c:
        return c.patch(path, json=payload)


def audit_actions(api, resource: str, resource_id: str) -> list[str]:
    rows = api.get("supervisor", "/v1/audit", params={"resource": resource,
                                                       "resource_id": resource_id}).json()
    return [r["action"] for r in reversed(rows)]


def test_an_officer_closes_a_site_and_reopens_it(api):
    r = api.post("officer", "/v1/registry/sites/DS06/status",
                 json={"status": "closed", "reason": "flooded after the typhoon"})
    assert r.status_code == 200, r.text
    site = r.json()
    assert site["status"] == "closed" and site["current_status"] == "closed"
    assert [c["status"] for c in site["changes"]] == ["closed"]
    assert site["changes"][-1]["changed_by"] == "officer"
    public = {s["id"]: s for s in api.get(None, "/v1/public/sites").json()}
    assert public["DS06"]["status"] == "closed" and public["DS07"]["status"] == "open"
    assert "capacity_m3" in public["DS06"]
    assert api.sql("SELECT site_open_at('DS06', now())") == [(False,)]
    # closing it again changes nothing: refused
    again = api.post("officer", "/v1/registry/sites/DS06/status",
                     json={"status": "closed", "reason": "still flooded"})
    assert again.status_code == 409, again.text
    r = api.post("officer", "/v1/registry/sites/DS06/status", json={"status": "open"})
    assert r.status_code == 200, r.text
    assert r.json()["current_status"] == "open"
    assert [c["status"] for c in r.json()["changes"]] == ["closed", "open"]
    assert audit_actions(api, "site", "DS06")[-2:] == ["site.status", "site.status"]
    entry = api.get("supervisor", "/v1/audit", params={"resource": "site",
                                                        "resource_id": "DS06"}).json()[0]
    assert entry["before"]["status"] == "closed" and entry["after"]["status"] == "open"


def test_a_scheduled_closure_and_the_refusals(api):
    start = datetime.now(UTC) + timedelta(hours=2)
    r = api.post("supervisor", "/v1/registry/sites/DS07/status",
                 json={"status": "full", "from": start.isoformat(), "reason": "capacity"})
    assert r.status_code == 200, r.text
    site = r.json()
    assert site["status"] == "full" and site["current_status"] == "open", "not yet"
    assert api.sql("SELECT site_open_at('DS07', now()), site_open_at('DS07', %s)",
                   (start + timedelta(seconds=1),)) == [(True, False)]
    # cancelled: open from the same instant (the later change wins)
    r = api.post("supervisor", "/v1/registry/sites/DS07/status",
                 json={"status": "open", "from": start.isoformat()})
    assert r.status_code == 200, r.text
    assert api.sql("SELECT site_open_at('DS07', %s)", (start + timedelta(seconds=1),)) == \
        [(True,)]
    refusals = [
        ("officer", "DS07", {"status": "closed"}, 422),  # no reason
        ("officer", "DS07", {"status": "closed", "reason": "x",
                             "from": (datetime.now(UTC) - timedelta(hours=1)).isoformat()}, 422),
        ("officer", "DS07", {"status": "shut", "reason": "x"}, 422),
        ("officer", "DS07", {"status": "closed", "reason": "x", "extra": 1}, 422),
        ("officer", "NOPE", {"status": "closed", "reason": "x"}, 404),
        ("officer", "RZ01", {"status": "closed", "reason": "x"}, 404),  # not a site
        ("company", "DS07", {"status": "closed", "reason": "x"}, 403),
        ("analyst", "DS07", {"status": "closed", "reason": "x"}, 403),
        (None, "DS07", {"status": "closed", "reason": "x"}, 401),
    ]
    for account, site_id, payload, status in refusals:
        r = api.post(account, f"/v1/registry/sites/{site_id}/status", json=payload)
        assert r.status_code == status, (account, payload, r.status_code, r.text)
    assert api.sql("SELECT count(*) FROM site_status_changes WHERE site_id = 'DS07'") == [(2,)]


def test_a_supervisor_edits_the_registry_and_a_company_reads_its_own(api, sample_city):
    own = company_of(api, "company")
    other = company_of(api, "company2")
    plate = next(v.plate for v in sample_city.vehicles if v.company_id == own)
    theirs = next(v.plate for v in sample_city.vehicles if v.company_id == other)
    path = f"/v1/registry/vehicles/{quote(plate)}"
    r = patch(api, "supervisor", path, {"rated_load_kg": 18000, "volume_m3": 12.5,
                                        "vehicle_type": "自卸车",
                                        "inspection_expires": "2020-01-31"})
    assert r.status_code == 200, r.text
    v = r.json()
    assert (v["rated_load_kg"], v["volume_m3"], v["vehicle_type"], v["inspection_expires"],
            v["inspection_expired"]) == (18000, 12.5, "自卸车", "2020-01-31", True)
    # a field left out is kept, one sent as null cleared
    r = patch(api, "supervisor", path, {"inspection_expires": None})
    assert r.json()["inspection_expires"] is None and r.json()["rated_load_kg"] == 18000
    assert audit_actions(api, "vehicle", plate)[-2:] == ["vehicle.update", "vehicle.update"]
    for payload, status in (({}, 422), ({"rated_load_kg": -1}, 422), ({"colour": "red"}, 422)):
        assert patch(api, "supervisor", path, payload).status_code == status, payload
    assert patch(api, "officer", path, {"volume_m3": 10}).status_code == 403
    assert patch(api, "supervisor", "/v1/registry/vehicles/NOPE",
                 {"volume_m3": 10}).status_code == 404

    r = patch(api, "supervisor", f"/v1/registry/companies/{own}",
              {"licence_no": "深渣运字2026-0042", "licence_expires": "2099-12-31"})
    assert r.status_code == 200 and r.json()["licence_expired"] is False, r.text
    r = patch(api, "supervisor", "/v1/registry/sites/DS03",
              {"capacity_m3": 250000, "licence_expires": "2099-12-31"})
    assert r.status_code == 200 and float(r.json()["capacity_m3"]) == 250000, r.text
    assert audit_actions(api, "site", "DS03")[-1] == "site.update"
    public = {s["id"]: s for s in api.get(None, "/v1/public/sites").json()}
    assert float(public["DS03"]["capacity_m3"]) == 250000

    mine = api.get("company", "/v1/registry/vehicles").json()
    assert mine and {v["company_id"] for v in mine} == {own}
    assert api.get("company", f"/v1/registry/vehicles/{quote(theirs)}").status_code == 404
    assert [c["id"] for c in api.get("company", "/v1/registry/companies").json()] == [own]
    assert api.get("company", f"/v1/registry/companies/{other}").status_code == 404
    listed = api.get("analyst", "/v1/registry/vehicles", params={"company": own}).json()
    assert {v["plate"] for v in listed} == {v.plate for v in sample_city.vehicles
                                            if v.company_id == own}
    assert len(api.get("officer", "/v1/registry/companies").json()) == len(sample_city.companies)
    sites = api.get("analyst", "/v1/registry/sites", params={"kind": "disposal_site"}).json()
    assert {s["id"] for s in sites} == {f.id for f in sample_city.fences
                                        if f.kind == "disposal_site"}
    assert api.get("public", "/v1/registry/sites").status_code == 403
    assert api.get("association", "/v1/registry/vehicles").status_code == 403


def test_a_closed_destination_fails_the_approval_checks(api, sample_city):
    """Closed from an hour from now: the application valid from tomorrow names a site that
    is closed at its valid_from."""
    company = company_of(api, "company")
    template = templates(sample_city, company)[0]
    start = datetime.now(UTC) + timedelta(hours=1)
    r = api.post("officer", "/v1/registry/sites/DS03/status",
                 json={"status": "closed", "from": start.isoformat(), "reason": "licence review"})
    assert r.status_code == 200, r.text
    try:
        payload = body(template, destinations=["DS03"], start=timedelta(days=1))
        r = api.post("company", "/v1/permits/applications", json=payload)
        assert r.status_code == 201, r.text
        problems = r.json()["check_report"]["problems"]
        closed = [p for p in problems if p["code"] == "destination_not_open"]
        assert closed and closed[0]["where"]["site"] == "DS03", problems
        refused = api.post("officer", f"/v1/permits/applications/{r.json()['id']}/decision",
                           json={"decision": "approve"})
        assert refused.status_code == 422 and "destination_not_open" in refused.json()["detail"]
    finally:
        api.post("officer", "/v1/registry/sites/DS03/status",
                 json={"status": "open", "from": start.isoformat()})
