"""From MQTT to a signed webhook: fixes published with mosquitto_pub complete an
UNAUTHORISED_DUMP in the running ingest; the outbox row is written with the violation and the
delivery worker POSTs it, signed, to a real receiver. The receiver in docs/alerts.md verifies
real deliveries; ``muckwatch alerts verify`` refuses tampered and stale ones."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alerts.signing import headers as signed
from alerts.subscriptions import Subscription, save

pytestmark = pytest.mark.e2e
DOC = Path(__file__).resolve().parents[2] / "docs" / "alerts.md"


def test_a_dump_published_to_mqtt_produces_a_signed_webhook(ingest, db, tag, city, receiver,
                                                            worker, publish, poll):
    from simulator.scenarios import TruckTrack

    r = receiver()
    save(db, Subscription.from_config({"id": f"{tag}-dumps", "url": r.url, "secret": r.secret,
                                       "rules": ["UNAUTHORISED_DUMP"]}))
    db.commit()
    time.sleep(1.5)  # the ingest re-reads subscriptions every 0.5 s (tests' setting)
    device = f"{tag}DUMP"
    now = time.time_ns() // 1_000_000
    t = TruckTrack(city, device, now - 60_000, interval_s=5)
    route = t.route("P0001")
    p = route.interpolate(0.5, normalized=True)
    t.go_to(p.x, p.y)
    t.dwell(30, lid=1, lift=1, load=2)  # tipping on the roadside
    t.dwell(20, lid=0, lift=0, load=0)
    for fix in t.fixes:
        publish(f"muck/v1/{device}/telemetry", json.dumps(fix))
    worker()

    def got():
        return [q for q in r.requests if q["valid"]
                and q["body"]["violation"]["rule"] == "UNAUTHORISED_DUMP"
                and q["body"]["vehicle"]["device"] == device]
    assert poll(lambda: {q["body"]["type"] for q in got()} >= {"violation.opened",
                                                                 "violation.closed"},
                timeout_s=60), (db.rollback(), db.execute(
                    "SELECT id, state FROM violations WHERE device_id = %s", (device,)
                ).fetchall(), db.execute("SELECT subscription_id, state, last_error FROM"
                                         " alert_outbox WHERE subscription_id LIKE %s",
                                         (tag + "%",)).fetchall(),
                db.execute("SELECT count(*) FROM telemetry WHERE device_id = %s",
                           (device,)).fetchone(), ingest.log_path.read_text()[-1500:])
    opened = next(q["body"] for q in got() if q["body"]["type"] == "violation.opened")
    assert opened["violation"]["start"]["ts"] == t.fixes[0]["ts"]
    assert opened["violation"]["severity"] == 3 and opened["violation"]["start"]["gcj02"]
    assert opened["evidence"]["track"], "an excerpt of the track comes along"
    db.rollback()
    stored = db.execute("SELECT state FROM violations WHERE device_id = %s",
                        (device,)).fetchone()
    assert stored == ("closed",)


def test_the_documented_receiver_verifies_real_deliveries(db, dsn, tag, worker, poll,
                                                          run_dir):
    code = re.search(r"## A receiver in 15 lines.*?```python\n(.*?)```", DOC.read_text(),
                     re.S).group(1)
    assert len(code.strip().splitlines()) <= 15
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    from alerts.signing import new_secret

    secret = new_secret()
    script = run_dir / f"receiver-{tag}.py"
    script.write_text(code.replace("8080", str(port))
                      .replace("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", secret))
    proc = subprocess.Popen([sys.executable, "-u", str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        save(db, Subscription.from_config({"id": f"{tag}-doc",
                                           "url": f"http://127.0.0.1:{port}/", "secret": secret}))
        db.commit()
        import asyncio

        from alerts.outbox import AlertRouter
        from alerts.subscriptions import load_from_db
        from domain.batches import DeviceStatus, FixBatch, Rejects
        from domain.events import Phase, ViolationEvent
        from store.database import Store

        subs = [s for s in load_from_db(db) if s.id == f"{tag}-doc"]
        events = [ViolationEvent(id=f"{tag}-v{k}", phase=Phase.OPENED, rule="OFF_ROUTE",
                                 device_id=f"{tag}dev", start_ts=1_795_053_600_000 + k,
                                 end_ts=None, start_lon=114.05, start_lat=22.55, severity=2)
                  for k in range(3)]

        async def go():
            store = Store(dsn)
            await store.write(FixBatch.empty(), Rejects(), DeviceStatus(), events,
                              AlertRouter(subs).route(events))
            await store.close()
        asyncio.run(go())
        worker()
        lines: list[str] = []
        deadline = time.monotonic() + 30
        while len(lines) < 3 and time.monotonic() < deadline:
            lines.append(proc.stdout.readline().strip())
        assert sorted(lines) == [f"violation.opened {tag}-v{k}" for k in range(3)]
        db.rollback()
        assert poll(lambda: db.rollback() or db.execute(
            "SELECT count(*) FROM alert_outbox WHERE subscription_id = %s AND state ="
            " 'delivered'", (f"{tag}-doc",)).fetchone()[0] == 3, timeout_s=20)
    finally:
        proc.kill()
        proc.wait()
        db.rollback()
        db.execute("DELETE FROM violations WHERE device_id = %s", (f"{tag}dev",))
        db.commit()


def test_verify_command_accepts_authentic_and_refuses_forged_deliveries(tmp_path):
    from alerts.signing import new_secret

    secret = new_secret()
    body = b'{"type": "violation.opened"}'
    h = signed(secret, "msg_1", body)
    (tmp_path / "body.json").write_bytes(body)
    (tmp_path / "forged.json").write_bytes(body.replace(b"opened", b"closed"))

    def verify(*extra, body_file="body.json", timestamp=h["webhook-timestamp"]):
        return subprocess.run(
            [sys.executable, "-m", "muckwatch", "alerts", "verify", "--secret",
             "env:HOOK_SECRET", "--id", "msg_1", "--timestamp", timestamp, "--signature",
             h["webhook-signature"], "--body", str(tmp_path / body_file), *extra],
            capture_output=True, text=True, timeout=60,
            env={**os.environ, "HOOK_SECRET": secret})
    ok = verify()
    assert ok.returncode == 0 and ok.stdout.strip() == "valid"
    forged = verify(body_file="forged.json")
    assert forged.returncode == 1 and "body was altered" in forged.stdout
    stale = verify(timestamp=str(int(h["webhook-timestamp"]) - 3600))
    assert stale.returncode == 1 and "stale or replayed" in stale.stdout
