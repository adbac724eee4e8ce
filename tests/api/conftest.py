"""A real ``muckwatch serve`` process on loopback, on its own migrated database with the
sample city imported, and accounts of every role made through the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest

from alerts.signing import new_secret
from devservices.common import free_port
from domain.city import load_city
from store.reference import import_city
from store.scores import sync_scoring

REPO = Path(__file__).resolve().parents[2]
SAMPLE_CITY = REPO / "data" / "sample-city"
SETTINGS = dict(deductions="UNAUTHORISED_DUMP=10/15/20, NO_PERMIT=6/8/10, OFF_ROUTE=3/5/8, "
                "RESTRICTED_ZONE=3/5/8, UNCOVERED_LOAD=2/4/6, SIGNAL_LOSS=2/4/6, OVERSPEED=1/2/4")


@dataclass
class Api:
    url: str
    dsn: str
    uploads: Path
    webhook_secret: str
    tokens: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    log: Path | None = None

    def client(self, account: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[account]}"} if account else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10.0)

    def get(self, account: str | None, path: str, **kw) -> httpx.Response:
        with self.client(account) as c:
            return c.get(path, **kw)

    def post(self, account: str | None, path: str, **kw) -> httpx.Response:
        with self.client(account) as c:
            return c.post(path, **kw)

    def sql(self, query: str, params=()) -> list[tuple]:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "muckwatch", *args], env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="session")
def sample_city():
    return load_city(SAMPLE_CITY)


@pytest.fixture(scope="session")
def districts(sample_city) -> list[str]:
    return sorted(d.id for d in sample_city.districts)


@pytest.fixture(scope="session")
def api(dsn: str, run_dir: Path, sample_city, districts) -> Iterator[Api]:
    from tests.conftest import create_database

    db = create_database(dsn)
    with psycopg.connect(db) as conn:
        import_city(conn, sample_city)
        sync_scoring(conn, SETTINGS["deductions"], 7)
    port = free_port()
    uploads = run_dir / f"uploads-{port}"
    secret = new_secret()
    env = {**os.environ, "MUCKWATCH_DSN": db, "MUCKWATCH_CITY_DIR": str(SAMPLE_CITY),
           "MUCKWATCH_API_UPLOADS_DIR": str(uploads), "MUCKWATCH_API_WEBHOOK_SECRET": secret,
           "MUCKWATCH_API_MAX_UPLOAD_BYTES": "200000", "MUCKWATCH_API_MAX_ATTACHMENTS": "3",
           "MUCKWATCH_API_LISTEN": f"127.0.0.1:{port}"}
    env.pop("MUCKWATCH_CONFIG", None)
    companies = sorted(c.id for c in sample_city.companies)
    accounts = {
        "officer": ["--role", "officer", "--district", districts[0]],
        "officer2": ["--role", "officer", "--district", districts[1]],
        "supervisor": ["--role", "supervisor"],
        "company": ["--role", "company", "--company", companies[0]],
        "company2": ["--role", "company", "--company", companies[1]],
        "association": ["--role", "association"],
        "public": ["--role", "public"],
        "analyst": ["--role", "analyst"],
        "site_operator": ["--role", "site_operator", "--site", "DS05"],
    }
    api = Api(f"http://127.0.0.1:{port}", db, uploads, secret)
    for name, args in accounts.items():
        done = cli(env, "accounts", "add", name, *args)
        assert done.returncode == 0, done.stderr
        api.tokens[name] = done.stdout.strip()
    api.log = run_dir / f"serve-{port}.log"
    with open(api.log, "wb") as log:
        api.proc = subprocess.Popen([sys.executable, "-m", "muckwatch", "serve"], env=env,
                                    stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{api.url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert api.proc.poll() is None, api.log.read_text()
        assert time.monotonic() < deadline, "muckwatch serve did not come up in 30 s"
        time.sleep(0.1)
    yield api
    api.proc.terminate()
    api.proc.wait(10)


def site_in(sample_city, district: str):
    """A construction site whose centroid lies in ``district`` (a known place)."""
    area = next(d for d in sample_city.districts if d.id == district).geometry
    for f in sample_city.fences:
        c = f.geometry.centroid
        if f.kind == "construction_site" and area.contains(c):
            return c
    raise AssertionError(f"no site in {district}")


_n = iter(range(1, 1_000_000))


def add_violation(api: Api, sample_city, *, district: str, company: str | None = None,
                  rule: str = "OFF_ROUTE", severity: int = 2, age_days: float = 1.0,
                  state: str = "closed") -> str:
    """A violation of a vehicle of ``company`` (default: any) started ``age_days`` ago at a
    site in ``district``, written the way the pipeline writes them."""
    vehicle = next(v for v in sample_city.vehicles if company in (None, v.company_id))
    place = site_in(sample_city, district)
    start = datetime.now(UTC) - timedelta(days=age_days)
    start = start.replace(microsecond=start.microsecond // 1000 * 1000)  # the pipeline's ms
    vid = f"T{next(_n):06d}{os.getpid() % 1000:03d}"
    api.sql("INSERT INTO violations (id, rule, severity, device_id, plate, company_id, start_ts,"
            " end_ts, start_lon, start_lat, peak, state, evidence) VALUES (%s, %s, %s, %s, %s,"
            " %s, %s, %s, %s, %s, 120, %s, '[]')",
            (vid, rule, severity, vehicle.device_id, vehicle.plate, vehicle.company_id, start,
             start + timedelta(minutes=3), place.x, place.y, state))
    return vid
