"""Evidence bundles through the real server: scoped like the violation (another company and
an officer of another district get 404), permissions per role, the bundle's objects hash to
its items and its items chain to its head (anyone can check the JSON), sealing once and
audited, 409 for an open violation, verification naming a change, and the seal an officer's
review leaves behind."""

from __future__ import annotations

import hashlib
from datetime import timedelta

from store.evidence import chain, item_hash, key_of_ts, ms
from tests.api.conftest import add_violation

_age = iter(x / 10 for x in range(20, 200))  # days back: each test's windows stay apart


def with_track(api, sample_city, district: str, company: str | None = None,
               state: str = "closed") -> tuple[str, list]:
    """A violation with fixes every 30 s from 3 min before to 3 min after it, and a photo
    row (its bytes not in the store: the bundle says so)."""
    vid = add_violation(api, sample_city, district=district, company=company,
                        age_days=next(_age), state=state)
    device, start, end = api.sql("SELECT device_id, start_ts, end_ts FROM violations"
                                 " WHERE id = %s", (vid,))[0]
    times = [start - timedelta(minutes=3) + timedelta(seconds=30 * k) for k in range(19)]
    for k, t in enumerate(times):
        api.sql("INSERT INTO telemetry (device_id, ts, lon, lat, speed_kmh, lid, load, alarm,"
                " received_at) VALUES (%s, %s, %s, 22.6, 30, 1, 2, 0, %s)"
                " ON CONFLICT DO NOTHING", (device, t, 114.0 + k * 1e-4, t))
    api.sql("INSERT INTO media (device_id, terminal_id, sha256, bytes, media_type,"
            " media_format, event, channel, taken_at, storage, violation_id) VALUES"
            " (%s, 1, %s, 100, 'image', 'jpeg', 0, 1, %s, 'local', %s)",
            (device, hashlib.sha256(vid.encode()).hexdigest(), start + timedelta(seconds=20), vid))
    return vid, [t for t in times if start - timedelta(minutes=2) <= t
                 <= end + timedelta(minutes=2)]


def test_bundle_is_scoped_and_checkable_by_anyone(api, sample_city, districts):
    own = api.get("company", "/v1/me").json()["company"]
    vid, window = with_track(api, sample_city, districts[0], company=own)
    for account, status in (("company", 200), ("officer", 200), ("supervisor", 200),
                            ("analyst", 200), ("company2", 404), ("officer2", 404),
                            ("association", 403), ("public", 403), ("site_operator", 403)):
        r = api.get(account, f"/v1/violations/{vid}/evidence")
        assert r.status_code == status, (account, r.text)
    assert api.get(None, f"/v1/violations/{vid}/evidence").status_code == 401
    assert api.get("supervisor", "/v1/violations/NOPE/evidence").status_code == 404

    body = api.get("company", f"/v1/violations/{vid}/evidence").json()
    assert body["seal"] is None and body["state"] == "closed"
    assert body["violation"]["id"] == vid and "review" not in body["violation"]
    assert [f["ts"] for f in body["track"]] == [ms(t) for t in window]
    photo = body["photos"][0]
    assert photo["url"] == f"/v1/media/{photo['id']}" and photo["content_sha256"] is None
    # each object as returned is what its item hashes (a photo without its url)
    objects = [body["violation"], *body["track"],
               *({k: v for k, v in p.items() if k != "url"} for p in body["photos"])]
    assert [item_hash(o) for o in objects] == [i["sha256"] for i in body["items"]]
    assert [i["key"] for i in body["items"][1:-1]] == [key_of_ts(ms(t)) for t in window]
    assert chain(vid, [i["sha256"] for i in body["items"]]) == body["head"]


def test_seal_once_audited_then_verify_names_a_change(api, sample_city, districts):
    vid, window = with_track(api, sample_city, districts[0])
    assert api.get("officer", f"/v1/violations/{vid}/evidence/verify").status_code == 409
    for account in ("company", "analyst", "association"):
        r = api.post(account, f"/v1/violations/{vid}/evidence/seal")
        assert r.status_code == 403 and "evidence.seal" in r.json()["detail"]
    assert api.post("officer2", f"/v1/violations/{vid}/evidence/seal").status_code == 404

    r = api.post("officer", f"/v1/violations/{vid}/evidence/seal")
    assert r.status_code == 201, r.text
    seal = r.json()
    assert seal["created"] and seal["sealed_by"] == "officer" and seal["violation_id"] == vid
    again = api.post("supervisor", f"/v1/violations/{vid}/evidence/seal")
    assert again.status_code == 200 and not again.json()["created"]
    assert again.json()["seal"] == seal["seal"]
    audit = api.sql("SELECT actor, action, after->>'seal' FROM audit_log"
                    " WHERE resource = 'evidence' AND resource_id = %s", (vid,))
    assert audit == [("officer", "evidence.seal", seal["seal"])]
    body = api.get("company", f"/v1/violations/{vid}/evidence").json()
    assert body["seal"]["seal"] == seal["seal"] and body["head"] == seal["head"]

    r = api.get("company", f"/v1/violations/{vid}/evidence/verify")
    assert r.status_code == 200 and r.json()["ok"], r.text
    device = api.sql("SELECT device_id FROM violations WHERE id = %s", (vid,))[0][0]
    api.sql("UPDATE telemetry SET lat = lat + 0.001 WHERE device_id = %s AND ts = %s",
            (device, window[4]))
    result = api.get("officer", f"/v1/violations/{vid}/evidence/verify").json()
    assert not result["ok"]
    assert result["first_difference"] == {"kind": "fix", "key": key_of_ts(ms(window[4])),
                                          "change": "changed",
                                          "detail": "the fix differs from the sealed one"}
    assert result["seal"]["hash_ok"] and result["seal"]["items_ok"]
    assert api.get("company2", f"/v1/violations/{vid}/evidence/verify").status_code == 404


def test_an_open_violation_is_not_sealed(api, sample_city, districts):
    vid, _ = with_track(api, sample_city, districts[0], state="open")
    r = api.post("supervisor", f"/v1/violations/{vid}/evidence/seal")
    assert r.status_code == 409 and "open" in r.json()["detail"]
    body = api.get("supervisor", f"/v1/violations/{vid}/evidence").json()
    assert body["state"] == "open" and body["seal"] is None
    # a decision on it seals nothing either (the dispatcher seals it once it ended)
    r = api.post("officer", f"/v1/violations/{vid}/review",
                 json={"decision": "confirm", "reason": "patrol_witnessed"})
    assert r.status_code == 200
    assert api.sql("SELECT count(*) FROM evidence_seals WHERE violation_id = %s",
                   (vid,)) == [(0,)]


def test_a_review_seals_what_the_decision_rested_on(api, sample_city, districts):
    vid, _ = with_track(api, sample_city, districts[0])
    r = api.post("officer", f"/v1/violations/{vid}/review",
                 json={"decision": "dismiss", "reason": "permit_data_error"})
    assert r.status_code == 200, r.text
    sealed = api.sql("SELECT sealed_by FROM evidence_seals WHERE violation_id = %s", (vid,))
    assert sealed == [("officer",)]
    assert api.get("officer", f"/v1/violations/{vid}/evidence/verify").json()["ok"]
