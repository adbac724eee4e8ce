"""Credit scores (诚信评定) from SQL, and the daily snapshots analysts chart.

The arithmetic lives in SQL functions (migration 0003) so analysts, the CLI and company
accounts (through row-level security) all get the same numbers from the same violations.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import psycopg

from domain.events import RULES

COLUMNS = ("company_id", "name", "vehicles", "violations", "deductions", "score", "grade")


def as_of_end(day: date | None, tz: str = "Asia/Shanghai") -> datetime:
    """The end of ``day`` in local time (or now): scores 'as of' a date include that day."""
    if day is None:
        return datetime.now(ZoneInfo(tz))
    return datetime.combine(day + timedelta(days=1), time(0), ZoneInfo(tz))


def company_scores(conn: psycopg.Connection, as_of: datetime,
                   company: str | None = None) -> list[tuple]:
    sql = "SELECT " + ", ".join(COLUMNS) + " FROM company_scores(%s)"
    params: list = [as_of]
    if company:
        sql += " WHERE company_id = %s"
        params.append(company)
    return conn.execute(sql + " ORDER BY score, company_id", params).fetchall()


def snapshot(conn: psycopg.Connection, day: date, tz: str = "Asia/Shanghai") -> int:
    """Write (or rewrite) the scores of every company and vehicle as of the end of ``day``."""
    as_of = as_of_end(day, tz)
    with conn.transaction():
        cur = conn.execute(
            "INSERT INTO score_snapshots (day, subject, subject_id, company_id, violations,"
            " deductions, score, grade)"
            " SELECT %(day)s, 'company', company_id, company_id, violations, deductions, score,"
            "        grade FROM company_scores(%(as_of)s)"
            " UNION ALL"
            " SELECT %(day)s, 'vehicle', plate, company_id, violations, deductions, score, grade"
            " FROM vehicle_scores(%(as_of)s)"
            " ON CONFLICT (day, subject, subject_id) DO UPDATE SET"
            " company_id = excluded.company_id, violations = excluded.violations,"
            " deductions = excluded.deductions, score = excluded.score, grade = excluded.grade",
            {"day": day, "as_of": as_of})
        return cur.rowcount


def create_company_role(conn: psycopg.Connection, company: str, role: str) -> None:
    """A login role that sees only ``company``'s rows (row-level security)."""
    from psycopg import sql

    if conn.execute("SELECT 1 FROM companies WHERE id = %s", (company,)).fetchone() is None:
        raise ValueError(f"company {company!r} is not in the companies table")
    with conn.transaction():
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        conn.execute(sql.SQL("GRANT muckwatch_company TO {}").format(sql.Identifier(role)))
        conn.execute("INSERT INTO company_accounts (role_name, company_id) VALUES (%s, %s)"
                     " ON CONFLICT (role_name) DO UPDATE SET company_id = excluded.company_id",
                     (role, company))


SCORED_RULES = RULES


def parse_deductions(text: str) -> list[tuple[str, int, float]]:
    """``"UNAUTHORISED_DUMP=10/15/20, …"`` ([scoring] deductions) → (rule, severity, points)
    rows; every problem is named."""
    rows: list[tuple[str, int, float]] = []
    seen: set[str] = set()
    for item in filter(None, (part.strip() for part in text.split(","))):
        rule, sep, points = item.partition("=")
        rule = rule.strip()
        if not sep or rule not in SCORED_RULES:
            raise ValueError(f"[scoring] deductions: {item!r}: expected RULE=p1/p2/p3 with "
                             f"RULE one of {', '.join(SCORED_RULES)}")
        try:
            values = [float(p) for p in points.split("/")]
        except ValueError:
            values = []
        if len(values) != 3 or any(v < 0 for v in values):
            raise ValueError(f"[scoring] deductions: {item!r}: expected three points ≥ 0 "
                             "(severity 1/2/3)")
        if rule in seen:
            raise ValueError(f"[scoring] deductions: {rule} appears twice")
        seen.add(rule)
        rows += [(rule, severity, value) for severity, value in enumerate(values, 1)]
    return rows


def sync_deductions(conn: psycopg.Connection, text: str) -> int:
    """Write the configured deductions into score_deductions (scores are computed from it in
    SQL, so analysts' queries and the CLI agree); returns the rows written."""
    rows = parse_deductions(text)
    with conn.transaction():
        conn.cursor().executemany(
            "INSERT INTO score_deductions (rule, severity, points) VALUES (%s, %s, %s)"
            " ON CONFLICT (rule, severity) DO UPDATE SET points = EXCLUDED.points", rows)
    return len(rows)


def sync_unreviewed_after(conn: psycopg.Connection, days: int) -> None:
    """[scoring] unreviewed_after_days into score_policy: how long a violation nobody has
    reviewed waits before it counts (migration 0008)."""
    if days < 0:
        raise ValueError(f"[scoring] unreviewed_after_days = {days}: must be ≥ 0")
    with conn.transaction():
        conn.execute("UPDATE score_policy SET unreviewed_after = %s * interval '1 day'",
                     (days,))


def sync_scoring(conn: psycopg.Connection, deductions: str, unreviewed_after_days: int) -> None:
    """Both [scoring] settings into their tables."""
    sync_deductions(conn, deductions)
    sync_unreviewed_after(conn, unreviewed_after_days)
