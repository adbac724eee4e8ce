"""Through the real broker, the real ingest process and the real database, as users do it."""

from __future__ import annotations

import json
import random
import signal
import time
from pathlib import Path

import orjson
import psycopg
import pytest

from domain.events import RULES
from domain.wire import fix_message
from simulator.faults import bad_messages

pytestmark = pytest.mark.e2e


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def rows(db, device: str):
    return db.execute(
        "SELECT extract(epoch FROM ts)::numeric * 1000, lon, lat, speed_kmh, heading_deg, lid,"
        " lift, load, load_kg, sats, hdop, seq, backfill, received_at"
        " FROM telemetry WHERE device_id = %s ORDER BY ts", (device,)).fetchall()


def test_a_fix_from_mosquitto_pub_lands_with_every_field(ingest, db, device_id, publish, poll):
    ts = now_ms() - 1000
    fix = {"v": 1, "ts": ts, "lon": 114.0579123, "lat": 22.5431456, "spd": 36.4, "hdg": 182,
           "lid": 0, "lift": 0, "load": 2, "load_kg": 17250, "sats": 14, "hdop": 0.7,
           "seq": 9001, "dev": device_id, "fw": "2.3.1"}
    sent_at = time.time()
    publish(f"muck/v1/{device_id}/telemetry", json.dumps(fix))
    got = poll(lambda: rows(db, device_id))
    assert len(got) == 1
    (t, lon, lat, spd, hdg, lid, lift, load, load_kg, sats, hdop, seq, backfill, rec) = got[0]
    assert int(t) == ts
    assert (lon, lat) == (114.0579123, 22.5431456)
    assert spd == pytest.approx(36.4) and hdg == 182
    assert (lid, lift, load, load_kg, sats, seq, backfill) == (0, 0, 2, 17250, 14, 9001, False)
    assert hdop == pytest.approx(0.7)
    assert abs(rec.timestamp() - sent_at) < 30


def test_a_backfill_batch_lands_in_device_time_order(ingest, db, device_id, publish, poll):
    base = now_ms() - 3_600_000
    fixes = [fix_message(base + i * 5000, 114.0 + i * 1e-4, 22.6, seq=i)
             for i in range(40)]
    shuffled = fixes[:]
    random.Random(4).shuffle(shuffled)
    publish(f"muck/v1/{device_id}/telemetry/batch", orjson.dumps(shuffled))
    assert poll(lambda: len(rows(db, device_id)) == 40)
    got = db.execute("SELECT extract(epoch FROM ts)::numeric * 1000, seq, backfill, lon"
                     " FROM telemetry WHERE device_id = %s ORDER BY ts", (device_id,)).fetchall()
    assert [int(r[0]) for r in got] == [f["ts"] for f in fixes]
    assert [r[1] for r in got] == list(range(40)), "each fix kept its own fields"
    assert [r[3] for r in got] == [f["lon"] for f in fixes]
    assert all(r[2] for r in got), "marked as backfill"


def test_every_rejection_lands_in_dead_letter_and_valid_neighbours_land(
        ingest, db, device_id, publish, poll):
    other = device_id + "x"
    ts = now_ms()
    bad = bad_messages(device_id, other, ts)
    # valid fixes interleaved with every kind of bad message, in one stream
    for i, b in enumerate(bad):
        publish(f"muck/v1/{device_id}/telemetry",
                json.dumps(fix_message(ts - 60_000 + i * 1000, 114.1, 22.6)))
        publish(b.topic, b.payload)
    expected = {}
    for b in bad:
        expected[b.reason] = expected.get(b.reason, 0) + 1

    def dead():
        return db.execute(
            "SELECT reason, count(*) FROM dead_letter WHERE device_id = %s OR topic = %s"
            " GROUP BY reason", (device_id, bad[-1].topic)).fetchall()

    got = poll(lambda: sum(n for _, n in dead()) >= len(bad) and dict(dead()))
    assert got == expected
    assert len(poll(lambda: len(rows(db, device_id)) == len(bad) and rows(db, device_id))) \
        == len(bad)
    detail = db.execute("SELECT detail, payload FROM dead_letter WHERE device_id = %s"
                        " AND reason = 'device_mismatch'", (device_id,)).fetchone()
    assert other in detail[0] and json.loads(detail[1])["dev"] == other
    assert not rows(db, other), "a spoofed fix never lands under the claimed device"


def test_a_duplicate_does_not_create_a_second_row(ingest, db, device_id, publish, poll):
    ts = now_ms() - 5000
    payload = json.dumps(fix_message(ts, 114.2, 22.7, seq=1))
    publish(f"muck/v1/{device_id}/telemetry", payload)
    publish(f"muck/v1/{device_id}/telemetry", payload)
    publish(f"muck/v1/{device_id}/telemetry/batch", f"[{payload}]")
    marker = json.dumps(fix_message(ts + 1000, 114.2, 22.7, seq=2))
    publish(f"muck/v1/{device_id}/telemetry", marker)
    got = poll(lambda: len(rows(db, device_id)) == 2 and rows(db, device_id))
    time.sleep(0.5)
    got = rows(db, device_id)
    assert [r[11] for r in got] == [1, 2]


def test_status_announcements_are_recorded(ingest, db, device_id, publish, poll):
    publish(f"muck/v1/{device_id}/status", "online", "-r")
    assert poll(lambda: db.execute("SELECT online FROM device_status WHERE device_id = %s",
                                   (device_id,)).fetchone()) == (True,)
    publish(f"muck/v1/{device_id}/status", "offline", "-r")
    assert poll(lambda: db.execute("SELECT online FROM device_status WHERE device_id = %s",
                                   (device_id,)).fetchone() == (False,))
    publish(f"muck/v1/{device_id}/status", "", "-r")  # clear the retained message


def test_sigterm_drains_and_a_restart_resumes_the_persistent_session(
        start_ingest, db, device_id, broker, poll):
    """Messages published while the ingest is down are delivered when it comes back."""
    from simulator.publish import MqttPublisher

    first = start_ingest("test-ingest-restart")
    pub = MqttPublisher("127.0.0.1", broker.port, client_id=f"pub-{device_id}").connect()
    base = now_ms() - 600_000
    for i in range(300):
        pub.telemetry(device_id, orjson.dumps(fix_message(base + i, 114.0, 22.5, seq=i)))
    pub.flush()
    code, out = first.stop(signal.SIGTERM)
    assert code == 0, "SIGTERM is a clean exit"
    stats = json.loads(out.strip().splitlines()[-1])
    assert stats["messages"] >= 1
    # while the ingest is down the broker queues for its persistent session
    for i in range(300, 600):
        pub.telemetry(device_id, orjson.dumps(fix_message(base + i, 114.0, 22.5, seq=i)))
    pub.flush()
    pub.close()
    start_ingest("test-ingest-restart")
    count = poll(lambda: db.execute("SELECT count(*) FROM telemetry WHERE device_id = %s",
                                    (device_id,)).fetchone()[0] == 600, timeout_s=30)
    assert count, "every fix published before, during and after the restart landed once"


def test_sighup_swaps_fences_without_stopping(start_ingest, city, tmp_path, db, device_id,
                                              publish, poll):
    import shutil

    bundle = tmp_path / "city"
    shutil.copytree(city.directory, bundle)
    proc = start_ingest("test-ingest-reload", MUCKWATCH_CITY_DIR=str(bundle))
    proc.proc.send_signal(signal.SIGHUP)
    assert poll(lambda: f"reloaded fences: {len(city.fences)} fences"
                in proc.log_path.read_text(), timeout_s=30)
    # a broken bundle is refused and the running fences stay
    (bundle / "fences.geojson").write_text('{"type": "FeatureCollection", "features": [1]}')
    proc.proc.send_signal(signal.SIGHUP)
    assert poll(lambda: "refused, keeping the current fences" in proc.log_path.read_text(),
                timeout_s=30)
    publish(f"muck/v1/{device_id}/telemetry",
            json.dumps(fix_message(now_ms(), 114.0, 22.6)))
    assert poll(lambda: rows(db, device_id)), "ingest kept running through both reloads"
    code, _ = proc.stop()
    assert code == 0


def test_violations_and_trips_land_live_with_the_replay_ids(ingest, db, broker, poll):
    """The shipped example track, published line by line with mosquitto_pub -l, gives the
    same OFF_ROUTE (same id) in the database as `muckwatch replay` prints."""
    import subprocess
    import sys
    from pathlib import Path

    example = Path(__file__).resolve().parents[1] / "data" / "examples" / "detour.jsonl"
    replayed = subprocess.run([sys.executable, "-m", "muckwatch", "replay", str(example)],
                              capture_output=True, text=True, timeout=120, check=True)
    expected = [json.loads(line) for line in replayed.stdout.splitlines()]
    device = expected[0]["device"]
    stamps = [json.loads(line)["ts"] for line in example.read_text().splitlines()]
    first_ts, last_ts = min(stamps), max(stamps)  # other tests may use this truck too
    with example.open("rb") as f:
        subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1",
                        "-t", f"muck/v1/{device}/telemetry", "-l"], stdin=f, check=True,
                       timeout=60)

    def landed():
        return db.execute("SELECT id, rule, state, extract(epoch FROM start_ts)::numeric * 1000,"
                          " plate, permit_id, evidence IS NOT NULL FROM violations"
                          " WHERE device_id = %s AND state = 'closed' AND evidence IS NOT NULL"
                          " AND start_ts BETWEEN to_timestamp(%s / 1000.0)"
                          " AND to_timestamp(%s / 1000.0)",
                          (device, first_ts, last_ts)).fetchall()

    rows = poll(landed, timeout_s=60)
    assert [(r[0], r[1], int(r[3])) for r in rows] == \
        [(v["id"], v["rule"], v["start_ts"]) for v in expected]
    assert rows[0][4] == expected[0]["plate"] and rows[0][5] == "P0001"
    track = db.execute("SELECT evidence FROM violations WHERE id = %s", (rows[0][0],)).fetchone()[0]
    start, end = expected[0]["start_ts"], expected[0]["end_ts"]
    assert track[0]["ts"] <= start - 115_000 and track[-1]["ts"] >= end + 115_000, \
        "evidence runs from 2 min before the start to 2 min after the end"
    assert [p["ts"] for p in track] == sorted(p["ts"] for p in track)
    def trips():  # the arrival comes from later fixes than the violation's evidence
        db.rollback()
        return db.execute("SELECT origin, destination, arrived_at IS NOT NULL FROM trips"
                          " WHERE device_id = %s AND left_at BETWEEN to_timestamp(%s / 1000.0)"
                          " AND to_timestamp(%s / 1000.0) AND arrived_at IS NOT NULL",
                          (device, first_ts, last_ts)).fetchall()
    assert poll(trips, timeout_s=60) == [("CS0020", "DS01", True)]


def test_simulate_live_through_the_broker_finds_every_offence(start_ingest, fresh_database,
                                                             broker, tmp_path, poll):
    """muckwatch simulate --mqtt: the live pipeline stores every fix once (blind-area batches
    included) and finds the same violations as replaying the same scenario offline; muckwatch
    accuracy --db scores what the database holds.

    Its own ingest and database: the sample city's trucks drive in other tests too, at later
    device times, and their saved rule state would make this scenario's fixes late data."""
    import os
    import subprocess
    import sys
    import uuid

    dsn = fresh_database()
    root = f"simlive{uuid.uuid4().hex[:6]}/v1"
    start_ingest(f"simlive-{root[7:13]}", MUCKWATCH_DSN=dsn, MUCKWATCH_MQTT_TOPIC_ROOT=root)
    db = psycopg.connect(dsn, autocommit=True)

    from domain.city import load_city
    from muckwatch.replay import replay
    from simulator.accuracy import read_truth, score
    from simulator.mixed import MixedOptions, MixedScenario

    start = 1_794_189_600_000  # 2026-11-09 10:00 +08: no other test uses these device times
    truth_path = tmp_path / "truth.jsonl"
    out = subprocess.run([sys.executable, "-m", "muckwatch", "simulate", "--trucks", "10",
                          "--duration", "20", "--start-ms", str(start), "--blind-share", "0.3",
                          "--mqtt", f"mqtt://127.0.0.1:{broker.port}", "--truth",
                          str(truth_path)], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "MUCKWATCH_MQTT_TOPIC_ROOT": root})
    assert out.returncode == 0, out.stderr
    assert "blind-area batches" in out.stderr and "near-misses" in out.stderr
    truth, _ = read_truth(truth_path)  # its receipts and summary left out
    city = load_city(Path(__file__).resolve().parents[1] / "data" / "sample-city")
    scenario = MixedScenario(city, MixedOptions(trucks=10, minutes=20, start_ms=start,
                                                blind_share=0.3))
    deliveries = list(scenario.deliveries())
    assert any(d.is_batch for d in deliveries)
    unique = {(d.device, f["ts"]) for d in deliveries
              for f in (d.payload if d.is_batch else [d.payload])}
    devices = sorted({d for d, _ in unique})
    # the manifest's TRIP_NOT_CLOSED legs begin two hours before the run: from the first fix
    first = min(ts for _, ts in unique)

    def stored():
        return db.execute("SELECT count(*) FROM telemetry WHERE device_id = ANY(%s) AND ts"
                          " BETWEEN to_timestamp(%s / 1000.0) AND to_timestamp(%s / 1000.0)",
                          (devices, first, start + 21 * 60_000)).fetchone()[0]

    assert poll(lambda: stored() == len(unique), timeout_s=60), (stored(), len(unique))
    offline, _ = replay(city, [[(d.topic(), d.body()) for d in deliveries]])
    expected = {v["id"] for v in offline}

    def live():
        return {r[0] for r in db.execute(
            "SELECT id FROM violations WHERE device_id = ANY(%s) AND state <> 'retracted'"
            " AND start_ts BETWEEN to_timestamp(%s / 1000.0) AND to_timestamp(%s / 1000.0)",
            (devices, first, start + 21 * 60_000))}

    got = poll(lambda: expected <= live() and live(), timeout_s=60)
    assert got == expected
    results = score(truth, offline)
    assert all(r.recall == 1.0 and r.precision == 1.0 for r in results.values())
    table = subprocess.run([sys.executable, "-m", "muckwatch", "accuracy", str(truth_path),
                            "--db", "--since", str(first), "--until",
                            str(start + 20 * 60_000)], capture_output=True, text=True,
                           timeout=60, env={**os.environ, "MUCKWATCH_DSN": dsn})
    assert table.returncode == 0, table.stderr
    per_rule = table.stdout.split("\n\n")[0].splitlines()[1:]
    rows = {line.split()[0]: line.split() for line in per_rule
            if not line.startswith(("all rules", "compliant truck-hours"))}
    assert set(rows) == set(RULES), rows  # every rule, the manifest's four too
    for rule, row in rows.items():
        # one offence per rule, and OFF_ROUTE also for each WRONG_DESTINATION's detour
        assert int(row[1]) >= 1 and row[2:6] == ["0", "0", "1.000", "1.000"], (rule, row)
        assert row[-3] == "0", (rule, row)  # no near-miss flagged (the fleet's noise included)
    db.close()
