"""Enforcement cases (issue #21): confirmed violations of one vehicle or one company, handed
to a district team with a due date, handled and closed — or withdrawn.

The life cycle is a small table of allowed moves (``MOVES``); every move returns the case
before and after so the caller audits it in the same transaction.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row

from store.review import Conflict, NotFound, Scope, get_violation

CASE_COLUMNS = ("id", "company_id", "plate", "district_id", "state", "team", "due_at", "action",
                "penalty_yuan", "note", "external_ref", "created_by", "created_at",
                "dispatched_at", "handled_at", "closed_at", "withdrawn_at", "updated_at")

# action → (states it may start from, the state it leads to, the timestamp column it sets)
MOVES: dict[str, tuple[tuple[str, ...], str, str]] = {
    "dispatch": (("new", "dispatched"), "dispatched", "dispatched_at"),
    "handle": (("dispatched",), "handled", "handled_at"),
    "close": (("handled",), "closed", "closed_at"),
    "withdraw": (("new", "dispatched", "handled"), "withdrawn", "withdrawn_at"),
}


def get_case(conn: psycopg.Connection, scope: Scope, case_id: int, *,
             lock: bool = False) -> dict:
    where, params = scope.where("c")
    params["id"] = case_id
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute("SELECT " + ", ".join(f"c.{x}" for x in CASE_COLUMNS)
                          + f" FROM cases c WHERE c.id = %(id)s AND {where}"
                          + (" FOR UPDATE" if lock else ""), params).fetchone()
        if row is None:
            raise NotFound(f"no case {case_id}")
        row["violations"] = [r["violation_id"] for r in cur.execute(
            "SELECT violation_id FROM case_violations WHERE case_id = %s ORDER BY violation_id",
            (case_id,)).fetchall()]
    return row


def list_cases(conn: psycopg.Connection, scope: Scope, *, state: str | None = None,
               district: str | None = None, overdue: bool = False, limit: int = 100,
               offset: int = 0) -> list[dict]:
    where, params = scope.where("c")
    params.update(limit=limit, offset=offset)
    sql = "SELECT " + ", ".join(f"c.{x}" for x in CASE_COLUMNS) + f" FROM cases c WHERE {where}"
    if state is not None:
        sql += " AND c.state = %(state)s"
        params["state"] = state
    if district is not None:
        sql += " AND c.district_id = %(district)s"
        params["district"] = district
    if overdue:
        sql += " AND c.state NOT IN ('closed', 'withdrawn') AND c.due_at < now()"
    sql += " ORDER BY c.created_at DESC, c.id DESC LIMIT %(limit)s OFFSET %(offset)s"
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql, params).fetchall()


def open_case(conn: psycopg.Connection, scope: Scope, violation_ids: list[str], *, actor: str,
              note: str | None = None) -> dict:
    """A new case from confirmed violations of one company (one vehicle → the case names its
    plate). A violation already in a case that is not withdrawn cannot be in a second one."""
    ids = sorted(set(violation_ids))
    if not ids:
        raise ValueError("a case needs at least one violation")
    if len(ids) > 200:
        raise ValueError("a case holds at most 200 violations")
    violations = [get_violation(conn, scope, v, lock=True) for v in ids]
    unconfirmed = [v["id"] for v in violations if v["review"] != "confirmed"]
    if unconfirmed:
        raise Conflict(f"only confirmed violations become cases; not confirmed: "
                       f"{', '.join(unconfirmed)}")
    companies = {v["company_id"] for v in violations}
    if len(companies) != 1 or None in companies:
        raise ValueError("a case covers violations of one company "
                         f"(these name {', '.join(sorted(map(str, companies)))})")
    taken = conn.execute(
        "SELECT cv.violation_id, c.id FROM case_violations cv JOIN cases c ON c.id = cv.case_id"
        " WHERE cv.violation_id = ANY(%s) AND c.state <> 'withdrawn'", (ids,)).fetchall()
    if taken:
        raise Conflict("already in a case: " + ", ".join(f"{v} (case {c})" for v, c in taken))
    plates = {v["plate"] for v in violations}
    districts = [v["district_id"] for v in sorted(violations, key=lambda v: v["start_ts"])
                 if v["district_id"] is not None]
    row = conn.execute(
        "INSERT INTO cases (company_id, plate, district_id, note, created_by)"
        " VALUES (%s, %s, %s, %s, %s) RETURNING id",
        (companies.pop(), plates.pop() if len(plates) == 1 else None,
         districts[0] if districts else None, note, actor)).fetchone()
    assert row is not None
    conn.cursor().executemany("INSERT INTO case_violations (case_id, violation_id)"
                              " VALUES (%s, %s)", [(row[0], v) for v in ids])
    return get_case(conn, scope, row[0])


def move(conn: psycopg.Connection, scope: Scope, case_id: int, action: str, *,
         team: str | None = None, due_at: datetime | None = None, action_taken: str | None = None,
         penalty_yuan: Decimal | float | None = None, note: str | None = None,
         external_ref: str | None = None) -> tuple[dict, dict]:
    """One step of the life cycle; returns (before, after). ``dispatch`` needs a team and a
    due date (dispatching a dispatched case re-assigns it); ``handle`` needs the action
    taken; ``withdraw`` needs a note saying why."""
    if action not in MOVES:
        raise ValueError(f"action must be one of {', '.join(MOVES)}, not {action!r}")
    before = get_case(conn, scope, case_id, lock=True)
    allowed_from, to, stamp = MOVES[action]
    if before["state"] not in allowed_from:
        raise Conflict(f"case {case_id} is {before['state']}: cannot {action} "
                       f"(only from {', '.join(allowed_from)})")
    sets: dict[str, Any] = {"state": to}
    if action == "dispatch":
        if not team or due_at is None:
            raise ValueError("dispatch needs a team and a due date (due_at)")
        if due_at.tzinfo is None:
            raise ValueError("due_at needs a time zone (e.g. 2026-12-10T18:00:00+08:00)")
        sets.update(team=team, due_at=due_at)
    elif action == "handle":
        if not (action_taken or "").strip():
            raise ValueError("handle needs the action taken (e.g. fine, warning, suspension)")
        if penalty_yuan is not None and Decimal(str(penalty_yuan)) < 0:
            raise ValueError("penalty_yuan cannot be negative")
        sets.update(action=action_taken, penalty_yuan=penalty_yuan)
    elif action == "withdraw" and not (note or "").strip():
        raise ValueError("withdraw needs a note saying why")
    if note is not None:
        sets["note"] = note
    if external_ref is not None:
        sets["external_ref"] = external_ref
    assignments = ", ".join(f"{k} = %({k})s" for k in sets)
    conn.execute(f"UPDATE cases SET {assignments}, {stamp} = now(), updated_at = now()"
                 " WHERE id = %(id)s", {**sets, "id": case_id})
    return before, get_case(conn, scope, case_id)


def closure(conn: psycopg.Connection, scope: Scope, *, since=None, until=None) -> list[dict]:
    """On time / late / overdue per district and month of the due date (the view
    case_closure_monthly, limited to the caller's districts)."""
    clauses, params = ["true"], {}
    if scope.districts is not None:
        clauses.append("district_id = ANY(%(d)s)")
        params["d"] = list(scope.districts)
    if since is not None:
        clauses.append("month >= %(since)s")
        params["since"] = since
    if until is not None:
        clauses.append("month < %(until)s")
        params["until"] = until
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM case_closure_monthly WHERE " + " AND ".join(clauses)
                           + " ORDER BY month, district_id NULLS LAST", params).fetchall()


def inbound_seen(conn: psycopg.Connection, message_id: str) -> tuple[int, dict] | None:
    """The stored answer to an inbound webhook message already applied."""
    row = conn.execute("SELECT status, result FROM inbound_webhooks WHERE message_id = %s",
                       (message_id,)).fetchone()
    return None if row is None else (row[0], row[1])


def inbound_record(conn: psycopg.Connection, message_id: str, case_id: int | None,
                   status: int, result: dict) -> bool:
    """Remember the answer to an inbound message; False if another request got there first
    (the caller rolls back and answers with the stored result)."""
    from psycopg.types.json import Jsonb

    cur = conn.execute("INSERT INTO inbound_webhooks (message_id, case_id, status, result)"
                       " VALUES (%s, %s, %s, %s) ON CONFLICT (message_id) DO NOTHING",
                       (message_id, case_id, status, Jsonb(result)))
    return cur.rowcount == 1

