"""Review and appeals: what people decide about violations (issue #21).

Every change here returns the row before and after it, so the caller writes both into the
audit log in the same transaction. Reads and writes take a ``Scope`` (the districts of an
officer, the company of a company account, or nothing for city-wide roles), and a violation
outside the scope is reported as not found, so a caller cannot learn that it exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row


class NotFound(LookupError):
    """No such row in the caller's scope."""


class Conflict(RuntimeError):
    """The row is not in a state that allows this change (HTTP 409)."""


@dataclass(frozen=True, slots=True)
class Scope:
    """Which violations and cases a caller sees: None means no limit on that axis."""

    districts: tuple[str, ...] | None = None
    company: str | None = None

    def where(self, alias: str = "v") -> tuple[str, dict[str, Any]]:
        clauses: list[str] = []
        params: dict[str, Any] = {}
        if self.districts is not None:
            clauses.append(f"{alias}.district_id = ANY(%(scope_districts)s)")
            params["scope_districts"] = list(self.districts)
        if self.company is not None:
            clauses.append(f"{alias}.company_id = %(scope_company)s")
            params["scope_company"] = self.company
        return (" AND ".join(clauses) or "true"), params


VIOLATION_COLUMNS = (
    "id", "rule", "severity", "state", "review", "review_reason", "review_note", "reviewed_by",
    "reviewed_at", "device_id", "plate", "company_id", "permit_id", "fence_id", "district_id",
    "start_ts", "end_ts", "start_lon", "start_lat", "end_lon", "end_lat", "peak", "late")
_SELECT = "SELECT " + ", ".join(f"v.{c}" for c in VIOLATION_COLUMNS) + " FROM violations v"

DECISIONS = {"confirm": "confirmed", "dismiss": "dismissed"}


def list_violations(conn: psycopg.Connection, scope: Scope, *, review: str | None = None,
                    rule: str | None = None, min_severity: int = 1,
                    district: str | None = None, since=None, until=None,
                    limit: int = 100, offset: int = 0) -> list[dict]:
    """Violations in scope, newest first; ``review='new'`` with severity order is the queue
    (see review_queue)."""
    where, params = scope.where()
    sql = [_SELECT, f"WHERE {where} AND v.state <> 'retracted' AND v.severity >= %(sev)s"]
    params.update(sev=min_severity, limit=limit, offset=offset)
    for column, value in (("review", review), ("rule", rule), ("district_id", district)):
        if value is not None:
            sql.append(f"AND v.{column} = %({column})s")
            params[column] = value
    if since is not None:
        sql.append("AND v.start_ts >= %(since)s")
        params["since"] = since
    if until is not None:
        sql.append("AND v.start_ts < %(until)s")
        params["until"] = until
    sql.append("ORDER BY v.start_ts DESC, v.id LIMIT %(limit)s OFFSET %(offset)s")
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(" ".join(sql), params).fetchall()


def review_queue(conn: psycopg.Connection, scope: Scope, *, district: str | None = None,
                 min_severity: int = 1, rule: str | None = None, limit: int = 100,
                 offset: int = 0) -> list[dict]:
    """New violations (closed or still open, not retracted), gravest first, then oldest:
    what an officer should look at next."""
    where, params = scope.where()
    sql = [_SELECT, f"WHERE {where} AND v.review = 'new' AND v.state <> 'retracted'"
                    " AND v.severity >= %(sev)s"]
    params.update(sev=min_severity, limit=limit, offset=offset)
    if district is not None:
        sql.append("AND v.district_id = %(district)s")
        params["district"] = district
    if rule is not None:
        sql.append("AND v.rule = %(rule)s")
        params["rule"] = rule
    sql.append("ORDER BY v.severity DESC, v.start_ts, v.id LIMIT %(limit)s OFFSET %(offset)s")
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(" ".join(sql), params).fetchall()


def queue_counts(conn: psycopg.Connection, scope: Scope) -> list[dict]:
    """New violations per district and severity (the queue's overview)."""
    where, params = scope.where()
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"SELECT v.district_id, v.severity, count(*) AS violations FROM violations v"
            f" WHERE {where} AND v.review = 'new' AND v.state <> 'retracted'"
            " GROUP BY 1, 2 ORDER BY 1 NULLS LAST, 2 DESC", params).fetchall()


def get_violation(conn: psycopg.Connection, scope: Scope, violation_id: str, *,
                  evidence: bool = False, lock: bool = False) -> dict:
    where, params = scope.where()
    params["id"] = violation_id
    columns = ", v.evidence" if evidence else ""
    sql = (_SELECT.replace(" FROM violations v", f"{columns} FROM violations v")
           + f" WHERE v.id = %(id)s AND {where}" + (" FOR UPDATE" if lock else ""))
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(sql, params).fetchone()
    if row is None:
        raise NotFound(f"no violation {violation_id!r}")
    return row


def reasons(conn: psycopg.Connection) -> list[dict]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT code, decision, label_en, label_zh, officer"
                           " FROM review_reasons ORDER BY decision, code").fetchall()


def review(conn: psycopg.Connection, scope: Scope, violation_id: str, *, decision: str,
           reason: str, note: str | None, actor: str) -> tuple[dict, dict]:
    """Confirm or dismiss a new violation; returns (before, after). Call inside a
    transaction (the row is locked until it ends)."""
    if decision not in DECISIONS:
        raise ValueError(f"decision must be 'confirm' or 'dismiss', not {decision!r}")
    known = conn.execute("SELECT decision, officer FROM review_reasons WHERE code = %s",
                         (reason,)).fetchone()
    if known is None or not known[1]:
        raise ValueError(f"reason {reason!r} is not a review reason code (GET /v1/reasons)")
    if known[0] != decision:
        raise ValueError(f"reason {reason!r} is for {known[0]}, not {decision}")
    if reason.startswith("other") and not (note or "").strip():
        raise ValueError(f"reason {reason!r} needs a note")
    before = get_violation(conn, scope, violation_id, lock=True)
    if before["state"] == "retracted":
        raise Conflict(f"violation {violation_id} was retracted by late data; nothing to review")
    if before["review"] != "new":
        raise Conflict(f"violation {violation_id} is already {before['review']} "
                       f"by {before['reviewed_by']}")
    _set_review(conn, violation_id, DECISIONS[decision], reason, note, actor)
    return before, get_violation(conn, scope, violation_id)


def _set_review(conn: psycopg.Connection, violation_id: str, review_state: str, reason: str,
                note: str | None, actor: str) -> None:
    conn.execute("UPDATE violations SET review = %s, review_reason = %s, review_note = %s,"
                 " reviewed_by = %s, reviewed_at = now(), updated_at = now() WHERE id = %s",
                 (review_state, reason, note, actor, violation_id))


# --- appeals --------------------------------------------------------------------------------

APPEAL_COLUMNS = ("id", "violation_id", "company_id", "text", "state", "filed_by", "filed_at",
                  "decided_by", "decided_at", "decision_note")


def _appeal(conn: psycopg.Connection, appeal_id: int, lock: bool = False) -> dict:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute("SELECT " + ", ".join(APPEAL_COLUMNS) + " FROM appeals WHERE id = %s"
                          + (" FOR UPDATE" if lock else ""), (appeal_id,)).fetchone()
        if row is None:
            raise NotFound(f"no appeal {appeal_id}")
        row["attachments"] = cur.execute(
            "SELECT id, sha256, size_bytes, content_type, filename, added_at"
            " FROM appeal_attachments WHERE appeal_id = %s ORDER BY id", (appeal_id,)).fetchall()
    return row


def get_appeal(conn: psycopg.Connection, scope: Scope, appeal_id: int) -> dict:
    """An appeal, if its violation is in scope."""
    appeal = _appeal(conn, appeal_id)
    get_violation(conn, scope, appeal["violation_id"])  # NotFound outside the scope
    return appeal


def file_appeal(conn: psycopg.Connection, scope: Scope, violation_id: str, *, text: str,
                actor: str, attachments: list[tuple[str, int, str, str]]) -> dict:
    """A company's appeal with its attachments ((sha256, size, content type, filename), the
    files already stored). One pending appeal per violation; a dismissed violation has
    nothing to appeal."""
    if not text.strip():
        raise ValueError("an appeal needs a text saying why")
    violation = get_violation(conn, scope, violation_id, lock=True)
    if violation["state"] == "retracted" or violation["review"] == "dismissed":
        raise Conflict(f"violation {violation_id} is {violation['review']}"
                       f"{' (retracted)' if violation['state'] == 'retracted' else ''}: "
                       "nothing to appeal")
    if violation["company_id"] is None:
        raise Conflict(f"violation {violation_id} names no company")
    pending = conn.execute("SELECT id FROM appeals WHERE violation_id = %s AND state ="
                           " 'pending'", (violation_id,)).fetchone()
    if pending is not None:
        raise Conflict(f"violation {violation_id} already has a pending appeal ({pending[0]})")
    row = conn.execute("INSERT INTO appeals (violation_id, company_id, text, filed_by)"
                       " VALUES (%s, %s, %s, %s) RETURNING id",
                       (violation_id, violation["company_id"], text, actor)).fetchone()
    assert row is not None
    appeal_id = row[0]
    conn.cursor().executemany(
        "INSERT INTO appeal_attachments (appeal_id, sha256, size_bytes, content_type, filename)"
        " VALUES (%s, %s, %s, %s, %s)", [(appeal_id, *a) for a in attachments])
    return _appeal(conn, appeal_id)


def list_appeals(conn: psycopg.Connection, scope: Scope, *, state: str | None = None,
                 limit: int = 100, offset: int = 0) -> list[dict]:
    where, params = scope.where()
    params.update(limit=limit, offset=offset)
    sql = ("SELECT " + ", ".join(f"a.{c}" for c in APPEAL_COLUMNS) + ", v.rule, v.district_id"
           " FROM appeals a JOIN violations v ON v.id = a.violation_id"
           f" WHERE {where}")
    if state is not None:
        sql += " AND a.state = %(state)s"
        params["state"] = state
    sql += " ORDER BY a.filed_at DESC, a.id DESC LIMIT %(limit)s OFFSET %(offset)s"
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql, params).fetchall()


def decide_appeal(conn: psycopg.Connection, scope: Scope, appeal_id: int, *, outcome: str,
                  note: str | None, actor: str) -> tuple[dict, dict]:
    """Uphold (the violation stands: confirmed) or overturn (dismissed, out of the score)."""
    if outcome not in ("uphold", "overturn"):
        raise ValueError(f"outcome must be 'uphold' or 'overturn', not {outcome!r}")
    before = _appeal(conn, appeal_id, lock=True)
    violation = get_violation(conn, scope, before["violation_id"], lock=True)
    if before["state"] != "pending":
        raise Conflict(f"appeal {appeal_id} was already decided ({before['state']})")
    state = "upheld" if outcome == "uphold" else "overturned"
    conn.execute("UPDATE appeals SET state = %s, decided_by = %s, decided_at = now(),"
                 " decision_note = %s WHERE id = %s", (state, actor, note, appeal_id))
    if outcome == "overturn":
        _set_review(conn, violation["id"], "dismissed", "appeal_overturned", note, actor)
    elif violation["review"] == "new":
        _set_review(conn, violation["id"], "confirmed", "appeal_upheld", note, actor)
    after = _appeal(conn, appeal_id)
    after["violation_review"] = get_violation(conn, scope, violation["id"])["review"]
    return before, after


def attachment(conn: psycopg.Connection, scope: Scope, attachment_id: int) -> dict:
    """An attachment's row, if the appeal's violation is in scope."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute("SELECT a.id, a.appeal_id, a.sha256, a.size_bytes, a.content_type,"
                          " a.filename, p.violation_id FROM appeal_attachments a"
                          " JOIN appeals p ON p.id = a.appeal_id WHERE a.id = %s",
                          (attachment_id,)).fetchone()
    if row is None:
        raise NotFound(f"no attachment {attachment_id}")
    get_violation(conn, scope, row["violation_id"])
    return row
