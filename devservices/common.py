"""What the private services share: the checkout they run from, their run directory, ports,
process handling and the state file of ``muckwatch services``.

Running as root needs care (brief §11): PostgreSQL refuses to run as root, so initdb and the
server run as the ``postgres`` system user; Mosquitto drops to the ``mosquitto`` user. Both
users must be able to reach the run directory, so when the repository's own directory is not
traversable by them the run directory moves under /tmp.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pwd
import socket
import subprocess
import tempfile
import time
from pathlib import Path

# Dev tooling runs from a source checkout: mosquitto.conf, tools/timescale and .run/ live
# here. Runtime code must not use this (an installed muckwatch has no checkout).
REPO_ROOT = Path(__file__).resolve().parent.parent


class ServiceError(RuntimeError):
    """A private service could not be started or stopped; the message says which and why."""


def free_port() -> int:
    """A loopback port free right now (another process may still take it before use)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout_s: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ServiceError(f"process exited with code {proc.returncode} before port {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise ServiceError(f"nothing listens on 127.0.0.1:{port} after {timeout_s:.0f} s")


def listening(port: int) -> bool:
    """Does something accept connections on 127.0.0.1:``port`` right now?"""
    try:
        with socket.create_connection(("127.0.0.1", port), 0.5):
            return True
    except OSError:
        return False


def process_alive(pid: int) -> bool:
    """Is there a process ``pid`` (possibly another user's, e.g. the broker's own)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_process(proc: subprocess.Popen | None, grace_s: float, kill: bool = False) -> None:
    """SIGTERM (or SIGKILL when ``kill``), then SIGKILL if it is still there after
    ``grace_s`` seconds."""
    if proc is None or proc.poll() is not None:
        return
    if kill:
        proc.kill()
    else:
        proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def is_root() -> bool:
    return os.geteuid() == 0


def user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _reachable_by(user: str, path: Path) -> bool:
    """Can ``user`` create files in ``path`` (creating it if needed)?"""
    path.mkdir(parents=True, exist_ok=True)
    probe = subprocess.run(
        ["runuser", "-u", user, "--", "test", "-x", str(path)], capture_output=True, check=False
    )
    return probe.returncode == 0


def default_run_dir() -> Path:
    """``.run/`` in the repository, or a stable directory under /tmp when system users
    cannot reach the repository (e.g. a checkout inside a 0700 home directory)."""
    override = os.environ.get("MUCKWATCH_RUN_DIR")
    if override:
        return Path(override)
    candidate = REPO_ROOT / ".run"
    if not is_root() or not user_exists("postgres") or _reachable_by("postgres", candidate):
        return candidate
    digest = hashlib.sha1(str(REPO_ROOT).encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / f"muckwatch-run-{digest}"


def give_to(user: str, path: Path) -> None:
    if is_root() and user_exists(user):
        entry = pwd.getpwnam(user)
        for root, dirs, files in os.walk(path):
            os.chown(root, entry.pw_uid, entry.pw_gid)
            for name in dirs + files:
                os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)
        # every ancestor inside the run dir's parent must be traversable
        os.chmod(path, 0o755)


def save_state(run_dir: Path, **state: object) -> None:
    """``services.json``: what ``muckwatch services up`` started, for ``status`` and ``down``."""
    (run_dir / "services.json").write_text(json.dumps(state, indent=2), encoding="utf-8")


def load_state(run_dir: Path) -> dict:
    path = run_dir / "services.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
