"""Hostile input through the real broker and ingest: 100,000 generated payloads — mutations
of valid fixes (truncated, wrong types, huge numbers, NaN, deep nesting, invalid UTF-8, 1 MB
strings, wrong topic levels, missing fields, wrong versions) and random JSON values —
interleaved with valid fixes. Every invalid one lands in dead_letter with a reason, every
valid one in telemetry, and the ingest never stops."""

from __future__ import annotations

import json
import random
import time
import uuid

import pytest

from domain.wire import fix_message

pytestmark = pytest.mark.e2e
TOTAL = 100_000
VALID_SHARE = 0.2
HUGE = 20  # 1 MB payloads among them (the broker's packet limit is 5 MiB, for photos)


def random_json(rng: random.Random, depth: int = 0):
    kind = rng.randrange(7 if depth < 4 else 4)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.choice([rng.randint(-2**70, 2**70), rng.random() * 1e300, -0.0])
    if kind == 2:
        return "".join(chr(rng.randrange(32, 0x2FFF)) for _ in range(rng.randrange(12)))
    if kind == 3:
        return rng.randrange(10)
    if kind == 4:
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(["v", "ts", "lon", "x", "设备", ""]) + str(rng.randrange(3)):
            random_json(rng, depth + 1) for _ in range(rng.randrange(4))}


def generate(root: str, now_ms: int, seed: int = 7):
    """(topic, payload, valid) triples; each invalid one is invalid by construction."""
    rng = random.Random(seed)
    out = []
    huge_left = HUGE
    for k in range(TOTAL):
        device = f"F{k:06d}"
        topic = f"{root}/{device}/telemetry"
        fix = fix_message(now_ms - rng.randrange(1, 3_600_000), 114 + rng.random(),
                          22.5 + rng.random() / 2, spd=rng.random() * 60, lid=0, load=2)
        if rng.random() < VALID_SHARE:
            out.append((topic, json.dumps(fix).encode(), True))
            continue
        body = json.dumps(fix)
        kind = rng.randrange(11) if huge_left else rng.randrange(10)
        if kind == 0:
            payload = body[:rng.randrange(1, len(body) - 1)].encode()  # truncated
        elif kind == 1:
            payload = json.dumps({**fix, rng.choice(["lon", "lat", "ts", "spd"]):
                                  rng.choice(["x", [], {}, True])}).encode()  # wrong type
        elif kind == 2:
            payload = json.dumps({**fix, rng.choice(["lon", "lat", "spd"]):
                                  rng.choice([1e308, -1e308, 10**40])}).encode()  # huge
        elif kind == 3:
            payload = body.replace(f'"lon": {fix["lon"]}', '"lon": NaN').encode()
        elif kind == 4:
            depth = rng.randrange(500, 100_000)
            payload = b"[" * depth + b"]" * depth  # deep nesting
        elif kind == 5:
            payload = body[:-1].encode() + b', "note": "\xff\xfe\xc3"}'  # invalid UTF-8
        elif kind == 6:
            payload = body.encode()
            topic = rng.choice([f"{root}/{device}/telemetry/extra/levels", f"{root}//telemetry",
                                f"{root}/{device}", f"{root}/{device}/status/x"])
        elif kind == 7:
            payload = json.dumps({k: v for k, v in fix.items() if k != "lat"}).encode()
        elif kind == 8:
            payload = json.dumps({**fix, "v": rng.choice([0, 2, "1", None])}).encode()
        elif kind == 9:
            value = random_json(rng)
            payload = json.dumps(value, ensure_ascii=False).encode() if rng.random() < 0.8 \
                else rng.randbytes(rng.randrange(1, 200))
        else:
            huge_left -= 1
            payload = json.dumps({**fix, "note": "x" * 1_000_000}).encode()
        out.append((topic, payload, False))
    return out


def test_hostile_payloads_through_broker_and_ingest(broker, start_ingest, db, poll, capsys):
    from simulator.publish import MqttPublisher

    root = f"fuzz{uuid.uuid4().hex[:6]}/v1"
    ingest = start_ingest(f"fuzz-ingest-{root[4:10]}", MUCKWATCH_MQTT_TOPIC_ROOT=root)
    messages = generate(root, time.time_ns() // 1_000_000)
    valid = sum(1 for m in messages if m[2])
    publisher = MqttPublisher("127.0.0.1", broker.port, client_id=f"fuzz-{root[4:10]}")
    publisher.connect()
    t0 = time.monotonic()
    for n, (topic, payload, _) in enumerate(messages):
        publisher.publish(topic, payload)
        if n % 1000 == 0:
            while publisher.unacked > 5_000:
                time.sleep(0.002)
    publisher.flush(timeout_s=120)
    publisher.close()
    rate = len(messages) / (time.monotonic() - t0)

    def counts():
        db.rollback()
        dead = db.execute("SELECT count(*), count(*) FILTER (WHERE reason = '' OR detail = '')"
                          " FROM dead_letter WHERE topic LIKE %s", (root + "/%",)).fetchone()
        stored = db.execute("SELECT count(*) FROM telemetry t JOIN (SELECT unnest(%s::text[])"
                            " AS d) v ON t.device_id = v.d",
                            ([m[0].split("/")[2] for m in messages if m[2]],)).fetchone()[0]
        return dead[0], dead[1], stored
    assert poll(lambda: sum(counts()[::2]) >= TOTAL, timeout_s=240), counts()
    dead, without_reason, stored = counts()
    assert ingest.proc.poll() is None, "the ingest survived"
    assert stored == valid, "every valid fix stored"
    assert dead == TOTAL - valid and without_reason == 0, "every invalid one dead-lettered"
    db.rollback()
    reasons = dict(db.execute("SELECT reason, count(*) FROM dead_letter WHERE topic LIKE %s"
                              " GROUP BY 1 ORDER BY 2 DESC", (root + "/%",)).fetchall())
    with capsys.disabled():
        print(f"\n[fuzz] {TOTAL} messages at {rate:,.0f} msg/s: {valid} valid stored, "
              f"{dead} dead-lettered by reason {reasons}; the ingest never stopped")
