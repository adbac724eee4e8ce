"""Private Mosquitto and PostgreSQL instances for the demo, the tests and benchmarks.

Why private: `make demo` and `make test` must work on a fresh machine without touching (or
depending on) services that happen to run there. Each instance lives in a run directory, on a
free loopback port, and is stopped by whoever started it.

Running as root needs care (brief §11): PostgreSQL refuses to run as root, so initdb and the
server run as the ``postgres`` system user; Mosquitto drops to the ``mosquitto`` user. Both
users must be able to reach the run directory, so when the repository's own directory is not
traversable by them the run directory moves under /tmp.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


class ServiceError(RuntimeError):
    """A private service could not be started or stopped; the message says which and why."""


def free_port() -> int:
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


def _is_root() -> bool:
    return os.geteuid() == 0


def _user_exists(name: str) -> bool:
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
    if not _is_root() or not _user_exists("postgres") or _reachable_by("postgres", candidate):
        return candidate
    digest = hashlib.sha1(str(REPO_ROOT).encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / f"muckwatch-run-{digest}"


def _give_to(user: str, path: Path) -> None:
    if _is_root() and _user_exists(user):
        entry = pwd.getpwnam(user)
        for root, dirs, files in os.walk(path):
            os.chown(root, entry.pw_uid, entry.pw_gid)
            for name in dirs + files:
                os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)
        # every ancestor inside the run dir's parent must be traversable
        os.chmod(path, 0o755)


@dataclass
class PrivateMosquitto:
    """A Mosquitto broker started from the repository's mosquitto.conf on a loopback port."""

    run_dir: Path
    port: int = 0
    conf: Path = REPO_ROOT / "mosquitto.conf"
    proc: subprocess.Popen | None = None
    # further listeners of the file (e.g. TLS 8883) by their configured port → the port used
    more_ports: dict[int, int] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def runtime_config(self) -> str:
        """The repository file with its port and paths rewritten for this instance."""
        lines = []
        first = True
        for line in self.conf.read_text(encoding="utf-8").splitlines():
            words = line.split()
            if words[:1] == ["listener"]:
                # a private broker listens on loopback only, whatever the file says
                if first:
                    line = f"listener {self.port} 127.0.0.1"
                    first = False
                else:
                    port = self.more_ports.setdefault(int(words[1]), free_port())
                    line = f"listener {port} 127.0.0.1"
            elif words[:1] == ["persistence_location"]:
                line = f"persistence_location {self.run_dir}/"
            lines.append(line)
        return "\n".join(lines) + "\n"

    def start(self, timeout_s: float = 15.0) -> PrivateMosquitto:
        if shutil.which("mosquitto") is None:
            raise ServiceError("mosquitto is not installed (apt-get install mosquitto)")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        conf_path = self.run_dir / "mosquitto.conf"
        conf_path.write_text(self.runtime_config(), encoding="utf-8")
        _give_to("mosquitto", self.run_dir)
        log = open(self.run_dir / "mosquitto.log", "ab")  # noqa: SIM115 - lives with the process
        self.proc = subprocess.Popen(
            ["mosquitto", "-c", str(conf_path)], stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        log.close()
        try:
            wait_for_port(self.port, timeout_s, self.proc)
        except ServiceError as e:
            self.stop()
            tail = (self.run_dir / "mosquitto.log").read_text(errors="replace")[-2000:]
            raise ServiceError(f"mosquitto did not start: {e}\n{tail}") from None
        return self

    def stop(self, kill: bool = False) -> None:
        """Graceful stop (SIGTERM, persistence saved) unless ``kill`` (SIGKILL, a crash)."""
        stop_process(self.proc, grace_s=10, kill=kill)


def postgres_bindir() -> Path:
    """The newest installed PostgreSQL's bin directory (do not hard-code a version)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit()
        else 0,
    )
    if found:
        return Path(found[-1]).parent
    which = shutil.which("initdb")
    if which:
        return Path(which).parent
    raise ServiceError("PostgreSQL server binaries not found (apt-get install postgresql)")


@dataclass
class PrivatePostgres:
    """A PostgreSQL cluster in ``run_dir`` on a loopback port, with database ``muckwatch``."""

    run_dir: Path
    port: int = 0
    database: str = "muckwatch"
    fast_unsafe: bool = False  # fsync off: for throwaway test clusters only

    @property
    def data_dir(self) -> Path:
        return self.run_dir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.run_dir / "sock"

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    def _run(self, args: list[str], **kw) -> subprocess.CompletedProcess:
        if _is_root():
            args = ["runuser", "-u", "postgres", "--", *args]
        result = subprocess.run(args, capture_output=True, text=True, check=False, **kw)
        if result.returncode != 0:
            raise ServiceError(
                f"{Path(args[args.index('--') + 1] if '--' in args else args[0]).name} failed "
                f"(exit {result.returncode}): {(result.stderr or result.stdout).strip()[-1500:]}"
            )
        return result

    def start(self, timeout_s: float = 60.0) -> PrivatePostgres:
        bindir = postgres_bindir()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        _give_to("postgres", self.run_dir)
        if not (self.data_dir / "PG_VERSION").exists():
            if self.data_dir.exists():
                shutil.rmtree(self.data_dir)
            self._run([str(bindir / "initdb"), "-D", str(self.data_dir), "-A", "trust",
                       "-U", "postgres", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"])
        self.port = self.port or free_port()
        options = [f"-p {self.port}", f"-k {self.socket_dir}", "-c listen_addresses=127.0.0.1",
                   "-c max_connections=100", "-c shared_buffers=256MB"]
        if self.fast_unsafe:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        self._run([str(bindir / "pg_ctl"), "-D", str(self.data_dir), "-o", " ".join(options),
                   "-l", str(self.run_dir / "postgres.log"), "-w", "-t", str(int(timeout_s)),
                   "start"])
        exists = self._run([str(bindir / "psql"), "-h", str(self.socket_dir), "-p", str(self.port),
                            "-U", "postgres", "-d", "postgres", "-tAc",
                            f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'"])
        if exists.stdout.strip() != "1":
            self._run([str(bindir / "createdb"), "-h", str(self.socket_dir), "-p", str(self.port),
                       "-U", "postgres", self.database])
        return self

    def stop(self, mode: str = "fast") -> None:
        if not (self.data_dir / "postmaster.pid").exists():
            return
        self._run([str(postgres_bindir() / "pg_ctl"), "-D", str(self.data_dir), "-m", mode,
                   "-w", "stop"])


def save_state(run_dir: Path, **state: object) -> None:
    (run_dir / "services.json").write_text(json.dumps(state, indent=2), encoding="utf-8")


def load_state(run_dir: Path) -> dict:
    path = run_dir / "services.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
