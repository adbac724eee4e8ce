"""The API's database side: a small connection pool, one transaction per request.

Why synchronous psycopg: requests are few and short (people clicking, not terminals
reporting); FastAPI runs plain ``def`` endpoints in its thread pool, so a pool of blocking
connections serves them without an async driver in every store function. Every connection
speaks the city's time zone, so timestamps come back as local time with their offset and
"month" in the closure view is the city's month.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg_pool import ConnectionPool


class Database:
    def __init__(self, dsn: str, *, timezone: str, size: int = 8) -> None:
        def configure(conn: psycopg.Connection) -> None:
            conn.execute("SELECT set_config('TimeZone', %s, false)", (timezone,))
            conn.commit()

        self.pool = ConnectionPool(dsn, min_size=1, max_size=size, configure=configure,
                                   open=False, timeout=10.0)

    def open(self) -> None:
        self.pool.open(wait=True, timeout=30.0)

    def close(self) -> None:
        self.pool.close()

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection]:
        """A connection inside one transaction: committed when the block ends normally,
        rolled back when it raises (so a refused request leaves nothing behind)."""
        with self.pool.connection() as conn, conn.transaction():
            yield conn
