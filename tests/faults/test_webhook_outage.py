"""The enforcement receiver fails for a long stretch while trucks report at full rate: the
ingest keeps storing telemetry and violations at the rate they arrive (the outbox decouples
delivery from ingest), alerts wait in the outbox and retry, and when the receiver is back each
one arrives exactly once under its webhook id, signed.

The outage's phases end on what they must show, not on a clock: the receiver refuses
connections until an alert has been retried against it twice, then answers 503 until it has
turned away 20 POSTs and retried one alert after a 503; retries are 0, 1, 2, 2, 2 … s apart
(30 attempts: nothing is dead-lettered for a minute). The load (15 simulated minutes of 100
trucks, ≥ 16 s at 5,000 msg/s) is still running when the receiver comes back (asserted)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter

import pytest

from alerts.subscriptions import Subscription, save

pytestmark = pytest.mark.e2e
REFUSED_TRIES = 3  # connection refused until an alert has been tried this often …
FAILING_POSTS = 20  # … then 503s until this many POSTs were turned away (and one alert
FAILING_REPEAT = 2  # this often); then it works
RETRY_SCHEDULE_S = ",".join(["0", "1", "2"] + ["2"] * 27)
REORDER_S = 10.0  # [rules] reorder_window_s: the last fixes are judged this long after arrival


def test_receiver_down_then_failing_under_load_loses_and_doubles_nothing(
        broker, start_ingest, db, poll, receiver, capsys, city):
    from simulator.mixed import MixedOptions, MixedScenario

    tag = f"wh{uuid.uuid4().hex[:6]}"
    root = f"{tag}/v1"
    # recent history, at 02:00 Beijing time (18:00 UTC): the sample city's night-only permits
    # (22:00-06:00) are valid then too, so the fleet has its 200 trucks. A start tied to the
    # wall clock's time of day made the fleet too small (146) for most of the day.
    latest, day, two_local = time.time_ns() // 1_000_000 - 3 * 3_600_000, 86_400_000, 64_800_000
    start = (latest - two_local) // day * day + two_local
    trucks, minutes, per_rule = 100, 15, 6
    options = MixedOptions(trucks=trucks, minutes=minutes, interval_s=1, seed=5,
                           start_ms=start, per_rule=per_rule)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    delivered: list[str] = []
    failed_attempts = [0]
    failed_by_id: Counter[str] = Counter()
    back_at: list[float] = []

    def behaviour(n: int, webhook_id: str) -> tuple[int, dict, float]:
        if not back_at:
            failed_attempts[0] += 1
            failed_by_id[webhook_id] += 1
            return 503, {}, 0.0
        delivered.append(webhook_id)
        return 204, {}, 0.0
    sid = f"{tag}-enforcement"
    secret = receiver(behaviour).secret  # the server comes up later on `port`
    save(db, Subscription.from_config({"id": sid, "url": f"http://127.0.0.1:{port}/hook",
                                       "secret": secret}))
    db.commit()
    ingest = start_ingest(f"{tag}-ingest", MUCKWATCH_MQTT_TOPIC_ROOT=root,
                          MUCKWATCH_ALERTS_WORKER="true", MUCKWATCH_ALERTS_POLL_S="0.2",
                          MUCKWATCH_ALERTS_RETRY_SCHEDULE_S=RETRY_SCHEDULE_S,
                          MUCKWATCH_ALERTS_JITTER="0.2", MUCKWATCH_ALERTS_TIMEOUT_S="2")
    try:
        t0 = time.monotonic()
        load = subprocess.Popen(
            [sys.executable, "-m", "muckwatch", "simulate", "--scenario", "mixed",
             "--trucks", str(trucks), "--duration", str(minutes), "--interval", "1",
             "--seed", "5", "--per-rule", str(per_rule), "--start-ms", str(start),
             "--mqtt", f"mqtt://127.0.0.1:{broker.port}", "--max-rate", "5000",
             "--truth", os.devnull],
            env={**os.environ, "MUCKWATCH_MQTT_TOPIC_ROOT": root}, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)

        # the fixes the load publishes, worked out while it runs (the refused phase waits)
        fixes = {(d.device, f["ts"]) for d in MixedScenario(city, options).deliveries()
                 for f in (d.payload if d.is_batch else [d.payload])}
        devices = sorted({d for d, _ in fixes})
        # from the first fix: a TRIP_NOT_CLOSED episode's leg begins two hours before the run
        first = min(ts for _, ts in fixes)

        def outbox() -> dict[str, int]:
            db.rollback()
            return dict(db.execute("SELECT state, count(*) FROM alert_outbox"
                                   " WHERE subscription_id = %s GROUP BY 1", (sid,)).fetchall())

        def stored() -> int:
            db.rollback()
            return db.execute("SELECT count(*) FROM telemetry WHERE device_id = ANY(%s) AND ts"
                              " BETWEEN to_timestamp(%s / 1000.0) AND to_timestamp(%s / 1000.0)",
                              (devices, first, start + minutes * 60_000 + 200_000)
                              ).fetchone()[0]

        def most_attempts() -> int:
            db.rollback()
            return db.execute("SELECT coalesce(max(attempts), 0) FROM alert_outbox"
                              " WHERE subscription_id = %s", (sid,)).fetchone()[0]

        assert poll(lambda: most_attempts() >= REFUSED_TRIES, timeout_s=120, interval_s=0.2)
        refused_s = time.monotonic() - t0
        refused_outbox = outbox()
        up = receiver(behaviour, secret=secret, port=port)  # answering 503 for now
        assert poll(lambda: failed_attempts[0] >= FAILING_POSTS
                    and max(failed_by_id.values()) >= FAILING_REPEAT, timeout_s=120,
                    interval_s=0.2)
        failing_s = time.monotonic() - t0 - refused_s
        assert ingest.proc.poll() is None
        during = outbox()
        stored_during = stored()
        back_at.append(time.monotonic())
        assert load.poll() is None, "the trucks reported all through the outage"
        _, err = load.communicate(timeout=300)
        assert load.returncode == 0, err
        published_s = time.monotonic() - t0
        assert poll(lambda: stored() >= len(fixes), timeout_s=120), (stored(), len(fixes))
        caught_up_s = time.monotonic() - t0
        # the last violations close when their trucks' data ends: their last fixes wait out
        # the reorder window on the wall clock (released by the ingest's 1 s idle tick)
        db.rollback()
        last_received = db.execute("SELECT extract(epoch FROM max(received_at))::float"
                                   " FROM telemetry WHERE device_id = ANY(%s)",
                                   (devices,)).fetchone()[0]
        time.sleep(max(0.0, last_received + REORDER_S + 2.0 - time.time()))

        def all_delivered() -> bool:
            states = outbox()
            return bool(states) and set(states) == {"delivered"}
        assert poll(all_delivered, timeout_s=150), outbox()
        drained_s = time.monotonic() - back_at[0]
        assert stored() == len(fixes), "every fix stored once while the receiver was failing"
        db.rollback()
        expected = {r[0] for r in db.execute("SELECT webhook_id FROM alert_outbox"
                                             " WHERE subscription_id = %s", (sid,))}
        attempts = db.execute("SELECT max(attempts), avg(attempts)::float FROM alert_outbox"
                              " WHERE subscription_id = %s", (sid,)).fetchone()
        assert sum(refused_outbox.values()) > 0, "violations were routed while it was down"
        assert stored_during > 0, "telemetry kept being stored while alerts failed"
        assert failed_attempts[0] > 0, "the receiver was tried while it answered 503"
        assert all(r["valid"] for r in up.requests), "every delivery signed"
        assert len(delivered) == len(set(delivered)), "no webhook id accepted twice"
        assert set(delivered) == expected, "every alert delivered, none unknown"
        assert ingest.proc.poll() is None
    finally:
        db.rollback()
        db.execute("DELETE FROM alert_outbox WHERE subscription_id = %s", (sid,))
        db.execute("DELETE FROM alert_subscriptions WHERE id = %s", (sid,))
        db.commit()
    with capsys.disabled():
        print(f"\n[webhook outage] {len(fixes):,} fixes from {len(devices)} trucks published in "
              f"{published_s:.0f} s (≤ 5,000 msg/s), all stored {caught_up_s:.0f} s after the "
              f"start; receiver refused connections for {refused_s:.0f} s then answered 503 for "
              f"{failing_s:.0f} s ({failed_attempts[0]} failed POSTs; outbox then {during}, "
              f"{stored_during:,} fixes stored meanwhile); once back, all {len(expected)} alerts "
              f"delivered in {drained_s:.0f} s, each id once; attempts max {attempts[0]}, "
              f"mean {attempts[1]:.1f}")
