"""``muckwatch services up | down | status``: the private broker and database kept running
between commands, for poking around by hand (the demo's ``Look at it`` step).

``up`` is idempotent: services that already run in the run directory are reported, not started
again (a second PostgreSQL on the same data directory fails in pg_ctl, and a second broker
would leave the first one running unrecorded). What runs is kept in ``services.json`` there.
"""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from devservices.common import listening, load_state, process_alive, save_state
from devservices.mosquitto import PrivateMosquitto
from devservices.postgres import PrivatePostgres


@dataclass(frozen=True)
class Services:
    """The running pair, as ``up`` found or started it."""

    mqtt_port: int
    mosquitto_pid: int
    pg_port: int
    dsn: str
    started: tuple[str, ...]  # what this call started: "mosquitto", "postgres" or nothing

    @property
    def mqtt_url(self) -> str:
        return f"mqtt://127.0.0.1:{self.mqtt_port}"


def up(run_dir: Path) -> Services:
    """Start what is not running yet (the broker, the cluster) and record both."""
    state = load_state(run_dir)
    started: list[str] = []
    pid, port = int(state.get("mosquitto_pid") or 0), int(state.get("mqtt_port") or 0)
    if not (pid and port and process_alive(pid) and listening(port)):
        broker = PrivateMosquitto(run_dir / "mosquitto").start()
        assert broker.proc is not None
        pid, port = broker.proc.pid, broker.port
        started.append("mosquitto")
        # recorded at once, so `down` stops it even if the database fails to start
        save_state(run_dir, mqtt_port=port, mosquitto_pid=pid)
    db = PrivatePostgres(run_dir / "pg")
    running = db.running_port()
    if running is None:
        db.start()
        started.append("postgres")
    else:
        db.port = running
    save_state(run_dir, mqtt_port=port, mosquitto_pid=pid, dsn=db.dsn, pg_port=db.port)
    return Services(mqtt_port=port, mosquitto_pid=pid, pg_port=db.port, dsn=db.dsn,
                    started=tuple(started))


def down(run_dir: Path) -> None:
    """Stop the recorded broker and the cluster; forget the state."""
    state = load_state(run_dir)
    if state.get("mosquitto_pid"):
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(state["mosquitto_pid"]), signal.SIGTERM)
    PrivatePostgres(run_dir / "pg").stop()
    (run_dir / "services.json").unlink(missing_ok=True)


def status(run_dir: Path) -> dict:
    """What ``up`` recorded (empty when nothing is)."""
    return load_state(run_dir)
