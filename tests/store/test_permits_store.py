"""Permits in the database (issue #22, migration 0010, store/permits.py): the life cycle of an
application and its permits against a real PostgreSQL, every refused transition,
``permit_valid_at`` around revocations and suspensions, the expire step, the import keeping
its format, and an audit row for each change."""

from __future__ import annotations

from datetime import datetime, timedelta

import psycopg
import pytest
import shapely

from domain.settings import PermitSettings
from permits.checks import checker
from store import permits as store
from store.migrate import available_migrations
from store.reference import import_city
from store.review import Conflict, NotFound, Scope

CHECK = checker(PermitSettings(), "Asia/Shanghai")
OFFICER = dict(actor="officer-test", role="officer")


@pytest.fixture(scope="module")
def db(dsn, city):
    """A database of its own with the sample city imported."""
    from tests.conftest import create_database

    new = create_database(dsn)
    with psycopg.connect(new, autocommit=True) as conn:
        import_city(conn, city)
    return new


@pytest.fixture
def conn(db):
    with psycopg.connect(db, autocommit=True) as c:
        yield c


def now(conn) -> datetime:
    return conn.execute("SELECT now()").fetchone()[0]


def template(city, index: int = 0):
    """A bundle permit that is a good application: its vehicle's company, route and sites."""
    company = {v.plate: v.company_id for v in city.vehicles}
    p = [p for p in city.permits if p.hours is None][index]
    return p, company[p.plate]


def apply(conn, city, *, index: int = 0, days: float = 30, start_in: timedelta = timedelta(0),
          **changes) -> dict:
    p, company = template(city, index)
    t = now(conn) + start_in
    fields = dict(company_id=company, origin=p.origin, destinations=list(p.destinations),
                  plates=[p.plate], route=shapely.geometry.mapping(p.route), crs="wgs84",
                  corridor_m=p.corridor_m, hours=None, valid_from=t + timedelta(minutes=1),
                  valid_to=t + timedelta(days=days), declared_volume_m3=1200.0,
                  actor=f"company-{company}", role="company", checker=CHECK)
    fields.update(changes)
    with conn.transaction():
        return store.submit(conn, **fields)


def approve(conn, app_id: int) -> store.Decision:
    with conn.transaction():
        return store.decide(conn, Scope(), app_id, decision="approve", reason=None,
                            checker=CHECK, **OFFICER)


def audit_actions(conn, resource: str, resource_id) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT action FROM audit_log WHERE resource = %s AND resource_id = %s ORDER BY id",
        (resource, str(resource_id)))]


def valid(conn, permit_id: str, at: datetime) -> bool:
    return conn.execute("SELECT permit_valid_at(%s, %s)", (permit_id, at)).fetchone()[0]


def status_at(conn, permit_id: str, at: datetime) -> str:
    return conn.execute("SELECT permit_status_at(%s, %s)", (permit_id, at)).fetchone()[0]


def test_the_migration_runs_again_without_harm(conn):
    sql = next(m.sql for m in available_migrations() if m.version == 10)
    with conn.transaction():
        conn.execute(sql)
        conn.execute(sql)
    assert conn.execute("SELECT count(*) FROM permits WHERE company_id IS NULL").fetchone()[0] == 0


def test_imported_permits_are_active_with_their_company(conn, city):
    rows = dict(conn.execute("SELECT id, status || '/' || company_id FROM permits"
                             " WHERE application_id IS NULL").fetchall())
    company = {v.plate: v.company_id for v in city.vehicles}
    assert rows == {p.id: f"active/{company[p.plate]}" for p in city.permits}
    # derived, no cron: a bundle permit whose validity ended in 2025 is expired now
    lapsed = next(p for p in city.permits if p.valid_to < now(conn))
    assert status_at(conn, lapsed.id, now(conn)) == "expired"
    assert status_at(conn, lapsed.id, lapsed.valid_to - timedelta(seconds=1)) == "active"
    assert status_at(conn, lapsed.id, lapsed.valid_from - timedelta(seconds=1)) == "pending"
    assert status_at(conn, "NO-SUCH-PERMIT", now(conn)) is None
    assert valid(conn, "NO-SUCH-PERMIT", now(conn)) is False


def test_life_cycle_happy_path(conn, city):
    app = apply(conn, city)
    assert app["status"] == "applied" and app["check_report"]["ok"], app["check_report"]
    assert app["route_crs"] == "wgs84" and app["permits"] == []
    decision = approve(conn, app["id"])
    assert decision.ok and decision.report["ok"]
    assert decision.application["status"] == "approved"
    assert decision.application["decided_by"] == "officer-test"
    plate = app["plates"][0]
    permit_id = f"A{app['id']}-{plate}"
    assert [p["id"] for p in decision.permits] == [permit_id]
    permit = store.get_permit(conn, Scope(), permit_id)
    assert permit["status"] == "active" and permit["application_id"] == app["id"]
    assert permit["company_id"] == app["company_id"] and permit["plate"] == plate
    assert float(permit["declared_volume_m3"]) == 1200.0
    assert permit["route"] == app["route"] and permit["valid_to"] == app["valid_to"]
    # approved for a minute from now: not yet valid ('pending'), then active
    assert permit["current_status"] == "pending"
    assert status_at(conn, permit_id, app["valid_from"]) == "active"

    at = app["valid_from"] + timedelta(hours=1)
    with conn.transaction():
        store.suspend(conn, Scope(), permit_id, from_ts=at, until=at + timedelta(hours=2),
                      reason="spill on Meiguan", **OFFICER)
    with conn.transaction():
        store.resume(conn, Scope(), permit_id, reason="cleaned", **OFFICER)
    with conn.transaction():
        _, after = store.revoke(conn, Scope(), permit_id, at=None, reason="fraud", **OFFICER)
    assert after["status"] == "revoked" and after["current_status"] == "revoked"
    assert audit_actions(conn, "permit_application", app["id"]) == [
        "application.submit", "application.approve"]
    assert audit_actions(conn, "permit", permit_id) == [
        "permit.issue", "permit.suspend", "permit.resume", "permit.revoke"]
    last = conn.execute("SELECT actor, role, before->>'status', after->>'status',"
                        " after->>'status_reason' FROM audit_log WHERE resource = 'permit'"
                        " AND resource_id = %s ORDER BY id DESC LIMIT 1",
                        (permit_id,)).fetchone()
    assert last == ("officer-test", "officer", "active", "revoked", "fraud")


def test_permit_valid_at_around_a_revocation(conn, city):
    app = apply(conn, city, index=1, start_in=timedelta(minutes=-2))
    permit_id = approve(conn, app["id"]).permits[0]["id"]
    t = now(conn)
    revoke_at = t + timedelta(hours=3)
    with conn.transaction():
        store.revoke(conn, Scope(), permit_id, at=revoke_at, reason="company dissolved",
                     **OFFICER)
    tick = timedelta(microseconds=1)
    assert valid(conn, permit_id, t + timedelta(minutes=1))
    assert valid(conn, permit_id, revoke_at - tick)
    assert not valid(conn, permit_id, revoke_at)
    assert not valid(conn, permit_id, revoke_at + timedelta(days=1))
    assert status_at(conn, permit_id, revoke_at) == "revoked"
    permit = store.get_permit(conn, Scope(), permit_id)
    assert permit["status"] == "revoked" and permit["current_status"] == "active"
    assert permit["status_changed_at"] == revoke_at
    # revoked for good: nothing moves it any more
    for move in (lambda: store.revoke(conn, Scope(), permit_id, at=None, reason="again",
                                      **OFFICER),
                 lambda: store.suspend(conn, Scope(), permit_id, from_ts=None, until=None,
                                       reason="x", **OFFICER),
                 lambda: store.resume(conn, Scope(), permit_id, reason=None, **OFFICER)):
        with pytest.raises(Conflict), conn.transaction():
            move()


def test_permit_valid_at_around_a_suspension(conn, city):
    app = apply(conn, city, index=2, start_in=timedelta(minutes=-2))
    permit_id = approve(conn, app["id"]).permits[0]["id"]
    t = now(conn)
    start, end = t + timedelta(hours=1), t + timedelta(hours=3)
    with conn.transaction():
        _, after = store.suspend(conn, Scope(), permit_id, from_ts=start, until=end,
                                 reason="inspection", **OFFICER)
    assert after["status"] == "suspended" and after["current_status"] == "active"
    assert [(s["from_ts"], s["to_ts"]) for s in after["suspensions"]] == [(start, end)]
    tick = timedelta(microseconds=1)
    assert valid(conn, permit_id, start - tick)
    assert not valid(conn, permit_id, start)
    assert not valid(conn, permit_id, end - tick)
    assert valid(conn, permit_id, end)
    assert status_at(conn, permit_id, start) == "suspended"
    with pytest.raises(Conflict, match="already suspended"), conn.transaction():
        store.suspend(conn, Scope(), permit_id, from_ts=None, until=None, reason="x", **OFFICER)
    # resuming before it began cancels it: the history keeps an empty interval
    with conn.transaction():
        _, after = store.resume(conn, Scope(), permit_id, reason=None, **OFFICER)
    assert after["status"] == "active" and valid(conn, permit_id, start)
    assert [(s["from_ts"], s["to_ts"], s["resumed_by"]) for s in after["suspensions"]] == \
        [(start, start, "officer-test")]
    # an open-ended suspension from now: invalid from now on, until resumed
    with conn.transaction():
        store.suspend(conn, Scope(), permit_id, from_ts=None, until=None, reason="open",
                      **OFFICER)
    later = now(conn) + timedelta(days=5)
    assert not valid(conn, permit_id, later)
    with conn.transaction():
        store.resume(conn, Scope(), permit_id, reason="done", **OFFICER)
    resumed = next(s["to_ts"] for s in store.get_permit(conn, Scope(), permit_id)["suspensions"]
                   if s["reason"] == "open")
    assert not valid(conn, permit_id, resumed - tick) and valid(conn, permit_id, resumed)
    assert valid(conn, permit_id, later)
    with pytest.raises(Conflict, match="not suspended"), conn.transaction():
        store.resume(conn, Scope(), permit_id, reason=None, **OFFICER)


def test_refused_transitions(conn, city):
    app = apply(conn, city, index=3)
    with pytest.raises(ValueError, match="reason"), conn.transaction():
        store.decide(conn, Scope(), app["id"], decision="reject", reason="  ", checker=CHECK,
                     **OFFICER)
    with pytest.raises(ValueError, match="decision"), conn.transaction():
        store.decide(conn, Scope(), app["id"], decision="maybe", reason=None, checker=CHECK,
                     **OFFICER)
    with conn.transaction():
        rejected = store.decide(conn, Scope(), app["id"], decision="reject",
                                reason="route uses a closed bridge", checker=CHECK, **OFFICER)
    assert rejected.application["status"] == "rejected" and rejected.permits == []
    assert rejected.application["decision_reason"] == "route uses a closed bridge"
    for decision in ("approve", "reject"):
        with pytest.raises(Conflict, match="already rejected"), conn.transaction():
            store.decide(conn, Scope(), app["id"], decision=decision, reason="x",
                         checker=CHECK, **OFFICER)
    with pytest.raises(Conflict), conn.transaction():
        store.withdraw(conn, Scope(), app["id"], reason=None, **OFFICER)
    with pytest.raises(NotFound), conn.transaction():
        store.decide(conn, Scope(), 10**9, decision="approve", reason=None, checker=CHECK,
                     **OFFICER)
    assert store.list_permits(conn, Scope(), application=app["id"]) == []

    second = apply(conn, city, index=3)
    with conn.transaction():
        withdrawn = store.withdraw(conn, Scope(company=second["company_id"]), second["id"],
                                   reason="wrong dates", actor="c", role="company")
    assert withdrawn["status"] == "withdrawn"
    with pytest.raises(Conflict, match="withdrawn"), conn.transaction():
        store.decide(conn, Scope(), second["id"], decision="approve", reason=None,
                     checker=CHECK, **OFFICER)
    assert audit_actions(conn, "permit_application", second["id"]) == [
        "application.submit", "application.withdraw"]

    third = apply(conn, city, index=4)
    permit_id = approve(conn, third["id"]).permits[0]["id"]
    past = now(conn) - timedelta(minutes=5)
    with pytest.raises(ValueError, match="past"), conn.transaction():
        store.revoke(conn, Scope(), permit_id, at=past, reason="late", **OFFICER)
    with pytest.raises(ValueError, match="past"), conn.transaction():
        store.suspend(conn, Scope(), permit_id, from_ts=past, until=None, reason="x",
                      **OFFICER)
    with pytest.raises(ValueError, match="until"), conn.transaction():
        store.suspend(conn, Scope(), permit_id, from_ts=None, until=past, reason="x",
                      **OFFICER)
    with pytest.raises(ValueError, match="reason"), conn.transaction():
        store.revoke(conn, Scope(), permit_id, at=None, reason=None, **OFFICER)
    with pytest.raises(Conflict, match="not suspended"), conn.transaction():
        store.resume(conn, Scope(), permit_id, reason=None, **OFFICER)
    with pytest.raises(NotFound), conn.transaction():
        store.get_permit(conn, Scope(company="C99"), permit_id)
    assert audit_actions(conn, "permit", permit_id) == ["permit.issue"]


def test_a_failed_check_refuses_the_approval_and_is_recorded(conn, city):
    app = apply(conn, city, index=5, corridor_m=5.0)
    assert app["check_report"]["ok"] is False
    assert [p["code"] for p in app["check_report"]["problems"]] == ["corridor_too_narrow"]
    decision = approve(conn, app["id"])
    assert not decision.ok and decision.permits == []
    assert decision.report["problems"][0]["code"] == "corridor_too_narrow"
    again = store.get_application(conn, Scope(), app["id"])
    assert again["status"] == "applied" and again["decided_at"] is None
    assert store.list_permits(conn, Scope(), application=app["id"]) == []
    assert audit_actions(conn, "permit_application", app["id"]) == [
        "application.submit", "application.approve_refused"]


def test_a_company_applies_only_for_its_own_registered_vehicles(conn, city):
    p, company = template(city, 6)
    other = next(v.plate for v in city.vehicles if v.company_id != company)
    count = conn.execute("SELECT count(*) FROM permit_applications").fetchone()[0]
    with pytest.raises(ValueError, match="another company"):
        apply(conn, city, index=6, plates=[p.plate, other])
    with pytest.raises(ValueError, match="not registered"):
        apply(conn, city, index=6, plates=["粤Z00000"])
    with pytest.raises(ValueError, match="crs"):
        apply(conn, city, index=6, crs="epsg:3857")
    with pytest.raises(ValueError, match="LineString"):
        apply(conn, city, index=6, route={"type": "Point", "coordinates": [114, 22.5]})
    with pytest.raises(ValueError, match="after"):
        apply(conn, city, index=6, days=-1)
    with pytest.raises(ValueError, match="no time"):
        apply(conn, city, index=6, hours="07:00-07:00")
    assert conn.execute("SELECT count(*) FROM permit_applications").fetchone()[0] == count
    mine = store.list_applications(conn, Scope(company=company))
    assert mine and {a["company_id"] for a in mine} == {company}
    assert "route" not in mine[0]


def test_expire_catches_the_stored_status_up(conn, city):
    lapsed = [p.id for p in city.permits if p.valid_to < now(conn)]
    app = apply(conn, city, index=7, start_in=timedelta(minutes=-2))
    permit_id = approve(conn, app["id"]).permits[0]["id"]
    with conn.transaction():
        store.suspend(conn, Scope(), permit_id, from_ts=None,
                      until=now(conn) + timedelta(milliseconds=1), reason="brief", **OFFICER)
    import time

    time.sleep(0.01)
    with conn.transaction():
        done = store.expire(conn, actor="system:expire", role="operator")
    assert set(lapsed) <= set(done["expired"]) and permit_id not in done["expired"]
    assert permit_id in done["resumed"]
    assert store.get_permit(conn, Scope(), permit_id)["status"] == "active"
    stored = dict(conn.execute("SELECT id, status FROM permits WHERE id = ANY(%s)",
                               (lapsed,)).fetchall())
    assert set(stored.values()) == {"expired"}
    assert audit_actions(conn, "permit", lapsed[0])[-1] == "permit.expire"
    with conn.transaction():
        assert store.expire(conn, actor="system:expire", role="operator") == \
            {"expired": [], "resumed": []}


def test_reimport_keeps_the_life_cycle(db, conn, city):
    p = next(p for p in city.permits if p.valid_to > now(conn))
    with conn.transaction():
        store.revoke(conn, Scope(), p.id, at=None, reason="test re-import", **OFFICER)
    app = apply(conn, city, index=8)
    issued = approve(conn, app["id"]).permits[0]
    with psycopg.connect(db, autocommit=True) as other:
        import_city(other, city)
    assert conn.execute("SELECT status FROM permits WHERE id = %s", (p.id,)).fetchone() == \
        ("revoked",)
    again = store.get_permit(conn, Scope(), issued["id"])
    assert again["status"] == "active" and again["application_id"] == app["id"]


def test_hours_in_sql(conn):
    conn.execute("INSERT INTO permits (id, plate, origin, destinations, corridor_m, valid_from,"
                 " valid_to, hours, route) VALUES ('HRS-1', 'x', 'o', '{d}', 50, now(),"
                 " now() + interval '1 day', '22:00-06:00', '{}') ON CONFLICT DO NOTHING")
    night = datetime.fromisoformat("2026-12-01T23:30:00+08:00")
    assert conn.execute("SELECT permit_in_hours('HRS-1', %s, 'Asia/Shanghai'),"
                        " permit_in_hours('HRS-1', %s, 'Asia/Shanghai'),"
                        " permit_in_hours('HRS-1', %s, 'Asia/Shanghai')",
                        (night, night + timedelta(hours=6, minutes=29),
                         night + timedelta(hours=6, minutes=30))).fetchone() == \
        (True, True, False)


def test_the_documented_queries_run_as_the_analyst(db, conn, city):
    """docs/permits.md's SQL runs as muckwatch_analyst; a company's role reads only its own
    applications."""
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "permits.md").read_text("utf-8")
    blocks = re.findall(r"```sql\n(.*?)```", doc, re.S)
    assert len(blocks) == 1 and blocks[0].count("-- name:") == 2
    app = apply(conn, city, index=9)
    permit_id = approve(conn, app["id"]).permits[0]["id"]
    apply(conn, city, index=10)
    from psycopg.conninfo import make_conninfo

    with psycopg.connect(make_conninfo(db, user="muckwatch_analyst"),
                         autocommit=True) as as_analyst:
        assert as_analyst.execute("SELECT current_user").fetchone() == ("muckwatch_analyst",)
        for query in blocks[0].split(";")[:-1]:
            as_analyst.execute(query.replace("A12-粤B0352X", permit_id)).fetchall()
        assert as_analyst.execute("SELECT count(*) FROM permit_states WHERE current_status"
                                  " = 'active'").fetchone()[0] > 0
    from store.scores import create_company_role

    role = f"company_perm_{app['company_id'].lower()}"
    create_company_role(conn, app["company_id"], role)
    with psycopg.connect(make_conninfo(db, user=role), autocommit=True) as own:
        seen = {r[0] for r in own.execute("SELECT company_id FROM permit_applications")}
        assert seen == {app["company_id"]}
        own.execute("SELECT * FROM permit_suspensions").fetchall()
