"""A private PostgreSQL cluster for the demo, the tests and benchmarks.

Why private: `make demo` and `make test` must work on a fresh machine without touching (or
depending on) a server that happens to run there. Each cluster lives in a run directory, on a
free loopback port, and is stopped by whoever started it.
"""

from __future__ import annotations

import glob
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from devservices.common import (
    ServiceError,
    free_port,
    give_to,
    is_root,
    listening,
    process_alive,
)


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
        if is_root():
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
        give_to("postgres", self.run_dir)
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

    def running_port(self) -> int | None:
        """The port of a server already running on this data directory, else None.

        ``start()`` on a running cluster fails in pg_ctl ("another server might be running"),
        so whoever may meet one (``muckwatch services up`` run twice) asks first. The answer
        comes from postmaster.pid (pid on line 1, port on line 4), checked against the process
        and the port, so a stale file left by a crash counts as not running."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return None
        if len(lines) < 4 or not lines[0].strip().isdigit() or not lines[3].strip().isdigit():
            return None
        port = int(lines[3])
        return port if process_alive(int(lines[0])) and listening(port) else None

    def stop(self, mode: str = "fast") -> None:
        if not (self.data_dir / "postmaster.pid").exists():
            return
        self._run([str(postgres_bindir() / "pg_ctl"), "-D", str(self.data_dir), "-m", mode,
                   "-w", "stop"])
