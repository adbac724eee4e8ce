"""The delivery worker against real HTTP receivers on 127.0.0.1 and the real database:
exactly once by webhook-id through 500s, timeouts and a worker killed mid-flight; a receiver
down for a while gets everything later; 410 disables; a slow receiver delays nobody else;
Retry-After is honoured; the last failure dead-letters and replay re-sends the same id."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from alerts.outbox import AlertRouter
from alerts.subscriptions import Subscription, save
from domain.batches import DeviceStatus, FixBatch, Rejects
from domain.events import Phase, ViolationEvent
from store.database import Store

pytestmark = pytest.mark.e2e
T0 = 1_795_053_600_000


def subscribe(db, sid: str, receiver, **filters) -> Subscription:
    sub = Subscription.from_config({"id": sid, "url": receiver.url if hasattr(receiver, "url")
                                    else receiver, "secret": receiver.secret
                                    if hasattr(receiver, "secret") else filters.pop("secret"),
                                    **filters})
    save(db, sub)
    db.commit()
    return sub


def events(device: str, n: int, rule: str = "UNAUTHORISED_DUMP") -> list[ViolationEvent]:
    return [ViolationEvent(id=f"{device}-{k}", phase=Phase.OPENED, rule=rule, device_id=device,
                           start_ts=T0 + k * 60_000, end_ts=None, start_lon=114.05,
                           start_lat=22.55, severity=3, plate="粤B00001", company_id="C01")
            for k in range(n)]


def write(dsn: str, subs: list[Subscription], evs: list[ViolationEvent]) -> int:
    rows = AlertRouter(subs).route(evs)

    async def go() -> None:
        store = Store(dsn)
        try:
            await store.write(FixBatch.empty(), Rejects(), DeviceStatus(), evs, rows)
        finally:
            await store.close()

    asyncio.run(go())
    return len(rows)


def states(db, sid: str) -> dict[str, int]:
    db.rollback()
    return dict(db.execute("SELECT state, count(*) FROM alert_outbox WHERE subscription_id = %s"
                           " GROUP BY 1", (sid,)).fetchall())


def expected_ids(db, sid: str) -> set[str]:
    db.rollback()
    return {r[0] for r in db.execute("SELECT webhook_id FROM alert_outbox"
                                     " WHERE subscription_id = %s", (sid,))}


def test_exactly_once_through_500s_timeouts_and_a_killed_worker(db, dsn, tag, receiver,
                                                                worker, poll):
    attempts: dict[str, int] = {}

    def flaky(n, wid):
        attempts[wid] = attempts.get(wid, 0) + 1
        if attempts[wid] == 1:
            return 500, {}, 0.0
        if attempts[wid] == 2:
            return 204, {}, 2.5  # slower than the worker's 2 s timeout
        return 204, {}, 0.3
    r = receiver(flaky)
    sid = f"{tag}-a"
    sub = subscribe(db, sid, r)
    assert write(dsn, [sub], events(f"{tag}-dev", 30)) == 30
    expected = expected_ids(db, sid)
    first = worker(max_in_flight="8")
    assert poll(lambda: sum(1 for v in attempts.values() if v >= 3) >= 3, timeout_s=60)
    first.stop(signal.SIGKILL)  # mid-flight: some POSTs were answered, not yet recorded
    worker(max_in_flight="8")
    assert poll(lambda: states(db, sid) == {"delivered": 30}, timeout_s=90), states(db, sid)
    received = r.ids()
    assert all(req["valid"] for req in r.requests), "every delivery is signed correctly"
    assert set(received) == expected, "each event arrives, none unknown"
    assert max(attempts.values()) >= 3 and min(attempts.values()) >= 3


def test_a_receiver_down_for_a_while_gets_everything_later(db, dsn, tag, receiver, worker,
                                                           poll):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    secret = receiver().secret  # a secret only; the server comes up later on `port`
    sid = f"{tag}-down"
    sub = subscribe(db, sid, f"http://127.0.0.1:{port}/hook", secret=secret)
    write(dsn, [sub], events(f"{tag}-dev", 12))
    worker(retry_schedule_s="0,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5")

    def failing():
        db.rollback()
        return db.execute("SELECT min(attempts), max(last_error) FROM alert_outbox"
                          " WHERE subscription_id = %s", (sid,)).fetchone()
    assert poll(lambda: (failing()[0] or 0) >= 2, timeout_s=30)
    assert "Connect" in failing()[1]
    back = receiver(secret=secret, port=port)
    assert poll(lambda: states(db, sid) == {"delivered": 12}, timeout_s=30), states(db, sid)
    assert set(back.ids()) == expected_ids(db, sid)


def test_410_disables_and_a_slow_receiver_delays_nobody(db, dsn, tag, receiver, worker, poll):
    gone = receiver(lambda n, wid: (410, {}, 0.0))
    slow = receiver(lambda n, wid: (204, {}, 1.5))
    fast = receiver()
    subs = [subscribe(db, f"{tag}-gone", gone), subscribe(db, f"{tag}-slow", slow),
            subscribe(db, f"{tag}-fast", fast)]
    write(dsn, subs, events(f"{tag}-dev", 10))
    worker(max_in_flight="2")
    assert poll(lambda: states(db, f"{tag}-fast") == {"delivered": 10}, timeout_s=30)
    # the slow receiver needs ≥ 7.5 s (10 × 1.5 s, two at a time); the fast one did not wait
    assert states(db, f"{tag}-slow").get("pending", 0) > 0, "the slow one is still going"
    db.rollback()
    enabled, why = db.execute("SELECT enabled, disabled_reason FROM alert_subscriptions"
                              " WHERE id = %s", (f"{tag}-gone",)).fetchone()
    assert not enabled and "410" in why
    failed = states(db, f"{tag}-gone").get("failed", 0)
    assert 1 <= failed <= 2, "only what was already in flight (max_in_flight 2) was tried"
    time.sleep(1)
    assert len(gone.requests) == failed, "a disabled subscription gets nothing more"
    assert states(db, f"{tag}-gone").get("pending") == 10 - failed
    assert poll(lambda: states(db, f"{tag}-slow") == {"delivered": 10}, timeout_s=60)


def test_retry_after_dead_letter_and_replay(db, dsn, tag, receiver, worker, poll):
    polite = receiver(lambda n, wid: (503, {"Retry-After": "2"}, 0.0) if n == 0
                      else (204, {}, 0.0))
    broken_answers = {"status": 500}
    broken = receiver(lambda n, wid: (broken_answers["status"], {}, 0.0))
    subs = [subscribe(db, f"{tag}-polite", polite), subscribe(db, f"{tag}-broken", broken)]
    write(dsn, subs, events(f"{tag}-dev", 1))
    worker()
    assert poll(lambda: states(db, f"{tag}-polite") == {"delivered": 1}, timeout_s=30)
    gap = polite.requests[1]["at"] - polite.requests[0]["at"]
    assert gap >= 1.8, f"Retry-After: 2 honoured (retried after {gap:.2f} s)"
    assert poll(lambda: states(db, f"{tag}-broken") == {"dead": 1}, timeout_s=30)
    assert len(broken.requests) == 5, "the compressed schedule has five attempts"
    env = {**os.environ, "MUCKWATCH_DSN": dsn}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "muckwatch", "alerts", *args],
                              capture_output=True, text=True, timeout=60, env=env)
    listed = cli("list", "--failed", "--subscription", f"{tag}-broken")
    assert listed.returncode == 0 and "dead" in listed.stdout and "HTTP 500" in listed.stdout
    stats = cli("stats")
    row = next(line.split() for line in stats.stdout.splitlines()
               if line.startswith(f"{tag}-broken"))
    assert row[1:7] == ["yes", "0", "0", "0", "1", "5"], row
    broken_answers["status"] = 200
    replayed = cli("replay", "--since", "2000-01-01", "--subscription", f"{tag}-broken")
    assert replayed.returncode == 0 and "queued 1 alert(s) again" in replayed.stdout
    assert poll(lambda: states(db, f"{tag}-broken") == {"delivered": 1}, timeout_s=30)
    assert len(set(broken.ids())) == 1, "the replay carries the same webhook-id"


def test_a_worker_in_another_process_is_woken_by_the_commit_not_the_poll(db, dsn, tag,
                                                                         receiver, worker, poll):
    """The store NOTIFYs when outbox rows commit; a worker polling only every 60 s still
    delivers within moments."""
    r = receiver()
    sub = subscribe(db, f"{tag}-notify", r)
    worker(poll_s="60")
    time.sleep(2.0)  # the worker's first round and its LISTEN are done
    t0 = time.monotonic()
    write(dsn, [sub], events(f"{tag}-dev", 3))
    assert poll(lambda: len(r.ids()) >= 3, timeout_s=20), r.ids()
    assert time.monotonic() - t0 < 10, "woken by NOTIFY, not by the 60 s poll"
