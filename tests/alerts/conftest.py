"""Real HTTP receivers on 127.0.0.1 and real delivery workers (``muckwatch alerts worker``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from alerts.signing import SignatureError, new_secret, verify


@dataclass
class Receiver:
    """An HTTP server that verifies every delivery and answers as ``behaviour`` says:
    ``behaviour(n, webhook_id) -> (status, headers, delay_s)`` for its n-th request."""

    secret: str
    behaviour: Callable[[int, str], tuple[int, dict, float]]
    requests: list[dict] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def start(self, port: int = 0) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    verify(receiver.secret, headers, body)
                    valid = True
                except SignatureError:
                    valid = False
                with receiver.lock:
                    n = len(receiver.requests)
                    receiver.requests.append({"id": headers.get("webhook-id"), "valid": valid,
                                              "body": json.loads(body), "at": time.monotonic(),
                                              "ts": headers.get("webhook-timestamp")})
                status, extra, delay = receiver.behaviour(n, headers.get("webhook-id", ""))
                if delay:
                    time.sleep(delay)
                try:
                    self.send_response(status)
                    for k, v in extra.items():
                        self.send_header(k, v)
                    self.send_header("content-length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the worker gave up waiting

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def ids(self, status_ok_only: bool = False) -> list[str]:
        with self.lock:
            return [r["id"] for r in self.requests if r["valid"]]


@pytest.fixture
def receiver():
    started: list[Receiver] = []

    def make(behaviour=lambda n, wid: (204, {}, 0.0), secret: str | None = None,
             port: int = 0) -> Receiver:
        r = Receiver(secret or new_secret(), behaviour).start(port)
        started.append(r)
        return r

    yield make
    for r in started:
        r.stop()


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
