"""The role × permission matrix against a real server: every role, allowed and refused;
scopes (an officer's districts, a company's own rows); tokens shown once, hashed, revocable;
hostile input refused with a clear 4xx and nothing stored."""

from __future__ import annotations

import subprocess
from pathlib import Path

import psycopg
import pytest

from api.access import MATRIX, ROLES, matrix_markdown
from tests.api.conftest import add_violation, cli

REPO = Path(__file__).resolve().parents[2]

# one request per permission that needs nothing else to exist (404/422 mean "let in")
PROBES = {
    "me.read": ("GET", "/v1/me"),
    "scores.read": ("GET", "/v1/public/grades"),
    "permits.read": ("GET", "/v1/public/permits"),
    "sites.read": ("GET", "/v1/public/sites"),
    "reasons.read": ("GET", "/v1/reasons"),
    "violations.read": ("GET", "/v1/violations"),
    "violations.review": ("POST", "/v1/violations/NOPE/review"),
    "queue.read": ("GET", "/v1/review/queue"),
    "appeals.file": ("POST", "/v1/violations/NOPE/appeals"),
    "appeals.read": ("GET", "/v1/appeals"),
    "appeals.decide": ("POST", "/v1/appeals/999999/decision"),
    "cases.read": ("GET", "/v1/cases"),
    "cases.write": ("POST", "/v1/cases"),
    "closure.read": ("GET", "/v1/cases/closure"),
    "association.read": ("GET", "/v1/association/companies"),
    "telemetry.read": ("GET", "/v1/passed?lon=114.05&lat=22.6&radius_m=100"
                              "&since=2026-01-01T00:00:00%2B08:00"
                              "&until=2026-01-01T01:00:00%2B08:00"),
    "audit.read": ("GET", "/v1/audit"),
    "permits.apply": ("POST", "/v1/permits/applications"),
    "applications.read": ("GET", "/v1/permits/applications"),
    "permits.decide": ("POST", "/v1/permits/applications/999999/decision"),
    "permits.list": ("GET", "/v1/permits"),
    "permits.manage": ("POST", "/v1/permits/NOPE/actions"),
    "registry.read": ("GET", "/v1/registry/sites"),
    "registry.manage": ("PATCH", "/v1/registry/vehicles/NOPE"),
    "sites.status": ("POST", "/v1/registry/sites/NOPE/status"),
    "receipts.write": ("POST", "/v1/receipts"),
    "receipts.read": ("GET", "/v1/receipts"),
    "manifest.read": ("GET", "/v1/manifest"),
    "reconciliation.read": ("GET", "/v1/manifest/reconciliation?day=2026-01-01"),
    "map.read": ("GET", "/v1/map/layers"),
    "live.read": ("GET", "/v1/live/positions"),
    "track.read": ("GET", "/v1/vehicles/NOPE/track?since=0&until=1000"),
    "online.read": ("GET", "/v1/online-rate?day=2026-01-01"),
    "media.read": ("GET", "/v1/media/999999"),
    "commands.send": ("POST", "/v1/devices/NOPE/commands"),
    "commands.read": ("GET", "/v1/commands/NOPE"),
    "evidence.read": ("GET", "/v1/violations/NOPE/evidence"),
    "evidence.seal": ("POST", "/v1/violations/NOPE/evidence/seal"),
}


def test_every_permission_is_probed_and_documented():
    assert set(PROBES) == set(MATRIX)
    assert matrix_markdown() in (REPO / "docs" / "api.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("role", ROLES)
def test_role_matrix(api, role):
    """Each role gets past the check exactly where the matrix says, and 403 elsewhere."""
    account = role if role != "public" else "public"
    for permission, (method, path) in PROBES.items():
        body = {"json": {}} if method != "GET" and "appeals" not in path else {}
        if permission == "appeals.file":
            body = {"data": {"text": "x"}}
        if method in ("GET", "POST"):
            r = (api.get(account, path) if method == "GET" else api.post(account, path, **body))
        else:  # PATCH
            with api.client(account) as c:
                r = c.request(method, path, **body)
        if role in MATRIX[permission]:
            assert r.status_code not in (401, 403), (role, permission, r.status_code, r.text)
        else:
            assert r.status_code == 403, (role, permission, r.status_code, r.text)
            assert permission in r.json()["detail"]


def test_anonymous_is_the_public(api):
    assert api.get(None, "/v1/public/grades").status_code == 200
    assert api.get(None, "/v1/public/permits").status_code == 200
    r = api.get(None, "/v1/violations")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    r = api.get(None, PROBES["telemetry.read"][1])
    assert r.status_code == 401


def test_bad_tokens_are_refused_not_downgraded(api):
    for header in ("Bearer nonsense", "Basic dXNlcjpwYXNz", "Bearer", "bearer mwt_x y"):
        r = api.get(None, "/v1/public/grades", headers={"Authorization": header})
        assert r.status_code == 401, header


def test_public_views_hold_no_positions(api):
    permits = api.get("public", "/v1/public/permits").json()
    assert permits, "the sample city has permits valid now"
    for p in permits:
        assert not {"route", "lon", "lat", "geometry", "device_id"} & set(p)
    grades = api.get("public", "/v1/public/grades").json()
    assert [g["rank"] for g in grades] == sorted(g["rank"] for g in grades)
    assert all(g["grade"] in "ABCD" for g in grades)
    sites = api.get("public", "/v1/public/sites").json()
    assert {s["kind"] for s in sites} <= {"disposal_site", "transfer_dock"} and sites
    stats = api.get("association", "/v1/association/companies").json()
    assert stats and not {"plate", "device_id", "lon", "lat"} & set(stats[0])


def test_company_sees_only_its_own(api, sample_city, districts):
    own_company = api.get("company", "/v1/me").json()["company"]
    other = api.get("company2", "/v1/me").json()["company"]
    mine = add_violation(api, sample_city, district=districts[0], company=own_company)
    theirs = add_violation(api, sample_city, district=districts[0], company=other)
    assert api.get("company", f"/v1/violations/{mine}").status_code == 200
    assert api.get("company", f"/v1/violations/{theirs}").status_code == 404
    listed = {v["id"] for v in api.get("company", "/v1/violations?limit=1000").json()}
    assert mine in listed and theirs not in listed
    assert {v["company_id"] for v in api.get("company", "/v1/violations").json()} == {own_company}
    r = api.post("company", f"/v1/violations/{theirs}/appeals", data={"text": "not ours?"})
    assert r.status_code == 404


def test_officer_sees_only_their_districts(api, sample_city, districts):
    here = add_violation(api, sample_city, district=districts[0])
    there = add_violation(api, sample_city, district=districts[1])
    assert api.get("officer", f"/v1/violations/{here}").json()["district_id"] == districts[0]
    assert api.get("officer", f"/v1/violations/{there}").status_code == 404
    queue = api.get("officer", "/v1/review/queue?limit=1000").json()
    assert {v["district_id"] for v in queue["violations"]} == {districts[0]}
    assert {c["district_id"] for c in queue["counts"]} == {districts[0]}
    r = api.post("officer", f"/v1/violations/{there}/review",
                 json={"decision": "confirm", "reason": "evidence_clear"})
    assert r.status_code == 404
    assert api.get("supervisor", f"/v1/violations/{there}").status_code == 200


def test_tokens_are_shown_once_stored_hashed_and_revocable(api):
    env = _env(api)
    done = cli(env, "accounts", "add", "temp-analyst", "--role", "analyst")
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert token.startswith("mwt_") and len(token) > 40
    listing = cli(env, "accounts", "list")
    assert "temp-analyst\tanalyst" in listing.stdout and token not in listing.stdout
    stored = api.sql("SELECT token_hash FROM api_accounts WHERE id = 'temp-analyst'")[0][0]
    assert token.encode() not in bytes(stored) and len(bytes(stored)) == 32
    headers = {"Authorization": f"Bearer {token}"}
    assert api.get(None, "/v1/me", headers=headers).json()["role"] == "analyst"
    assert cli(env, "accounts", "revoke", "temp-analyst").returncode == 0
    assert api.get(None, "/v1/me", headers=headers).status_code == 401
    again = cli(env, "accounts", "revoke", "temp-analyst")
    assert again.returncode == 2 and "no active account" in again.stderr
    bad = cli(env, "accounts", "add", "x", "--role", "officer")
    assert bad.returncode == 2 and "--district" in bad.stderr
    bad = cli(env, "accounts", "add", "y", "--role", "officer", "--district", "NOWHERE")
    assert bad.returncode == 2 and "NOWHERE" in bad.stderr


def _env(api) -> dict[str, str]:
    import os

    env = {**os.environ, "MUCKWATCH_DSN": api.dsn}
    env.pop("MUCKWATCH_CONFIG", None)
    return env


def test_hostile_input_is_refused_and_nothing_stored(api, sample_city, districts):
    vid = add_violation(api, sample_city, district=districts[0])
    before = api.sql("SELECT (SELECT count(*) FROM audit_log), (SELECT count(*) FROM appeals),"
                     " (SELECT count(*) FROM cases)")[0]
    with api.client("officer") as c:
        r = c.post(f"/v1/violations/{vid}/review", content=b"{not json",
                   headers={"content-type": "application/json"})
        assert r.status_code == 422 and "json" in r.text.lower()
        r = c.post(f"/v1/violations/{vid}/review",
                   json={"decision": "confirm", "reason": "evidence_clear", "extra": 1})
        assert r.status_code == 422 and "extra" in r.text
        r = c.post(f"/v1/violations/{vid}/review", json={"decision": "DROP TABLE", "reason": 1})
        assert r.status_code == 422
        r = c.post(f"/v1/violations/{vid}/review",
                   json={"decision": "dismiss", "reason": "'; DROP TABLE violations; --"})
        assert r.status_code == 422 and "reason" in r.json()["detail"]
        r = c.get("/v1/violations/' OR '1'='1")
        assert r.status_code == 404
        r = c.get("/v1/violations?rule=x' OR 1=1 --&limit=5")
        assert r.status_code == 200 and r.json() == []
        r = c.get("/v1/violations?limit=100000")
        assert r.status_code == 422
        r = c.post("/v1/cases", json={"violations": "not a list"})
        assert r.status_code == 422
    assert _raw_post(api, f"/v1/violations/{vid}/appeals", api.tokens["company"],
                     declared=10**9).startswith(b"HTTP/1.1 413")
    after = api.sql("SELECT (SELECT count(*) FROM audit_log), (SELECT count(*) FROM appeals),"
                    " (SELECT count(*) FROM cases)")[0]
    assert after == before
    assert api.sql("SELECT review FROM violations WHERE id = %s", (vid,)) == [("new",)]


def _raw_post(api, path: str, token: str, *, declared: int) -> bytes:
    """A request that declares a huge body and sends little: refused before it is read."""
    import socket
    from urllib.parse import urlsplit

    url = urlsplit(api.url)
    with socket.create_connection((url.hostname, url.port), timeout=10) as s:
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                  f"Content-Type: multipart/form-data; boundary=b\r\n"
                  f"Content-Length: {declared}\r\n\r\n--b\r\n".encode())
        return s.recv(4096)


def test_openapi_and_curl(api):
    """A real third-party client: curl, as docs/api.md shows it."""
    spec = api.get(None, "/openapi.json").json()
    assert "/v1/violations/{violation_id}/review" in spec["paths"]
    out = subprocess.run(["curl", "-sS", "-H", f"Authorization: Bearer {api.tokens['officer']}",
                          f"{api.url}/v1/me"], capture_output=True, text=True, timeout=20)
    assert '"role":"officer"' in out.stdout


def test_who_passed_here_through_the_api(api, sample_city):
    """A patrol's find: the loaded truck that passed 50 m away is named with its company and
    track; the empty one is left out; the public may not ask."""
    from datetime import UTC, datetime, timedelta

    place = (114.0530, 22.6210)
    vehicles = [v for v in sample_city.vehicles][-2:]
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    rows = []
    for v, load in zip(vehicles, (2, 0), strict=True):
        for k in range(-5, 6):  # along a meridian, 50 m east of the place, one fix per 10 s
            rows.append((v.device_id, t0 + timedelta(seconds=10 * k), place[0] + 0.000486,
                         place[1] + k * 0.0003, 30.0, load))
    with psycopg.connect(api.dsn, autocommit=True) as conn:
        conn.cursor().executemany(
            "INSERT INTO telemetry (device_id, ts, lon, lat, speed_kmh, load, received_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, now())", rows)
    params = {"lon": place[0], "lat": place[1], "radius_m": 200,
              "since": (t0 - timedelta(minutes=5)).isoformat(),
              "until": (t0 + timedelta(minutes=5)).isoformat()}
    r = api.get("officer", "/v1/passed", params=params)
    assert r.status_code == 200, r.text
    found = r.json()
    assert [t["plate"] for t in found] == [vehicles[0].plate]
    assert found[0]["company_id"] == vehicles[0].company_id
    assert 45 < found[0]["closest_m"] < 55 and found[0]["track"]
    assert api.get("public", "/v1/passed", params=params).status_code == 403
    assert api.get("officer", "/v1/passed",
                   params={**params, "radius_m": 99999}).status_code == 422


def test_public_permits_leave_out_revoked_ones(api):
    listed = api.get("public", "/v1/public/permits").json()
    victim = listed[0]["id"]
    r = api.post("supervisor", f"/v1/permits/{victim}/actions",
                 json={"action": "revoke", "reason": "site closed by the district"})
    assert r.status_code == 200, r.text
    assert victim not in {p["id"] for p in api.get("public", "/v1/public/permits").json()}
