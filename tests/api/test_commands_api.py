"""Commands to terminals through a real ``muckwatch serve``: queued with their arguments
checked, scoped (a company reaches only its own trucks), audited, and read back."""

from __future__ import annotations

import pytest


def _vehicle(sample_city, company: str):
    return next(v for v in sample_city.vehicles if v.company_id == company)


def test_an_officer_sends_a_text_and_reads_it_back(api, sample_city):
    truck = sample_city.vehicles[0]
    r = api.post("supervisor", f"/v1/devices/{truck.device_id}/commands",
                 json={"kind": "text", "args": {"text": "您已偏离核准路线，请立即返回"},
                       "timeout_s": 30})
    assert r.status_code == 201, r.text
    row = r.json()
    assert row["state"] == "queued" and row["device_id"] == truck.device_id
    assert row["args"] == {"text": "您已偏离核准路线，请立即返回", "flags": 12}
    assert row["requested_by"] == "supervisor" and row["timeout_s"] == 30
    assert api.get("officer", f"/v1/commands/{row['id']}").json()["id"] == row["id"]
    listed = api.get("analyst", f"/v1/devices/{truck.device_id}/commands").json()
    assert row["id"] in [c["id"] for c in listed]
    audit = api.sql("SELECT action, after->>'command' FROM audit_log WHERE resource = 'device'"
                    " AND resource_id = %s", (truck.device_id,))
    assert ("command.text", row["id"]) in audit


@pytest.mark.parametrize(("body", "says"), [
    ({"kind": "text", "args": {"text": ""}}, "non-empty"),
    ({"kind": "text", "args": {"text": "x" * 1001}}, "at most 1000"),
    ({"kind": "text", "args": {"text": "ok", "colour": 1}}, "unknown argument"),
    ({"kind": "params", "args": {}}, "at least one"),
    ({"kind": "params", "args": {"report_interval_s": 0}}, "report_interval_s"),
    ({"kind": "capture", "args": {}}, "channel"),
    ({"kind": "capture", "args": {"channel": 1, "shots": 99}}, "shots"),
])
def test_bad_arguments_are_refused_saying_why(api, sample_city, body, says):
    truck = sample_city.vehicles[0]
    r = api.post("officer", f"/v1/devices/{truck.device_id}/commands", json=body)
    assert r.status_code == 422 and says in r.text, r.text


def test_unknown_trucks_and_other_companies_trucks_are_not_found(api, sample_city):
    assert api.post("officer", "/v1/devices/NO-SUCH/commands",
                    json={"kind": "position"}).status_code == 404
    companies = sorted({v.company_id for v in sample_city.vehicles})
    mine, theirs = _vehicle(sample_city, companies[0]), _vehicle(sample_city, companies[1])
    sent = api.post("supervisor", f"/v1/devices/{theirs.device_id}/commands",
                    json={"kind": "position"}).json()
    # a company reads commands to its own trucks only (api fixture: "company" = companies[0])
    assert api.get("company", f"/v1/commands/{sent['id']}").status_code == 404
    assert api.get("company", f"/v1/devices/{theirs.device_id}/commands").json() == []
    own = api.post("supervisor", f"/v1/devices/{mine.device_id}/commands",
                   json={"kind": "params", "args": {"report_interval_s": 10}}).json()
    assert api.get("company", f"/v1/commands/{own['id']}").status_code == 200
    # … and may not send any
    assert api.post("company", f"/v1/devices/{mine.device_id}/commands",
                    json={"kind": "position"}).status_code == 403
