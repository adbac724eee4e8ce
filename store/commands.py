"""Commands to terminals in the database (table ``terminal_commands``, docs/jt808.md).

A command is queued here by the API, the CLI or a rule's action when a violation opens;
the dispatcher claims queued rows, publishes them to the broker and marks them
``published`` in the same transaction — committed only after the broker acknowledged, so a
failed publish leaves the row queued and a crash never loses one. The gateway that holds the
terminal reports what became of it (``sent``, then ``delivered`` / ``failed`` /
``unsupported`` / ``timeout``) through the broker, and the ingest moves the row forward
(store/writer.py). Whatever is still unanswered after its timeout is ended ``timeout`` here,
with what the platform knows about why.

Reads and queues for the API and the CLI are sync (their connections are); the dispatcher's
statements are async.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from domain.wire import validate_command

COLUMNS = ("id", "device_id", "kind", "args", "state", "detail", "result", "requested_by",
           "violation_id", "timeout_s", "created_at", "published_at", "sent_at",
           "answered_at", "updated_at")
_SELECT = ("SELECT c.id, c.device_id, c.kind, c.args, c.state, c.detail, c.result,"
           " c.requested_by, c.violation_id, c.timeout_s, c.created_at, c.published_at,"
           " c.sent_at, c.answered_at, c.updated_at FROM terminal_commands c")
# a company sees the commands to its own vehicles; NULL lifts the condition
_SCOPE = ("(%(company)s::text IS NULL OR EXISTS (SELECT 1 FROM vehicles veh"
          " WHERE veh.device_id = c.device_id AND veh.company_id = %(company)s))")
_GET = f"{_SELECT} WHERE c.id = %(id)s AND {_SCOPE}"
_FOR_DEVICE = (f"{_SELECT} WHERE c.device_id = %(device)s AND {_SCOPE}"
               " ORDER BY c.created_at DESC, c.id LIMIT %(limit)s")
_VEHICLE = ("SELECT v.plate, v.company_id FROM vehicles v WHERE v.device_id = %(device)s")
_INSERT = """
INSERT INTO terminal_commands (id, device_id, kind, args, requested_by, violation_id,
                               timeout_s)
VALUES (%(id)s, %(device)s, %(kind)s, %(args)s, %(by)s, %(violation)s, %(timeout)s)
"""
_NOTIFY = "SELECT pg_notify('muckwatch_commands', %(id)s)"
LISTEN = "LISTEN muckwatch_commands"  # the dispatcher wakes on each queued command

# the dispatcher: queued rows, oldest first, locked until the broker acknowledged them
_CLAIM = """
SELECT id, device_id, kind, args,
       (extract(epoch FROM created_at) * 1000)::bigint + (timeout_s * 1000)::bigint
FROM terminal_commands
WHERE state = 'queued' AND created_at + timeout_s * interval '1 second' > now()
ORDER BY created_at, id
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED
"""
_PUBLISHED = """
UPDATE terminal_commands SET state = 'published', published_at = now(), updated_at = now()
WHERE id = ANY(%(ids)s) AND state = 'queued'
"""
# past the timeout (and a grace for the gateway's own, better-informed 'timeout'): ended
# with what the platform knows
_EXPIRE = """
UPDATE terminal_commands SET state = 'timeout', answered_at = now(), updated_at = now(),
    detail = CASE state
        WHEN 'queued' THEN 'never published: no dispatcher ran (is muckwatch run up?)'
        WHEN 'published' THEN 'no gateway holds the terminal: it is not connected'
        ELSE 'no answer from the terminal' END
WHERE state IN ('queued', 'published', 'sent')
  AND created_at + (timeout_s + %(grace)s) * interval '1 second' < now()
"""
# a rule's action: one command per (violation, kind), for violations that opened lately
# (not for ones found in backfill: telling the driver hours later helps nobody)
_ACTION = """
INSERT INTO terminal_commands (id, device_id, kind, args, requested_by, violation_id,
                               timeout_s)
SELECT gen_random_uuid()::text, v.device_id, %(kind)s,
       CASE WHEN %(kind)s = 'text' THEN jsonb_build_object(
                'text', replace(replace(%(text)s, '{plate}', coalesce(v.plate, v.device_id)),
                                '{rule}', v.rule),
                'flags', 12)
            ELSE %(args)s::jsonb END,
       'rule:' || v.rule, v.id, %(timeout)s
FROM violations v
WHERE v.rule = %(rule)s AND v.severity >= %(min_severity)s AND v.state = 'open'
  AND NOT v.late AND v.start_ts > now() - %(window)s * interval '1 second'
ON CONFLICT (violation_id, kind) WHERE violation_id IS NOT NULL DO NOTHING
"""


class CommandError(ValueError):
    """A command that cannot be queued; says why (HTTP 422 / a CLI error)."""


class NoSuchVehicle(LookupError):
    pass


def _row(values: dict[str, Any]) -> dict[str, Any]:
    out = dict(values)
    for key in ("created_at", "published_at", "sent_at", "answered_at", "updated_at"):
        if isinstance(out.get(key), datetime):
            out[key] = out[key].isoformat()
    return out


def queue(conn: psycopg.Connection, *, device_id: str, kind: str, args: dict,
          requested_by: str, timeout_s: float, company: str | None = None) -> dict:
    """Queue one command for ``device_id``'s terminal (a registered vehicle; a company only
    its own) and wake the dispatcher. Returns the row."""
    try:
        checked = validate_command(kind, args)
    except ValueError as e:
        raise CommandError(str(e)) from None
    if not 1 <= timeout_s <= 86_400:
        raise CommandError("timeout_s must be from 1 to 86400 seconds")
    vehicle = conn.execute(_VEHICLE, {"device": device_id}).fetchone()
    if vehicle is None or (company is not None and vehicle[1] != company):
        raise NoSuchVehicle(f"no vehicle with device {device_id!r}")
    command_id = uuid.uuid4().hex
    conn.execute(_INSERT, {"id": command_id, "device": device_id, "kind": kind,
                           "args": Jsonb(checked), "by": requested_by, "violation": None,
                           "timeout": timeout_s})
    conn.execute(_NOTIFY, {"id": command_id})
    row = get(conn, command_id)
    assert row is not None
    return row


def get(conn: psycopg.Connection, command_id: str, company: str | None = None
        ) -> dict | None:
    with conn.cursor(row_factory=dict_row) as cur:
        found = cur.execute(_GET, {"id": command_id, "company": company}).fetchone()
    return _row(found) if found is not None else None


def for_device(conn: psycopg.Connection, device_id: str, *, company: str | None = None,
               limit: int = 50) -> list[dict]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(_FOR_DEVICE, {"device": device_id, "company": company,
                                         "limit": limit}).fetchall()
    return [_row(r) for r in rows]


@dataclass(frozen=True, slots=True)
class Claimed:
    """A queued command, locked by the dispatcher's open transaction."""

    id: str
    device_id: str
    kind: str
    args: dict
    deadline_ms: int


async def claim(conn: psycopg.AsyncConnection, limit: int) -> list[Claimed]:
    """Inside the caller's transaction: queued commands, locked (SKIP LOCKED: several
    dispatchers never publish one twice)."""
    cur = await conn.execute(_CLAIM, {"limit": limit})
    return [Claimed(r[0], r[1], r[2], r[3] if isinstance(r[3], dict) else orjson.loads(r[3]),
                    int(r[4])) for r in await cur.fetchall()]


async def listen(conn: psycopg.AsyncConnection) -> None:
    """Subscribe ``conn`` (autocommit) to the NOTIFY each queued command sends."""
    await conn.execute(LISTEN)


async def mark_published(conn: psycopg.AsyncConnection, ids: Sequence[str]) -> None:
    await conn.execute(_PUBLISHED, {"ids": list(ids)})


async def expire(conn: psycopg.AsyncConnection, grace_s: float = 5.0) -> int:
    cur = await conn.execute(_EXPIRE, {"grace": grace_s})
    return cur.rowcount


@dataclass(frozen=True, slots=True)
class ViolationAction:
    """``[[terminal.on_violation]]``: what to send when a violation of ``rule`` opens."""

    rule: str
    text: str = ""  # 0x8300 to the driver; {plate} and {rule} are filled in
    capture_channel: int = 0  # 0x8801 on this camera; 0: none
    shots: int = 1
    min_severity: int = 1

    @classmethod
    def from_config(cls, table: dict, where: str) -> ViolationAction:
        unknown = set(table) - {"rule", "text", "capture_channel", "shots", "min_severity"}
        if unknown:
            raise CommandError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        rule = str(table.get("rule", "")).strip()
        if not rule:
            raise CommandError(f"{where}: rule is required")
        action = cls(rule, str(table.get("text", "")), int(table.get("capture_channel", 0)),
                     int(table.get("shots", 1)), int(table.get("min_severity", 1)))
        try:
            if action.text:
                validate_command("text", {"text": action.text.replace("{plate}", "粤B00000X")
                                          .replace("{rule}", rule)})
            if action.capture_channel:
                validate_command("capture", action.capture_args())
        except ValueError as e:
            raise CommandError(f"{where}: {e}") from None
        if not action.text and not action.capture_channel:
            raise CommandError(f"{where}: give a text, a capture_channel or both")
        return action

    def capture_args(self) -> dict:
        return {"channel": self.capture_channel, "shots": self.shots, "interval_s": 0,
                "resolution": 1, "quality": 5}


async def queue_actions(conn: psycopg.AsyncConnection, actions: Sequence[ViolationAction],
                        timeout_s: float, window_s: float = 600.0) -> int:
    """Commands for violations that opened in the last ``window_s`` and have none of that
    kind yet (idempotent: a unique index per violation and kind). Returns how many."""
    made = 0
    for a in actions:
        common = {"rule": a.rule, "min_severity": a.min_severity, "timeout": timeout_s,
                  "window": window_s, "text": a.text}
        if a.text:
            cur = await conn.execute(_ACTION, {**common, "kind": "text", "args": "{}"})
            made += cur.rowcount
        if a.capture_channel:
            cur = await conn.execute(_ACTION, {**common, "kind": "capture",
                                               "args": orjson.dumps(a.capture_args()).decode()})
            made += cur.rowcount
    if made:
        await conn.execute(_NOTIFY, {"id": ""})
    return made


__all__ = ["COLUMNS", "LISTEN", "Claimed", "CommandError", "NoSuchVehicle", "ViolationAction",
           "claim", "expire", "for_device", "get", "listen", "mark_published", "queue",
           "queue_actions"]
