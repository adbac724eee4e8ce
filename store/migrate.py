"""Versioned, idempotent schema migrations recorded in ``schema_version``.

Why two flavours: production cities run TimescaleDB, the embedded default is plain PostgreSQL.
Each migration ``NNNN_name.sql`` is plain SQL that runs on both; an optional
``NNNN_name.timescale.sql`` runs right after it when the timescaledb extension is active
(hypertables, compression, policies), so table and view names never differ between modes and
analysts' queries run unchanged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import psycopg

_FILE = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")
_LOCK_KEY = 0x6D75636B  # "muck": one migrator at a time


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str
    timescale_sql: str | None


@dataclass(frozen=True, slots=True)
class DbStatus:
    mode: str  # "timescaledb" or "postgresql"
    why: str
    server_version: str
    applied: list[int]
    pending: list[int]


def available_migrations() -> list[Migration]:
    folder = resources.files("store") / "migrations"
    found = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        match = _FILE.fullmatch(entry.name)
        if not match:
            continue
        ts_file = folder / f"{match.group(1)}_{match.group(2)}.timescale.sql"
        found.append(
            Migration(
                version=int(match.group(1)),
                name=match.group(2),
                sql=entry.read_text(encoding="utf-8"),
                timescale_sql=ts_file.read_text(encoding="utf-8") if ts_file.is_file() else None,
            )
        )
    return found


def timescale_mode(conn: psycopg.Connection) -> tuple[bool, str]:
    """Use TimescaleDB when its extension is installed or installable; say why either way."""
    row = conn.execute(
        "SELECT default_version, installed_version FROM pg_available_extensions"
        " WHERE name = 'timescaledb'"
    ).fetchone()
    if row is None:
        return False, "the timescaledb extension is not available on this server"
    if row[1] is not None:
        return True, f"timescaledb {row[1]} is installed in this database"
    return True, f"timescaledb {row[0]} is available and will be created by migrate"


def migrate(conn: psycopg.Connection, progress=None) -> list[int]:
    """Apply pending migrations in order, each in its own transaction; return their versions.
    ``progress(name)`` is called after each (the CLI's progress bar)."""
    conn.autocommit = True
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_version ("
        " version integer PRIMARY KEY, name text NOT NULL, mode text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )
    use_timescale, _why = timescale_mode(conn)
    applied_now = []
    conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
    try:
        if use_timescale:
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        done = {r[0] for r in conn.execute("SELECT version FROM schema_version")}
        for m in available_migrations():
            if m.version in done:
                continue
            with conn.transaction():
                conn.execute(m.sql)
                if use_timescale and m.timescale_sql:
                    conn.execute(m.timescale_sql)
                conn.execute(
                    "INSERT INTO schema_version (version, name, mode) VALUES (%s, %s, %s)",
                    (m.version, m.name, "timescaledb" if use_timescale else "postgresql"),
                )
            applied_now.append(m.version)
            if progress is not None:
                progress(m.name)
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied_now


def _first(row: tuple | None):
    if row is None:
        raise RuntimeError("the server returned no row for a one-row query")
    return row[0]


def status(conn: psycopg.Connection) -> DbStatus:
    use_timescale, why = timescale_mode(conn)
    exists = _first(conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone())
    applied = (
        [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY version")]
        if exists
        else []
    )
    pending = [m.version for m in available_migrations() if m.version not in applied]
    return DbStatus(
        mode="timescaledb" if use_timescale else "postgresql",
        why=why,
        server_version=_first(conn.execute("SHOW server_version").fetchone()),
        applied=applied,
        pending=pending,
    )
