"""Real delivery workers (``muckwatch alerts worker``); receivers: tests/conftest.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest


class WorkerProcess:
    def __init__(self, dsn: str, log_path, **settings: str) -> None:
        env = {**os.environ, "MUCKWATCH_DSN": dsn,
               **{f"MUCKWATCH_ALERTS_{k.upper()}": str(v) for k, v in settings.items()}}
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, "-m", "muckwatch", "alerts", "worker"],
                                     env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=60)
        self._log.close()


FAST = {"retry_schedule_s": "0,0.3,0.3,0.3,0.3", "jitter": "0.1", "poll_s": "0.1",
        "timeout_s": "2", "lease_s": "3"}


@pytest.fixture
def worker(dsn, run_dir):
    """Factory: ``worker(**settings)`` starts ``muckwatch alerts worker`` with a compressed
    retry schedule (overridable); all are stopped at the end of the test."""
    started: list[WorkerProcess] = []

    def start(**settings: str) -> WorkerProcess:
        w = WorkerProcess(dsn, run_dir / f"alerts-worker-{len(started)}-{time.time_ns()}.log",
                          **{**FAST, **settings})
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop(signal.SIGKILL)


@pytest.fixture
def tag(db):
    """A unique prefix for a test's subscriptions and devices; their rows are deleted
    afterwards so no other test's worker or ingest sees them."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    yield prefix
    db.rollback()
    db.execute("DELETE FROM alert_outbox WHERE subscription_id LIKE %s", (prefix + "%",))
    db.execute("DELETE FROM alert_subscriptions WHERE id LIKE %s", (prefix + "%",))
    db.execute("DELETE FROM violations WHERE device_id LIKE %s", (prefix + "%",))
    db.commit()
