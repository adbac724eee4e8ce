"""The simulated office (``muckwatch office``, issue #22): companies apply for their jobs
through the API, the officer checks and decides, site operators post receipts — against the
real server and database, and through the real CLI."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta

from muckwatch import office
from tests.api.conftest import cli


def jobs_of(city, n: int) -> list[str]:
    """``n`` jobs still valid now, each a different company's first."""
    now = datetime.now(UTC)
    seen: dict[str, str] = {}
    company = {v.plate: v.company_id for v in city.vehicles}
    for p in city.permits:
        if p.valid_to > now and company[p.plate] not in seen:
            seen[company[p.plate]] = p.job_id
    return list(seen.values())[:n]


def test_companies_apply_and_the_officer_decides(api, sample_city):
    jobs = jobs_of(sample_city, 3)
    now = datetime.now(UTC)
    bodies = list(office.applications(sample_city, now, 365, jobs))
    # a job whose permits differ in corridor or route is applied for in parts, the declared
    # volume shared by plates
    assert {job for job, _, _ in bodies} == set(jobs) and len(bodies) >= 3
    for job in jobs:
        permits = [p for p in sample_city.permits if p.job_id == job and p.valid_to > now]
        declared = next(p.declared_volume_m3 for p in permits if p.declared_volume_m3)
        parts = [b["declared_volume_m3"] for j, _, b in bodies if j == job]
        assert abs(sum(parts) - declared) < 0.5
    report = office.apply_and_decide(api.url, api.dsn, sample_city, 365, jobs=jobs, now=now)
    assert report.refused == [], report.refused
    assert report.applied == len(bodies)
    assert report.approved + len(report.rejected) == report.applied
    # each approved application issued one permit per plate, of one job, active now, with
    # the declared volume of the bundle's job
    for permit in report.permits:
        (job, status, declared, app_status), = api.sql(
            "SELECT p.job, permit_status_at(p.id, now()), p.declared_volume_m3, a.status"
            " FROM permits p JOIN permit_applications a ON a.id = p.application_id"
            " WHERE p.id = %s", (permit,))
        assert job.startswith("A") and status == "active" and declared > 0
        assert app_status == "approved"
    # a rejected one says why, from the checks
    for app_id, why in report.rejected:
        (status, reason), = api.sql("SELECT status, decision_reason FROM permit_applications"
                                    " WHERE id = %s", (app_id,))
        assert status == "rejected" and why in reason


def test_operators_post_receipts_once(api, sample_city, tmp_path):
    plates = [v.plate for v in sample_city.vehicles[:2]]
    now = datetime.now(UTC)
    rows = [{"site": "DS01", "plate": plates[0], "received_at":
             (now - timedelta(minutes=30)).isoformat(), "volume_m3": 14.5},
            {"site": "DS02", "plate": plates[1], "received_at":
             (now - timedelta(minutes=20)).isoformat()},
            {"site": "DS02", "plate": plates[1], "received_at":  # not yet: left for later
             (now + timedelta(hours=2)).isoformat()}]
    # a simulator truth file: receipts among the truth's entries; a missing one (never
    # recorded by the operator) is not posted
    path = tmp_path / "truth.jsonl"
    path.write_text(json.dumps({"rule": "OFF_ROUTE", "device": "x", "start_ts": 0}) + "\n"
                    + "".join(json.dumps({"receipt": r}) + "\n" for r in rows)
                    + json.dumps({"receipt": {"site": "DS03", "plate": plates[0],
                                              "missing": True}}) + "\n"
                    + json.dumps({"summary": {"trucks": 1}}) + "\n")
    first = office.post_receipts(api.url, api.dsn, path)
    assert (first.receipts, first.receipts_replayed, first.receipts_refused) == (2, 0, [])
    again = office.post_receipts(api.url, api.dsn, path)
    assert (again.receipts, again.receipts_replayed) == (0, 2)
    recorded = api.sql("SELECT site_id, plate, recorded_by FROM disposal_receipts"
                       " WHERE plate = ANY(%s) ORDER BY site_id", (plates,))
    assert [(s, p) for s, p, _ in recorded] == [("DS01", plates[0]), ("DS02", plates[1])]
    assert {by for _, _, by in recorded} == {"office-op-DS01", "office-op-DS02"}


def test_the_cli(api, sample_city, tmp_path):
    env = {**os.environ, "MUCKWATCH_DSN": api.dsn, "MUCKWATCH_CITY_DIR": str(
        sample_city.directory)}
    env.pop("MUCKWATCH_CONFIG", None)
    job = jobs_of(sample_city, 4)[3]
    done = cli(env, "office", "apply", "--api", api.url, "--job", job)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("applied 1, approved "), done.stdout
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"site": "DS01", "plate": "粤X00000",
                               "received_at": datetime.now(UTC).isoformat()}) + "\n")
    done = cli(env, "office", "receipts", str(bad), "--api", api.url)
    assert done.returncode == 1 and "1 refused" in done.stdout and "422" in done.stdout, \
        done.stdout + done.stderr
