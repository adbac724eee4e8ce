"""Shared fixtures: a real private Mosquitto, a real PostgreSQL, a real ingest process.

Nothing is mocked. The broker and (unless ``MUCKWATCH_DSN`` points at a server) the database
are private instances started for this test session on free loopback ports, and stopped at
the end. Tests isolate themselves with their own device ids rather than by wiping tables.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg
import pytest

from alerts.signing import SignatureError, new_secret, verify
from devservices.common import default_run_dir
from devservices.mosquitto import PrivateMosquitto
from devservices.postgres import PrivatePostgres
from store.migrate import migrate

REPO = Path(__file__).resolve().parent.parent
# MUCKWATCH_TEST_CITY runs the suite against another city bundle (e.g. a pilot city's)
SAMPLE_CITY = Path(os.environ.get("MUCKWATCH_TEST_CITY", REPO / "data" / "sample-city"))


@pytest.fixture(scope="session")
def run_dir() -> Iterator[Path]:
    base = default_run_dir()
    base.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="test-", dir=base))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)  # services using it are stopped by now


@pytest.fixture(scope="session")
def broker(run_dir: Path) -> Iterator[PrivateMosquitto]:
    b = PrivateMosquitto(run_dir / "mosquitto").start()
    yield b
    b.stop()


@pytest.fixture(scope="session")
def dsn(run_dir: Path) -> Iterator[str]:
    external = os.environ.get("MUCKWATCH_DSN")
    if external:
        with psycopg.connect(external) as conn:
            migrate(conn)
        yield external
        return
    db = PrivatePostgres(run_dir / "pg", fast_unsafe=True).start()
    with psycopg.connect(db.dsn) as conn:
        migrate(conn)
    yield db.dsn
    db.stop("immediate")


@pytest.fixture
def db(dsn: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        yield conn


_ids = itertools.count(1)


def create_database(dsn: str) -> str:
    """A new, migrated database in the cluster of ``dsn`` (for runs that must not see each
    other's rows); returns its DSN."""
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    new = make_conninfo(**{**conninfo_to_dict(dsn), "dbname": name})
    with psycopg.connect(new) as conn:
        migrate(conn)
    return new


@pytest.fixture
def fresh_database(dsn: str) -> Callable[[], str]:
    """Factory: ``fresh_database()`` → the DSN of a new, migrated database."""
    return lambda: create_database(dsn)


@pytest.fixture
def device_id() -> str:
    """A device id no other test uses (tests share one database)."""
    return f"T{uuid.uuid4().hex[:8]}{next(_ids):04d}"


class IngestProcess:
    """``muckwatch run`` as a real separate process."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "muckwatch", "run"], env=env, stdout=subprocess.PIPE,
            stderr=self._log, text=True, stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while "ingest running" not in log_path.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ingest did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        self.proc.send_signal(sig)
        out, _ = self.proc.communicate(timeout=60)
        self._log.close()
        return self.proc.returncode, out


def ingest_env(broker: PrivateMosquitto, dsn: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "MUCKWATCH_DSN": dsn,
        "MUCKWATCH_MQTT_HOST": "127.0.0.1",
        "MUCKWATCH_MQTT_PORT": str(broker.port),
        "MUCKWATCH_CITY_DIR": str(SAMPLE_CITY),
        "MUCKWATCH_INGEST_BATCH_WAIT_MS": "50",
        # alert tests run their own delivery workers; the ingest only writes the outbox
        "MUCKWATCH_ALERTS_WORKER": "false",
        "MUCKWATCH_ALERTS_RELOAD_S": "0.5",
        "MUCKWATCH_OBSERVABILITY_LISTEN": "127.0.0.1:0",  # several ingests run at once
        **extra,
    }


@pytest.fixture(scope="session")
def ingest(broker: PrivateMosquitto, dsn: str, run_dir: Path) -> Iterator[IngestProcess]:
    """One long-running ingest shared by the end-to-end tests."""
    proc = IngestProcess(ingest_env(broker, dsn, MUCKWATCH_MQTT_CLIENT_ID="test-ingest-shared"),
                         run_dir / "ingest-shared.log")
    yield proc
    proc.stop()


def wait_for(predicate, timeout_s: float = 20.0, interval_s: float = 0.05):
    """Poll until ``predicate()`` is truthy; return its value or fail with the last one."""
    deadline = time.monotonic() + timeout_s
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval_s)
        value = predicate()
    return value


def mosquitto_pub(broker: PrivateMosquitto, topic: str, payload: bytes | str,
                  *extra: str) -> None:
    """Publish like a user would, with the real mosquitto_pub client (QoS 1)."""
    data = payload.encode() if isinstance(payload, str) else payload
    source = ["-s"] if data else ["-n"]  # -n: a zero-length message (clears a retained one)
    subprocess.run(
        ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1", "-t", topic,
         *source, *extra],
        input=data if data else None, check=True, timeout=20,
    )


@pytest.fixture
def publish(broker: PrivateMosquitto):
    """``publish(topic, payload)`` with mosquitto_pub against the session broker."""
    return lambda topic, payload, *extra: mosquitto_pub(broker, topic, payload, *extra)


@pytest.fixture
def poll():
    return wait_for


@pytest.fixture
def start_ingest(broker: PrivateMosquitto, dsn: str, run_dir: Path):
    """Factory for a private ingest process (own client id); stopped at the end of the test."""
    started: list[IngestProcess] = []

    def start(client_id: str, **env: str) -> IngestProcess:
        proc = IngestProcess(ingest_env(broker, dsn, MUCKWATCH_MQTT_CLIENT_ID=client_id, **env),
                             run_dir / f"ingest-{client_id}.log")
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.proc.poll() is None:
            proc.stop(signal.SIGKILL)


@pytest.fixture(scope="session")
def city():
    from domain.city import load_city

    return load_city(SAMPLE_CITY)


# --- webhook receivers (alerts and fault tests) ---------------------------------------------

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
