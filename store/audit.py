"""The audit log (issue #21): every action taken through the API — who, when, what, the row
before and after — appended in the same transaction as the change, so a change without its
audit row cannot exist. The table refuses updates and deletes (migration 0008)."""

from __future__ import annotations

from typing import Any

import orjson
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb


def _plain(value: Any) -> Any:
    """Rows hold datetimes and decimals; the log keeps their JSON form."""
    if value is None:
        return None
    return orjson.loads(orjson.dumps(value, default=str))


def record(conn: psycopg.Connection, *, actor: str, role: str, action: str, resource: str,
           resource_id: str | int | None, before: Any = None, after: Any = None) -> None:
    conn.execute(
        "INSERT INTO audit_log (actor, role, action, resource, resource_id, before, after)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (actor, role, action, resource, None if resource_id is None else str(resource_id),
         None if before is None else Jsonb(_plain(before)),
         None if after is None else Jsonb(_plain(after))))


_ENTRIES = """SELECT id, at, actor, role, action, resource, resource_id, before, after
FROM audit_log
WHERE (%(resource)s::text IS NULL OR resource = %(resource)s)
  AND (%(resource_id)s::text IS NULL OR resource_id = %(resource_id)s)
  AND (%(actor)s::text IS NULL OR actor = %(actor)s)
ORDER BY id DESC LIMIT %(limit)s OFFSET %(offset)s"""


def entries(conn: psycopg.Connection, *, resource: str | None = None,
            resource_id: str | None = None, actor: str | None = None, limit: int = 100,
            offset: int = 0) -> list[dict]:
    params = {"resource": resource, "resource_id": resource_id, "actor": actor,
              "limit": limit, "offset": offset}
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_ENTRIES, params).fetchall()
