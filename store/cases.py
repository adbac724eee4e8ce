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

# action → (states it may start from, the state it leads to; _MOVE stamps <state>_at)
MOVES: dict[str, tuple[tuple[str, ...], str]] = {
    "dispatch": (("new", "dispatched"), "dispatched"),
    "handle": (("dispatched",), "handled"),
    "close": (("handled",), "closed"),
    "withdraw": (("new", "dispatched", "handled"), "withdrawn"),
}


# Scope.params() as a constant condition on cases (c); NULL parameters lift it
SCOPE_C = ("(%(scope_districts)s::text[] IS NULL OR c.district_id = ANY(%(scope_districts)s))"
           " AND (%(scope_company)s::text IS NULL OR c.company_id = %(scope_company)s)")
_CASE_COLUMNS = ", ".join(f"c.{x}" for x in CASE_COLUMNS)
_GET = f"SELECT {_CASE_COLUMNS} FROM cases c WHERE c.id = %(id)s AND {SCOPE_C}"
_GET_LOCKED = _GET + " FOR UPDATE"
_LIST = f"""SELECT {_CASE_COLUMNS} FROM cases c
WHERE {SCOPE_C}
  AND (%(state)s::text IS NULL OR c.state = %(state)s)
  AND (%(district)s::text IS NULL OR c.district_id = %(district)s)
  AND (NOT %(overdue)s OR (c.state NOT IN ('closed', 'withdrawn') AND c.due_at < now()))
ORDER BY c.created_at DESC, c.id DESC LIMIT %(limit)s OFFSET %(offset)s"""
# one statement for every move: the columns a move does not set keep their values
_MOVE = """UPDATE cases SET state = %(state)s,
    team = coalesce(%(team)s, team), due_at = coalesce(%(due_at)s, due_at),
    action = coalesce(%(action)s, action), penalty_yuan = coalesce(%(penalty_yuan)s, penalty_yuan),
    note = coalesce(%(note)s, note), external_ref = coalesce(%(external_ref)s, external_ref),
    dispatched_at = CASE WHEN %(state)s = 'dispatched' THEN now() ELSE dispatched_at END,
    handled_at = CASE WHEN %(state)s = 'handled' THEN now() ELSE handled_at END,
    closed_at = CASE WHEN %(state)s = 'closed' THEN now() ELSE closed_at END,
    withdrawn_at = CASE WHEN %(state)s = 'withdrawn' THEN now() ELSE withdrawn_at END,
    updated_at = now()
WHERE id = %(id)s"""


def get_case(conn: psycopg.Connection, scope: Scope, case_id: int, *,
             lock: bool = False) -> dict:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_GET_LOCKED if lock else _GET,
                          {**scope.params(), "id": case_id}).fetchone()
        if row is None:
            raise NotFound(f"no case {case_id}")
        row["violations"] = [r["violation_id"] for r in cur.execute(
            "SELECT violation_id FROM case_violations WHERE case_id = %s ORDER BY violation_id",
            (case_id,)).fetchall()]
    return row


def list_cases(conn: psycopg.Connection, scope: Scope, *, state: str | None = None,
               district: str | None = None, overdue: bool = False, limit: int = 100,
               offset: int = 0) -> list[dict]:
    params = {**scope.params(), "state": state, "district": district, "overdue": overdue,
              "limit": limit, "offset": offset}
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_LIST, params).fetchall()


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
    allowed_from, to = MOVES[action]
    if before["state"] not in allowed_from:
        raise Conflict(f"case {case_id} is {before['state']}: cannot {action} "
                       f"(only from {', '.join(allowed_from)})")
    values: dict[str, Any] = {"state": to, "team": None, "due_at": None, "action": None,
                              "penalty_yuan": None, "note": note, "external_ref": external_ref,
                              "id": case_id}
    if action == "dispatch":
        if not team or due_at is None:
            raise ValueError("dispatch needs a team and a due date (due_at)")
        if due_at.tzinfo is None:
            raise ValueError("due_at needs a time zone (e.g. 2026-12-10T18:00:00+08:00)")
        values.update(team=team, due_at=due_at)
    elif action == "handle":
        if not (action_taken or "").strip():
            raise ValueError("handle needs the action taken (e.g. fine, warning, suspension)")
        if penalty_yuan is not None and Decimal(str(penalty_yuan)) < 0:
            raise ValueError("penalty_yuan cannot be negative")
        values.update(action=action_taken, penalty_yuan=penalty_yuan)
    elif action == "withdraw" and not (note or "").strip():
        raise ValueError("withdraw needs a note saying why")
    conn.execute(_MOVE, values)
    return before, get_case(conn, scope, case_id)


_CLOSURE = """SELECT * FROM case_closure_monthly
WHERE (%(scope_districts)s::text[] IS NULL OR district_id = ANY(%(scope_districts)s))
  AND (%(since)s::date IS NULL OR month >= %(since)s)
  AND (%(until)s::date IS NULL OR month < %(until)s)
ORDER BY month, district_id NULLS LAST"""


def closure(conn: psycopg.Connection, scope: Scope, *, since=None, until=None) -> list[dict]:
    """On time / late / overdue per district and month of the due date (the view
    case_closure_monthly, limited to the caller's districts)."""
    params = {"scope_districts": scope.params()["scope_districts"], "since": since,
              "until": until}
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_CLOSURE, params).fetchall()


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

