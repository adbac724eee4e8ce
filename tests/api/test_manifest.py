"""The manifest through the real server (issue #22): a site operator records receipts at its
own sites only (403 elsewhere), a repeated POST is the same receipt, bad values are 422 with
the reason; manifest lines are scoped (a company its own trucks, a site operator the lines
of its sites); the daily reconciliation per site and per job. Trips are written with SQL, as
the pipeline would (its side is tested in tests/rules and tests/store)."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta
from itertools import count

import pytest

from tests.api.conftest import cli

SH = timedelta(hours=8)
_ids = count(1)


def local(day: date, hh: int, mm: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, tzinfo=UTC) - SH


def _env(api) -> dict[str, str]:
    env = {**os.environ, "MUCKWATCH_DSN": api.dsn}
    env.pop("MUCKWATCH_CONFIG", None)
    return env


@pytest.fixture(scope="module")
def fleet(api):
    """Two trucks of the test company and one of the second company, with no permit of the
    sample city (so the permit tests' trucks are left alone)."""
    own = api.get("company", "/v1/me").json()["company"]
    other = api.get("company2", "/v1/me").json()["company"]
    pick = ("SELECT plate, device_id, company_id FROM vehicles WHERE company_id = %s"
            " ORDER BY plate DESC LIMIT %s")
    mine = api.sql(pick, (own, 2))
    theirs = api.sql(pick, (other, 1))
    return {"own": own, "other": other, "a": mine[0], "b": mine[1], "c": theirs[0]}


@pytest.fixture(scope="module")
def two_sites(api):
    """A site operator of DS04 and TD01 (the conftest's site_operator works at DS05)."""
    done = cli(_env(api), "accounts", "add", "op-ds04-td01", "--role", "site_operator",
               "--site", "DS04", "--site", "TD01")
    assert done.returncode == 0, done.stderr
    api.tokens["op2"] = done.stdout.strip()
    return "op2"


def trip(api, truck, *, left: datetime, origin: str = "CS0005", dest: str | None = None,
         arrived: datetime | None = None, volume: float | None = 12.0,
         permit: str | None = None, transfers: str = "[]") -> str:
    tid = f"api-trip-{next(_ids)}-{os.getpid()}"
    api.sql("INSERT INTO trips (id, device_id, plate, company_id, permit_id, origin, left_at,"
            " destination, arrived_at, volume_m3, volume_source, transfers) VALUES (%s, %s,"
            " %s, %s, %s, %s, %s, %s, %s, %s, 'rated', %s::jsonb)",
            (tid, truck[1], truck[0], truck[2], permit, origin, left, dest, arrived, volume,
             transfers))
    return tid


def test_a_site_operator_records_a_receipt_once(api, fleet):
    day = date(2026, 9, 10)
    tid = trip(api, fleet["a"], left=local(day, 21), dest="DS05", arrived=local(day, 21, 40))
    body = {"plate": fleet["a"][0], "received_at": local(day, 21, 44).isoformat(),
            "volume_m3": 14.5, "note": "weighbridge 2"}
    r = api.post("site_operator", "/v1/receipts", json=body)  # one site: "site" may be left out
    assert r.status_code == 201, r.text
    got = r.json()
    assert got["replayed"] is False and got["receipt"]["site_id"] == "DS05"
    assert got["receipt"]["state"] == "matched" and got["receipt"]["recorded_by"] == \
        "site_operator"
    line = got["manifest_line"]
    assert line["trip_id"] == tid and line["status"] == "received"
    assert line["receipt_volume_m3"] == 14.5 and line["arrived_at"].endswith("+08:00")
    # the network dropped the answer: the operator's tool sends it again
    again = api.post("site_operator", "/v1/receipts", json={**body, "site": "DS05"})
    assert again.status_code == 200, again.text
    assert again.json()["replayed"] is True
    assert again.json()["receipt"]["id"] == got["receipt"]["id"]
    rid = str(got["receipt"]["id"])
    assert api.sql("SELECT count(*) FROM disposal_receipts WHERE plate = %s",
                   (fleet["a"][0],)) == [(1,)]
    audit = api.get("supervisor", "/v1/audit", params={"resource": "receipt",
                                                        "resource_id": rid}).json()
    assert [a["action"] for a in audit] == ["receipt.record"]
    assert audit[0]["after"]["line"]["trip_id"] == tid
    # the same key with another volume is no repeat: receipts never change
    changed = api.post("site_operator", "/v1/receipts", json={**body, "volume_m3": 9})
    assert changed.status_code == 409 and "replaces" in changed.json()["detail"]
    fixed = api.post("site_operator", "/v1/receipts",
                     json={**body, "received_at": local(day, 21, 45).isoformat(),
                           "volume_m3": 9, "replaces": got["receipt"]["id"]})
    assert fixed.status_code == 201, fixed.text
    assert fixed.json()["manifest_line"]["trip_id"] == tid
    one = api.get("officer", f"/v1/receipts/{rid}").json()
    assert one["receipt"]["state"] == "replaced" and one["manifest_line"] is None


def test_site_scope_and_bad_receipts(api, fleet, two_sites):
    plate = fleet["b"][0]
    now = datetime.now(UTC)
    ok = {"site": "DS04", "plate": plate, "received_at": (now - timedelta(hours=1)).isoformat()}
    refusals = [
        ("site_operator", ok, 403, "not one of this account's sites"),
        ("site_operator", {**ok, "site": "NOPE"}, 422, "unknown site"),
        ("site_operator", {**ok, "site": "CS0001"}, 422, "construction_site"),
        (two_sites, {**ok, "plate": "粤Z99999"}, 422, "unknown plate"),
        (two_sites, {**ok, "received_at": (now + timedelta(minutes=30)).isoformat()}, 422,
         "in the future"),
        (two_sites, {**ok, "received_at": "2026-09-10T21:44:00"}, 422, "UTC offset"),
        (two_sites, {**ok, "volume_m3": 0}, 422, "volume_m3"),
        (two_sites, {**ok, "extra": 1}, 422, "extra"),
        (two_sites, {k: v for k, v in ok.items() if k != "site"}, 422, "site is required"),
        ("officer", ok, 403, "receipts.write"),
        ("company", ok, 403, "receipts.write"),
        (None, ok, 401, "receipts.write"),
    ]
    before = api.sql("SELECT (SELECT count(*) FROM disposal_receipts),"
                     " (SELECT count(*) FROM audit_log)")
    for account, body, status, message in refusals:
        r = api.post(account, "/v1/receipts", json=body)
        assert r.status_code == status, (account, body, r.text)
        assert message in r.text, (message, r.text)
    assert api.sql("SELECT (SELECT count(*) FROM disposal_receipts),"
                   " (SELECT count(*) FROM audit_log)") == before
    r = api.post(two_sites, "/v1/receipts", json={**ok, "site": "TD01"})
    assert r.status_code == 201 and r.json()["manifest_line"] is None
    assert r.json()["receipt"]["state"] == "unmatched"


def test_receipts_are_read_in_scope(api, fleet, two_sites):
    day = date(2026, 9, 12)
    for account, site in (("site_operator", "DS05"), (two_sites, "DS04")):
        r = api.post(account, "/v1/receipts",
                     json={"site": site, "plate": fleet["c"][0],
                           "received_at": local(day, 23, 59).isoformat()})
        assert r.status_code == 201, r.text
    seen = api.get("site_operator", "/v1/receipts", params={"limit": 1000}).json()
    assert seen and {r["site_id"] for r in seen} == {"DS05"}
    everyone = api.get("officer", "/v1/receipts", params={"day": "2026-09-12"}).json()
    assert {r["site_id"] for r in everyone} == {"DS04", "DS05"}
    assert all(r["state"] == "unmatched" for r in everyone)
    # 23:59 local on the 12th is the 12th, not the 13th (15:59 UTC)
    assert api.get("analyst", "/v1/receipts", params={"day": "2026-09-13"}).json() == []
    assert api.get("analyst", "/v1/receipts",
                   params={"state": "unmatched", "site": "DS04"}).status_code == 200
    assert api.get("company", "/v1/receipts").status_code == 403
    ds04 = next(r["id"] for r in everyone if r["site_id"] == "DS04")
    assert api.get("site_operator", f"/v1/receipts/{ds04}").status_code == 404


def test_manifest_lines_in_scope(api, fleet, two_sites):
    day = date(2026, 9, 15)
    mine = trip(api, fleet["a"], left=local(day, 20), dest="DS04", arrived=local(day, 20, 30))
    passing = trip(api, fleet["b"], left=local(day, 20, 5), origin="CS0006",
                   transfers='[{"dock": "TD01", "entered_at": "2026-09-15T12:20:00+00:00",'
                             ' "left_at": "2026-09-15T12:25:00+00:00"}]')
    theirs = trip(api, fleet["c"], left=local(day, 20, 10), dest="DS02",
                  arrived=local(day, 20, 50))
    window = {"since": local(day, 0).isoformat(), "until": local(day, 23, 59).isoformat(),
              "limit": 1000}

    def ids(account, **params):
        r = api.get(account, "/v1/manifest", params={**window, **params})
        assert r.status_code == 200, r.text
        return {line["trip_id"] for line in r.json()}

    assert ids("officer") == {mine, passing, theirs}
    assert ids("company") == {mine, passing}
    assert ids("company2") == {theirs}
    assert ids(two_sites) == {mine, passing}  # DS04 destination, TD01 passed
    assert ids("site_operator") == set()
    assert ids("analyst", status="arrived") == {mine, theirs}
    assert ids("analyst", status="en_route") == {passing}
    assert ids("analyst", plate=fleet["c"][0]) == {theirs}
    assert ids("analyst", site="TD01") == {passing}
    assert ids("company", company=fleet["other"]) == set(), "a company's scope holds"
    line = next(x for x in api.get("analyst", "/v1/manifest", params={**window,
                                                                       "plate": fleet["b"][0]}
                                   ).json() if x["trip_id"] == passing)
    assert line["transfers"][0]["dock"] == "TD01" and line["origin"] == "CS0006"
    assert api.get("public", "/v1/manifest").status_code == 403
    assert api.get("officer", "/v1/manifest", params={"status": "lost"}).status_code == 422


def test_reconciliation_through_the_api(api, fleet, two_sites):
    day = date(2026, 9, 20)
    trip(api, fleet["a"], origin="CS0007", left=local(day, 22), dest="DS04",
         arrived=local(day, 22, 30), volume=10)
    trip(api, fleet["c"], origin="CS0007", left=local(day, 22, 10), volume=8)
    r = api.post(two_sites, "/v1/receipts", json={"site": "DS04", "plate": fleet["a"][0],
                                                  "received_at": local(day, 22, 33).isoformat(),
                                                  "volume_m3": 9.5})
    assert r.status_code == 201 and r.json()["manifest_line"] is not None
    got = api.get("officer", "/v1/manifest/reconciliation", params={"day": "2026-09-20"})
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["by"] == "site" and body["timezone"] == "Asia/Shanghai"
    rows = {row["site_id"]: row for row in body["rows"]}
    assert (rows["CS0007"]["departures"], rows["CS0007"]["departed_m3"]) == (2, 18)
    assert (rows["DS04"]["arrivals"], rows["DS04"]["arrivals_received"],
            rows["DS04"]["receipts_matched"], rows["DS04"]["received_m3"]) == (1, 1, 1, 9.5)
    mine = api.get(two_sites, "/v1/manifest/reconciliation", params={"day": "2026-09-20"})
    assert {row["site_id"] for row in mine.json()["rows"]} == {"DS04"}
    assert api.get(two_sites, "/v1/manifest/reconciliation",
                   params={"day": "2026-09-20", "by": "job"}).status_code == 403
    # jobs: the test company's trip has no permit here, so no job row; a company sees only
    # its own jobs and may not reconcile sites
    jobs = api.get("company", "/v1/manifest/reconciliation", params={"day": "2026-09-20"})
    assert jobs.status_code == 200 and jobs.json()["by"] == "job"
    assert all(row["company_id"] == fleet["own"] for row in jobs.json()["rows"])
    assert api.get("company", "/v1/manifest/reconciliation",
                   params={"day": "2026-09-20", "by": "site"}).status_code == 403
    assert api.get("public", "/v1/manifest/reconciliation",
                   params={"day": "2026-09-20"}).status_code == 403
    assert api.get("analyst", "/v1/manifest/reconciliation",
                   params={"day": "20-09-2026"}).status_code == 422


def test_site_operator_accounts_through_the_cli(api):
    env = _env(api)
    bad = cli(env, "accounts", "add", "op-x", "--role", "site_operator")
    assert bad.returncode == 2 and "--site" in bad.stderr
    bad = cli(env, "accounts", "add", "op-y", "--role", "site_operator", "--site", "CS0001")
    assert bad.returncode == 2 and "CS0001" in bad.stderr
    bad = cli(env, "accounts", "add", "op-z", "--role", "analyst", "--site", "DS01")
    assert bad.returncode == 2 and "--site" in bad.stderr
    listing = cli(env, "accounts", "list").stdout
    assert "site_operator\tsite_operator\tDS05\t" in listing
    me = api.get("site_operator", "/v1/me").json()
    assert me["role"] == "site_operator" and "receipts.write" in me["permissions"]
    # no violations, cases or permits for a site operator
    assert api.get("site_operator", "/v1/violations").status_code == 403
