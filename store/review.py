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

    def params(self) -> dict[str, Any]:
        """The bound parameters of SCOPE_V / SCOPE_C (statements stay constant text)."""
        return {"scope_districts": None if self.districts is None else list(self.districts),
                "scope_company": self.company}


# the scope as a constant condition on violations (v); NULL parameters lift it
SCOPE_V = ("(%(scope_districts)s::text[] IS NULL OR v.district_id = ANY(%(scope_districts)s))"
           " AND (%(scope_company)s::text IS NULL OR v.company_id = %(scope_company)s)")

VIOLATION_COLUMNS = (
    "id", "rule", "severity", "state", "review", "review_reason", "review_note", "reviewed_by",
    "reviewed_at", "device_id", "plate", "company_id", "permit_id", "fence_id", "district_id",
    "start_ts", "end_ts", "start_lon", "start_lat", "end_lon", "end_lat", "peak", "late")
_COLUMNS = ", ".join(f"v.{c}" for c in VIOLATION_COLUMNS)
_GET = f"SELECT {_COLUMNS} FROM violations v WHERE v.id = %(id)s AND {SCOPE_V}"
_GET_EVIDENCE = f"SELECT {_COLUMNS}, v.evidence FROM violations v WHERE v.id = %(id)s AND {SCOPE_V}"
_GET_LOCKED = _GET + " FOR UPDATE"
_LIST = f"""SELECT {_COLUMNS} FROM violations v
WHERE {SCOPE_V} AND v.state <> 'retracted' AND v.severity >= %(sev)s
  AND (%(review)s::text IS NULL OR v.review = %(review)s)
  AND (%(rule)s::text IS NULL OR v.rule = %(rule)s)
  AND (%(district)s::text IS NULL OR v.district_id = %(district)s)
  AND (%(since)s::timestamptz IS NULL OR v.start_ts >= %(since)s)
  AND (%(until)s::timestamptz IS NULL OR v.start_ts < %(until)s)
ORDER BY v.start_ts DESC, v.id LIMIT %(limit)s OFFSET %(offset)s"""
_QUEUE = f"""SELECT {_COLUMNS} FROM violations v
WHERE {SCOPE_V} AND v.review = 'new' AND v.state <> 'retracted' AND v.severity >= %(sev)s
  AND (%(district)s::text IS NULL OR v.district_id = %(district)s)
  AND (%(rule)s::text IS NULL OR v.rule = %(rule)s)
ORDER BY v.severity DESC, v.start_ts, v.id LIMIT %(limit)s OFFSET %(offset)s"""
_QUEUE_COUNTS = f"""SELECT v.district_id, v.severity, count(*) AS violations FROM violations v
WHERE {SCOPE_V} AND v.review = 'new' AND v.state <> 'retracted'
GROUP BY 1, 2 ORDER BY 1 NULLS LAST, 2 DESC"""

DECISIONS = {"confirm": "confirmed", "dismiss": "dismissed"}


def list_violations(conn: psycopg.Connection, scope: Scope, *, review: str | None = None,
                    rule: str | None = None, min_severity: int = 1,
                    district: str | None = None, since=None, until=None,
                    limit: int = 100, offset: int = 0) -> list[dict]:
    """Violations in scope (not retracted), newest first."""
    params = {**scope.params(), "sev": min_severity, "review": review, "rule": rule,
              "district": district, "since": since, "until": until, "limit": limit,
              "offset": offset}
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_LIST, params).fetchall()


def review_queue(conn: psycopg.Connection, scope: Scope, *, district: str | None = None,
                 min_severity: int = 1, rule: str | None = None, limit: int = 100,
                 offset: int = 0) -> list[dict]:
    """New violations (closed or still open, not retracted), gravest first, then oldest:
    what an officer should look at next."""
    params = {**scope.params(), "sev": min_severity, "district": district, "rule": rule,
              "limit": limit, "offset": offset}
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_QUEUE, params).fetchall()


def queue_counts(conn: psycopg.Connection, scope: Scope) -> list[dict]:
    """New violations per district and severity (the queue's overview)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_QUEUE_COUNTS, scope.params()).fetchall()


def get_violation(conn: psycopg.Connection, scope: Scope, violation_id: str, *,
                  evidence: bool = False, lock: bool = False) -> dict:
    statement = _GET_LOCKED if lock else _GET_EVIDENCE if evidence else _GET
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(statement, {**scope.params(), "id": violation_id}).fetchone()
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


_LIST_APPEALS = (
    "SELECT " + ", ".join(f"a.{c}" for c in APPEAL_COLUMNS) + ", v.rule, v.district_id"
    f" FROM appeals a JOIN violations v ON v.id = a.violation_id WHERE {SCOPE_V}"
    " AND (%(state)s::text IS NULL OR a.state = %(state)s)"
    " ORDER BY a.filed_at DESC, a.id DESC LIMIT %(limit)s OFFSET %(offset)s")


def list_appeals(conn: psycopg.Connection, scope: Scope, *, state: str | None = None,
                 limit: int = 100, offset: int = 0) -> list[dict]:
    params = {**scope.params(), "state": state, "limit": limit, "offset": offset}
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_LIST_APPEALS, params).fetchall()


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
