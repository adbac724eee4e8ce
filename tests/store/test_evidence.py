"""Evidence bundles and seals on a real PostgreSQL: a violation with its track and a photo
(bytes in a local blob store) is sealed and verifies; then each way of changing it after the
fact — a fix moved, removed or slipped in, the photo's bytes or record swapped, the seal row
edited, a seal in the middle deleted — is named by verification. The hash chain itself is
checked over random bundles with hypothesis."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg.types.json import Jsonb

from store import evidence
from store.media import LocalBlobStore, sha256_hex
from store.review import Conflict, NotFound, Scope

EVIDENCE_S = 120.0
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4 + b"\xff\xd9"


def utc(ms: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)


class Scene:
    """One violation of one device in its own database: fixes every 20 s from 3 min before
    the start to 3 min after the end (the window is 2 min each side), one photo."""

    def __init__(self, conn: psycopg.Connection, blobs: LocalBlobStore, n: int,
                 ended_ago_s: float = 86400.0, open_: bool = False) -> None:
        self.conn, self.blobs = conn, blobs
        self.device = f"EVD{n:04d}"
        self.id = f"V-EVD-{n:04d}"
        now = datetime.now(UTC).replace(microsecond=0)
        self.end = now - timedelta(seconds=ended_ago_s)
        self.start = self.end - timedelta(minutes=4)
        conn.execute("INSERT INTO violations (id, rule, severity, device_id, plate, company_id,"
                     " permit_id, start_ts, end_ts, start_lon, start_lat, end_lon, end_lat,"
                     " peak, state) VALUES (%s, 'OFF_ROUTE', 2, %s, %s, 'C-EVD', 'P-1', %s,"
                     " %s, 114.05, 22.55, 114.06, 22.56, 830.5, %s)",
                     (self.id, self.device, f"粤B{n:05d}", self.start,
                      None if open_ else self.end, "open" if open_ else "closed"))
        self.fixes = []
        t = self.start - timedelta(minutes=3)
        k = 0
        while t <= self.end + timedelta(minutes=3):
            self.add_fix(t, 114.05 + k * 1e-4, 22.55 + k * 1e-4, seq=k,
                         alarm=32 if k == 7 else 0)
            t += timedelta(seconds=20)
            k += 1
        self.photo_bytes = JPEG + n.to_bytes(4, "big")
        self.sha = sha256_hex(self.photo_bytes)
        blobs.put(self.sha, "jpeg", self.photo_bytes)
        self.photo_id = conn.execute(
            "INSERT INTO media (device_id, terminal_id, sha256, bytes, media_type, media_format,"
            " event, channel, taken_at, lon, lat, storage, command_id, violation_id) VALUES"
            " (%s, 7, %s, %s, 'image', 'jpeg', 0, 1, %s, 114.05, 22.55, 'local', 'cmd-1', %s)"
            " RETURNING id", (self.device, self.sha, len(self.photo_bytes),
                              self.start + timedelta(seconds=30), self.id)).fetchone()[0]

    def add_fix(self, ts: datetime, lon: float, lat: float, seq: int = 0,
                alarm: int = 0) -> None:
        self.conn.execute(
            "INSERT INTO telemetry (device_id, ts, lon, lat, speed_kmh, heading_deg, lid, lift,"
            " load, load_kg, alarm, sats, hdop, seq, received_at) VALUES (%s, %s, %s, %s, 31.5,"
            " 90, 1, 0, 2, 15000, %s, 12, 0.9, %s, %s)",
            (self.device, ts, lon, lat, alarm, seq, ts + timedelta(seconds=1)))
        self.fixes.append(ts)

    def in_window(self) -> list[datetime]:
        pad = timedelta(seconds=EVIDENCE_S)
        return [t for t in self.fixes if self.start - pad <= t <= self.end + pad]

    def seal(self, by: str = "officer-1") -> tuple[dict, bool]:
        return evidence.seal(self.conn, self.blobs, self.id, evidence_s=EVIDENCE_S,
                             sealed_by=by)

    def verify(self) -> dict:
        return evidence.verify(self.conn, self.blobs, self.id)


@pytest.fixture
def conn(fresh_database):
    with psycopg.connect(fresh_database(), autocommit=True) as c:
        yield c


@pytest.fixture
def blobs(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "media")


def key(ts: datetime) -> str:
    return evidence.key_of_ts(evidence.ms(ts))  # type: ignore[arg-type]


def test_sealed_bundle_verifies_and_each_change_after_the_fact_is_named(conn, blobs):
    s = Scene(conn, blobs, 1)
    b, seal = evidence.bundle(conn, blobs, s.id, evidence_s=EVIDENCE_S)
    assert seal is None and b.state == "closed"
    assert [f["ts"] for f in b.track] == [evidence.ms(t) for t in s.in_window()]
    assert len(s.in_window()) < len(s.fixes)  # fixes outside the window stay out
    assert [i["kind"] for i in b.items] == ["violation"] + ["fix"] * len(b.track) + ["photo"]
    assert b.photos[0]["content_sha256"] == s.sha
    assert [f["alarm"] for f in b.track if f["seq"] == 7] == [32]
    # every item's hash is the hash of its object, the head the chain of them
    for obj, item in zip(b.objects(), b.items, strict=True):
        assert evidence.item_hash(obj) == item["sha256"]
    assert b.head == evidence.chain(s.id, [i["sha256"] for i in b.items])

    row, made = s.seal()
    assert made and row["head"] == b.head and row["prev_seal"] == ""
    again, made = s.seal(by="someone-else")
    assert not made and again["seal"] == row["seal"] and again["sealed_by"] == "officer-1"
    ok = s.verify()
    assert ok["ok"] and ok["first_difference"] is None and ok["head"] == row["head"]
    assert ok["seal"]["items_ok"] and ok["seal"]["hash_ok"] and ok["seal"]["link_ok"]

    inside = s.in_window()
    target = inside[5]

    def first() -> dict:
        result = s.verify()
        assert not result["ok"]
        return result["first_difference"]

    # a fix moved
    conn.execute("UPDATE telemetry SET lon = lon + 0.001 WHERE device_id = %s AND ts = %s",
                 (s.device, target))
    assert first() == {"kind": "fix", "key": key(target), "change": "changed",
                       "detail": "the fix differs from the sealed one"}
    conn.execute("UPDATE telemetry SET lon = lon - 0.001 WHERE device_id = %s AND ts = %s",
                 (s.device, target))
    assert s.verify()["ok"]  # float round trip: the same value back is the same item
    conn.execute("SET TimeZone = 'Asia/Shanghai'")  # the API's sessions speak the city's zone
    assert s.verify()["ok"]
    conn.execute("RESET TimeZone")

    # a sensor reading changed (the sensor timeline is the track)
    conn.execute("UPDATE telemetry SET lid = 0 WHERE device_id = %s AND ts = %s",
                 (s.device, inside[2]))
    assert first()["key"] == key(inside[2])
    conn.execute("UPDATE telemetry SET lid = 1 WHERE device_id = %s AND ts = %s",
                 (s.device, inside[2]))

    # a fix removed
    saved = conn.execute("SELECT * FROM telemetry WHERE device_id = %s AND ts = %s",
                         (s.device, target)).fetchone()
    conn.execute("DELETE FROM telemetry WHERE device_id = %s AND ts = %s", (s.device, target))
    assert first() == {"kind": "fix", "key": key(target), "change": "missing",
                       "detail": "a sealed fix is no longer there"}
    columns = [d.name for d in conn.execute("SELECT * FROM telemetry LIMIT 0").description]
    conn.execute(f"INSERT INTO telemetry ({', '.join(columns)}) VALUES "
                 f"({', '.join(['%s'] * len(columns))})", saved)
    assert s.verify()["ok"]

    # a fix slipped in between two sealed ones
    extra = inside[3] + timedelta(seconds=7)
    s.add_fix(extra, 114.1, 22.6)
    result = s.verify()
    assert result["first_difference"] == {"kind": "fix", "key": key(extra), "change": "added",
                                          "detail": "a fix that was not sealed is there now"}
    assert result["difference_count"] == 1
    conn.execute("DELETE FROM telemetry WHERE device_id = %s AND ts = %s", (s.device, extra))
    # … while one outside the window changes nothing
    s.add_fix(s.end + timedelta(seconds=EVIDENCE_S + 1), 114.1, 22.6)
    assert s.verify()["ok"]

    # the photo's bytes swapped in the blob store (the row still names the old hash)
    path = blobs.path(s.sha, "jpeg")
    path.write_bytes(b"\xff\xd8 another picture \xff\xd9")
    assert first() == {"kind": "photo", "key": str(s.photo_id), "change": "changed",
                       "detail": "its bytes differ from the sealed ones"}
    path.unlink()
    assert first()["detail"] == "its bytes are gone from the blob store"
    path.write_bytes(s.photo_bytes)
    assert s.verify()["ok"]

    # the photo's record edited
    conn.execute("UPDATE media SET lon = 114.2 WHERE id = %s", (s.photo_id,))
    assert first() == {"kind": "photo", "key": str(s.photo_id), "change": "changed",
                       "detail": "its record changed"}
    conn.execute("UPDATE media SET lon = 114.05 WHERE id = %s", (s.photo_id,))

    # the violation itself edited; its review state is not evidence
    conn.execute("UPDATE violations SET peak = 200 WHERE id = %s", (s.id,))
    assert first() == {"kind": "violation", "key": s.id, "change": "changed",
                       "detail": "the violation differs from the sealed one"}
    conn.execute("UPDATE violations SET peak = 830.5 WHERE id = %s", (s.id,))
    conn.execute("UPDATE violations SET review = 'confirmed', reviewed_by = 'o' WHERE id = %s",
                 (s.id,))
    assert s.verify()["ok"]

    # several changes: all listed, in chain order
    conn.execute("DELETE FROM telemetry WHERE device_id = %s AND ts = ANY(%s)",
                 (s.device, [inside[1], inside[4]]))
    result = s.verify()
    assert [d["key"] for d in result["differences"]] == [key(inside[1]), key(inside[4])]


def test_edited_seal_rows_and_a_deleted_middle_seal_show(conn, blobs):
    scenes = [Scene(conn, blobs, n) for n in range(10, 14)]
    rows = [s.seal()[0] for s in scenes]
    assert [r["prev_seal"] for r in rows] == ["", *(r["seal"] for r in rows[:-1])]
    chain = evidence.verify_chain(conn)
    assert chain == {"ok": True, "seals": 4, "head": rows[-1]["seal"], "broken": []}

    # the table refuses changes …
    for statement in ("UPDATE evidence_seals SET head = 'x'", "DELETE FROM evidence_seals",
                      "TRUNCATE evidence_seals"):
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute(statement)
    # … but whoever owns it can switch that off: the hashes still tell
    conn.execute("ALTER TABLE evidence_seals DISABLE TRIGGER USER")
    second = scenes[1]

    conn.execute("UPDATE evidence_seals SET sealed_at = sealed_at + interval '1 hour'"
                 " WHERE violation_id = %s", (second.id,))
    result = second.verify()
    assert not result["ok"] and result["first_difference"] is None
    assert result["seal"]["problems"] == ["its hash does not match its fields"]
    assert evidence.verify_chain(conn)["broken"] == [
        {"seq": rows[1]["seq"], "violation_id": second.id,
         "problems": ["its hash does not match its fields"]}]
    conn.execute("UPDATE evidence_seals SET sealed_at = %s WHERE violation_id = %s",
                 (rows[1]["sealed_at"], second.id))
    assert evidence.verify_chain(conn)["ok"]

    # a sealed item's hash rewritten to match a change: the items no longer chain to the head
    conn.execute("UPDATE telemetry SET lat = lat + 0.01 WHERE device_id = %s AND ts = %s",
                 (second.device, second.in_window()[0]))
    forged = evidence.bundle(conn, blobs, second.id, evidence_s=EVIDENCE_S)[0].items
    conn.execute("UPDATE evidence_seals SET items = %s WHERE violation_id = %s",
                 (Jsonb(forged), second.id))
    result = second.verify()
    assert result["differences"] == [] and not result["ok"]
    assert result["seal"]["problems"] == ["its items do not chain to its head"]
    # … and rewriting head and seal too breaks the link of the seal after it
    head = evidence.chain(second.id, [i["sha256"] for i in forged])
    seal = evidence.seal_hash(rows[1]["prev_seal"], second.id, head, rows[1]["sealed_at"],
                              rows[1]["sealed_by"])
    conn.execute("UPDATE evidence_seals SET head = %s, seal = %s WHERE violation_id = %s",
                 (head, seal, second.id))
    assert second.verify()["ok"]  # the forged seal on its own looks right …
    report = evidence.verify_chain(conn)
    assert report["broken"] == [{"seq": rows[2]["seq"], "violation_id": scenes[2].id,
                                 "problems": ["it does not name the seal before it (a seal is "
                                              "missing or was changed)"]}]
    assert not scenes[2].verify()["seal"]["link_ok"]
    conn.execute("UPDATE evidence_seals SET items = %s, head = %s, seal = %s"
                 " WHERE violation_id = %s", (Jsonb(rows[1]["items"]), rows[1]["head"],
                                              rows[1]["seal"], second.id))
    conn.execute("UPDATE telemetry SET lat = lat - 0.01 WHERE device_id = %s AND ts = %s",
                 (second.device, second.in_window()[0]))
    assert evidence.verify_chain(conn)["ok"] and second.verify()["ok"]

    # a seal deleted from the middle of the chain
    conn.execute("DELETE FROM evidence_seals WHERE violation_id = %s", (second.id,))
    report = evidence.verify_chain(conn)
    assert not report["ok"] and report["seals"] == 3
    assert [b["violation_id"] for b in report["broken"]] == [scenes[2].id]
    assert scenes[2].verify()["seal"]["problems"] == ["it does not name the seal before it"]
    with pytest.raises(Conflict, match="no seal"):
        second.verify()

    # verify --all: the chain and every sealed bundle
    conn.execute("UPDATE media SET taken_at = taken_at + interval '1 s' WHERE id = %s",
                 (scenes[3].photo_id,))
    everything = evidence.verify_all(conn, blobs)
    assert not everything["ok"]
    assert [r["violation_id"] for r in everything["bundles"]] == [scenes[3].id]
    assert everything["bundles"][0]["first_difference"]["kind"] == "photo"


def test_only_ended_violations_are_sealed_and_scope_holds(conn, blobs):
    opened = Scene(conn, blobs, 20, open_=True)
    with pytest.raises(Conflict, match="still open"):
        opened.seal()
    b, seal = evidence.bundle(conn, blobs, opened.id, evidence_s=EVIDENCE_S)
    assert seal is None and b.state == "open"  # shown while open, up to now + the window
    assert b.violation["window"][1] > evidence.ms(datetime.now(UTC))  # type: ignore[operator]
    recent = Scene(conn, blobs, 21, ended_ago_s=60)
    with pytest.raises(Conflict, match="may still fill"):
        recent.seal()
    assert evidence.seal_if_due(conn, blobs, recent.id, evidence_s=EVIDENCE_S,
                                sealed_by="x") is None
    retracted = Scene(conn, blobs, 22)
    conn.execute("UPDATE violations SET state = 'retracted' WHERE id = %s", (retracted.id,))
    with pytest.raises(Conflict, match="retracted"):
        retracted.seal()
    ended = Scene(conn, blobs, 23)
    for scope in (Scope(company="someone else"), Scope(districts=("D99",))):
        with pytest.raises(NotFound):
            evidence.seal(conn, blobs, ended.id, evidence_s=EVIDENCE_S, sealed_by="x",
                          scope=scope)
        with pytest.raises(NotFound):
            evidence.bundle(conn, blobs, ended.id, evidence_s=EVIDENCE_S, scope=scope)
    assert evidence.seal(conn, blobs, ended.id, evidence_s=EVIDENCE_S, sealed_by="x",
                         scope=Scope(company="C-EVD"))[1]
    with pytest.raises(NotFound):
        evidence.verify(conn, blobs, ended.id, scope=Scope(company="someone else"))
    with pytest.raises(NotFound):
        evidence.bundle(conn, blobs, "NOPE", evidence_s=EVIDENCE_S)
    # the sealed window is kept: another evidence_s later is not a change
    b, seal = evidence.bundle(conn, blobs, ended.id, evidence_s=EVIDENCE_S * 5)
    assert seal is not None and b.head == seal["head"]
    assert evidence.seal_if_due(conn, blobs, ended.id, evidence_s=EVIDENCE_S,
                                sealed_by="x") is None  # sealed already: nothing new


def test_seal_due_seals_ended_quiet_violations_once(conn, blobs):
    due = [Scene(conn, blobs, n) for n in (30, 31)]
    Scene(conn, blobs, 32, open_=True)
    Scene(conn, blobs, 33, ended_ago_s=60)
    busy = Scene(conn, blobs, 34)  # ended long ago (backfilled) but its row just changed
    conn.execute("UPDATE violations SET updated_at = now() WHERE id = %s", (busy.id,))
    conn.execute("UPDATE violations SET updated_at = now() - interval '1 hour'"
                 " WHERE id <> %s", (busy.id,))
    manual = due[0].seal()[0]

    async def run() -> int:
        async with await psycopg.AsyncConnection.connect(conn.info.dsn) as aconn:
            made = await evidence.seal_due(aconn, evidence.due_age_s(EVIDENCE_S), 100,
                                           evidence_s=EVIDENCE_S, blobs=blobs)
            await aconn.commit()
            return made

    assert asyncio.run(run()) == 1
    assert asyncio.run(run()) == 0
    sealed = conn.execute("SELECT violation_id, sealed_by, prev_seal FROM evidence_seals"
                          " ORDER BY seq").fetchall()
    assert sealed == [(due[0].id, "officer-1", ""), (due[1].id, "system", manual["seal"])]
    assert due[1].verify()["ok"] and evidence.verify_chain(conn)["ok"]


def test_concurrent_sealers_keep_one_linear_chain(conn, blobs):
    scenes = [Scene(conn, blobs, n) for n in range(40, 48)]
    dsn = conn.info.dsn
    errors: list[BaseException] = []

    def work(s: Scene) -> None:
        try:
            with psycopg.connect(dsn) as c:
                for target in (s, scenes[0]):  # everyone also races for the first one
                    evidence.seal(c, blobs, target.id, evidence_s=EVIDENCE_S, sealed_by="t")
                    c.commit()
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(s,)) for s in scenes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    report = evidence.verify_chain(conn)
    assert report["ok"] and report["seals"] == len(scenes)


# --- the chain over random bundles (pure) ----------------------------------------------------

VIOLATION = {"id": "V-H", "rule": "OFF_ROUTE", "severity": 2, "device_id": "H1",
             "plate": "粤B00001", "company_id": "C", "permit_id": None, "fence_id": None,
             "start_ts": utc(1_800_000_000_000), "end_ts": utc(1_800_000_300_000),
             "start_lon": 114.0, "start_lat": 22.5, "end_lon": None, "end_lat": None,
             "peak": 12.5, "state": "closed"}
WINDOW = (utc(1_799_999_880_000), utc(1_800_000_420_000))

fix_rows = st.fixed_dictionaries({
    "ts": st.integers(1_799_999_880_000, 1_800_000_420_000).map(utc),
    "lon": st.floats(73, 135, allow_nan=False), "lat": st.floats(18, 54, allow_nan=False),
    "speed_kmh": st.none() | st.floats(0, 120, width=32),
    "heading_deg": st.none() | st.floats(0, 359, width=32),
    "lid": st.sampled_from([None, 0, 1]), "lift": st.sampled_from([None, 0, 1]),
    "load": st.sampled_from([None, 0, 1, 2]), "load_kg": st.none() | st.floats(0, 40000),
    "alarm": st.none() | st.integers(0, 2**32 - 1), "sats": st.none() | st.integers(0, 40),
    "hdop": st.none() | st.floats(0, 50), "seq": st.none() | st.integers(0, 2**40),
    "backfill": st.booleans(),
    "received_at": st.integers(1_800_000_000_000, 1_900_000_000_000).map(utc)})
photo_rows = st.tuples(st.integers(1, 10**6), st.integers(1_799_999_880_000, 1_800_000_420_000),
                       st.binary(min_size=0, max_size=64))


def _rows(fixes, photos):
    fixes = sorted({f["ts"]: f for f in fixes}.values(), key=lambda f: f["ts"])
    shots = [({"id": pid, "device_id": "H1", "sha256": sha256_hex(data), "bytes": len(data),
               "media_format": "jpeg", "taken_at": utc(taken).isoformat()}, data)
             for pid, taken, data in {p[0]: p for p in photos}.values()]
    return fixes, shots


@settings(max_examples=150, deadline=None)
@given(st.lists(fix_rows, max_size=25), st.lists(photo_rows, max_size=4), st.data())
def test_any_single_change_is_detected_and_nothing_else(fixes, photos, data):
    fixes, shots = _rows(fixes, photos)
    sealed = evidence.build(VIOLATION, WINDOW, fixes, shots)
    same = evidence.build(dict(VIOLATION), WINDOW, [dict(f) for f in fixes], list(shots))
    assert same.head == sealed.head and evidence.compare(sealed.items, same.items) == []

    choices = ["violation", "add_fix"] + (["edit_fix", "drop_fix"] if fixes else []) + \
        (["swap_bytes", "drop_photo", "edit_photo"] if shots else [])
    how = data.draw(st.sampled_from(choices))
    violation, fixes2, shots2 = dict(VIOLATION), [dict(f) for f in fixes], list(shots)
    if how == "violation":
        violation["peak"] = violation["peak"] + data.draw(st.floats(0.001, 100))
        expect = ("violation", "V-H", "changed")
    elif how == "add_fix":
        new = data.draw(fix_rows.filter(lambda f: f["ts"] not in {g["ts"] for g in fixes}))
        fixes2 = sorted([*fixes2, new], key=lambda f: f["ts"])
        expect = ("fix", key(new["ts"]), "added")
    elif how in ("edit_fix", "drop_fix"):
        i = data.draw(st.integers(0, len(fixes2) - 1))
        expect = ("fix", key(fixes2[i]["ts"]), "changed" if how == "edit_fix" else "missing")
        if how == "drop_fix":
            del fixes2[i]
        else:
            column = data.draw(st.sampled_from(["lon", "lat", "lid", "alarm", "backfill"]))
            old = fixes2[i][column]
            fixes2[i][column] = {"lon": lambda v: v + 1e-6, "lat": lambda v: v - 1e-6,
                                 "lid": lambda v: 1 if v != 1 else 0,
                                 "alarm": lambda v: (v or 0) ^ 16,
                                 "backfill": lambda v: not v}[column](old)
    else:
        i = data.draw(st.integers(0, len(shots2) - 1))
        row, content = shots2[i]
        expect = ("photo", str(row["id"]), "missing" if how == "drop_photo" else "changed")
        if how == "drop_photo":
            del shots2[i]
        elif how == "swap_bytes":
            shots2[i] = (row, content + b"\x00")
        else:
            shots2[i] = ({**row, "channel": 2}, content)
    changed = evidence.build(violation, WINDOW, fixes2, shots2)
    differences = evidence.compare(sealed.items, changed.items)
    assert [(d["kind"], d["key"], d["change"]) for d in differences] == [expect]
    assert changed.head != sealed.head


def test_cli_seals_shows_and_exits_1_on_a_change(fresh_database, tmp_path):
    import os
    import subprocess
    import sys

    dsn = fresh_database()
    blobs = LocalBlobStore(tmp_path / "media")
    with psycopg.connect(dsn, autocommit=True) as c:
        s = Scene(c, blobs, 50)
    env = {**os.environ, "MUCKWATCH_DATABASE_DSN": dsn,
           "MUCKWATCH_MEDIA_DIR": str(tmp_path / "media")}
    env.pop("MUCKWATCH_CONFIG", None)

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "muckwatch", "evidence", *args], env=env,
                              capture_output=True, text=True, timeout=60)

    done = cli("seal", s.id, "--by", "officer-cli")
    assert done.returncode == 0, done.stderr
    assert '"created": true' in done.stdout
    done = cli("verify", s.id)
    assert done.returncode == 0 and done.stdout.startswith("ok:"), done.stdout + done.stderr
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("DELETE FROM telemetry WHERE device_id = %s AND ts = %s",
                  (s.device, s.in_window()[2]))
        audit = c.execute("SELECT actor, action FROM audit_log WHERE resource = 'evidence'"
                          " AND resource_id = %s", (s.id,)).fetchall()
    assert audit == [("officer-cli", "evidence.seal")]
    done = cli("verify", "--all")
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"fix {key(s.in_window()[2])} missing" in done.stdout
    done = cli("show", s.id)
    assert done.returncode == 0 and "sealed #1 by officer-cli" in done.stdout
    assert cli("seal", "NOPE").returncode == 2
