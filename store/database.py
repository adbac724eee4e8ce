"""The pipeline's database side: one connection, one transaction per batch.

Why one connection: batches are written strictly one after another (their order matters for
violation upserts), and a single COPY-based transaction per batch keeps PostgreSQL fed with few,
large operations. A lost connection is re-opened on the next attempt; the caller retries the
same batch, and the (device, ts) key makes a retry after an unknown outcome harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import numpy as np
import orjson
import psycopg
from psycopg.types.json import Jsonb, set_json_loads

from domain.batches import CommandStates, DeviceStatus, FixBatch, Rejects, TerminalAlarms
from domain.events import TripEvent, ViolationEvent
from store.writer import MediaRow, StoreWriter, WriteReport

log = logging.getLogger(__name__)


class DatabaseError(RuntimeError):
    """The database could not be reached or refused a write; says where and why."""


# Upserts are monotonic, so replays and late duplicates never move a violation backwards:
# a closed or retracted violation stays so; the end and evidence, once known, are kept. A
# reviewed violation (confirmed or dismissed by an officer, issue #21) is not touched at all:
# neither a replay nor late data re-opens, retracts or re-grades what a person decided.
_UPSERT_VIOLATION = """
INSERT INTO violations (id, rule, severity, device_id, plate, company_id, permit_id, fence_id,
                        start_ts, end_ts, start_lon, start_lat, end_lon, end_lat, peak, state,
                        late, evidence)
VALUES (%(id)s, %(rule)s, %(severity)s, %(device_id)s, %(plate)s, %(company_id)s, %(permit_id)s,
        %(fence_id)s,
        timestamptz 'epoch' + %(start_ts)s * interval '1 millisecond',
        timestamptz 'epoch' + %(end_ts)s * interval '1 millisecond',
        %(start_lon)s, %(start_lat)s, %(end_lon)s, %(end_lat)s, %(peak)s, %(state)s, %(late)s,
        %(evidence)s)
ON CONFLICT (id, start_ts) DO UPDATE SET
    end_ts = COALESCE(excluded.end_ts, violations.end_ts),
    end_lon = COALESCE(excluded.end_lon, violations.end_lon),
    end_lat = COALESCE(excluded.end_lat, violations.end_lat),
    peak = GREATEST(violations.peak, excluded.peak),
    severity = GREATEST(violations.severity, excluded.severity),
    state = CASE WHEN violations.state = 'retracted' OR excluded.state = 'retracted'
                 THEN 'retracted'
                 WHEN violations.state = 'closed' THEN 'closed'
                 ELSE excluded.state END,
    evidence = COALESCE(excluded.evidence, violations.evidence),
    updated_at = now()
WHERE violations.review = 'new'
"""

# an evidence fix: its keys in the violation's JSON (and the webhook's track), each from a
# telemetry column — the one definition of a track's shape, for both statements below
_EVIDENCE = (("ts", "(extract(epoch FROM t.ts) * 1000)::bigint"), ("lon", "t.lon"),
             ("lat", "t.lat"), ("spd", "t.speed_kmh"), ("lid", "t.lid"), ("lift", "t.lift"),
             ("load", "t.load"))
_EVIDENCE_KEYS = tuple(key for key, _ in _EVIDENCE)
_TRACK_JSON = ("jsonb_agg(jsonb_build_object("
               + ", ".join(f"'{key}', {column}" for key, column in _EVIDENCE)
               + ") ORDER BY t.ts)")

# Evidence = the vehicle's fixes from `window` before the start to `window` after the end,
# at most `max_fixes`, cut from telemetry once the terminal has reported past the end window
# — a fix within [end + window, end + 3 × window], so fixes of the same device far later in
# device time (live data beside a backfilled violation) do not cut it before its own fixes
# arrived — or ten minutes after the violation last changed, for a terminal that went quiet.
_FILL_EVIDENCE = f"""
UPDATE violations v SET evidence = coalesce((
    SELECT {_TRACK_JSON}
    FROM (SELECT * FROM telemetry t
          WHERE t.device_id = v.device_id
            AND t.ts BETWEEN v.start_ts - %(window)s * interval '1 second'
                         AND v.end_ts + %(window)s * interval '1 second'
          ORDER BY t.ts LIMIT %(max_fixes)s) t), '[]'::jsonb)
WHERE v.state = 'closed' AND v.evidence IS NULL
  AND (EXISTS (SELECT 1 FROM telemetry t2
               WHERE t2.device_id = v.device_id
                 AND t2.ts BETWEEN v.end_ts + %(window)s * interval '1 second'
                               AND v.end_ts + 3 * %(window)s * interval '1 second')
       OR v.updated_at < now() - interval '10 minutes')
"""

_UPSERT_TRIP = """
INSERT INTO trips (id, device_id, plate, company_id, permit_id, origin, left_at, destination,
                   arrived_at, late, volume_m3, volume_source, load_kg, transfers)
VALUES (%(id)s, %(device_id)s, %(plate)s, %(company_id)s, %(permit_id)s, %(origin)s,
        timestamptz 'epoch' + %(left_ts)s * interval '1 millisecond', %(destination)s,
        timestamptz 'epoch' + %(arrived_ts)s * interval '1 millisecond', %(late)s,
        %(volume_m3)s, %(volume_source)s, %(load_kg)s, %(transfers)s)
ON CONFLICT (id, left_at) DO UPDATE SET
    destination = COALESCE(excluded.destination, trips.destination),
    arrived_at = COALESCE(excluded.arrived_at, trips.arrived_at),
    volume_m3 = COALESCE(trips.volume_m3, excluded.volume_m3),
    volume_source = COALESCE(trips.volume_source, excluded.volume_source),
    load_kg = COALESCE(trips.load_kg, excluded.load_kg),
    transfers = CASE WHEN excluded.arrived_at IS NOT NULL THEN excluded.transfers
                     ELSE trips.transfers END,
    -- on arrival the trip names the permit whose destination it reached (docs/rules.md)
    permit_id = CASE WHEN trips.arrived_at IS NULL AND excluded.arrived_at IS NOT NULL
                     THEN COALESCE(excluded.permit_id, trips.permit_id)
                     ELSE trips.permit_id END
"""


# An alert goes into the outbox in the violation's transaction, with an excerpt of the
# vehicle's track cut from telemetry (this batch's fixes included). A subscription deleted
# since the router last loaded them is skipped rather than failing the batch.
NOTIFY_ALERTS = "NOTIFY muckwatch_alerts"  # at commit of new outbox rows; workers LISTEN
_INSERT_ALERT = f"""
INSERT INTO alert_outbox (webhook_id, subscription_id, violation_id, event, payload)
SELECT %(webhook_id)s, %(subscription_id)s, %(violation_id)s, %(event)s,
       jsonb_set(%(payload)s::jsonb, '{{evidence,track}}', coalesce((
           SELECT {_TRACK_JSON}
           FROM (SELECT * FROM telemetry t
                 WHERE t.device_id = %(device_id)s
                   AND t.ts BETWEEN timestamptz 'epoch' + %(from_ms)s * interval '1 millisecond'
                                AND timestamptz 'epoch' + %(to_ms)s * interval '1 millisecond'
                 ORDER BY t.ts DESC LIMIT %(max_fixes)s) t), '[]'::jsonb))
WHERE EXISTS (SELECT 1 FROM alert_subscriptions s WHERE s.id = %(subscription_id)s)
ON CONFLICT (webhook_id) DO NOTHING
"""


def describe_dsn(dsn: str) -> str:
    """host:port/dbname without credentials, for error messages and logs."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "(unparseable DSN)"
    return f"{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"


@dataclass
class Store:
    dsn: str
    connect_timeout_s: int = 10
    evidence_s: float = 120.0
    evidence_max_fixes: int = 600

    def __post_init__(self) -> None:
        self._conn: psycopg.AsyncConnection | None = None
        self._writer = StoreWriter()

    async def _open(self, timeout_s: float | None = None) -> psycopg.AsyncConnection:
        """Every connection the ingest opens is opened here: one DSN, one timeout, one
        error that says where and why."""
        try:
            return await psycopg.AsyncConnection.connect(
                self.dsn, connect_timeout=int(timeout_s or self.connect_timeout_s),
                application_name="muckwatch-ingest",
            )
        except psycopg.OperationalError as e:
            raise DatabaseError(
                f"cannot connect to PostgreSQL at {describe_dsn(self.dsn)}: "
                f"{str(e).strip().splitlines()[-1]}"
            ) from None

    @contextlib.asynccontextmanager
    async def session(self, timeout_s: float | None = None
                      ) -> AsyncIterator[psycopg.AsyncConnection]:
        """A short-lived connection beside the batch writer's (alert subscriptions, health
        checks), so reading them never interleaves with a batch's transaction."""
        conn = await self._open(timeout_s)
        try:
            yield conn
        finally:
            await conn.close()

    @contextlib.contextmanager
    def sync_session(self) -> Iterator[psycopg.Connection]:
        """The same, blocking, for code that runs on a worker thread."""
        try:
            conn = psycopg.connect(self.dsn, connect_timeout=self.connect_timeout_s,
                                   application_name="muckwatch-ingest")
        except psycopg.OperationalError as e:
            raise DatabaseError(
                f"cannot connect to PostgreSQL at {describe_dsn(self.dsn)}: "
                f"{str(e).strip().splitlines()[-1]}") from None
        with conn:
            yield conn

    async def ping(self, timeout_s: float = 2.0) -> None:
        """Raises DatabaseError unless the database answers ``SELECT 1`` within the time."""
        try:
            async with self.session(timeout_s) as conn:
                await asyncio.wait_for(conn.execute("SELECT 1"), timeout_s)
        except (psycopg.Error, OSError, TimeoutError) as e:
            text = str(e).strip()
            raise DatabaseError(text.splitlines()[-1] if text else type(e).__name__) from None

    async def _connection(self) -> psycopg.AsyncConnection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = await self._open()
            # rule-state snapshots come back as jsonb: orjson parses them ≈ 3× faster
            set_json_loads(orjson.loads, self._conn)
            await self._writer.prepare(self._conn)
            await self._conn.commit()
        return self._conn

    async def write(
        self,
        fixes: FixBatch,
        rejects: Rejects,
        statuses: DeviceStatus,
        events: list[ViolationEvent | TripEvent],
        alerts: Sequence = (),
        snapshots: Sequence[RuleStateRow] = (),
        *,
        media: Sequence[MediaRow] = (),
        alarms: TerminalAlarms | None = None,
        command_states: CommandStates | None = None,
    ) -> WriteReport:
        """Everything a batch produced, in one transaction: all of it lands or none does.
        ``alerts`` are ``alerts.outbox.OutboxRow``-shaped (webhook_id, subscription_id,
        violation_id, event, payload, device_id, evidence_from_ms, evidence_to_ms).
        ``snapshots``: rule state as it stands after this batch — committed with the
        violations it explains, so a new owner never sees one without the other.
        ``media``: rows of items whose bytes the blob store already holds; ``alarms`` and
        ``command_states`` as decoded (command states only ever move a command forward)."""
        alarms = alarms if alarms is not None else TerminalAlarms()
        command_states = command_states if command_states is not None else CommandStates()
        conn = await self._connection()
        try:
            async with conn.transaction():
                report = await self._writer.write(conn, fixes, rejects, statuses)
                violations = [_violation_row(e) for e in events
                              if isinstance(e, ViolationEvent)]
                trips = [_trip_row(e) for e in events if isinstance(e, TripEvent)]
                async with conn.cursor() as cur:
                    if violations:
                        await cur.executemany(_UPSERT_VIOLATION, violations)
                    if trips:
                        await cur.executemany(_UPSERT_TRIP, trips)
                    await cur.execute(_FILL_EVIDENCE, {"window": self.evidence_s,
                                                       "max_fixes": self.evidence_max_fixes})
                    if snapshots:
                        await cur.executemany(_UPSERT_RULE_STATE, [
                            (r.device_id, r.owner, r.evaluated_ms, r.received_ms, r.state_json)
                            for r in snapshots])
                    if alerts:
                        await cur.executemany(_INSERT_ALERT, [_alert_row(a) for a in alerts])
                        # delivered at commit: wakes delivery workers in other processes
                        await cur.execute(NOTIFY_ALERTS)
                terminal = None
                if media or len(alarms) or len(command_states):
                    terminal = await self._writer.write_terminal(conn, media, alarms,
                                                                 command_states)
        except psycopg.OperationalError as e:
            await conn.close()
            raise DatabaseError(
                f"write to {describe_dsn(self.dsn)} failed: {str(e).strip().splitlines()[-1]}"
            ) from None
        if terminal is None:
            return report
        states = len(command_states)
        return replace(
            report,
            media_inserted=terminal.media_inserted,
            media_duplicate=len(media) - terminal.media_inserted,
            alarms_inserted=terminal.alarms_inserted,
            alarms_duplicate=len(alarms) - terminal.alarms_inserted,
            command_states_applied=terminal.command_states_applied,
            command_states_unknown=terminal.command_states_unknown,
            command_states_stale=states - terminal.command_states_applied
            - terminal.command_states_unknown)

    async def load_rule_state(self, devices: Sequence[str]) -> dict[str, SavedState]:
        """The saved rule state of these vehicles (those that have one)."""
        rows = await self._read("rule state", {"devices": list(devices)})
        return {r[0]: SavedState(r[1], r[2], r[3]) for r in rows}

    async def fixes_in_ranges(self, ranges: Sequence[FixRange]) -> FixBatch:
        """Stored fixes of each range's vehicle with lo < ts < hi, received at or after
        ``received_ms``, in (device, ts) order: one primary-key range scan per range."""
        if not ranges:
            return FixBatch.empty()
        rows = await self._read("stored fixes", {
            "devices": [r.device_id for r in ranges],
            "lo": [max(r.lo_ms, 0) for r in ranges],
            "hi": [min(r.hi_ms, _MAX_MS) for r in ranges],
            "received": [max(r.received_ms, 0) for r in ranges]})
        return _fixes_from_rows(rows)

    async def _read(self, what: str, params: dict) -> list[tuple]:
        # the statement is chosen here, never passed in: every SQL text stays a constant
        # (tests/security/test_sql_parameterised.py)
        query = _LOAD_RULE_STATE if what == "rule state" else _FIXES_IN_RANGES
        conn = await self._connection()
        try:
            async with conn.transaction(), conn.cursor() as cur:
                await cur.execute(query, params)
                return await cur.fetchall()
        except psycopg.OperationalError as e:
            await conn.close()
            raise DatabaseError(
                f"reading {what} from {describe_dsn(self.dsn)} failed: "
                f"{str(e).strip().splitlines()[-1]}") from None

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()


@dataclass(frozen=True, slots=True)
class RuleStateRow:
    """One vehicle's snapshot: ``state_json`` is ``RuleEngine.export_states`` as JSON text."""

    device_id: str
    owner: str
    evaluated_ms: int | None  # device time of the newest evaluated fix; None: none yet
    received_ms: int  # newest receive time of the batch written with it
    state_json: str


_UPSERT_RULE_STATE = """
INSERT INTO rule_state (device_id, owner, evaluated_to, received_to, state, saved_at)
VALUES (%s, %s, timestamptz 'epoch' + %s * interval '1 millisecond',
        timestamptz 'epoch' + %s * interval '1 millisecond', %s::jsonb, now())
ON CONFLICT (device_id) DO UPDATE SET owner = excluded.owner,
    evaluated_to = excluded.evaluated_to, received_to = excluded.received_to,
    state = excluded.state, saved_at = excluded.saved_at
"""

_LOAD_RULE_STATE = """
SELECT device_id, state,
       (extract(epoch FROM evaluated_to) * 1000)::bigint,
       (extract(epoch FROM received_to) * 1000)::bigint
FROM rule_state WHERE device_id = ANY(%(devices)s)
"""

_MAX_MS = 253_402_300_799_000  # 9999-12-31: "no upper bound" that timestamptz can add

_FIXES_IN_RANGES = """
SELECT t.device_id, (extract(epoch FROM t.ts) * 1000)::bigint, t.lon, t.lat, t.speed_kmh,
       t.heading_deg, t.lid, t.lift, t.load, t.load_kg, t.sats, t.hdop, t.seq,
       (extract(epoch FROM t.received_at) * 1000)::bigint, t.backfill, t.alarm
FROM unnest(%(devices)s::text[], %(lo)s::bigint[], %(hi)s::bigint[], %(received)s::bigint[])
         AS s(device_id, lo, hi, received_ms)
JOIN telemetry t ON t.device_id = s.device_id
                AND t.ts > timestamptz 'epoch' + s.lo * interval '1 millisecond'
                AND t.ts < timestamptz 'epoch' + s.hi * interval '1 millisecond'
WHERE t.received_at >= timestamptz 'epoch' + s.received_ms * interval '1 millisecond'
ORDER BY t.device_id, t.ts
"""


@dataclass(frozen=True, slots=True)
class SavedState:
    """A vehicle's rule_state row."""

    state: dict  # RuleEngine.export_states() form
    evaluated_ms: int | None  # device time of the newest fix it reflects
    received_ms: int  # newest receive time of the batch it was written with


@dataclass(frozen=True, slots=True)
class FixRange:
    device_id: str
    lo_ms: int  # device time, exclusive
    hi_ms: int  # device time, exclusive
    received_ms: int  # only fixes received at or after this


def _fixes_from_rows(rows: list[tuple]) -> FixBatch:
    """Telemetry rows → FixBatch (NULL sensors → the batch's 'unknown' sentinels)."""
    if not rows:
        return FixBatch.empty()
    cols = list(zip(*rows, strict=True))

    def ints(c):
        return [-1 if v is None else v for v in c]

    def floats(c):
        return [np.nan if v is None else v for v in c]

    return FixBatch.from_columns(
        device=np.array(cols[0], dtype=object), ts=cols[1], lon=cols[2], lat=cols[3],
        speed=floats(cols[4]), heading=floats(cols[5]), lid=ints(cols[6]), lift=ints(cols[7]),
        load=ints(cols[8]), load_kg=floats(cols[9]), sats=ints(cols[10]), hdop=floats(cols[11]),
        seq=ints(cols[12]), received=cols[13], backfill=cols[14], alarm=ints(cols[15]))


def _violation_row(e: ViolationEvent) -> dict:
    return {
        "id": e.id, "rule": e.rule, "severity": e.severity, "device_id": e.device_id,
        "plate": e.plate, "company_id": e.company_id, "permit_id": e.permit_id,
        "start_ts": e.start_ts, "end_ts": e.end_ts, "start_lon": e.start_lon,
        "start_lat": e.start_lat, "end_lon": e.end_lon, "end_lat": e.end_lat, "peak": e.peak,
        "state": e.state,
        "late": e.late, "fence_id": e.fence_id,
        "evidence": None if e.evidence is None else Jsonb(
            [dict(zip(_EVIDENCE_KEYS, row, strict=True)) for row in e.evidence]),
    }


_ALERT_EXCERPT_FIXES = 60


def _alert_row(a) -> dict:
    return {"webhook_id": a.webhook_id, "subscription_id": a.subscription_id,
            "violation_id": a.violation_id, "event": a.event, "payload": Jsonb(a.payload),
            "device_id": a.device_id, "from_ms": a.evidence_from_ms,
            "to_ms": a.evidence_to_ms, "max_fixes": _ALERT_EXCERPT_FIXES}


def _trip_row(t: TripEvent) -> dict:
    return {"id": t.id, "device_id": t.device_id, "plate": t.plate, "company_id": t.company_id,
            "permit_id": t.permit_id, "origin": t.origin, "left_ts": t.left_ts,
            "destination": t.destination, "arrived_ts": t.arrived_ts, "late": t.late,
            "volume_m3": t.volume_m3, "volume_source": t.volume_source, "load_kg": t.load_kg,
            "transfers": Jsonb([{"dock": d, "entered_at": _iso(a), "left_at": _iso(b)}
                                for d, a, b in t.transfers])}


def _iso(ms: int | None) -> str | None:
    """Epoch ms as an ISO-8601 UTC time (the manifest's transfer times in JSON)."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
