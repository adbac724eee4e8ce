"""Faults survived with nothing lost, on loopback, each reporting its counts: the ingest
killed with SIGKILL under load, the broker restarted gracefully and killed.

Each test uses its own topic root, so the session's shared ingest does not see its traffic,
and its own device-time window."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import pytest

from devservices.mosquitto import PrivateMosquitto

pytestmark = pytest.mark.e2e
SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample-city"


def stored(db, devices: list[str], start: int, minutes: float) -> int:
    db.rollback()
    return db.execute("SELECT count(*) FROM telemetry WHERE device_id = ANY(%s) AND ts BETWEEN"
                      " to_timestamp(%s / 1000.0) AND to_timestamp(%s / 1000.0)",
                      (devices, start - 200_000, start + minutes * 60_000 + 200_000)
                      ).fetchone()[0]


def test_ingest_killed_under_load_loses_nothing_and_duplicates_nothing(
        broker, start_ingest, db, city, poll, capsys, simulate, expected):
    root, start, trucks, minutes = "crash/v1", 1_792_044_000_000, 140, 5  # 2026-10-15 10:00
    env = {"MUCKWATCH_MQTT_TOPIC_ROOT": root}
    first = start_ingest("crash-ingest", **env)
    fixes, devices = expected(start, trucks, minutes)
    publisher = simulate(broker.port, root, start, trucks, minutes, wait=False)
    assert poll(lambda: stored(db, devices, start, minutes) > 2_000, timeout_s=60)
    first.proc.send_signal(signal.SIGKILL)  # mid-batch, mid-transaction
    first.proc.wait(timeout=10)
    at_kill = stored(db, devices, start, minutes)
    time.sleep(1.0)
    start_ingest("crash-ingest", **env)  # the same persistent session resumes
    _, err = publisher.communicate(timeout=600)
    assert publisher.returncode == 0, err
    rate = float(re.search(r"\(([\d,]+) messages/s\)", err).group(1).replace(",", ""))
    assert poll(lambda: stored(db, devices, start, minutes) >= len(fixes), timeout_s=120), \
        (stored(db, devices, start, minutes), len(fixes))
    time.sleep(2.0)  # anything redelivered late would show up as a surplus
    assert stored(db, devices, start, minutes) == len(fixes), "every fix exactly once"
    with capsys.disabled():
        print(f"\n[crash] {len(fixes)} fixes published at {rate:,.0f} msg/s; ingest SIGKILLed "
              f"with {at_kill} stored; after restart {len(fixes)} stored, 0 lost, 0 duplicated")


def test_broker_restarts_graceful_keeps_the_queue_and_a_crash_is_measured(
        run_dir, start_ingest, db, city, poll, capsys, simulate, expected):
    private = PrivateMosquitto(run_dir / "restart-broker").start()
    root = "restart/v1"
    env = {"MUCKWATCH_MQTT_TOPIC_ROOT": root, "MUCKWATCH_MQTT_PORT": str(private.port)}
    try:
        ingest = start_ingest("restart-ingest", **env)
        ingest.stop()  # its persistent session now waits at the broker
        start, trucks, minutes = 1_792_130_400_000, 40, 1  # 2026-10-16 10:00
        fixes, devices = expected(start, trucks, minutes)
        simulate(private.port, root, start, trucks, minutes)
        private.stop()  # graceful: the queue is written to disk
        private.start()
        ingest = start_ingest("restart-ingest", **env)
        assert poll(lambda: stored(db, devices, start, minutes) == len(fixes), timeout_s=60), \
            (stored(db, devices, start, minutes), len(fixes))
        ingest.stop()

        crash, crash_devices = 1_792_216_800_000, None  # 2026-10-17 10:00
        crash_fixes, crash_devices = expected(crash, trucks, minutes)
        simulate(private.port, root, crash, trucks, minutes)
        private.stop(kill=True)  # a crash: what was queued since the last autosave is gone
        private.start()
        start_ingest("restart-ingest", **env)
        previous = -1
        while (now := stored(db, crash_devices, crash, minutes)) != previous:
            previous = now
            time.sleep(3.0)
        lost = len(crash_fixes) - now
        assert 0 <= lost <= len(crash_fixes)
        with capsys.disabled():
            print(f"\n[broker] graceful restart: {len(fixes)} queued fixes, all delivered; "
                  f"kill -9 within the 30 s autosave interval: {lost} of {len(crash_fixes)} "
                  "queued fixes lost (the loss window of the development config)")
    finally:
        private.stop()


def test_broker_crash_loss_window_with_saves_every_1000_changes(run_dir, start_ingest, db,
                                                                city, capsys, simulate,
                                                                expected):
    """The production configuration saves after every 1,000 changes instead of every 30 s:
    a crash then loses at most the changes since the last save."""
    conf = run_dir / "mosquitto-autosave-changes.conf"
    text = (Path(__file__).resolve().parents[2] / "mosquitto.conf").read_text()
    conf.write_text(text.replace("autosave_interval 30",
                                 "autosave_on_changes true\nautosave_interval 1000"))
    private = PrivateMosquitto(run_dir / "changes-broker", conf=conf).start()
    root = "changes/v1"
    env = {"MUCKWATCH_MQTT_TOPIC_ROOT": root, "MUCKWATCH_MQTT_PORT": str(private.port)}
    try:
        start_ingest("changes-ingest", **env).stop()
        start, trucks, minutes = 1_792_303_200_000, 40, 1  # 2026-10-18 10:00
        fixes, devices = expected(start, trucks, minutes)
        simulate(private.port, root, start, trucks, minutes)
        private.stop(kill=True)
        private.start()
        start_ingest("changes-ingest", **env)
        previous = -1
        while (now := stored(db, devices, start, minutes)) != previous:
            previous = now
            time.sleep(3.0)
        lost = len(fixes) - now
        assert lost <= 1_000, f"{lost} lost: more than one autosave's worth of changes"
        with capsys.disabled():
            print(f"\n[broker] kill -9 with autosave every 1,000 changes: {lost} of "
                  f"{len(fixes)} queued fixes lost")
    finally:
        private.stop()
