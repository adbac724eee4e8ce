"""Evidence bundles of violations and their seals (issue #24, docs/evidence.md).

A violation's bundle is what an officer or a court relies on: the violation itself, every
stored fix of its vehicle in the evidence window (the track, and with its lid, lift, load and
alarm columns the sensor timeline), and the photos — hashed over their bytes, re-read from
the blob store. Each item is canonical JSON hashed with SHA-256, and the items form a chain
(h0 = sha256("muckwatch-evidence-v1:" + id), h_i = sha256(h_{i-1} ‖ item_i)) whose last
hash, the head, is sealed in ``evidence_seals``. Seals form a chain of their own (each hashes
the previous one), appended under an advisory lock so it stays linear. Verifying recomputes
the bundle now and names the first item that changed, went missing or was added, and checks
the seal's own hash and its link to the one before.

Why a sync and an async path: the API and the CLI hold blocking connections, the dispatcher
inside ``muckwatch run`` an async one. Everything between the statements — canonical items,
the chain, the comparison — is shared pure code; only the few statement calls are written
twice, each naming its constant SQL (tests/security/test_sql_parameterised.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from store import media, review
from store.review import Conflict, NotFound, Scope

log = logging.getLogger(__name__)

PREFIX = b"muckwatch-evidence-v1:"
SYSTEM = "system"  # sealed_by of the seals made when due (seal_due)
_LOCK_KEY = 0x6D776576  # "mwev": one sealer appends at a time, so the chain stays linear
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
MAX_DIFFERENCES = 100  # listed in a verification; the count says how many there were

# --- statements ----------------------------------------------------------------------------

# the violation, unscoped (the dispatcher's); the API's and the CLI's reads go through
# store.review.get_violation, whose scope they share with GET /v1/violations/{id}
_VIOLATION = """
SELECT id, rule, severity, device_id, plate, company_id, permit_id, fence_id, start_ts, end_ts,
       start_lon, start_lat, end_lon, end_lat, peak, state
FROM violations WHERE id = %(id)s
"""
# the track and sensor timeline: every stored fix of the device in the window
_FIXES = """
SELECT ts, lon, lat, speed_kmh, heading_deg, lid, lift, load, load_kg, alarm, sats, hdop, seq,
       backfill, received_at
FROM telemetry
WHERE device_id = %(device)s AND ts BETWEEN %(from)s AND %(to)s
ORDER BY ts
"""
_SEAL_COLUMNS = ("seq", "violation_id", "items", "head", "window_from", "window_to",
                 "prev_seal", "seal", "sealed_by", "sealed_at")
_SEAL_OF = (f"SELECT {', '.join(_SEAL_COLUMNS)} FROM evidence_seals"
            " WHERE violation_id = %(id)s")
_SEALS = f"SELECT {', '.join(_SEAL_COLUMNS)} FROM evidence_seals ORDER BY seq"
_PREVIOUS = ("SELECT seal FROM evidence_seals WHERE seq < %(seq)s"
             " ORDER BY seq DESC LIMIT 1")
_LAST = "SELECT seal FROM evidence_seals ORDER BY seq DESC LIMIT 1"
_LOCK = "SELECT pg_advisory_xact_lock(%(key)s)"
_INSERT = f"""
INSERT INTO evidence_seals (violation_id, items, head, window_from, window_to, prev_seal,
                            seal, sealed_by, sealed_at)
VALUES (%(violation_id)s, %(items)s, %(head)s, %(window_from)s, %(window_to)s,
        %(prev_seal)s, %(seal)s, %(sealed_by)s, %(sealed_at)s)
RETURNING {', '.join(_SEAL_COLUMNS)}
"""
# ended violations whose window is complete and whose row has been quiet as long (a
# backfilled one may still be changing), not yet sealed; `horizon` bounds the index scan
_DUE = """
SELECT v.id FROM violations v
WHERE v.state = 'closed'
  AND v.end_ts < now() - %(age)s * interval '1 second'
  AND v.end_ts >= now() - %(horizon)s * interval '1 second'
  AND v.updated_at < now() - %(age)s * interval '1 second'
  AND NOT EXISTS (SELECT 1 FROM evidence_seals s WHERE s.violation_id = v.id)
ORDER BY v.end_ts
LIMIT %(limit)s
"""

# --- canonical items -----------------------------------------------------------------------


def canonical(obj: Any) -> bytes:
    """The bytes an item is hashed over: JSON with sorted keys, no spaces, times as UTC
    epoch milliseconds (converted before) — what anyone can recompute from the API's JSON."""
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)


def item_hash(obj: Any) -> str:
    return hashlib.sha256(canonical(obj)).hexdigest()


def ms(value: datetime | None) -> int | None:
    """Epoch milliseconds, exactly (integer arithmetic, no float rounding)."""
    return None if value is None else (value - _EPOCH) // _MS


def _when(value: datetime | str | None) -> datetime | None:
    """A time as a row gives it: a datetime, or ISO 8601 text (store.media's rows)."""
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def _at_ms(value: datetime) -> datetime:
    """``value`` in UTC, cut to the millisecond (what the items keep of it)."""
    return _EPOCH + (value - _EPOCH) // _MS * _MS


def key_of_ts(ts_ms: int) -> str:
    """A fix's key: its device time, ISO 8601 UTC to the millisecond (sorts as it runs)."""
    return (_EPOCH + ts_ms * _MS).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def violation_object(row: dict, window: tuple[datetime, datetime]) -> dict:
    """The violation as hashed: what it is, who, where, when — not its review state, which
    people change; with the window the track was cut with."""
    return {"kind": "violation", "id": row["id"], "rule": row["rule"],
            "severity": row["severity"], "device": row["device_id"], "plate": row["plate"],
            "company": row["company_id"], "permit": row["permit_id"], "fence": row["fence_id"],
            "start_ts": ms(row["start_ts"]), "end_ts": ms(row["end_ts"]),
            "start_lon": row["start_lon"], "start_lat": row["start_lat"],
            "end_lon": row["end_lon"], "end_lat": row["end_lat"], "peak": row["peak"],
            "window": [ms(window[0]), ms(window[1])]}


def fix_object(device: str, row: dict) -> dict:
    """One stored fix, every column that is evidence (received_at and backfill too: a fix
    that arrived after the seal shows as such)."""
    return {"kind": "fix", "device": device, "ts": ms(row["ts"]), "lon": row["lon"],
            "lat": row["lat"], "spd": row["speed_kmh"], "hdg": row["heading_deg"],
            "lid": row["lid"], "lift": row["lift"], "load": row["load"],
            "load_kg": row["load_kg"], "alarm": row["alarm"], "sats": row["sats"],
            "hdop": row["hdop"], "seq": row["seq"], "backfill": row["backfill"],
            "received_at": ms(row["received_at"])}


def photo_object(row: dict, data: bytes | None) -> dict:
    """A photo's record and the SHA-256 of the bytes the blob store holds now (None when
    they are gone), so a swapped file changes the item even if the row still matches."""
    return {"kind": "photo", "id": row["id"], "device": row.get("device_id"),
            "terminal_id": row.get("terminal_id"), "sha256": row["sha256"],
            "bytes": row.get("bytes"), "media_type": row.get("media_type"),
            "media_format": row["media_format"], "event": row.get("event"),
            "channel": row.get("channel"), "taken_at": ms(_when(row.get("taken_at"))),
            "lon": row.get("lon"), "lat": row.get("lat"),
            "command_id": row.get("command_id"),
            "content_sha256": None if data is None else hashlib.sha256(data).hexdigest()}


def chain(violation_id: str, hashes: Iterable[str]) -> str:
    """h0 = sha256(PREFIX + id); h_i = sha256(h_{i-1} ‖ item_i) over the 32-byte digests."""
    h = hashlib.sha256(PREFIX + violation_id.encode()).digest()
    for x in hashes:
        h = hashlib.sha256(h + bytes.fromhex(x)).digest()
    return h.hex()


def iso(value: datetime) -> str:
    """A seal's time as hashed: UTC, microseconds (what timestamptz keeps)."""
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def seal_hash(prev_seal: str, violation_id: str, head: str, sealed_at: datetime,
              sealed_by: str) -> str:
    text = "|".join((prev_seal, violation_id, head, iso(sealed_at), sealed_by))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Bundle:
    """A violation's evidence as it is now: the hashed objects, their items and the head."""

    violation: dict
    track: list[dict]
    photos: list[dict]
    items: list[dict]  # {kind, key, sha256[, content]} in chain order
    head: str
    state: str  # the violation's state (open, closed, retracted): not hashed
    window: tuple[datetime, datetime]

    def objects(self) -> list[dict]:
        return [self.violation, *self.track, *self.photos]


def build(violation: dict, window: tuple[datetime, datetime], fixes: Sequence[dict],
          photos: Sequence[tuple[dict, bytes | None]]) -> Bundle:
    """The bundle from its rows (pure: the statements are the caller's)."""
    v = violation_object(violation, window)
    track = [fix_object(violation["device_id"], f) for f in fixes]
    shots = sorted((photo_object(row, data) for row, data in photos),
                   key=lambda p: (p["taken_at"] is None, p["taken_at"] or 0, p["id"]))
    items = [{"kind": "violation", "key": v["id"], "sha256": item_hash(v)}]
    items += [{"kind": "fix", "key": key_of_ts(f["ts"]), "sha256": item_hash(f)} for f in track]
    items += [{"kind": "photo", "key": str(p["id"]), "sha256": item_hash(p),
               "content": p["content_sha256"]} for p in shots]
    return Bundle(v, track, shots, items, chain(v["id"], (i["sha256"] for i in items)),
                  violation["state"], window)


def window_of(violation: dict, evidence_s: float, now: datetime) -> tuple[datetime, datetime]:
    """[start − evidence_s, (end, or now while open) + evidence_s], to the millisecond."""
    pad = timedelta(seconds=evidence_s)
    end = violation["end_ts"] if violation["end_ts"] is not None else now
    return _at_ms(violation["start_ts"] - pad), _at_ms(end + pad)


# --- comparing -----------------------------------------------------------------------------


def _detail(change: str, kind: str, sealed: dict | None, now: dict | None) -> str:
    if kind == "photo" and change == "changed" and sealed and now:
        if now.get("content") is None and sealed.get("content") is not None:
            return "its bytes are gone from the blob store"
        if now.get("content") != sealed.get("content"):
            return "its bytes differ from the sealed ones"
        return "its record changed"
    return {"changed": f"the {kind} differs from the sealed one",
            "missing": f"a sealed {kind} is no longer there",
            "added": f"a {kind} that was not sealed is there now"}[change]


def _difference(change: str, sealed: dict | None, now: dict | None) -> dict:
    it = sealed if sealed is not None else now
    assert it is not None
    return {"kind": it["kind"], "key": it["key"], "change": change,
            "detail": _detail(change, it["kind"], sealed, now)}


def compare(sealed: Sequence[dict], now: Sequence[dict]) -> list[dict]:
    """Every difference between the sealed items and today's, in chain order: the first is
    where the recomputed chain first departs from the sealed one."""
    def ident(i: dict) -> tuple[str, str]:
        return i["kind"], i["key"]

    sealed_at = {ident(i): n for n, i in enumerate(sealed)}
    now_by_id = {ident(i): i for i in now}
    out: list[tuple[int, int, dict]] = []
    for n, i in enumerate(sealed):
        other = now_by_id.get(ident(i))
        if other is None:
            out.append((n, 0, _difference("missing", i, None)))
        elif other["sha256"] != i["sha256"]:
            out.append((n, 0, _difference("changed", i, other)))
    position = -1  # an added item sits where it falls: after the sealed item before it
    for i in now:
        at = sealed_at.get(ident(i))
        if at is None:
            out.append((position, 1, _difference("added", None, i)))
        else:
            position = at
    out.sort(key=lambda t: (t[0], t[1]))
    return [d for _, _, d in out]


def seal_json(row: dict) -> dict:
    return {"seq": row["seq"], "violation_id": row["violation_id"], "head": row["head"],
            "window": [ms(row["window_from"]), ms(row["window_to"])],
            "prev_seal": row["prev_seal"], "seal": row["seal"], "sealed_by": row["sealed_by"],
            "sealed_at": iso(row["sealed_at"]), "items": len(row["items"])}


def check_seal(row: dict, previous: str | None) -> dict:
    """The seal's own integrity: its items chain to its head, its hash recomputes, and it
    names the seal before it (``previous``: that seal's hash, None when it is the first)."""
    items_ok = chain(row["violation_id"], (i["sha256"] for i in row["items"])) == row["head"]
    hash_ok = seal_hash(row["prev_seal"], row["violation_id"], row["head"], row["sealed_at"],
                        row["sealed_by"]) == row["seal"]
    link_ok = row["prev_seal"] == (previous or "")
    return {"items_ok": items_ok, "hash_ok": hash_ok, "link_ok": link_ok}


# --- reading (sync: the API and the CLI) ---------------------------------------------------


def _violation(conn: psycopg.Connection, violation_id: str, scope: Scope) -> dict | None:
    try:
        return review.get_violation(conn, scope, violation_id)
    except NotFound:
        return None


def _photos(rows: Sequence[dict], blobs: media.BlobStore) -> list[tuple[dict, bytes | None]]:
    return [(r, _read(blobs.get, r)) for r in rows]


def _read(get: Callable[[str, str], bytes], row: dict) -> bytes | None:
    try:
        return get(row["sha256"], row["media_format"])
    except media.MediaMissing:
        return None


def _bundle(conn: psycopg.Connection, blobs: media.BlobStore, violation: dict,
            window: tuple[datetime, datetime]) -> Bundle:
    with conn.cursor(row_factory=dict_row) as cur:
        fixes = cur.execute(_FIXES, {"device": violation["device_id"], "from": window[0],
                                     "to": window[1]}).fetchall()
    rows = media.media_for_violation_sync(conn, violation["id"])
    return build(violation, window, fixes, _photos(rows, blobs))


def get_seal(conn: psycopg.Connection, violation_id: str) -> dict | None:
    """The stored seal of a violation (the row), or None."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_SEAL_OF, {"id": violation_id}).fetchone()


def bundle(conn: psycopg.Connection, blobs: media.BlobStore, violation_id: str, *,
           evidence_s: float, scope: Scope | None = None) -> tuple[Bundle, dict | None]:
    """The bundle as it is now and the seal if any (a sealed violation's bundle is cut with
    the sealed window). NotFound outside ``scope``."""
    violation = _violation(conn, violation_id, scope or Scope())
    if violation is None:
        raise NotFound(f"no violation {violation_id!r}")
    seal = get_seal(conn, violation_id)
    window = ((seal["window_from"], seal["window_to"]) if seal is not None
              else window_of(violation, evidence_s, datetime.now(UTC)))
    return _bundle(conn, blobs, violation, window), seal


def bundle_json(b: Bundle, seal: dict | None) -> dict:
    """The bundle as the API and ``muckwatch evidence show --json`` give it: each object of
    violation / track / photos is exactly what its item's sha256 is computed over."""
    return {"violation": b.violation, "track": b.track, "photos": b.photos, "items": b.items,
            "head": b.head, "state": b.state,
            "seal": None if seal is None else seal_json(seal)}


# --- sealing -------------------------------------------------------------------------------


def due_age_s(evidence_s: float) -> float:
    """How long after its end a violation's window is taken as complete: 3 × evidence_s,
    the pipeline's own rule for cutting the evidence track (store/database.py)."""
    return 3 * evidence_s


def _sealable(violation: dict, evidence_s: float, now: datetime) -> None:
    vid = violation["id"]
    if violation["state"] == "retracted":
        raise Conflict(f"violation {vid} was retracted by late data; nothing to seal")
    if violation["end_ts"] is None or violation["state"] != "closed":
        raise Conflict(f"violation {vid} is still open; its evidence is sealed once it ended")
    ready = violation["end_ts"] + timedelta(seconds=due_age_s(evidence_s))
    if ready > now:
        raise Conflict(f"violation {vid} ended at {iso(violation['end_ts'])}; its evidence "
                       f"window may still fill until {iso(ready)} (sealed then)")


def _new_seal(b: Bundle, prev: str, sealed_by: str, now: datetime) -> dict:
    head = b.head
    sealed_at = now.astimezone(UTC)
    return {"violation_id": b.violation["id"], "items": Jsonb(b.items), "head": head,
            "window_from": b.window[0], "window_to": b.window[1], "prev_seal": prev,
            "seal": seal_hash(prev, b.violation["id"], head, sealed_at, sealed_by),
            "sealed_by": sealed_by, "sealed_at": sealed_at}


def seal(conn: psycopg.Connection, blobs: media.BlobStore, violation_id: str, *,
         evidence_s: float, sealed_by: str, scope: Scope | None = None) -> tuple[dict, bool]:
    """Seal an ended violation's bundle; (the seal row, True if made now). Sealing again
    returns the existing seal. Conflict while it is open, retracted, or ended too recently
    for its window to be complete; NotFound outside ``scope``."""
    violation = _violation(conn, violation_id, scope or Scope())
    if violation is None:
        raise NotFound(f"no violation {violation_id!r}")
    existing = get_seal(conn, violation_id)
    if existing is not None:
        return existing, False
    now = datetime.now(UTC)
    _sealable(violation, evidence_s, now)
    b = _bundle(conn, blobs, violation, window_of(violation, evidence_s, now))
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute(_LOCK, {"key": _LOCK_KEY})
        existing = cur.execute(_SEAL_OF, {"id": violation_id}).fetchone()
        if existing is not None:  # sealed meanwhile by someone else
            return existing, False
        last = cur.execute(_LAST).fetchone()
        row = cur.execute(_INSERT, _new_seal(b, last["seal"] if last else "", sealed_by,
                                             datetime.now(UTC))).fetchone()
    assert row is not None
    return row, True


def seal_if_due(conn: psycopg.Connection, blobs: media.BlobStore, violation_id: str, *,
                evidence_s: float, sealed_by: str) -> dict | None:
    """Seal when the violation can be (ended, window complete); else None — for the review
    hook: a decision must not fail because its evidence cannot be sealed yet (seal_due
    seals it later). The attempt runs in a savepoint so a failure leaves nothing."""
    try:
        with conn.transaction():
            row, made = seal(conn, blobs, violation_id, evidence_s=evidence_s,
                             sealed_by=sealed_by)
    except (Conflict, NotFound):
        return None
    except Exception as e:  # the blob store unreachable, say: sealed when due instead
        log.warning("evidence of %s not sealed at review: %s", violation_id, e)
        return None
    return row if made else None


async def seal_due(conn: psycopg.AsyncConnection, closed_before_s: float, limit: int, *,
                   evidence_s: float, blobs: media.BlobStore,
                   horizon_s: float = 30 * 86400.0) -> int:
    """Seal ended violations that ended more than ``closed_before_s`` ago (use
    ``due_age_s(evidence_s)``: the window is complete then), whose row has been quiet as
    long, that ended within ``horizon_s`` and have no seal; at most ``limit``. Returns how
    many were sealed. For the dispatcher inside ``muckwatch run``; the caller commits."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_DUE, {"age": closed_before_s, "horizon": horizon_s,
                                 "limit": limit})
        due = [r["id"] for r in await cur.fetchall()]
        bundles = []
        now = datetime.now(UTC)
        for vid in due:  # cut every bundle before taking the lock: photos may be slow
            await cur.execute(_VIOLATION, {"id": vid})
            violation = await cur.fetchone()
            if violation is None or violation["state"] != "closed":
                continue
            window = window_of(violation, evidence_s, now)
            await cur.execute(_FIXES, {"device": violation["device_id"], "from": window[0],
                                       "to": window[1]})
            fixes = await cur.fetchall()
            rows = await media.media_for_violation(conn, vid)
            photos = [(r, await asyncio.to_thread(_read, blobs.get, r)) for r in rows]
            bundles.append(build(violation, window, fixes, photos))
        if not bundles:
            return 0
        made = 0
        async with conn.transaction():
            await cur.execute(_LOCK, {"key": _LOCK_KEY})
            await cur.execute(_LAST)
            last = await cur.fetchone()
            prev = last["seal"] if last else ""
            for b in bundles:
                await cur.execute(_SEAL_OF, {"id": b.violation["id"]})
                if await cur.fetchone() is not None:
                    continue
                await cur.execute(_INSERT, _new_seal(b, prev, SYSTEM, datetime.now(UTC)))
                row = await cur.fetchone()
                assert row is not None
                prev = row["seal"]
                made += 1
    return made


# --- verifying -----------------------------------------------------------------------------


def _previous(conn: psycopg.Connection, seq: int) -> str | None:
    row = conn.execute(_PREVIOUS, {"seq": seq}).fetchone()
    return None if row is None else row[0]


def verify(conn: psycopg.Connection, blobs: media.BlobStore, violation_id: str, *,
           scope: Scope | None = None) -> dict:
    """Recompute a sealed violation's bundle and compare: {"ok", "first_difference",
    "differences", "seal": {…, items_ok, hash_ok, link_ok}}. NotFound outside ``scope``;
    Conflict when it has no seal."""
    violation = _violation(conn, violation_id, scope or Scope())
    seal_row = get_seal(conn, violation_id)
    if violation is None and (seal_row is None or scope not in (None, Scope())):
        raise NotFound(f"no violation {violation_id!r}")
    if seal_row is None:
        raise Conflict(f"violation {violation_id} has no seal yet")
    return _verify(conn, blobs, violation, seal_row, _previous(conn, seal_row["seq"]))


def _verify(conn: psycopg.Connection, blobs: media.BlobStore, violation: dict | None,
            seal_row: dict, previous: str | None) -> dict:
    checks = check_seal(seal_row, previous)
    if violation is None:  # the violation row itself is gone: nothing else can be cut
        differences = [{"kind": "violation", "key": seal_row["violation_id"],
                        "change": "missing", "detail": "the violation is no longer there"}]
        head = None
    else:
        b = _bundle(conn, blobs, violation, (seal_row["window_from"], seal_row["window_to"]))
        differences = compare(seal_row["items"], b.items)
        head = b.head
    problems = [p for p, ok in (("its items do not chain to its head", checks["items_ok"]),
                                ("its hash does not match its fields", checks["hash_ok"]),
                                ("it does not name the seal before it", checks["link_ok"]))
                if not ok]
    return {"ok": not differences and not problems,
            "violation_id": seal_row["violation_id"],
            "first_difference": differences[0] if differences else None,
            "differences": differences[:MAX_DIFFERENCES], "difference_count": len(differences),
            "head": head, "seal": {**seal_json(seal_row), **checks, "problems": problems}}


def verify_chain(conn: psycopg.Connection) -> dict:
    """Walk every seal in seq order: each hashes to itself, its items chain to its head and
    it names the one before. {"ok", "seals", "head" (the last seal: keep it elsewhere, the
    only way a removed or rewritten last seal shows), "broken": [{seq, violation_id,
    problems}]}."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(_SEALS).fetchall()
    broken, previous = [], None
    for row in rows:
        checks = check_seal(row, previous)
        problems = [p for p, ok in (("its items do not chain to its head", checks["items_ok"]),
                                    ("its hash does not match its fields", checks["hash_ok"]),
                                    ("it does not name the seal before it (a seal is missing"
                                     " or was changed)", checks["link_ok"])) if not ok]
        if problems:
            broken.append({"seq": row["seq"], "violation_id": row["violation_id"],
                           "problems": problems})
        previous = row["seal"]
    return {"ok": not broken, "seals": len(rows), "head": previous, "broken": broken}


def verify_all(conn: psycopg.Connection, blobs: media.BlobStore) -> dict:
    """The chain of seals and every sealed bundle (``muckwatch evidence verify --all``)."""
    report = verify_chain(conn)
    failed = []
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(_SEALS).fetchall()
    previous = None
    for row in rows:
        violation = _violation(conn, row["violation_id"], Scope())
        result = _verify(conn, blobs, violation, row, previous)
        previous = row["seal"]
        if result["differences"]:
            failed.append(result)
    return {**report, "ok": report["ok"] and not failed, "bundles": failed}
