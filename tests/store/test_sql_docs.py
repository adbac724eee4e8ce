"""docs/sql.md's queries run as muckwatch_analyst against real data; roles hold."""

from __future__ import annotations

import asyncio
import json
import re
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import psycopg
import pytest

from domain.batches import DeviceStatus, Rejects
from ingest.wire import RawBatch, WireDecoder
from muckwatch.stages import GeofenceStage, Sequencer
from rules.engine import RuleEngine
from rules.reference import Reference
from simulator.episodes import demo_offenders
from simulator.fleet import Fleet
from simulator.scenarios import example_detour
from store import scores
from store.database import Store
from store.reference import import_city

DOC = Path(__file__).resolve().parents[2] / "docs" / "sql.md"


def doc_queries() -> list[tuple[str, str]]:
    blocks = re.findall(r"```sql\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    return [(re.search(r"-- name: (.*)", b).group(1), b) for b in blocks]


def role_dsn(dsn: str, role: str) -> str:
    return re.sub(r"://[^@/]*@", f"://{role}@", dsn)


@pytest.fixture(scope="module")
def analysed(dsn, city):
    """Offender tracks and a detour pushed through the real stages into the database."""
    now = time.time_ns() // 1_000_000
    fleet = Fleet(city, trucks=1000, start_ms=now - 3_600_000)
    permits = dict(zip(fleet.device.tolist(), fleet.permit_id, strict=True))
    tracks = [e.track for e in demo_offenders(city, permits, now - 900_000, 120)]
    tracks.append(example_detour(city, now - 7_200_000))
    lines = [line for t in tracks for line in t.lines()]
    decoder, sequencer, geofence = WireDecoder(), Sequencer(), GeofenceStage.for_city(city)
    engine = RuleEngine(Reference.from_city(city))

    async def push():
        store = Store(dsn)
        try:
            for i in range(0, len(lines), 200):
                chunk = lines[i:i + 200]
                raw = RawBatch([f"muck/v1/{json.loads(x)['dev']}/telemetry" for x in chunk],
                               [x.encode() for x in chunk], np.full(len(chunk), now))
                fixes = sequencer.sequence(decoder.decode(raw, now_ms=now).fixes)
                events = engine.evaluate(fixes, geofence.classify(fixes))
                await store.write(fixes, Rejects(), DeviceStatus(), events)
            await store.write(sequencer.sequence(decoder.decode(
                RawBatch([], [], np.zeros(0, np.int64))).fixes), Rejects(), DeviceStatus(),
                engine.flush())
        finally:
            await store.close()

    with psycopg.connect(dsn, autocommit=True) as conn:
        import_city(conn, city)
    asyncio.run(push())
    with psycopg.connect(dsn, autocommit=True) as conn:
        scores.snapshot(conn, scores.as_of_end(None).date())
    return tracks


def test_there_are_at_least_eight_documented_queries():
    names = [n for n, _ in doc_queries()]
    assert len(names) >= 8 and len(set(names)) == len(names)


@pytest.mark.parametrize(("name", "query"), doc_queries(), ids=[n for n, _ in doc_queries()])
def test_documented_query_runs_as_analyst(analysed, dsn, name, query):
    with psycopg.connect(role_dsn(dsn, "muckwatch_analyst")) as conn:
        rows = conn.execute(query).fetchall()
    must_have_rows = ("violations per company per week", "dumping hotspots",
                      "off-route distance", "company scores now", "share of violations",
                      "the daily view", "telemetry delivery delay")
    if any(name.startswith(m) for m in must_have_rows):
        assert rows, f"{name}: no rows"


def test_scores_are_reproducible_and_graded(analysed, db):
    # nobody reviewed these violations: they count after [scoring] unreviewed_after_days (7)
    as_of = scores.as_of_end(None) + timedelta(days=8)
    first = scores.company_scores(db, as_of)
    assert first == scores.company_scores(db, as_of)
    by_company = {r[0]: r for r in first}
    offenders = {db.execute("SELECT company_id FROM vehicles WHERE device_id = %s",
                            (t.device,)).fetchone()[0] for t in analysed}
    for company in offenders:
        _, _, vehicles, violations, deductions, score, grade = by_company[company]
        assert violations > 0 and deductions > 0
        assert float(score) == pytest.approx(max(0.0, 100 - 10 * float(deductions) / vehicles),
                                             abs=0.05)
        assert grade == ("A" if score >= 90 else "B" if score >= 80 else "C" if score >= 60
                         else "D")
    # a year later the same violations no longer count
    later = scores.company_scores(db, as_of.replace(year=as_of.year + 1))
    assert all(r[3] == 0 and r[5] == 100 for r in later if r[0] in offenders)


def test_analyst_reads_but_cannot_write(analysed, dsn):
    with psycopg.connect(role_dsn(dsn, "muckwatch_analyst"), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM violations").fetchone()[0] > 0
        for statement in ("INSERT INTO companies VALUES ('X', 'x')",
                          "UPDATE violations SET state = 'closed'",
                          "DELETE FROM telemetry", "DROP TABLE trips"):
            with pytest.raises((psycopg.errors.InsufficientPrivilege,
                                psycopg.errors.ReadOnlySqlTransaction)):
                conn.execute(statement)


def test_a_company_account_sees_only_its_own_rows(analysed, dsn, db):
    device = analysed[0].device
    company = db.execute("SELECT company_id FROM vehicles WHERE device_id = %s",
                         (device,)).fetchone()[0]
    scores.create_company_role(db, company, f"test_company_{company.lower()}")
    with psycopg.connect(role_dsn(dsn, f"test_company_{company.lower()}")) as conn:
        for table in ("vehicles", "trips", "violations"):
            seen = {r[0] for r in conn.execute(f"SELECT DISTINCT company_id FROM {table}")}
            assert seen <= {company}, table
        assert conn.execute("SELECT count(*) FROM violations").fetchone()[0] > 0
        mine = conn.execute("SELECT count(*), count(DISTINCT device_id) FROM company_telemetry"
                            ).fetchone()
        assert mine[0] > 0
        devices = {r[0] for r in conn.execute("SELECT DISTINCT device_id FROM company_telemetry")}
        allowed = {r[0] for r in conn.execute("SELECT device_id FROM vehicles")}
        assert devices <= allowed
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT count(*) FROM telemetry")
        conn.rollback()
        visible = conn.execute("SELECT count(DISTINCT company_id) FROM company_scores(now())"
                               " WHERE violations > 0").fetchone()[0]
        assert visible <= 1, "scores through RLS: only its own violations count"


def test_psql_as_analyst_reads_but_cannot_write(analysed, dsn):
    """The way an analyst really connects: the psql client."""
    import subprocess

    info = psycopg.conninfo.conninfo_to_dict(dsn)
    base = ["psql", "-h", info.get("host", "127.0.0.1"), "-p", str(info.get("port", 5432)),
            "-U", "muckwatch_analyst", "-d", info["dbname"], "-X", "-v", "ON_ERROR_STOP=1",
            "-tAc"]
    read = subprocess.run([*base, "SELECT count(*) FROM violations"], capture_output=True,
                          text=True, timeout=30)
    assert read.returncode == 0 and int(read.stdout.strip()) > 0, read.stderr
    write = subprocess.run([*base, "DELETE FROM violations"], capture_output=True, text=True,
                           timeout=30)
    assert write.returncode != 0 and "permission denied" in write.stderr
    secret = subprocess.run([*base, "SELECT secret FROM alert_subscriptions"],
                            capture_output=True, text=True, timeout=30)
    assert secret.returncode != 0 and "permission denied" in secret.stderr
