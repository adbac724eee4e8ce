"""The city's paperwork, simulated through the HTTP API (issue #22): each company applies for
its jobs (出土申报) as its own account, the officer runs the approval checks and approves or
rejects, and the disposal sites' operators post the receipts the simulator wrote — the same
requests their own tools would send, so a simulated city goes through the permit life cycle
and the manifest the way a real one does.

A job of the city bundle (permits sharing ``job``, else one permit) becomes one application
naming all its plates — or, where its permits differ in route, corridor or hours (one
application has one of each), one application per kind, the job's declared volume shared
among them by their number of plates. Its validity starts now (a permit never applies to
the past) and is cut to ``[permits] max_validity_days``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg

from domain.city import City, Permit
from store.accounts import add_account, rotate_token

OFFICER = "office-officer"


@dataclass
class OfficeReport:
    """What the paperwork came to."""

    applied: int = 0
    approved: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (application, why)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (job, the API's answer)
    permits: list[str] = field(default_factory=list)
    receipts: int = 0
    receipts_replayed: int = 0
    receipts_refused: list[tuple[int, str]] = field(default_factory=list)  # (line, answer)


def applications(city: City, now: datetime, max_validity_days: int,
                 jobs: Iterable[str] | None = None) -> Iterator[tuple[str, str, dict]]:
    """(job, company, application body) for each job of the bundle still valid after
    ``now``; ``jobs`` limits it to those."""
    wanted = set(jobs) if jobs is not None else None
    company = {v.plate: v.company_id for v in city.vehicles}
    groups: dict[tuple, list[Permit]] = {}
    for p in city.permits:
        if p.valid_to <= now or (wanted is not None and p.job_id not in wanted):
            continue
        key = (p.job_id, company.get(p.plate), p.origin, p.destinations, p.corridor_m,
               p.hours, p.route.wkb)
        groups.setdefault(key, []).append(p)
    end_max = now + timedelta(days=max_validity_days) - timedelta(minutes=1)
    plates_of_job: dict[str, int] = {}
    for (job, *_), permits in groups.items():
        plates_of_job[job] = plates_of_job.get(job, 0) + len({p.plate for p in permits})
    for (job, company_id, origin, destinations, corridor, hours, _), permits in \
            groups.items():
        if company_id is None:
            continue
        first = permits[0]
        declared = next((p.declared_volume_m3 for p in permits if p.declared_volume_m3), None)
        if declared:  # this application's share of the job
            share = len({p.plate for p in permits}) / plates_of_job[job]
            declared = round(declared * share, 1)
        body = {"origin": origin, "destinations": list(destinations),
                "plates": sorted({p.plate for p in permits}),
                "route": {"type": "LineString",
                          "coordinates": [list(c) for c in first.route.coords]},
                "crs": "wgs84", "corridor_m": corridor, "hours": hours,
                "valid_from": now.isoformat(),
                "valid_to": min(max(p.valid_to for p in permits), end_max).isoformat(),
                "declared_volume_m3": declared or 1000.0}
        yield job, company_id, body


def company_tokens(dsn: str, companies: Iterable[str]) -> dict[str, str]:
    """An account per company (``office-<company>``), made once, a new token each run."""
    return {c: _token(dsn, f"office-{c}", "company", company=c) for c in sorted(set(companies))}


def officer_token(dsn: str) -> str:
    """The office's officer, every district."""
    with psycopg.connect(dsn) as conn:
        districts = tuple(r[0] for r in conn.execute(
            "SELECT id FROM fences WHERE kind = 'district' ORDER BY id"))
    return _token(dsn, OFFICER, "officer", districts=districts)


def operator_tokens(dsn: str, sites: Iterable[str]) -> dict[str, str]:
    """A site-operator account per receiving site (``office-op-<site>``)."""
    return {s: _token(dsn, f"office-op-{s}", "site_operator", sites=(s,))
            for s in sorted(set(sites))}


def _token(dsn: str, account: str, role: str, **scope) -> str:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT role FROM api_accounts WHERE id = %s AND revoked_at IS NULL",
                           (account,)).fetchone()
        if row is not None and row[0] == role:
            conn.execute("UPDATE api_accounts SET districts = %s, sites = %s WHERE id = %s",
                         (list(scope.get("districts", ())), list(scope.get("sites", ())),
                          account))
            conn.commit()
            return rotate_token(conn, account)
        conn.execute("DELETE FROM api_accounts WHERE id = %s", (account,))
        conn.commit()
        return add_account(conn, account, role, **scope)


def apply_and_decide(url: str, dsn: str, city: City, max_validity_days: int,
                     jobs: Iterable[str] | None = None, limit: int | None = None,
                     now: datetime | None = None) -> OfficeReport:
    """Every job applied for by its company; the officer approves those whose checks pass
    and rejects the others with the checks' findings as the reason."""
    now = now or datetime.now(UTC)
    report = OfficeReport()
    todo = list(applications(city, now, max_validity_days, jobs))[:limit]
    tokens = company_tokens(dsn, [company for _, company, _ in todo])
    officer = {"Authorization": f"Bearer {officer_token(dsn)}"}
    with httpx.Client(base_url=url, timeout=30) as api:
        for job, company, body in todo:
            r = api.post("/v1/permits/applications", json=body,
                         headers={"Authorization": f"Bearer {tokens[company]}"})
            if r.status_code != 201:
                report.refused.append((job, f"{r.status_code} {r.text[:300]}"))
                continue
            report.applied += 1
            app_id = r.json()["id"]
            check = api.get(f"/v1/permits/applications/{app_id}/check", headers=officer)
            check.raise_for_status()
            errors = [p["code"] for p in check.json().get("problems", ())
                      if p.get("severity") == "error"]
            decision = {"decision": "reject", "reason": "checks: " + ", ".join(errors)} \
                if errors else {"decision": "approve"}
            r = api.post(f"/v1/permits/applications/{app_id}/decision", json=decision,
                         headers=officer)
            r.raise_for_status()
            if errors:
                report.rejected.append((app_id, ", ".join(errors)))
            else:
                report.approved += 1
                report.permits += [p["id"] for p in r.json()["permits"]]
    return report


def post_receipts(url: str, dsn: str, path: str | Path, now: datetime | None = None,
                  report: OfficeReport | None = None) -> OfficeReport:
    """Each receipt of a JSONL file posted by that site's operator: lines of ``site``,
    ``plate``, ``received_at``, optional ``volume_m3`` and ``note`` — or a simulator truth
    file, whose ``{"receipt": …}`` lines are those (the ``missing`` ones, which the operator
    never recorded, are skipped; the ``forged`` ones are posted: the manifest must show them
    matching nothing). Receipts in the future (a simulation run ahead of the clock) are left
    for later."""
    now = now or datetime.now(UTC)
    report = report or OfficeReport()
    rows = []
    for line in Path(path).read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        row = row.get("receipt", row) if isinstance(row, dict) else None
        if not isinstance(row, dict) or row.get("missing") or not row.get("received_at"):
            continue  # a truth entry, a summary, or a receipt nobody recorded
        if datetime.fromisoformat(row["received_at"]) <= now:
            rows.append(row)
    tokens = operator_tokens(dsn, [r["site"] for r in rows])
    with httpx.Client(base_url=url, timeout=30) as api:
        for n, r in enumerate(rows, 1):
            body = {k: r[k] for k in ("site", "plate", "received_at", "volume_m3", "note")
                    if r.get(k) is not None}
            answer = api.post("/v1/receipts", json=body,
                              headers={"Authorization": f"Bearer {tokens[r['site']]}"})
            if answer.status_code == 201:
                report.receipts += 1
            elif answer.status_code == 200:
                report.receipts_replayed += 1
            else:
                report.receipts_refused.append((n, f"{answer.status_code} {answer.text[:300]}"))
    return report
