"""Reading violations back, in the shape ``muckwatch replay`` prints them (for the accuracy
scorer and anyone comparing live results with an offline replay)."""

from __future__ import annotations

import psycopg

_SELECT = """
SELECT id, rule, device_id, plate, company_id, permit_id, fence_id,
       (extract(epoch FROM start_ts) * 1000)::bigint,
       (extract(epoch FROM end_ts) * 1000)::bigint,
       late, severity, peak, start_lon, start_lat
FROM violations
WHERE state <> 'retracted'
  AND start_ts >= to_timestamp(%(since)s / 1000.0) AND start_ts < to_timestamp(%(until)s / 1000.0)
ORDER BY start_ts, device_id, rule
"""
_KEYS = ("id", "rule", "device", "plate", "company", "permit", "fence", "start_ts", "end_ts",
         "late", "severity", "peak", "start_lon", "start_lat")


def violations_between(conn: psycopg.Connection, since_ms: int, until_ms: int) -> list[dict]:
    """Violations (not retracted) that started in [since, until), device time."""
    rows = conn.execute(_SELECT, {"since": since_ms, "until": until_ms}).fetchall()
    return [dict(zip(_KEYS, row, strict=True)) for row in rows]
