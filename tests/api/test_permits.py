"""Permits with a life cycle through a real ``muckwatch serve`` and the real CLI (issue #22):
apply → approve → suspend → resume → revoke, every refused transition, the approval checks'
near-misses (a route ending 30 m outside its destination, a zone crossed in or out of its
window), GCJ-02 / BD-09 routes equal to WGS-84, company scopes, and an audit row per change."""

from __future__ import annotations

import itertools
import json
import os
from datetime import UTC, datetime, timedelta

import numpy as np
import shapely

from domain.coords import convert
from domain.settings import PermitSettings
from geofence.projection import Projector
from permits.checks import Application, CityView, check
from tests.api.conftest import cli

P = Projector(4547)


def company_of(api, account: str) -> str:
    return api.get(account, "/v1/me").json()["company"]


def templates(sample_city, company: str) -> list:
    """Bundle permits of the company's vehicles, any hour: good applications."""
    owner = {v.plate: v.company_id for v in sample_city.vehicles}
    return [p for p in sample_city.permits if owner[p.plate] == company and p.hours is None]


def body(p, *, coords=None, crs: str = "wgs84", hours: str | None = None,
         start: timedelta = timedelta(minutes=1), days: float = 30, **changes) -> dict:
    now = datetime.now(UTC)
    out = {"origin": p.origin, "destinations": list(p.destinations), "plates": [p.plate],
           "route": {"type": "LineString",
                     "coordinates": [list(c) for c in (coords or p.route.coords)]},
           "crs": crs, "corridor_m": p.corridor_m, "hours": hours,
           "valid_from": (now + start).isoformat(),
           "valid_to": (now + timedelta(days=days)).isoformat(), "declared_volume_m3": 800.5}
    out.update(changes)
    return out


def submit(api, account: str, payload: dict) -> dict:
    r = api.post(account, "/v1/permits/applications", json=payload)
    assert r.status_code == 201, r.text
    return r.json()


def decide(api, app_id: int, decision: str = "approve", reason: str | None = None,
           account: str = "officer"):
    return api.post(account, f"/v1/permits/applications/{app_id}/decision",
                    json={"decision": decision, "reason": reason})


def history(api, resource: str, resource_id) -> list[str]:
    r = api.get("supervisor", "/v1/audit", params={"resource": resource,
                                                  "resource_id": str(resource_id)})
    return [h["action"] for h in reversed(r.json())]


def test_life_cycle_through_the_api(api, sample_city):
    company = company_of(api, "company")
    p = templates(sample_city, company)[0]
    app = submit(api, "company", body(p, start=timedelta(minutes=-1)))
    assert app["status"] == "applied" and app["company_id"] == company
    assert app["check_report"]["ok"] is True and app["submitted_by"] == "company"
    assert api.get("company", f"/v1/permits/applications/{app['id']}").status_code == 200
    queue = api.get("officer", "/v1/permits/applications?status=applied&limit=1000").json()
    assert app["id"] in [a["id"] for a in queue]

    r = decide(api, app["id"], reason="route checked on site")
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["application"]["status"] == "approved" and result["report"]["ok"]
    permit_id = f"A{app['id']}-{p.plate}"
    assert [x["id"] for x in result["permits"]] == [permit_id]
    permit = api.get("company", f"/v1/permits/{permit_id}").json()
    assert permit["status"] == "active" and permit["current_status"] == "active"
    assert permit["application_id"] == app["id"] and permit["route"] == app["route"]
    assert api.get("company", f"/v1/permits?application={app['id']}").json()[0]["id"] == \
        permit_id

    act = f"/v1/permits/{permit_id}/actions"
    start = datetime.now(UTC) + timedelta(minutes=2)
    r = api.post("officer", act, json={"action": "suspend", "from": start.isoformat(),
                                       "until": (start + timedelta(hours=2)).isoformat(),
                                       "reason": "mud on 梅观高速"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "suspended" and len(r.json()["suspensions"]) == 1
    r = api.post("supervisor", act, json={"action": "resume", "reason": "road cleaned"})
    assert r.status_code == 200 and r.json()["status"] == "active"
    r = api.post("officer", act, json={"action": "revoke", "reason": "forged volume"})
    assert r.status_code == 200 and r.json()["current_status"] == "revoked"
    assert history(api, "permit_application", app["id"]) == ["application.submit",
                                                             "application.approve"]
    assert history(api, "permit", permit_id) == ["permit.issue", "permit.suspend",
                                                 "permit.resume", "permit.revoke"]
    entry = api.get("supervisor", "/v1/audit", params={"resource": "permit",
                                                       "resource_id": permit_id}).json()[0]
    assert entry["actor"] == "officer" and entry["role"] == "officer"
    assert entry["before"]["status"] == "active" and entry["after"]["status"] == "revoked"
    # the database answers "valid at t" around the revocation
    revoked_at = datetime.fromisoformat(entry["after"]["status_changed_at"])
    rows = api.sql("SELECT permit_valid_at(%s, %s), permit_valid_at(%s, %s)",
                   (permit_id, revoked_at - timedelta(microseconds=1), permit_id, revoked_at))
    assert rows == [(True, False)]


def test_refused_transitions_through_the_api(api, sample_city):
    company = company_of(api, "company")
    p = templates(sample_city, company)[1]
    app = submit(api, "company", body(p, start=timedelta(minutes=-1)))
    assert decide(api, app["id"], account="company").status_code == 403
    assert decide(api, app["id"], "reject").status_code == 422  # a rejection needs a reason
    r = api.post("officer", f"/v1/permits/applications/{app['id']}/decision",
                 json={"decision": "approve", "override": True})
    assert r.status_code == 422 and "override" in r.text  # there is no override
    assert decide(api, app["id"]).status_code == 200
    assert decide(api, app["id"]).status_code == 409
    assert decide(api, app["id"], "reject", "too late").status_code == 409
    r = api.post("company", f"/v1/permits/applications/{app['id']}/withdraw", json={})
    assert r.status_code == 409

    permit_id = f"A{app['id']}-{p.plate}"
    act = f"/v1/permits/{permit_id}/actions"
    assert api.post("company", act, json={"action": "revoke", "reason": "x"}).status_code == 403
    assert api.post("analyst", act, json={"action": "revoke", "reason": "x"}).status_code == 403
    r = api.post("officer", act, json={"action": "resume"})
    assert r.status_code == 409 and "not suspended" in r.json()["detail"]
    past = (datetime.now(UTC) - timedelta(minutes=10)).isoformat()
    r = api.post("officer", act, json={"action": "revoke", "at": past, "reason": "x"})
    assert r.status_code == 422 and "past" in r.json()["detail"]
    r = api.post("officer", act, json={"action": "suspend", "from": past, "reason": "x"})
    assert r.status_code == 422
    assert api.post("officer", act, json={"action": "revoke"}).status_code == 422  # no reason
    r = api.post("officer", act, json={"action": "resume", "at": past})
    assert r.status_code == 422
    r = api.post("officer", act, json={"action": "suspend", "reason": "weighbridge check"})
    assert r.status_code == 200 and r.json()["current_status"] == "suspended"
    r = api.post("officer", act, json={"action": "suspend", "reason": "again"})
    assert r.status_code == 409
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    r = api.post("officer", act, json={"action": "revoke", "at": later, "reason": "fraud"})
    assert r.status_code == 200 and r.json()["status"] == "revoked"
    for move in ({"action": "resume"}, {"action": "suspend", "reason": "x"},
                 {"action": "revoke", "reason": "x"}):
        assert api.post("officer", act, json=move).status_code == 409, move
    assert api.post("officer", "/v1/permits/NOPE/actions",
                    json={"action": "resume"}).status_code == 404
    assert history(api, "permit", permit_id) == ["permit.issue", "permit.suspend",
                                                 "permit.revoke"]

    # withdrawn by the company: nothing to decide any more
    other = submit(api, "company", body(p))
    r = api.post("company", f"/v1/permits/applications/{other['id']}/withdraw",
                 json={"reason": "wrong site"})
    assert r.status_code == 200 and r.json()["status"] == "withdrawn"
    assert decide(api, other["id"]).status_code == 409


def near_edge(geometry, metres: float = 30.0):
    """A point ``metres`` inside and one ``metres`` outside a site, across one of its edges."""
    poly = shapely.transform(geometry, lambda xy: np.column_stack(P.to_metric(xy[:, 0],
                                                                              xy[:, 1])))
    part = max(shapely.get_parts(poly), key=lambda g: g.area)
    ring = np.array(part.exterior.coords)
    for a, b in itertools.pairwise(ring):
        length = np.hypot(*(b - a))
        if length < 4 * metres:
            continue
        normal = np.array([-(b - a)[1], (b - a)[0]]) / length
        for sign in (1, -1):
            inside = shapely.Point((a + b) / 2 - sign * normal * metres)
            outside = shapely.Point((a + b) / 2 + sign * normal * metres)
            if poly.covers(inside) and abs(poly.boundary.distance(inside) - metres) < 0.01 \
                    and abs(poly.distance(outside) - metres) < 0.01:
                back = [P.to_lonlat([q.x], [q.y]) for q in (inside, outside)]
                return [(float(x[0]), float(y[0])) for x, y in back]
    raise AssertionError("no straight edge long enough")


def test_a_route_ending_30_m_outside_its_destination_is_refused(api, sample_city):
    company = company_of(api, "company")
    p = templates(sample_city, company)[2]
    site = next(f for f in sample_city.fences if f.id == p.destinations[0])
    inside, outside = near_edge(site.geometry)
    head = list(p.route.coords)[:-1]
    short = submit(api, "company", body(p, coords=[*head, outside]))
    assert not short["check_report"]["ok"]  # the company sees it at once
    r = decide(api, short["id"])
    assert r.status_code == 422, r.text
    (problem,) = [x for x in r.json()["report"]["problems"] if x["severity"] == "error"]
    assert problem["code"] == "route_end_outside_destination"
    assert abs(problem["where"]["distance_m"][site.id] - 30) < 0.5
    assert "route_end_outside_destination" in r.json()["detail"]
    again = api.get("officer", f"/v1/permits/applications/{short['id']}").json()
    assert again["status"] == "applied" and again["permits"] == []
    assert history(api, "permit_application", short["id"]) == [
        "application.submit", "application.approve_refused"]
    assert decide(api, short["id"], "reject", "ends outside the disposal site").status_code \
        == 200

    good = submit(api, "company", body(p, coords=[*head, inside]))
    r = decide(api, good["id"])
    assert r.status_code == 200, r.text


def zone_detour(sample_city, company: str, zone_id: str):
    """A route from a bundle permit's origin through a restricted zone to its destination
    that crosses that zone and no other."""
    view = CityView.from_city(sample_city)
    zone = view.fences[zone_id].geometry.representative_point()
    now = datetime.now(UTC)
    for p in templates(sample_city, company):
        coords = [p.route.coords[0], zone.coords[0], p.route.coords[-1]]
        app = Application(company, p.origin, p.destinations, (p.plate,),
                          shapely.LineString(coords), p.corridor_m, now + timedelta(hours=1),
                          now + timedelta(days=30))
        report = check(app, view, PermitSettings(), now)
        if {c.zone_id for c in report.crossings} == {zone_id} and \
                set(report.codes()) == {"restricted_zone_crossing"}:
            return p, coords
    raise AssertionError(f"no route of {company} detours through {zone_id} alone")


def test_a_zone_crossed_in_its_window_is_refused_and_outside_it_passes(api, sample_city):
    company = company_of(api, "company")
    p, coords = zone_detour(sample_city, company, "RZ02")  # 华强北, restricted 07:00-22:00
    night = submit(api, "company", body(p, coords=coords, hours="22:00-06:00"))
    r = decide(api, night["id"])
    assert r.status_code == 200, r.text
    (warning,) = r.json()["report"]["problems"]
    assert warning["code"] == "restricted_zone_outside_window"
    assert warning["severity"] == "warning" and warning["where"]["zone_id"] == "RZ02"

    dawn = submit(api, "company", body(p, coords=coords, hours="06:00-08:00"))
    r = decide(api, dawn["id"])
    assert r.status_code == 422
    (problem,) = r.json()["report"]["problems"]
    assert problem["code"] == "restricted_zone_crossing"
    where = problem["where"]
    assert where["zone_id"] == "RZ02" and where["zone_name"] == "华强北商业区禁行区"
    assert where["overlap"] == ["07:00-08:00"] and where["length_m"] > 100
    assert len(where["entry"]) == 2 and len(where["exit"]) == 2
    assert "华强北商业区禁行区" in problem["message"]


def test_routes_drawn_in_gcj02_and_bd09_give_the_wgs84_result(api, sample_city):
    company = company_of(api, "company")
    p = templates(sample_city, company)[3]
    wgs = submit(api, "company", body(p))
    coords = np.array(p.route.coords)
    for crs in ("gcj02", "bd09"):
        lon, lat = convert(coords[:, 0], coords[:, 1], "wgs84", crs)
        drawn = np.column_stack([lon, lat]).tolist()
        app = submit(api, "company", body(p, coords=drawn, crs=crs))
        assert app["route_crs"] == crs and app["route_submitted"]["coordinates"] == drawn
        stored = np.array(app["route"]["coordinates"])
        assert np.abs(stored - coords).max() < 1e-8, crs
        mine = {k: v for k, v in app["check_report"].items() if k != "checked_at"}
        theirs = {k: v for k, v in wgs["check_report"].items() if k != "checked_at"}
        assert mine == theirs


def test_a_company_applies_for_and_reads_only_its_own(api, sample_city):
    company, other = company_of(api, "company"), company_of(api, "company2")
    p = templates(sample_city, company)[4]
    foreign = templates(sample_city, other)[0]
    count = api.sql("SELECT count(*) FROM permit_applications")[0][0]
    r = api.post("company", "/v1/permits/applications", json=body(foreign))
    assert r.status_code == 422 and foreign.plate in r.json()["detail"]
    r = api.post("company", "/v1/permits/applications",
                 json=body(p, plates=[p.plate, foreign.plate]))
    assert r.status_code == 422 and "another company" in r.json()["detail"]
    r = api.post("company", "/v1/permits/applications", json=body(p, crs="epsg3857"))
    assert r.status_code == 422
    r = api.post("company", "/v1/permits/applications", json=body(p, hours="7pm-6am"))
    assert r.status_code == 422
    assert api.post("officer", "/v1/permits/applications", json=body(p)).status_code == 403
    assert api.sql("SELECT count(*) FROM permit_applications")[0][0] == count

    mine = submit(api, "company", body(p))
    assert api.get("company2", f"/v1/permits/applications/{mine['id']}").status_code == 404
    assert api.get("company2", f"/v1/permits/applications/{mine['id']}/check").status_code \
        == 404
    listed = api.get("company2", "/v1/permits/applications?limit=1000").json()
    assert mine["id"] not in [a["id"] for a in listed]
    assert {a["company_id"] for a in listed} <= {other}
    r = api.post("company2", f"/v1/permits/applications/{mine['id']}/withdraw", json={})
    assert r.status_code == 404
    # officers of any district see city-wide permits; analysts read, and change nothing
    assert api.get("officer2", f"/v1/permits/applications/{mine['id']}").status_code == 200
    assert api.get("analyst", f"/v1/permits/applications/{mine['id']}/check").json()["ok"]
    assert decide(api, mine["id"], account="analyst").status_code == 403
    assert decide(api, mine["id"], account="officer2").status_code == 200
    permit_id = f"A{mine['id']}-{p.plate}"
    assert api.get("company2", f"/v1/permits/{permit_id}").status_code == 404
    assert {x["company_id"] for x in api.get("company2", "/v1/permits?limit=1000").json()} \
        == {other}
    assert api.get("company", f"/v1/permits/{permit_id}").status_code == 200
    assert api.get(None, "/v1/permits").status_code == 401
    assert api.get("public", "/v1/permits").status_code == 403
    assert api.get("association", "/v1/permits/applications").status_code == 403


def test_the_cli_life_cycle(api, sample_city, tmp_path):
    env = {**os.environ, "MUCKWATCH_DSN": api.dsn,
           "MUCKWATCH_CITY_DIR": str(sample_city.directory)}
    env.pop("MUCKWATCH_CONFIG", None)
    company = company_of(api, "company")
    p = templates(sample_city, company)[5]
    path = tmp_path / "application.json"
    path.write_text(json.dumps(body(p, hours="21:00-05:00"), ensure_ascii=False),
                    encoding="utf-8")
    done = cli(env, "permits", "apply", str(path), "--company", company, "--by", "clerk-li")
    assert done.returncode == 0, done.stderr
    app_id = int(done.stdout.split()[1])
    assert "all checks passed" in done.stdout
    listing = cli(env, "permits", "list", "--status", "applied")
    assert listing.returncode == 0 and f"{app_id}\t{company}\tapplied" in listing.stdout
    done = cli(env, "permits", "check", str(app_id))
    assert done.returncode == 0 and "all checks passed" in done.stdout
    done = cli(env, "permits", "approve", str(app_id), "--by", "officer-wang")
    assert done.returncode == 0, done.stderr
    permit_id = f"A{app_id}-{p.plate}"
    assert f"permit {permit_id}" in done.stdout
    for args in (("suspend", permit_id, "--reason", "inspection"),
                 ("resume", permit_id, "--reason", "passed"),
                 ("revoke", permit_id, "--reason", "company request",
                  "--at", (datetime.now(UTC) + timedelta(days=1)).isoformat())):
        done = cli(env, "permits", *args, "--by", "officer-wang")
        assert done.returncode == 0, (args, done.stderr)
    assert "revoked from" in done.stdout
    done = cli(env, "permits", "resume", permit_id)
    assert done.returncode == 2 and "revoked" in done.stderr
    listing = cli(env, "permits", "list", "--permits", "--status", "revoked")
    assert permit_id in listing.stdout
    assert cli(env, "permits", "list", "--permits", "--status", "applied").returncode == 2

    # a refused approval: exit 2, the report printed, the application still applied
    short = body(p, corridor_m=5)
    path.write_text(json.dumps(short), encoding="utf-8")
    done = cli(env, "permits", "apply", str(path), "--company", company)
    refused_id = int(done.stdout.split()[1])
    assert "corridor_too_narrow" in done.stdout
    done = cli(env, "permits", "approve", str(refused_id), "--by", "officer-wang")
    assert done.returncode == 2 and "corridor_too_narrow" in done.stdout
    done = cli(env, "permits", "reject", str(refused_id), "--reason", "corridor 5 m")
    assert done.returncode == 0 and "rejected" in done.stdout
    done = cli(env, "permits", "approve", "999999", "--by", "x")
    assert done.returncode == 2 and "no permit application" in done.stderr
    path.write_text('{"origin": 1}', encoding="utf-8")
    done = cli(env, "permits", "apply", str(path), "--company", company)
    assert done.returncode == 2 and "destinations" in done.stderr
    done = cli(env, "permits", "expire", "--by", "cron")
    assert done.returncode == 0 and "expired" in done.stdout

    actors = api.sql("SELECT action, actor, role FROM audit_log WHERE (resource, resource_id)"
                     " IN (('permit_application', %s), ('permit', %s)) ORDER BY id",
                     (str(app_id), permit_id))
    assert actors == [("application.submit", "clerk-li", "operator"),
                      ("application.approve", "officer-wang", "operator"),
                      ("permit.issue", "officer-wang", "operator"),
                      ("permit.suspend", "officer-wang", "operator"),
                      ("permit.resume", "officer-wang", "operator"),
                      ("permit.revoke", "officer-wang", "operator")]
